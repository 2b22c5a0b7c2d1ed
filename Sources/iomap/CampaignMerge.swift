// `iomap campaign merge DIR`: the verdict of a sharded campaign. Reads every shard's line from
// DIR/results (or DIR itself when it has no results/), checks that the shards are those of one
// campaign, each reported exactly once, and that their blocks cover the campaign's space
// exactly once; then sums their counts and lists every violation with its replay line.

import ArgumentParser
import Foundation

struct CampaignMerge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge a campaign's shard results into one verdict.",
        discussion: """
            Reads DIR/results/*.json (or DIR/*.json), one shard line each, and DIR/plan.json when there is one. \
            Exit status: 0 when every shard reported once, they cover the campaign once and none found a \
            violation; 1 when they are complete and one found a violation (each is listed with the line that \
            replays it); 2 when a shard is missing, reported twice or malformed, the shards belong to different \
            campaigns or cover a unit twice or not at all (each problem names the shard), or for bad usage. \
            Violations are listed whatever the status.
            """)

    @Argument(help: "The campaign's directory (as given to plan --out), or a directory of shard lines.") var directory: String
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func run() throws {
        guard isDirectory(directory) else { throw ValidationError("\(directory) is not a directory") }
        let plan = try readPlan()
        let resultsDir = isDirectory(directory + "/results") ? directory + "/results" : directory
        let names = try FileManager.default.contentsOfDirectory(atPath: resultsDir)
            .filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") && $0 != CampaignPlanFile.name }.sorted(by: shardOrder)
        var merge = CampaignMergeState(expectedShards: plan?.shards, expectedTool: plan?.tool)
        for name in names { merge.add(file: name, contents: try? String(contentsOfFile: resultsDir + "/" + name, encoding: .utf8)) }
        let report = merge.finish()
        if json {
            printJSON(report)
        } else {
            printReport(report, resultsDir: resultsDir)
        }
        if !report.problems.isEmpty { throw ExitCode(2) }
        if !report.violations.isEmpty { throw ExitStatus.violation }
    }

    /// DIR/plan.json, if there is one; a plan that does not parse is bad input, named.
    func readPlan() throws -> CampaignPlanFile? {
        let path = directory + "/" + CampaignPlanFile.name
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        guard let plan = try? JSONDecoder().decode(CampaignPlanFile.self, from: data) else {
            throw ValidationError("\(path) is not a campaign plan written by iomap campaign plan")
        }
        guard plan.format == CampaignPlanFile.currentFormat else {
            throw ValidationError("\(path) has format \(plan.format); this iomap reads format \(CampaignPlanFile.currentFormat)")
        }
        return plan
    }

    func printReport(_ r: CampaignMergeReport, resultsDir: String) {
        print("campaign: \(r.campaign ?? "(no shard line)")")
        let expected = r.shards.expected.map(String.init) ?? "?"
        print("shards: \(r.shards.reported) of \(expected) reported, from \(resultsDir)")
        if let space = r.space { print("space: \(space.units) \(space.kind) from \(space.first)") }
        print("counts: " + r.counts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        print(r.violations.isEmpty ? "violations: none" : "violations: \(r.violations.count)")
        for v in r.violations {
            print("  shard \(v.shard), \(r.space?.kind.dropLast() ?? "unit") \(v.unit): \(v.message)")
            print("    replay: \(v.replay)")
        }
        for p in r.problems { say("iomap campaign merge: \(p)") }
        print("verdict: \(r.verdict)")
    }
}

/// Orders "shard-2.json" before "shard-10.json".
func shardOrder(_ a: String, _ b: String) -> Bool {
    switch (shardIndex(inFileName: a), shardIndex(inFileName: b)) {
    case (let x?, let y?) where x != y: x < y
    default: a < b
    }
}

/// The INDEX of a file named shard-INDEX.json.
func shardIndex(inFileName name: String) -> Int? {
    guard let m = name.wholeMatch(of: /shard-([0-9]+)\.json/) else { return nil }
    return Int(m.1)
}

/// What `merge` prints with --json.
struct CampaignMergeReport: Encodable {
    struct Shards: Encodable {
        @KeepNull var expected: Int?
        var reported: Int
    }
    struct Space: Encodable {
        var kind: String
        var first: UInt64
        var units: Int
    }
    struct Violation: Encodable {
        var shard: Int
        var unit: UInt64
        var message: String
        var replay: String
    }

    var format = 1
    @KeepNull var tool: String?
    @KeepNull var campaign: String?
    var shards: Shards
    @KeepNull var space: Space?
    var counts: [String: Int]
    var violations: [Violation]
    /// What makes the campaign incomplete or inconsistent, each naming its shard.
    var problems: [String]
    /// "holds", "violation" or "incomplete".
    var verdict: String
    /// The shards' own times, summed.
    var shardSeconds: Double

    enum CodingKeys: String, CodingKey {
        case format, tool, campaign, shards, space, counts, violations, problems, verdict
        case shardSeconds = "shard_seconds"
    }
}

/// The merge, one file at a time.
struct CampaignMergeState {
    var expectedShards: Int?
    var expectedTool: String?
    /// The first good line of each shard, and the file it came from.
    var lines: [Int: (file: String, line: ShardLine)] = [:]
    /// The first good line's campaign, which every other must match.
    var reference: ShardLine?
    var problems: [String] = []

    mutating func add(file: String, contents: String?) {
        let named = shardIndex(inFileName: file).map { "shard \($0) (\(file))" } ?? file
        guard let contents else { return problems.append("\(named): cannot be read") }
        let textLines = contents.split(separator: "\n", omittingEmptySubsequences: true)
        guard textLines.count == 1 else {
            return problems.append("\(named): malformed: a shard result is one JSON line, this has \(textLines.count)")
        }
        let line: ShardLine
        do {
            line = try JSONDecoder().decode(ShardLine.self, from: Data(textLines[0].utf8))
        } catch {
            return problems.append("\(named): malformed: not a shard line (\(decodingProblem(error)))")
        }
        if let problem = shapeProblem(line) { return problems.append("\(named): malformed: \(problem)") }
        if let index = shardIndex(inFileName: file), index != line.shard.index {
            problems.append("\(file) holds shard \(line.shard.index), not shard \(index)")
        }
        if let problem = campaignProblem(line) { return problems.append("shard \(line.shard.index) (\(file)): \(problem)") }
        if let earlier = lines[line.shard.index] {
            return problems.append("shard \(line.shard.index) reported twice: \(earlier.file) and \(file)")
        }
        lines[line.shard.index] = (file, line)
    }

    /// What is wrong with a line that decoded but cannot be a shard's result.
    func shapeProblem(_ line: ShardLine) -> String? {
        if line.format != ShardLine.currentFormat { return "format \(line.format), expected \(ShardLine.currentFormat)" }
        if !(0..<line.shard.count).contains(line.shard.index) { return "shard \(line.shard) is not INDEX/COUNT with INDEX below COUNT" }
        if line.space.units < 0 || line.space.covered.lowerBound < 0 || line.space.covered.upperBound > line.space.units {
            return "covers \(line.space.covered) of a space of \(line.space.units) \(line.space.kind)"
        }
        if (line.status == 1) != !line.violations.isEmpty || !(0...1).contains(line.status) {
            return "status \(line.status) with \(line.violations.count) violations"
        }
        if line.counts.values.contains(where: { $0 < 0 }) { return "a negative count" }
        return nil
    }

    /// Whether the line belongs to the campaign the plan and the first line describe.
    mutating func campaignProblem(_ line: ShardLine) -> String? {
        if let expectedTool, line.tool != expectedTool { return "is a shard of \(line.tool), the plan's tool is \(expectedTool)" }
        if let expectedShards, line.shard.count != expectedShards {
            return "is shard \(line.shard) of \(line.shard.count) shards, the plan has \(expectedShards)"
        }
        guard let reference else {
            reference = line
            return nil
        }
        if line.campaign != reference.campaign { return "belongs to another campaign: '\(line.campaign)', not '\(reference.campaign)'" }
        if line.shard.count != reference.shard.count { return "is one of \(line.shard.count) shards, others of \(reference.shard.count)" }
        let (a, b) = (line.space, reference.space)
        if a.kind != b.kind || a.first != b.first || a.units != b.units {
            return "splits \(a.units) \(a.kind) from \(a.first), others \(b.units) \(b.kind) from \(b.first)"
        }
        return nil
    }

    /// The shards that are missing and the units covered twice or never, then the report.
    mutating func finish() -> CampaignMergeReport {
        let count = expectedShards ?? reference?.shard.count
        if let count {
            let missing = (0..<count).filter { lines[$0] == nil }
            if !missing.isEmpty { problems.append("\(missing.count) of \(count) shards missing: shard \(ranges(missing))") }
        } else if problems.isEmpty {
            problems.append("no shard results: nothing reported")
        }
        checkCoverage()
        let ordered = lines.keys.sorted().map { lines[$0]!.line }
        let violations = ordered.flatMap { l in
            l.violations.map { CampaignMergeReport.Violation(shard: l.shard.index, unit: $0.unit, message: $0.message, replay: $0.replay) }
        }
        let verdict = !problems.isEmpty ? "incomplete" : violations.isEmpty ? "holds" : "violation"
        return CampaignMergeReport(
            tool: reference?.tool ?? expectedTool, campaign: reference?.campaign,
            shards: .init(expected: count, reported: lines.count),
            space: reference.map { .init(kind: $0.space.kind, first: $0.space.first, units: $0.space.units) },
            counts: ordered.reduce(into: [:]) { $0.merge($1.counts, uniquingKeysWith: +) }, violations: violations,
            problems: problems, verdict: verdict, shardSeconds: ordered.reduce(0) { $0 + $1.elapsedSeconds })
    }

    /// Walks the reported blocks in order: two that overlap cover units twice; with every
    /// shard reported, a gap is units no shard ran.
    mutating func checkCoverage() {
        guard let units = reference?.space.units else { return }
        let blocks = lines.values.map { (index: $0.line.shard.index, covered: $0.line.space.covered) }
            .filter { !$0.covered.isEmpty }.sorted { ($0.covered.lowerBound, $0.index) < ($1.covered.lowerBound, $1.index) }
        var end = 0
        var last: Int?
        for b in blocks {
            if b.covered.lowerBound < end, let last {
                problems.append(
                    "shards \(last) and \(b.index) both cover units \(b.covered.lowerBound)..<\(min(end, b.covered.upperBound))")
            } else if b.covered.lowerBound > end, lines.count == (expectedShards ?? reference?.shard.count) {
                problems.append("no shard covers units \(end)..<\(b.covered.lowerBound)")
            }
            if b.covered.upperBound > end { (end, last) = (b.covered.upperBound, b.index) }
        }
        if end < units, lines.count == (expectedShards ?? reference?.shard.count) {
            problems.append("no shard covers units \(end)..<\(units)")
        }
    }
}

/// "0, 3-5, 9" for [0, 3, 4, 5, 9].
func ranges(_ numbers: [Int]) -> String {
    var parts: [String] = []
    var i = 0
    while i < numbers.count {
        var j = i
        while j + 1 < numbers.count, numbers[j + 1] == numbers[j] + 1 { j += 1 }
        parts.append(i == j ? "\(numbers[i])" : "\(numbers[i])-\(numbers[j])")
        i = j + 1
    }
    return parts.joined(separator: ", ")
}

/// A decoding error in a few words: the key that was wrong or missing.
func decodingProblem(_ error: any Error) -> String {
    switch error as? DecodingError {
    case .keyNotFound(let key, _): "no \(key.stringValue)"
    case .typeMismatch(_, let c), .valueNotFound(_, let c): "bad \(c.codingPath.map(\.stringValue).joined(separator: "."))"
    case .dataCorrupted(let c): c.codingPath.isEmpty ? "not JSON" : "bad \(c.codingPath.map(\.stringValue).joined(separator: "."))"
    default: "\(error)"
    }
}
