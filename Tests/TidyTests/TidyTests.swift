// Source hygiene, checked as a test (TigerBeetle's tidy), over every folder of the tree:
// - every library file names its kernel counterpart on its first line;
// - the core reads no clock, no unseeded randomness and starts no threads of its own
//   (docs/DESIGN.md decision 2), and every `@unchecked Sendable` says what guards it;
// - every document a file cites is in the repository, and every section of
//   docs/KERNEL-MODEL.md it cites exists;
// - only the host-kernel module (and the command-line front end) imports Foundation or the
//   C shim;
// - no function is longer than 80 lines, but for the few named below, whose kernel
//   counterparts are that long;
// - the layers drawn in docs/DESIGN.md are the targets of Package.swift;
// - no FIXME is left on main.
// Each check has a canary: a planted violation it must catch.

import Foundation
import Testing

/// The repository root, found from this file's path.
let repositoryRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The engine's modules.
let coreModules = ["IOMapBase", "PageCache", "IOMap", "ExtentFS"]
/// Every library module: the engine and its test support.
let libraryModules = coreModules + ["Volume", "IOMapTesting", "IOMapKernelSide", "IOMapBench", "FUSE"]
/// Modules that may import Foundation and the C shim: the host-kernel side, and the tool's
/// front end (JSON, standard streams).
let hostModules: Set<String> = ["IOMapKernelSide", "iomap"]

typealias SourceFile = (name: String, text: String)

/// The Swift files under `folder` (relative to the root), in every subfolder, sorted.
func swiftFiles(under folder: String) throws -> [SourceFile] {
    let dir = repositoryRoot.appendingPathComponent(folder)
    guard let walker = FileManager.default.enumerator(atPath: dir.path) else { return [] }
    let names = walker.compactMap { $0 as? String }.filter { $0.hasSuffix(".swift") }.sorted()
    return try names.map { ("\(folder)/\($0)", try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8)) }
}

func swiftFiles(in module: String) throws -> [SourceFile] { try swiftFiles(under: "Sources/\(module)") }

/// Files whose first line is not a Counterpart: line.
func counterpartViolations(_ files: [SourceFile]) -> [String] {
    files.compactMap { name, text in
        (text.split(separator: "\n", maxSplits: 1).first ?? "").hasPrefix("// Counterpart:")
            ? nil : "\(name) does not open with a Counterpart: line"
    }
}

/// Uses of APIs that bring hidden nondeterminism into the core, with what to use instead.
func bannedAPIViolations(_ files: [SourceFile]) -> [String] {
    let banned: [(String, String)] = [
        ("Date()", "no wall clock in the engine"),
        ("ContinuousClock.now", "no clock in the engine; time comes from the environment"),
        ("DispatchQueue", "no threads of the engine's own"),
        ("Task {", "no async tasks in the synchronous core"),
        ("SystemRandomNumberGenerator", "SeededRandom from the environment"),
        (".random(in:", "SeededRandom passed with `using:`"),
    ]
    var out: [String] = []
    for (name, text) in files {
        for line in text.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).hasPrefix("//") {
            for (api, why) in banned where line.contains(api) {
                if api == ".random(in:" && line.contains("using:") { continue }
                out.append("\(name): uses \(api): \(why)\n  \(line)")
            }
        }
    }
    return out
}

/// `@unchecked Sendable` types without a "Guarded by:" comment near them.
func guardedByViolations(_ files: [SourceFile]) -> [String] {
    var out: [String] = []
    for (name, text) in files {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (i, line) in lines.enumerated() where line.contains("@unchecked Sendable") {
            let window = lines[i...min(lines.count - 1, i + 8)].joined(separator: "\n")
            let preamble = lines[max(0, i - 40)..<i].joined(separator: "\n")
            if !window.contains("Guarded by:") && !preamble.contains("Guarded by:") {
                out.append("\(name):\(i + 1): @unchecked Sendable without a 'Guarded by:' comment")
            }
        }
    }
    return out
}

/// Names of documents that are not part of the repository: design notes the code once cited.
let foreignDocuments = ["KERNEL-SPEC", "STYLE-ANCHORS", "VOLUME-ANCHORS", "FUSE-ANCHORS", "release_model"]

/// Citations of documents that are not in the repository: a `docs/NAME.md` (or a bare
/// `NAME.md`, looked for at the root and in docs/) that does not exist, a name of the old
/// design notes, and a `KERNEL-MODEL.md §N` with no such section. `exists` answers for a
/// path relative to the root; `sections` are the section numbers of docs/KERNEL-MODEL.md.
func citationViolations(_ files: [SourceFile], exists: (String) -> Bool, sections: Set<String>) -> [String] {
    let document = try! NSRegularExpression(pattern: #"(?<![\w/.-])((?:docs/)?[A-Za-z0-9_-]+\.md)\b"#)
    let section = try! NSRegularExpression(pattern: #"KERNEL-MODEL(?:\.md)? §(\d+(?:\.\d+)?)"#)
    var out: [String] = []
    for (name, text) in files {
        let range = NSRange(text.startIndex..., in: text)
        for m in document.matches(in: text, range: range) {
            let cited = String(text[Range(m.range(at: 1), in: text)!])
            if !(exists(cited) || (!cited.hasPrefix("docs/") && exists("docs/" + cited))) {
                out.append("\(name) cites \(cited), which is not in the repository")
            }
        }
        for m in section.matches(in: text, range: range) {
            let number = String(text[Range(m.range(at: 1), in: text)!])
            if !sections.contains(number) { out.append("\(name) cites docs/KERNEL-MODEL.md §\(number), which has no such section") }
        }
        for foreign in foreignDocuments where text.contains(foreign) {
            out.append("\(name) cites \(foreign), which is not in the repository")
        }
    }
    return out
}

/// The section numbers of a document's headings ("## 3." → "3", "### 3.8 …" → "3.8").
func sectionNumbers(_ markdown: String) -> Set<String> {
    var out = Set<String>()
    for line in markdown.split(separator: "\n") where line.hasPrefix("#") {
        let words = line.drop { $0 == "#" }.split(separator: " ")
        guard let first = words.first else { continue }
        let number = first.hasSuffix(".") ? first.dropLast() : first
        if number.allSatisfy({ $0.isNumber || $0 == "." }), !number.isEmpty { out.insert(String(number)) }
    }
    return out
}

/// Imports of Foundation (or its parts) and of the C shim outside the host modules.
func importViolations(_ files: [SourceFile], module: String) -> [String] {
    guard !hostModules.contains(module) else { return [] }
    let host = ["import Foundation", "import FoundationEssentials", "import CKernelShim"]
    return files.flatMap { name, text in
        text.split(separator: "\n").filter { line in host.contains { line.hasPrefix($0) } }
            .map { "\(name): \($0) (only \(hostModules.sorted().joined(separator: " and ")) may)" }
    }
}

/// Functions whose kernel counterpart is as long, and which follow it step by step.
let longFunctionAllowance: [String: String] = [:]

/// Functions (and initializers) longer than `limit` lines, from their declaration to their
/// closing brace, outside `allowed` (keyed by "file: name").
func longFunctionViolations(_ files: [SourceFile], limit: Int = 80, allowed: [String: String] = longFunctionAllowance) -> [String] {
    let declaration = try! NSRegularExpression(
        pattern:
            #"^\s*(?:@[\w()]+\s+)*(?:(?:public|private|fileprivate|internal|package|static|final|override|mutating|nonmutating|nonisolated|convenience|required)\s+)*(?:func\s+([\w`]+)|(init)[?(<]|(deinit)\b)"#
    )
    var out: [String] = []
    for (name, text) in files {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (i, line) in lines.enumerated() {
            let range = NSRange(line.startIndex..., in: line)
            guard let m = declaration.firstMatch(in: line, range: range) else { continue }
            let function = (1...3).compactMap { Range(m.range(at: $0), in: line).map { String(line[$0]) } }.first ?? "?"
            guard let length = bodyLength(lines, from: i), length > limit, allowed["\(name): \(function)"] == nil else { continue }
            out.append("\(name):\(i + 1): \(function) is \(length) lines (at most \(limit))")
        }
    }
    return out
}

/// Lines from `start` to the brace that closes the first body opened after it, or nil for a
/// declaration without a body (a protocol requirement).
func bodyLength(_ lines: [String], from start: Int) -> Int? {
    var depth = 0
    var opened = false
    for j in start..<lines.count {
        var inString = false
        var previous: Character = " "
        for ch in lines[j] {
            if ch == "\"" && previous != "\\" { inString.toggle() }
            if !inString {
                if ch == "/" && previous == "/" { break }
                if ch == "{" { depth += 1; opened = true }
                if ch == "}" { depth -= 1 }
            }
            previous = ch
        }
        if opened && depth <= 0 { return j - start + 1 }
        if !opened && j > start + 12 { return nil }
    }
    return nil
}

/// Targets of Package.swift that the Layers section of docs/DESIGN.md does not name.
func layeringViolations(package: String, design: String) -> [String] {
    let target = try! NSRegularExpression(pattern: #"\.(?:target|executableTarget)\(\s*name: "(\w+)""#)
    let layers = design.components(separatedBy: "## Layers").dropFirst().first?.components(separatedBy: "\n## ").first ?? ""
    let names = target.matches(in: package, range: NSRange(package.startIndex..., in: package))
        .map { String(package[Range($0.range(at: 1), in: package)!]) }
    return names.filter { !layers.contains($0) }.map { "docs/DESIGN.md's Layers does not name the target \($0)" }
}

func repositoryFile(_ path: String) -> String {
    (try? String(contentsOf: repositoryRoot.appendingPathComponent(path), encoding: .utf8)) ?? ""
}

func existsInRepository(_ path: String) -> Bool { FileManager.default.fileExists(atPath: repositoryRoot.appendingPathComponent(path).path) }

/// Every file that may cite a document: sources, tests, docs, README, the package and CI.
func citingFiles() throws -> [SourceFile] {
    var files = try swiftFiles(under: "Sources") + swiftFiles(under: "Tests")
    let docs = try FileManager.default.contentsOfDirectory(atPath: repositoryRoot.appendingPathComponent("docs").path)
    for name in ["README.md", "Package.swift", ".ci/run"] + docs.filter({ $0.hasSuffix(".md") }).map({ "docs/\($0)" }) {
        files.append((name, repositoryFile(name)))
    }
    // The tidy checks name the old design notes in order to refuse them.
    return files.filter { $0.name != "Tests/TidyTests/TidyTests.swift" }
}

@Suite("Tidy")
struct TidyTests {
    @Test("every library file names its kernel counterpart on its first line, in every folder", arguments: libraryModules)
    func counterpartLine(module: String) throws {
        let files = try swiftFiles(in: module)
        #expect(!files.isEmpty)
        #expect(counterpartViolations(files) == [])
    }

    @Test("the core uses no hidden nondeterminism", arguments: coreModules)
    func bannedAPIs(module: String) throws {
        #expect(bannedAPIViolations(try swiftFiles(in: module)) == [])
    }

    @Test("every @unchecked Sendable names what guards it", arguments: coreModules)
    func guardedBy(module: String) throws {
        #expect(guardedByViolations(try swiftFiles(in: module)) == [])
    }

    @Test("every document the code and the docs cite is in the repository")
    func citations() throws {
        let sections = sectionNumbers(repositoryFile("docs/KERNEL-MODEL.md"))
        #expect(sections.contains("3.8"), "docs/KERNEL-MODEL.md has no numbered sections")
        let found = citationViolations(try citingFiles(), exists: existsInRepository, sections: sections)
        #expect(found.isEmpty, "\(found.joined(separator: "\n"))")
    }

    @Test("only the host-kernel module and the tool import Foundation or the C shim", arguments: libraryModules + ["iomap"])
    func imports(module: String) throws {
        #expect(importViolations(try swiftFiles(in: module), module: module) == [])
    }

    @Test("no function in Sources is longer than 80 lines", arguments: libraryModules + ["iomap"])
    func functionLength(module: String) throws {
        let found = longFunctionViolations(try swiftFiles(in: module))
        #expect(found.isEmpty, "\(found.joined(separator: "\n"))")
    }

    @Test("the layers of docs/DESIGN.md are the targets of Package.swift")
    func layering() {
        #expect(layeringViolations(package: repositoryFile("Package.swift"), design: repositoryFile("docs/DESIGN.md")) == [])
    }

    @Test("no FIXME is left in the sources", arguments: libraryModules + ["iomap"])
    func noFixme(module: String) throws {
        for (name, text) in try swiftFiles(in: module) {
            #expect(!text.contains("FIXME"), "\(name) contains FIXME")
        }
    }

    @Test("each tidy check catches a planted violation (canary)")
    func canary() {
        let bad: [SourceFile] = [
            (
                name: "Bad.swift",
                text: "import Foundation\nfinal class X: @unchecked Sendable {}\nlet t = Date()\nlet r = Int.random(in: 0..<4)\n"
            )
        ]
        let good: [SourceFile] = [
            (
                name: "Good.swift",
                text:
                    "// Counterpart: nothing.\n// Guarded by: a lock.\nfinal class Y: @unchecked Sendable {}\nlet r = Int.random(in: 0..<4, using: &g)\n"
            )
        ]
        #expect(counterpartViolations(bad).count == 1)
        #expect(bannedAPIViolations(bad).count == 2)
        #expect(guardedByViolations(bad).count == 1)
        #expect(importViolations(bad, module: "IOMap").count == 1)
        #expect(importViolations(bad, module: "IOMapKernelSide").isEmpty)
        #expect(counterpartViolations(good).isEmpty)
        #expect(bannedAPIViolations(good).isEmpty)
        #expect(guardedByViolations(good).isEmpty)

        let citing: [SourceFile] = [
            ("A.swift", "// see docs/NOPE.md and KERNEL-SPEC §3 and docs/KERNEL-MODEL.md §99.1"),
            ("B.swift", "// see docs/DESIGN.md decision 5, README.md and KERNEL-MODEL.md §3.8"),
        ]
        let found = citationViolations(
            citing, exists: { ["docs/DESIGN.md", "docs/KERNEL-MODEL.md", "README.md"].contains($0) }, sections: ["3", "3.8"])
        #expect(found.count == 3, "\(found)")
        #expect(found.allSatisfy { $0.hasPrefix("A.swift") })
        #expect(sectionNumbers("# Title\n## 3. Seed\n### 3.8 O1\n") == ["3", "3.8"])

        let long = "// Counterpart: x.\nfunc f() {\n" + String(repeating: "    x()\n", count: 90) + "}\nfunc g() {\n    let s = \"{\"\n}\n"
        #expect(longFunctionViolations([("L.swift", long)]).count == 1)
        #expect(longFunctionViolations([("L.swift", long)], allowed: ["L.swift: f": "as the kernel's"]).isEmpty)

        let package = #".target(name: "A"), .executableTarget(name: "tool"), .target(name: "Hidden")"#
        #expect(
            layeringViolations(package: package, design: "## Layers\nA and tool\n## Next\nHidden") == [
                "docs/DESIGN.md's Layers does not name the target Hidden"
            ])
    }
}
