// `iomap explore`: deterministic interleaving exploration of the write path's races. Runs a
// scenario's threads one at a time, switching only at lock operations and hook points, under
// every schedule within a preemption bound (or PCT / random ones), and prints the schedule of
// any violation so that `--replay` runs exactly it again.

import ArgumentParser
import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapTesting

extension EOFRounding: ExpressibleByArgument {}
extension WriteEndPolicy: ExpressibleByArgument {}
extension ExploreStrategy: ExpressibleByArgument {}

struct Explore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Explore the thread interleavings of a write-path race scenario, deterministically.",
        discussion: """
            Exit status: 0 when no schedule run broke an invariant, 1 when one did (its \
            schedule and the command that replays it go to stderr), 2 for bad usage. \
            --policy truncate-page-cache, --no-validity-check and --eof-rounding kernel are \
            wrong on purpose: they show that the explorer finds what each of them breaks.
            """)

    @Flag(help: "List the scenarios, one line each, and exit.") var list = false
    @Option(help: "The scenario to explore (see --list).") var scenario: String?
    @Option(help: "dfs (every schedule within the preemption bound), pct or random.") var strategy = ExploreStrategy.dfs
    @Option(parsing: .unconditional, help: "dfs: the most preemptions a schedule may have.") var preemptionBound = 2
    @Option(parsing: .unconditional, help: "pct: the number of ordering constraints a bug may need (1 to 10).") var depth = 3
    @Option(
        parsing: .unconditional, help: "pct and random: schedules to run (default 2000); dfs: stop after this many (default: no limit).")
    var schedules: Int?
    @Option(help: "pct and random: seed (default: chosen at random and printed).") var seed: UInt64?
    @Option(help: "Run exactly this schedule (as printed by a violation, or '-' for the default one) and print its trace.")
    var replay: String?
    @Flag(help: "Count every violating schedule instead of stopping at the first.") var keepGoing = false
    @Option(help: "Failure-cleanup policy: preserve-dirty or truncate-page-cache (wrong on purpose).")
    var policy = CleanupPolicy.preserveDirty
    @Option(help: "EOF rounding of failure cleanup: block-end or kernel (Linux's, which loses data at an unaligned EOF).")
    var eofRounding = EOFRounding.blockEnd
    @Flag(help: "Run without the write path's mapping validity check (wrong on purpose).") var noValidityCheck = false
    @Option(help: writeEndHelp) var writeEnd = WriteEndPolicy.zeroTail
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Option(
        help: """
            dfs: search only block INDEX of COUNT (INDEX from 0) of the subtrees of the schedule tree, as --keep-going \
            does, and print one JSON shard line on stdout instead of the report.
            """)
    var shard: String?
    @Option(
        parsing: .unconditional,
        help: "With --shard: the subtrees are those of the first this many branch points (default: the fewest giving 4 × COUNT).")
    var splitDepth: Int?
    @Flag(help: "With --shard: list every schedule run in the shard line's schedules.") var shardSchedules = false

    func validate() throws {
        if list { return }
        guard let scenario else {
            throw ValidationError("--scenario is required; scenarios: \(ExploreScenario.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard ExploreScenario(rawValue: scenario) != nil else {
            throw ValidationError(
                "--scenario: unknown scenario '\(scenario)'; scenarios are \(ExploreScenario.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        if preemptionBound < 0 || preemptionBound > 10 {
            throw ValidationError("--preemption-bound must be from 0 to 10, got \(preemptionBound)")
        }
        if depth < 1 || depth > 10 { throw ValidationError("--depth must be from 1 to 10, got \(depth)") }
        if let schedules, schedules < 1 { throw ValidationError("--schedules must be at least 1, got \(schedules)") }
        if let replay {
            do { _ = try Schedule(parsing: replay) } catch { throw ValidationError("--replay: \(error)") }
        }
        try validateShard()
    }

    /// A shard searches its subtrees of the dfs tree to the end.
    func validateShard() throws {
        guard let shard else {
            if splitDepth != nil || shardSchedules { throw ValidationError("--split-depth and --shard-schedules need --shard") }
            return
        }
        do { _ = try ShardSpec.parse(shard) } catch { throw ValidationError(error.description) }
        guard strategy == .dfs else {
            throw ValidationError(
                "--shard splits the dfs tree; a \(strategy.rawValue) search is split by running it with other --seed values")
        }
        if replay != nil { throw ValidationError("--replay runs one schedule: it takes no --shard") }
        if schedules != nil { throw ValidationError("--schedules would stop a shard before its subtrees are done: it takes no --shard") }
        if let splitDepth, !(0...64).contains(splitDepth) { throw ValidationError("--split-depth must be from 0 to 64, got \(splitDepth)") }
    }

    func run() throws {
        if list {
            printScenarios()
            return
        }
        if let shard, let spec = try? ShardSpec.parse(shard) { return try runShard(spec) }
        let config = try exploreConfig()
        say(header(config))
        let report = runExplore(config) { r in
            say(
                "explore: \(r.schedulesExplored) schedules, \(String(format: "%.0f", r.seconds)) s, up to \(r.maxSteps) steps, \(r.violations) violations"
            )
        }

        let v = report.firstViolation
        if config.replay != nil, let v, v.finding.invariant == "schedule" {
            throw ValidationError("--replay: \(v.finding.detail)")
        }
        if json {
            printJSON(ExploreJSON(config, report))
        } else {
            printSummary(config, report)
        }
        if let v {
            say(violationText(v, replaying: config.replay != nil))
            throw ExitStatus.violation
        }
    }

    /// --list: one line per scenario, its name padded to a column and its summary.
    func printScenarios() {
        let width = ExploreScenario.allCases.map(\.rawValue.count).max()!
        for s in ExploreScenario.allCases {
            print(s.rawValue.padding(toLength: width + 2, withPad: " ", startingAt: 0) + s.summary)
        }
    }

    /// The exploration the options ask for; validate() has checked them, so only parsing the
    /// replayed schedule can fail.
    @Flag(help: "Run on a file of a new in-memory volume (its journal logs every allocation; fsync is a log force).")
    var volume = false

    func exploreConfig() throws -> ExploreConfig {
        var config = ExploreConfig(scenario: ExploreScenario(rawValue: scenario!)!)
        config.strategy = strategy
        config.preemptionBound = preemptionBound
        config.depth = depth
        config.schedules = schedules ?? 0
        config.seed = runSeed(seed)
        config.replay = try replay.map { try Schedule(parsing: $0) }
        config.keepGoing = keepGoing
        config.engine = ExploreEngineOptions(
            policy: policy, eofRounding: eofRounding, validityCheck: !noValidityCheck, writeEnd: writeEnd)
        config.engine.backing = volume ? .volume : .engine
        return config
    }

    /// The stderr line that opens a run: the scenario, the engine's options and the strategy
    /// (with the seed, so that a random run can be repeated).
    func header(_ config: ExploreConfig) -> String {
        var header =
            "iomap explore: scenario \(config.scenario.rawValue), policy \(policy.rawValue), eof rounding \(eofRounding.rawValue), write end \(writeEnd.rawValue), validity check \(noValidityCheck ? "off" : "on"), "
        if let replay = config.replay {
            header += "replaying \(replay)"
        } else {
            switch strategy {
            case .dfs: header += "dfs with preemption bound \(preemptionBound)"
            case .pct:
                header +=
                    "pct depth \(depth), \(config.schedules > 0 ? config.schedules : ExploreConfig.defaultRandomSchedules) schedules, seed \(config.seed)"
            case .random:
                header +=
                    "random, \(config.schedules > 0 ? config.schedules : ExploreConfig.defaultRandomSchedules) schedules, seed \(config.seed)"
            }
        }
        return header
    }

    /// The text report on stdout: a replay's trace, then what was explored and found.
    func printSummary(_ config: ExploreConfig, _ report: ExploreReport) {
        if config.replay != nil {
            print("trace:")
            for line in report.replayTrace { print("  \(line)") }
        }
        let n = report.schedulesExplored
        let what = report.exhausted ? "all \(n) schedules within the bound" : n == 1 ? "1 schedule" : "\(n) schedules"
        print(
            "\(config.scenario.rawValue): \(what) explored in \(String(format: "%.1f", report.seconds)) s, up to \(report.maxSteps) steps and \(report.maxPreemptions) preemptions each; \(report.violations) violating"
        )
        if report.firstViolation == nil {
            print(report.exhausted ? "no schedule within the bound breaks an invariant" : "no violation found")
        }
    }

    /// What stderr says of a violation: the finding, its schedule, the trace (a replay has
    /// printed it already) and the command that replays it.
    func violationText(_ v: ExploreViolation, replaying: Bool) -> String {
        var lines = ["violation: \(v.finding)", "schedule: \(v.schedule)"]
        lines += v.findings.dropFirst().map { "also: \($0)" }
        if !replaying {
            lines.append("trace:")
            lines += v.trace.map { "  \($0)" }
        }
        lines.append("replay: \(v.replayCommand)")
        return lines.joined(separator: "\n")
    }
}

extension Explore {
    /// `iomap explore --shard`: the dfs tree split into subtrees at its first branch points,
    /// this shard's block of them searched, and its shard line printed.
    func runShard(_ spec: ShardSpec) throws {
        var config = try exploreConfig()
        config.keepGoing = true
        config.recordSchedules = shardSchedules
        say(header(config) + ", shard \(spec)")
        let split =
            splitDepth.map { splitExplore(config, depth: $0) }
            ?? splitExplore(config, subtrees: spec.count == 1 ? 1 : 4 * spec.count)
        let units = split.prefixes.count
        let block = split.stuck == nil ? shardBlock(spec, of: units) : 0..<0
        say("explore: \(units) subtrees at \(split.depth) branch points (\(split.runs) runs to find them); this shard's: \(block)")
        config.subtrees = ExploreSubtrees(prefixes: Array(split.prefixes[block]), first: block.lowerBound)
        let report = runExplore(config) { r in
            say(
                "explore: \(r.schedulesExplored) schedules, \(r.subtreesExplored) subtrees, \(String(format: "%.0f", r.seconds)) s, \(r.violations) violations"
            )
        }
        let found = (split.stuck.map { [$0] } ?? []) + report.violationList
        let violations = found.map { v in
            ShardLine.Violation(unit: UInt64(max(v.subtree, 0)), message: "schedule \(v.schedule): \(v.finding)", replay: v.replayCommand)
        }
        for v in found.prefix(20) { say("violation: \(v.finding)\n  replay: \(v.replayCommand)") }
        let counts = [
            "schedules": report.schedulesExplored, "violations": report.violations + (split.stuck == nil ? 0 : 1),
            "subtrees": report.subtreesExplored, "split_runs": split.runs,
        ]
        var line = ShardLine(
            tool: "explore", campaign: campaign(config, splitDepth: splitDepth), shard: spec,
            space: .init(kind: "subtrees", first: 0, units: units, covered: block.lowerBound..<block.lowerBound + report.subtreesExplored),
            counts: counts, violations: violations, status: violations.isEmpty ? 0 : 1, elapsedSeconds: report.seconds)
        if shardSchedules { line.schedules = report.scheduleList }
        printJSON(line)
        if !violations.isEmpty { throw ExitStatus.violation }
    }

    /// The options that decide what a campaign searches, spelled out: its identity.
    func campaign(_ config: ExploreConfig, splitDepth: Int?) -> String {
        (["explore", "--scenario", config.scenario.rawValue, "--strategy dfs", "--preemption-bound \(config.preemptionBound)"]
            + config.engine.flags + ["--split-depth", splitDepth.map(String.init) ?? "auto"]).joined(separator: " ")
    }
}

/// `iomap explore --json`: the run, with the parameters of its strategy.
struct ExploreJSON: Encodable {
    struct Violation: Encodable {
        var schedule, invariant, detail, replay: String
        var trace: [String]
    }

    var scenario, policy, eof_rounding, write_end, strategy: String
    var validity_check, exhausted: Bool
    var schedules_explored, violations, max_steps, max_preemptions: Int
    var elapsed_s: Double
    @KeepNull var first_violation: Violation?
    // Only the parameters of the strategy that ran are printed.
    var replayed: String?
    var preemption_bound, depth: Int?
    var seed: UInt64?
}

extension ExploreJSON {
    init(_ config: ExploreConfig, _ report: ExploreReport) {
        let engine = config.engine
        self.init(
            scenario: config.scenario.rawValue, policy: engine.policy.rawValue, eof_rounding: engine.eofRounding.rawValue,
            write_end: engine.writeEnd.rawValue, strategy: config.replay == nil ? config.strategy.rawValue : "replay",
            validity_check: engine.validityCheck, exhausted: report.exhausted, schedules_explored: report.schedulesExplored,
            violations: report.violations, max_steps: report.maxSteps, max_preemptions: report.maxPreemptions,
            elapsed_s: report.seconds,
            first_violation: report.firstViolation.map { v in
                Violation(
                    schedule: v.schedule.description, invariant: v.finding.invariant, detail: v.finding.detail,
                    replay: v.replayCommand, trace: v.trace)
            })
        switch (config.replay, config.strategy) {
        case (.some(let s), _): replayed = s.description
        case (nil, .dfs): preemption_bound = config.preemptionBound
        case (nil, .pct):
            depth = config.depth
            seed = config.seed
        case (nil, .random): seed = config.seed
        }
    }
}
