// Source hygiene, checked as a test (TigerBeetle's tidy): every core file names its kernel
// counterpart on its first line; the core reads no clock, no unseeded randomness and starts
// no threads of its own (docs/DESIGN.md decision 2); every `@unchecked Sendable` says what guards
// it; no FIXME is left on main.

import Foundation
import Testing

/// The repository root, found from this file's path.
let repositoryRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The engine's modules: everything but test support and the tool.
let coreModules = ["IOMapBase", "PageCache", "IOMap", "ExtentFS"]

func swiftFiles(in module: String) throws -> [(name: String, text: String)] {
    let dir = repositoryRoot.appendingPathComponent("Sources/\(module)")
    let names = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".swift") }.sorted()
    return try names.map { ("\(module)/\($0)", try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8)) }
}

/// Files whose first line is not a Counterpart: line.
func counterpartViolations(_ files: [(name: String, text: String)]) -> [String] {
    files.compactMap { name, text in
        (text.split(separator: "\n", maxSplits: 1).first ?? "").hasPrefix("// Counterpart:")
            ? nil : "\(name) does not open with a Counterpart: line"
    }
}

/// Uses of APIs that bring hidden nondeterminism into the core, with what to use instead.
func bannedAPIViolations(_ files: [(name: String, text: String)]) -> [String] {
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
func guardedByViolations(_ files: [(name: String, text: String)]) -> [String] {
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

@Suite("Tidy")
struct TidyTests {
    @Test("every core file names its kernel counterpart on its first line", arguments: coreModules)
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

    @Test("no FIXME is left in the sources", arguments: coreModules + ["IOMapTesting", "iomap"])
    func noFixme(module: String) throws {
        for (name, text) in try swiftFiles(in: module) {
            #expect(!text.contains("FIXME"), "\(name) contains FIXME")
        }
    }

    @Test("each tidy check catches a planted violation (canary)")
    func canary() {
        let bad = [(name: "Bad.swift", text: "import Foundation\nfinal class X: @unchecked Sendable {}\nlet t = Date()\nlet r = Int.random(in: 0..<4)\n")]
        let good = [(name: "Good.swift", text: "// Counterpart: nothing.\n// Guarded by: a lock.\nfinal class Y: @unchecked Sendable {}\nlet r = Int.random(in: 0..<4, using: &g)\n")]
        #expect(counterpartViolations(bad).count == 1)
        #expect(bannedAPIViolations(bad).count == 2)
        #expect(guardedByViolations(bad).count == 1)
        #expect(counterpartViolations(good).isEmpty)
        #expect(bannedAPIViolations(good).isEmpty)
        #expect(guardedByViolations(good).isEmpty)
    }
}
