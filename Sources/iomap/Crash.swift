// `iomap crash`: every crash state of crash workloads on a volume, recovered, checked
// against the model and replayable one by one (IOMapTesting/CrashExplorer).

import ArgumentParser
import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapTesting
import Volume

struct Crash: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record crash workloads on a volume and check every crash state they can leave.",
        discussion: """
            Each workload runs once on an in-memory volume whose device records every write and flush. Every state \
            the disk could hold after a power cut is then built from the recording (at each flush, every subset of the \
            writes after it, up to a sample, and torn writes), mounted, checked with fsck and against the model of what \
            the workload was promised, and crashed again during its own recovery. Exit 0 when every state holds, 1 on a \
            violation (each printed with the command that replays it), 2 for bad usage.
            """)

    @Option(help: "Workloads: \(CrashWorkloadKind.allCases.map(\.rawValue).joined(separator: ", ")).")
    var workload = CrashWorkloadKind.random
    @Option(help: "Seed (default: chosen at random and printed).") var seed: UInt64?
    @Option(help: "How many workloads (seq1, seq2: all of the list, or a seeded sample of this many; random: 100; fsx: 4).")
    var workloads: Int?
    @Option(help: "The fewest ops of a random, fsx or race workload (random: 3, fsx: 2000, race: 32).") var minOps: Int?
    @Option(help: "The most ops of a random, fsx or race workload (random: 6, fsx: 2000, race: 32).") var maxOps: Int?
    @Option(help: "States sampled from an epoch of more than the exhaustive limit of writes (64; fsx: 4).") var states: Int?
    @Option(help: "Epochs of at most this many writes get every subset (10; fsx: 2).") var exhaustive: Int?
    @Option(help: "Torn-write states per epoch (2; fsx: 1).") var torn: Int?
    @Option(help: "Crash each state's recovery at every write it makes on every this many states (0: never; 1; fsx: 64).")
    var recoveryEvery: Int?
    @Option(help: "Stop after this many seconds.") var seconds: Double?
    @Option(help: "A deliberate bug the explorer must catch: \(CrashTooth.allCases.map(\.rawValue).joined(separator: ", ")).")
    var bug: [CrashTooth] = []
    @Flag(help: "Stop at the first workload with a violation.") var first = false
    @Option(
        help: """
            Faults beyond power loss to inject into each workload's final image, comma-separated: \
            \(CrashFault.allCases.map(\.rawValue).joined(separator: ", ")), or all.
            """)
    var faults: String?
    @Option(help: "Blocks of each kind each fault hits per workload.") var faultsPerKind = 2
    @Option(help: "Check one state only, as a violation's replay line names it: W.S or W.S.rI.") var replay: String?
    @Option(help: "With --replay: write the state's device image to this file (to inspect with iomap fsck).") var image: String?
    @Option(help: "Threads exploring workloads side by side (default 1); the result is the one a single thread gives.") var jobs = 1
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Option(
        help: """
            Explore only block INDEX of COUNT (INDEX from 0) of the list of workloads, and print one JSON shard line on \
            stdout instead of the report (needs --seed).
            """)
    var shard: String?

    /// The settings with the workload kind's defaults filled in.
    struct Settings {
        var workloads, minOps, maxOps, states, exhaustive, torn, recoveryEvery: Int
    }

    var settings: Settings {
        let fsx = workload == .fsx
        let ops: Int? = fsx ? 2000 : workload == .race ? 32 : nil
        return Settings(
            workloads: workloads ?? (workload.isBounded ? Int.max : fsx ? 4 : 100),
            minOps: minOps ?? ops ?? min(3, maxOps ?? 3), maxOps: maxOps ?? ops ?? max(6, minOps ?? 6),
            states: states ?? (fsx ? 4 : 64), exhaustive: exhaustive ?? (fsx ? 2 : 10), torn: torn ?? (fsx ? 1 : 2),
            recoveryEvery: recoveryEvery ?? (fsx ? 64 : 1))
    }

    func validate() throws {
        let s = settings
        guard s.workloads > 0 else { throw ValidationError("--workloads must be positive, got \(s.workloads)") }
        guard s.minOps > 0, s.maxOps >= s.minOps, s.maxOps <= 100_000 else {
            throw ValidationError("--min-ops and --max-ops must satisfy 1 <= min <= max <= 100000, got \(s.minOps) and \(s.maxOps)")
        }
        guard s.states >= 2 else { throw ValidationError("--states must be at least 2, got \(s.states)") }
        guard (0...16).contains(s.exhaustive) else { throw ValidationError("--exhaustive must be from 0 to 16, got \(s.exhaustive)") }
        guard s.torn >= 0 else { throw ValidationError("--torn must not be negative, got \(s.torn)") }
        guard s.recoveryEvery >= 0 else { throw ValidationError("--recovery-every must not be negative, got \(s.recoveryEvery)") }
        if let seconds, !(seconds > 0) { throw ValidationError("--seconds must be positive, got \(seconds)") }
        if let replay, Self.parseReplay(replay) == nil {
            throw ValidationError("--replay must be W.S or W.S.rI (numbers, as a violation's line prints them), got '\(replay)'")
        }
        if let faults, Self.parseFaults(faults) == nil {
            throw ValidationError(
                "--faults must be a comma-separated list of \(CrashFault.allCases.map(\.rawValue).joined(separator: ", ")) or all, got '\(faults)'"
            )
        }
        guard (1...256).contains(jobs) else { throw ValidationError("--jobs must be from 1 to 256, got \(jobs)") }
        guard faultsPerKind > 0 else { throw ValidationError("--faults-per-kind must be positive, got \(faultsPerKind)") }
        if image != nil && replay == nil { throw ValidationError("--image needs --replay: it writes the replayed state's image") }
        try validateShard()
    }

    /// A shard explores its whole block, so that the shards of a campaign cover its list.
    func validateShard() throws {
        guard let shard else { return }
        do { _ = try ShardSpec.parse(shard) } catch { throw ValidationError(error.description) }
        guard seed != nil else { throw ValidationError("--shard needs --seed: every shard of a campaign must explore the same workloads") }
        if replay != nil { throw ValidationError("--replay checks one state: it takes no --shard") }
        if seconds != nil { throw ValidationError("--seconds would stop a shard before its block is done: it takes no --shard") }
        if first { throw ValidationError("--first would stop a shard before its block is done: it takes no --shard") }
    }

    static func parseFaults(_ s: String) -> [CrashFault]? {
        if s == "all" { return CrashFault.allCases }
        var out: [CrashFault] = []
        for part in s.split(separator: ",", omittingEmptySubsequences: false) {
            guard let f = CrashFault(rawValue: String(part)) else { return nil }
            out.append(f)
        }
        return out.isEmpty ? nil : out
    }

    static func parseReplay(_ s: String) -> (workload: Int, state: Int, recovery: Int?)? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3, let w = Int(parts[0]), let st = Int(parts[1]), w >= 0, st >= 0 else { return nil }
        if parts.count == 2 { return (w, st, nil) }
        guard parts[2].hasPrefix("r"), let r = Int(parts[2].dropFirst()), r >= 0 else { return nil }
        return (w, st, r)
    }

    /// The exploration the options ask for.
    func exploreConfig(_ s: Settings) -> CrashExploreConfig {
        var config = CrashExploreConfig(seed: runSeed(seed))
        config.workload = workload
        config.workloads = s.workloads
        config.minOps = s.minOps
        config.maxOps = s.maxOps
        config.states.samples = s.states
        config.states.exhaustiveLimit = s.exhaustive
        config.states.tornPerEpoch = s.torn
        config.checks.recoveryEvery = s.recoveryEvery
        config.seconds = seconds
        config.stopAtFirst = first
        config.faults = faults.flatMap(Self.parseFaults) ?? []
        config.faultsPerKind = faultsPerKind
        config.jobs = jobs
        config.bugs = bug.reduce(into: DeliberateBugs()) { $0.formUnion($1.bugs) }
        if let replay { config.only = Self.parseReplay(replay) }
        return config
    }

    /// The command that replays a state of the exploration, but for its --replay.
    func replayBase(_ seed: UInt64, _ s: Settings) -> String {
        "iomap crash --workload \(workload.rawValue) --seed \(seed) --min-ops \(s.minOps) --max-ops \(s.maxOps) --states \(s.states) --exhaustive \(s.exhaustive) --torn \(s.torn) --recovery-every \(s.recoveryEvery)"
            + bug.map { " --bug \($0.rawValue)" }.joined()
    }

    func run() throws {
        if let shard, let spec = try? ShardSpec.parse(shard) { return try runShard(spec) }
        let s = settings
        let config = exploreConfig(s)
        let stderr = FileHandle.standardError
        stderr.write(
            Data(
                "iomap crash: workload \(workload.rawValue), seed \(config.seed), \(config.only == nil ? (s.workloads == Int.max ? "every workload of the list" : "\(s.workloads) workloads") : "replaying state \(replay!)")\(bug.isEmpty ? "" : ", bugs \(bug.map(\.rawValue).joined(separator: ","))")\n"
                    .utf8))
        var lastReport = ContinuousClock.now
        var written = false
        let cpuBefore = Self.cpuSeconds()
        let result = runCrashExploration(
            config,
            progress: { r in
                guard ContinuousClock.now - lastReport > .seconds(2) else { return }
                lastReport = .now
                stderr.write(
                    Data(
                        "  \(r.workloads) workloads, \(r.statesChecked) states, \(r.violations.count) violations, \(Int(r.elapsedSeconds)) s\n"
                            .utf8))
            },
            inspect: image == nil
                ? nil
                : { id, state in
                    guard let path = image, id == replay else { return }
                    do {
                        try Self.writeImage(state, to: path)
                        written = true
                    } catch {
                        stderr.write(Data("iomap crash: cannot write the image \(path): \(error)\n".utf8))
                    }
                })
        if let path = image, written { stderr.write(Data("iomap crash: state \(replay!) written to \(path)\n".utf8)) }
        let rate = result.elapsedSeconds > 0 ? Double(result.statesChecked) / result.elapsedSeconds : 0
        // Per core: the states over the CPU time the process used (on every thread, with
        // --jobs), which a machine shared with other jobs does not dilute as it does the
        // wall-clock rate.
        let cpu = Self.cpuSeconds() - cpuBefore
        let cpuRate = cpu > 0 ? Double(result.statesChecked) / cpu : 0
        let replayBase = self.replayBase(config.seed, s)
        if json {
            printJSON(
                CrashJSON(
                    seed: config.seed, workload: workload.rawValue, workloads: result.workloads, ops: result.ops,
                    states_checked: result.statesChecked, subset_states: result.states, torn_states: result.tornStates,
                    recovery_states: result.recoveryStates, states_per_second: rate, elapsed_s: result.elapsedSeconds,
                    states_per_cpu_second: cpuRate, cpu_s: cpu,
                    violations: result.violations.count, violations_by_class: result.violationsByClass,
                    raced_stores: result.racedStores, late_stores: result.lateStores,
                    failed_runs: result.failedRuns, faults: result.faults,
                    first_violation: result.violations.first.map { "\($0)" },
                    replay: result.violations.first.map { "\(replayBase) --replay \($0.stateID)" }))
        } else {
            print(
                "seed \(config.seed): \(result.workloads) workloads (\(result.ops) ops), \(result.statesChecked) crash states checked (\(result.states) subsets, \(result.tornStates) torn, \(result.recoveryStates) during recovery), \(String(format: "%.0f", rate)) states/s (\(String(format: "%.0f", cpuRate)) per CPU second), \(String(format: "%.1f", result.elapsedSeconds)) s; violations: \(result.violations.isEmpty ? "none" : result.violationsByClass.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"
            )
            if workload == .race {
                print(
                    "  stores through the mapping: \(result.racedStores) made inside their write (after its reservation), \(result.lateStores) after it"
                )
            }
        }
        if !json && !result.faults.isEmpty {
            for (fault, row) in result.faults.sorted(by: { $0.key < $1.key }) {
                let cells = row.sorted { $0.key < $1.key }.map { k, c in
                    "\(k) \(c.injected): \(c.detected) detected, \(c.held) held\(c.rolledBack > 0 ? ", \(c.rolledBack) rolled back" : "")\(c.silent > 0 ? ", \(c.silent) silent" : "")"
                }
                print("  \(fault): " + cells.joined(separator: "; "))
            }
        }
        for f in result.failedRuns { stderr.write(Data("VIOLATION: the workload's live run failed: \(f)\n".utf8)) }
        for v in result.violations.prefix(20) {
            stderr.write(Data("VIOLATION: workload \(v.workload)\n  \(v)\n  replay: \(replayBase) --replay \(v.stateID)\n".utf8))
        }
        if result.violations.count > 20 { stderr.write(Data("  (\(result.violations.count - 20) more violations)\n".utf8)) }
        if !result.violations.isEmpty || !result.failedRuns.isEmpty { throw ExitStatus.violation }
    }

    /// The user and system CPU time this process has used, in seconds.
    static func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + Double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6
    }

    static func writeImage(_ state: BlockImage, to path: String) throws {
        let device = try FileBlockDevice(path: path, blockSize: state.blockSize, blockCount: state.blockCount, create: true)
        let fill = [UInt8](repeating: state.fill, count: state.blockSize)
        for b in 0..<state.blockCount { try device.writeBlocks(b, state.blocks[b] ?? fill) }
        try device.flush()
    }
}

extension Crash {
    /// `iomap crash --shard`: the shard's block of the list of workloads explored, and its
    /// shard line printed.
    func runShard(_ spec: ShardSpec) throws {
        let s = settings
        var config = exploreConfig(s)
        let list = crashWorkloadList(config)
        guard list.count <= ShardSpec.maxUnits else { throw ValidationError("--shard: \(list.count) workloads are too many to shard") }
        let block = shardBlock(spec, of: list.count)
        config.positions = block
        say("iomap crash: workload \(workload.rawValue), seed \(config.seed), shard \(spec): workloads \(block) of \(list.count)")
        var lastReport = ContinuousClock.now
        let result = runCrashExploration(config) { r in
            guard ContinuousClock.now - lastReport > .seconds(2) else { return }
            lastReport = .now
            say("  \(r.workloads) workloads, \(r.statesChecked) states, \(r.violations.count) violations, \(Int(r.elapsedSeconds)) s")
        }
        let position = Dictionary(list.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        let base = poisonPrefix + replayBase(config.seed, s)
        var violations = result.violations.map { v in
            let w = Int(v.stateID.prefix { $0 != "." }) ?? -1
            return ShardLine.Violation(unit: UInt64(position[w] ?? 0), message: "\(v)", replay: "\(base) --replay \(v.stateID)")
        }
        for (w, failure) in zip(result.failedRunWorkloads, result.failedRuns) {
            violations.append(
                .init(unit: UInt64(position[w] ?? 0), message: "live run failed: \(failure)", replay: "\(base) --replay \(w).0"))
        }
        let counts = [
            "workloads": result.workloads, "ops": result.ops, "states_checked": result.statesChecked, "subset_states": result.states,
            "torn_states": result.tornStates, "recovery_states": result.recoveryStates, "violations": result.violations.count,
            "failed_runs": result.failedRuns.count,
        ]
        printJSON(
            ShardLine(
                tool: "crash", campaign: campaign(config.seed, s), shard: spec,
                space: .init(kind: "workloads", first: 0, units: list.count, covered: block), counts: counts, violations: violations,
                status: violations.isEmpty ? 0 : 1, elapsedSeconds: result.elapsedSeconds))
        if !violations.isEmpty { throw ExitStatus.violation }
    }

    /// The options that decide what a campaign explores, spelled out: its identity.
    func campaign(_ seed: UInt64, _ s: Settings) -> String {
        replayBase(seed, s).dropFirst("iomap ".count) + " --workloads \(s.workloads == Int.max ? "all" : String(s.workloads))"
            + " --faults \(faults.flatMap(Self.parseFaults).map { $0.map(\.rawValue).joined(separator: ",") } ?? "none")"
            + " --faults-per-kind \(faultsPerKind)"
    }
}

/// The deliberate bugs `iomap crash --bug` takes: the teeth the explorer must show.
enum CrashTooth: String, CaseIterable, ExpressibleByArgument {
    /// A conversion to written (or a size raise) committed before its data was flushed.
    case commitBeforeData = "commit-before-data"
    /// A freed extent handed out again before its free committed.
    case reuseBeforeCommit = "reuse-before-commit"
    /// The superblock naming a snapshot before the snapshot is durable.
    case superblockBeforeSnapshot = "superblock-before-snapshot"

    /// fsync, fdatasync, msync and directory fsync returning without forcing the log.
    case fsyncSkipsForce = "fsync-skips-force"
    /// A rename logged as two transactions, remove then add.
    case renameTwoRecords = "rename-two-records"
    /// The failure cleanup before the seed's fix: the failed write's range dropped from the
    /// page cache, a store through a mapping with it (the race workload catches it).
    case truncatePageCache = "truncate-page-cache"

    var bugs: DeliberateBugs {
        switch self {
        case .commitBeforeData: return .commitBeforeData
        case .reuseBeforeCommit: return .reuseBeforeCommit
        case .superblockBeforeSnapshot: return .superblockBeforeSnapshot
        case .fsyncSkipsForce: return .fsyncSkipsForce
        case .renameTwoRecords: return .renameTwoRecords
        case .truncatePageCache: return .truncatePageCache
        }
    }
}

extension CrashWorkloadKind: ExpressibleByArgument {
    var isBounded: Bool { self == .seq1 || self == .seq2 }
}

struct CrashJSON: Encodable {
    var seed: UInt64
    var workload: String
    var workloads, ops, states_checked, subset_states, torn_states, recovery_states: Int
    var states_per_second, elapsed_s: Double
    /// States over the process's CPU time (user and system), and that time.
    var states_per_cpu_second, cpu_s: Double
    var violations: Int
    var violations_by_class: [String: Int]
    /// The race workload's stores made from inside their write, and after it.
    var raced_stores, late_stores: Int
    var failed_runs: [String]
    /// fault → block kind → {injected, detected, held, rolled_back, silent}.
    var faults: FaultTable
    @KeepNull var first_violation: String?
    @KeepNull var replay: String?
}
