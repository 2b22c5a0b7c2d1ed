// `--shard INDEX/COUNT` as a user runs it: the shards of a campaign together do exactly what
// one unsharded run does (their counts sum to its counts, their blocks cover its units once,
// explore's shards run its schedules, each once), a violation's replay line reproduces it
// alone, and a malformed --shard is a usage error naming what is wrong.

import Foundation
import IOMapKernelSide
import Testing

/// One shard's line, parsed.
struct ParsedShardLine {
    var json: [String: Any]
    var campaign: String { json["campaign"] as? String ?? "" }
    var index: Int { (json["shard"] as? [String: Any])?["index"] as? Int ?? -1 }
    var count: Int { (json["shard"] as? [String: Any])?["count"] as? Int ?? -1 }
    var space: [String: Any] { json["space"] as? [String: Any] ?? [:] }
    var units: Int { space["units"] as? Int ?? -1 }
    var covered: Range<Int> {
        let c = space["covered"] as? [Int] ?? [0, 0]
        return c.count == 2 && c[0] <= c[1] ? c[0]..<c[1] : 0..<0
    }
    var counts: [String: Int] { json["counts"] as? [String: Int] ?? [:] }
    var violations: [[String: Any]] { json["violations"] as? [[String: Any]] ?? [] }
    var schedules: [String] { json["schedules"] as? [String] ?? [] }
}

/// Runs `iomap` with `arguments` and parses the one line a sharded run prints on stdout.
func runShard(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, line: ParsedShardLine) {
    let r = try runIOMap(arguments, environment: environment)
    let lines = r.stdout.split(separator: "\n")
    #expect(lines.count == 1, "a sharded run prints one line on stdout, got: \(r.stdout)\n\(r.stderr)")
    let object = try JSONSerialization.jsonObject(with: Data((lines.first ?? "").utf8))
    return (r.status, ParsedShardLine(json: try #require(object as? [String: Any], "not a JSON object: \(r.stdout)")))
}

/// What is wrong with `lines` as the whole of one campaign's shards: shards missing or twice,
/// campaigns or spaces that differ, units covered twice or not at all, schedules run twice.
/// Empty when they cover the campaign exactly once.
func coverageProblems(_ lines: [ParsedShardLine]) -> [String] {
    guard let first = lines.first else { return ["no shard lines"] }
    var problems: [String] = []
    if Set(lines.map(\.campaign)).count != 1 { problems.append("campaigns differ: \(Set(lines.map(\.campaign)))") }
    if Set(lines.map(\.units)).count != 1 { problems.append("unit counts differ: \(lines.map(\.units))") }
    if lines.map(\.index).sorted() != Array(0..<first.count) || lines.contains(where: { $0.count != first.count }) {
        problems.append("shards are not 0..<\(first.count) once each: \(lines.map { "\($0.index)/\($0.count)" })")
    }
    var times = Array(repeating: 0, count: max(first.units, 0))
    for line in lines {
        for unit in line.covered {
            guard unit < times.count else {
                problems.append("shard \(line.index) covers unit \(unit), past the campaign's \(times.count)")
                continue
            }
            times[unit] += 1
        }
    }
    for (unit, n) in times.enumerated() where n != 1 { problems.append("unit \(unit) covered \(n) times") }
    let schedules = lines.flatMap(\.schedules)
    if Set(schedules).count != schedules.count { problems.append("\(schedules.count - Set(schedules).count) schedules run twice") }
    return problems
}

/// The counts of `lines` summed key by key, as a merge sums them.
func summedCounts(_ lines: [ParsedShardLine]) -> [String: Int] {
    lines.reduce(into: [:]) { sum, line in sum.merge(line.counts, uniquingKeysWith: +) }
}

/// A new empty directory for a test's files.
func scratchDirectory(_ name: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("iomap-\(name)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// Runs a printed replay command line (`[VAR=VALUE ...] iomap ARGS`, split at spaces) in
/// `directory`, where whatever it writes lands; returns its exit status.
func runReplayLine(_ line: String, in directory: String) throws -> Int32 {
    var words = line.split(separator: " ").map(String.init)
    var environment = ProcessInfo.processInfo.environment
    while let word = words.first, word.contains("="), let eq = word.firstIndex(of: "=") {
        environment[String(word[..<eq])] = String(word[word.index(after: eq)...])
        words.removeFirst()
    }
    #expect(words.first == "iomap", "a replay line runs iomap: \(line)")
    let process = Process()
    process.executableURL = try iomapExecutable()
    process.arguments = Array(words.dropFirst())
    process.environment = environment
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    _ = try runToEnd(process, reading: [], timeout: commandTimeout)
    return process.terminationStatus
}

@Suite("--shard INDEX/COUNT, as a command")
struct ShardCommandTests {
    /// The shards 0..<count of `arguments` (a random tool's campaign) and the unsharded run
    /// of all its seeds: exact coverage, equal counts, the same campaign.
    func checkSeedShards(_ arguments: [String], counts: [Int], seeds: Int) throws {
        let whole = try runShard(arguments + ["--shard-line"])
        #expect(whole.status == 0, "unsharded run: exit \(whole.status)")
        #expect(whole.line.counts["runs"] == seeds && whole.line.covered == 0..<seeds)
        for count in counts {
            let lines = try (0..<count).map { i -> ParsedShardLine in
                let r = try runShard(arguments + ["--shard", "\(i)/\(count)"])
                #expect(r.status == 0, "shard \(i)/\(count): exit \(r.status)")
                return r.line
            }
            #expect(coverageProblems(lines) == [], "\(count) shards")
            #expect(summedCounts(lines) == whole.line.counts, "\(count) shards")
            #expect(lines.allSatisfy { $0.campaign == whole.line.campaign && $0.units == seeds })
        }
    }

    @Test("fsx: 3 and 4 shards of 7 seeds together equal the unsharded run: counts summed, every seed once")
    func fsxShards() throws {
        try checkSeedShards(["fsx", "--seed", "40", "--seeds", "7", "--ops", "400"], counts: [3, 4], seeds: 7)
    }

    @Test("random: 2 and 5 shards of 5 seeds together equal the unsharded run")
    func randomShards() throws {
        try checkSeedShards(["random", "--seed", "9", "--seeds", "5", "--ops", "300"], counts: [2, 5], seeds: 5)
    }

    @Test("race --dir: 2 shards of 3 seeds on real files equal the unsharded run; the canary's violations replay")
    func raceOnFileShards() throws {
        let dir = try scratchDirectory("shard-race-dir")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let args = ["race", "--dir", dir, "--size", "1", "--rounds", "1", "--fail-rate", "0.3", "--seed", "346", "--seeds", "3"]
        try checkSeedShards(args, counts: [2], seeds: 3)
        let canary = try runShard(args + ["--canary", "--shard", "1/2"])
        #expect(canary.status == 1 && canary.line.counts["mapped_slots_lost", default: 0] > 0)
        let replay = try #require(canary.line.violations.first?["replay"] as? String)
        #expect(replay.contains("--canary") && replay.contains("--dir \(dir)"), "\(replay)")
        #expect(try runReplayLine(replay, in: dir) == 1, "the canary's replay loses slots again: \(replay)")
    }

    @Test("crash: 4 shards of 6 workloads (one with --jobs 2) together equal the whole list's exploration")
    func crashShards() throws {
        let args = ["crash", "--seed", "3", "--workloads", "6"]
        let whole = try runShard(args + ["--shard", "0/1"])
        #expect(whole.status == 0 && whole.line.units == 6 && whole.line.counts["workloads"] == 6)
        let plain = try runIOMap(args + ["--json"])
        #expect(try plain.json()["states_checked"] as? Int == whole.line.counts["states_checked"], "--shard 0/1 is the plain run")
        let lines = try (0..<4).map { i in try runShard(args + ["--shard", "\(i)/4"] + (i == 1 ? ["--jobs", "2"] : [])).line }
        #expect(coverageProblems(lines) == [])
        #expect(summedCounts(lines) == whole.line.counts)
    }

    @Test("fsx shards on the pre-seed cleanup report violations whose replay lines, run as commands, exit 1")
    func fsxViolationReplays() throws {
        let dir = try scratchDirectory("shard-fsx")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let args = ["fsx", "--seed", "5", "--seeds", "3", "--ops", "30000", "--policy", "truncate-page-cache", "--no-minimize"]
        var violations: [[String: Any]] = []
        for i in 0..<2 {
            let r = try runShard(args + ["--artifacts", dir, "--shard", "\(i)/2"])
            #expect(r.status == (r.line.violations.isEmpty ? 0 : 1) && r.line.json["status"] as? Int == Int(r.status))
            #expect(r.line.counts["violations"] == r.line.violations.count)
            violations += r.line.violations
        }
        #expect(!violations.isEmpty, "the pre-seed cleanup must be caught")
        let v = try #require(violations.first { $0["unit"] as? Int == 6 } ?? violations.first)
        let replay = try #require(v["replay"] as? String)
        #expect(replay.contains("--seed \(v["unit"] as? Int ?? -1) ") && replay.contains("--policy truncate-page-cache"))
        #expect(!replay.contains("--shard"), "\(replay)")
        #expect(try runReplayLine(replay, in: dir) == 1, "the replay must reproduce the violation: \(replay)")
        let fixed = replay.replacingOccurrences(of: "--policy truncate-page-cache", with: "--policy preserve-dirty")
        #expect(try runReplayLine(fixed, in: dir) == 0, "the same seed with the fix holds")
    }

    @Test("explore: 3 and 4 shards of eof-block run exactly the unsharded dfs's schedules, each once")
    func exploreShards() throws {
        let args = ["explore", "--scenario", "eof-block"]
        let plain = try runIOMap(args + ["--keep-going", "--json"])
        let total = try #require(try plain.json()["schedules_explored"] as? Int)
        let whole = try runShard(args + ["--shard", "0/1", "--shard-schedules"])
        #expect(whole.line.counts["schedules"] == total && whole.line.schedules.count == total)
        #expect(Set(whole.line.schedules).count == total, "every schedule of a whole search is distinct")
        for count in [3, 4] {
            let lines = try (0..<count).map { i in try runShard(args + ["--shard", "\(i)/\(count)", "--shard-schedules"]).line }
            #expect(coverageProblems(lines) == [], "\(count) shards")
            #expect(lines.reduce(0) { $0 + ($1.counts["schedules"] ?? 0) } == total, "\(count) shards")
            #expect(Set(lines.flatMap(\.schedules)) == Set(whole.line.schedules), "\(count) shards")
            #expect(lines.filter { $0.covered.isEmpty }.isEmpty, "the split gives every shard subtrees")
        }
    }

    @Test("explore shards with --policy truncate-page-cache find the violations the whole search finds, replayable")
    func exploreViolations() throws {
        let args = ["explore", "--scenario", "eof-block", "--policy", "truncate-page-cache"]
        let plain = try runIOMap(args + ["--keep-going", "--json"])
        #expect(plain.status == 1)
        let violating = try #require(try plain.json()["violations"] as? Int)
        let lines = try (0..<3).map { i in try runShard(args + ["--shard", "\(i)/3"]).line }
        #expect(coverageProblems(lines) == [])
        #expect(lines.reduce(0) { $0 + ($1.counts["violations"] ?? 0) } == violating)
        let replay = try #require(lines.flatMap(\.violations).first?["replay"] as? String)
        let dir = try scratchDirectory("shard-explore")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try runReplayLine(replay, in: dir) == 1, "\(replay)")
    }

    @Test("the coverage check catches a split whose blocks overlap (IOMAP_SHARD_SPLIT_CANARY)", arguments: ["fsx", "explore"])
    func splitCanary(tool: String) throws {
        let canary = ["IOMAP_SHARD_SPLIT_CANARY": "1"]
        let args =
            tool == "fsx"
            ? ["fsx", "--seed", "40", "--seeds", "7", "--ops", "200"] : ["explore", "--scenario", "eof-block", "--shard-schedules"]
        let lines = try (0..<3).map { i in try runShard(args + ["--shard", "\(i)/3"], environment: canary).line }
        let problems = coverageProblems(lines)
        #expect(problems.contains { $0.contains("covered 2 times") }, "\(problems)")
        if tool == "explore" { #expect(problems.contains { $0.contains("run twice") }, "\(problems)") }
    }

    @Test(
        "a malformed --shard exits 2 naming the problem",
        arguments: [
            ("8/8", "INDEX counts from 0 and must be below COUNT"), ("x", "expected INDEX/COUNT"),
            ("1/0", "COUNT must be 1 to"),
        ])
    func badShard(spec: String, message: String) throws {
        for tool in [["fsx", "--ops", "10"], ["random"], ["race"], ["stress"], ["explore", "--scenario", "eof-block"], ["crash"]] {
            let r = try runIOMap(tool + ["--seed", "1", "--shard", spec])
            #expect(r.status == 2, "\(tool[0]): exit \(r.status)")
            #expect(r.stderr.contains("--shard \(spec): \(message)"), "\(tool[0]): \(r.stderr)")
            #expect(r.stdout.isEmpty)
        }
    }

    @Test(
        "--shard without what it needs, or with what would stop a shard early, exits 2 naming why",
        arguments: [
            (["fsx", "--shard", "0/2"], "--shard needs --seed"), (["crash", "--shard", "0/2"], "--shard needs --seed"),
            (["fsx", "--seeds", "3", "--json"], "--json prints one run's object"),
            (["fsx", "--seed", "1", "--seeds", "0"], "--seeds must be from 1"),
            (["explore", "--scenario", "eof-block", "--strategy", "pct", "--shard", "0/2"], "--shard splits the dfs tree"),
            (["explore", "--scenario", "eof-block", "--schedules", "5", "--shard", "0/2"], "--schedules would stop a shard"),
            (["crash", "--seed", "1", "--first", "--shard", "0/2"], "--first would stop a shard"),
            (["race", "--dir", "/tmp", "--shard", "0/2"], "--shard needs --seed"),
        ])
    func badShardUse(arguments: [String], message: String) throws {
        let r = try runIOMap(arguments)
        #expect(r.status == 2, "exit \(r.status)")
        #expect(r.stderr.contains(message), "\(r.stderr)")
    }
}
