// Counterpart: none in the kernel; the driver of `iomap explore`. It runs a scenario under
// one schedule after another, as a strategy proposes them, checks each run, and reports the
// first violation with the schedule that replays it.

import IOMapBase

/// The search: exhaustive with a preemption bound, PCT, or seeded random.
public enum ExploreStrategy: String, CaseIterable, Sendable {
    case dfs, pct, random
}

public struct ExploreConfig: Sendable {
    public var scenario: ExploreScenario
    public var strategy: ExploreStrategy = .dfs
    /// dfs: at most this many preemptions per schedule.
    public var preemptionBound = 2
    /// pct: the number of ordering constraints a bug may need.
    public var depth = 3
    /// pct and random: how many schedules to run; dfs: a cap on them (0: none).
    public var schedules = 0
    public var seed: UInt64 = 0
    /// Run exactly this schedule instead of searching.
    public var replay: Schedule?
    public var engine = ExploreEngineOptions()
    /// Go on after a violation (counting them) instead of stopping at the first. Deadlocks
    /// and runaway schedules stop the search regardless: their threads cannot be unwound.
    public var keepGoing = false
    /// Decisions one schedule may take before it counts as a livelock.
    public var stepLimit = 200_000
    /// dfs: search only these subtrees of a split search (a shard's part of it, see
    /// `splitExplore`) instead of the whole tree.
    public var subtrees: ExploreSubtrees?
    /// Keep every schedule run, as printed, in the report's `scheduleList`.
    public var recordSchedules = false

    public init(scenario: ExploreScenario) { self.scenario = scenario }

    /// The number of schedules pct and random run when none is given.
    public static let defaultRandomSchedules = 2_000

    /// The command that runs this configuration with `schedule` replayed.
    public func replayCommand(_ schedule: Schedule) -> String {
        (["iomap", "explore", "--scenario", scenario.rawValue] + engine.flags + ["--replay", schedule.description]).joined(separator: " ")
    }
}

/// A violation, with everything needed to see and replay it.
public struct ExploreViolation: Sendable {
    public let schedule: Schedule
    public let finding: ExploreFinding
    /// Every finding of that schedule.
    public let findings: [ExploreFinding]
    /// The context switches of the schedule, one line each.
    public let trace: [String]
    public let replayCommand: String
}

public struct ExploreReport: Sendable {
    public let config: ExploreConfig
    public var schedulesExplored = 0
    /// dfs: every schedule within the bound was run.
    public var exhausted = false
    public var violations = 0
    public var firstViolation: ExploreViolation?
    /// The most decisions and preemptions any schedule took.
    public var maxSteps = 0
    public var maxPreemptions = 0
    public var seconds = 0.0
    /// The trace of the single schedule run by a replay.
    public var replayTrace: [String] = []
    /// Every schedule run, as printed, when the config asks for them.
    public var scheduleList: [String] = []
    /// The violating schedules, the first `listedViolationsLimit` of them.
    public var violationList: [ExploreListedViolation] = []
    public static let listedViolationsLimit = 100
    /// The subtrees of a split search searched to the end (a whole search: 1 when exhausted).
    public var subtreesExplored = 0
}

/// What the explorer runs: named actors and a way to make a fresh instance of them, with
/// its check, for every schedule. The scenarios are targets; tests make their own.
public struct ExploreTarget: Sendable {
    public let actorNames: [String]
    public let make: @Sendable (IOMapEnvironment) -> ScenarioInstance
    public init(actorNames: [String], make: @escaping @Sendable (IOMapEnvironment) -> ScenarioInstance) {
        self.actorNames = actorNames
        self.make = make
    }
}

extension ExploreConfig {
    /// The configured scenario as a target.
    public var target: ExploreTarget {
        let scenario = self.scenario
        let engine = self.engine
        return ExploreTarget(actorNames: scenario.actorNames) { scenario.make(engine, environment: $0) }
    }
}

/// Some subtrees of a split dfs search: their prefixes (from `ExploreSplit`) and the number
/// of the first in the whole split.
public struct ExploreSubtrees: Sendable {
    public var prefixes: [[Int]]
    public var first: Int
    public init(prefixes: [[Int]], first: Int) {
        self.prefixes = prefixes
        self.first = first
    }
}

/// A violating schedule as the report lists it, with the subtree of a split search it is in
/// (0 for a whole search).
public struct ExploreListedViolation: Sendable {
    public let subtree: Int
    public let schedule: String
    public let finding: ExploreFinding
    public let replayCommand: String
}

/// Runs `config` on its scenario, or on `target` when one is given; `progress` is called
/// about every `progressEvery` with the report so far.
public func runExplore(
    _ config: ExploreConfig, target: ExploreTarget? = nil, progressEvery: Duration = .seconds(5),
    progress: ((ExploreReport) -> Void)? = nil
) -> ExploreReport {
    var search = ExploreSearch(config: config, target: target ?? config.target, progressEvery: progressEvery, progress: progress)
    if let subtrees = config.subtrees, config.strategy == .dfs, config.replay == nil {
        var complete = true
        for (k, prefix) in subtrees.prefixes.enumerated() {
            search.subtree = subtrees.first + k
            guard search.explore(DFSExplorer(bound: config.preemptionBound, prefix: prefix)) else {
                complete = false
                break
            }
            search.report.subtreesExplored += 1
        }
        search.report.exhausted = complete
    } else {
        search.report.exhausted = search.explore(DFSExplorer(bound: config.preemptionBound))
        search.report.subtreesExplored = search.report.exhausted ? 1 : 0
    }
    search.report.seconds = (search.clock.now - search.start).inSeconds
    return search.report
}

/// The state of one search, over one subtree or several.
private struct ExploreSearch {
    let config: ExploreConfig
    let target: ExploreTarget
    let progressEvery: Duration
    let progress: ((ExploreReport) -> Void)?
    let clock = ContinuousClock()
    let start: ContinuousClock.Instant
    var lastProgress: ContinuousClock.Instant
    var report: ExploreReport
    var random: SeededRandom
    var estimatedSteps = 0
    var subtree = 0

    init(config: ExploreConfig, target: ExploreTarget, progressEvery: Duration, progress: ((ExploreReport) -> Void)?) {
        self.config = config
        self.target = target
        self.progressEvery = progressEvery
        self.progress = progress
        start = clock.now
        lastProgress = start
        report = ExploreReport(config: config)
        random = SeededRandom(seed: config.seed)
    }

    /// Runs schedules until the strategy has no more (true: a dfs search exhausted `dfs`'s
    /// part of the tree) or the search stops (false: a limit, or a violation it stops at).
    mutating func explore(_ dfs: DFSExplorer) -> Bool {
        while true {
            if isDone(report, config) { return false }
            let run = runOneSchedule(config, target, picker: picker(dfs))
            if record(run) { return false }
            if config.replay == nil && config.strategy == .dfs && !dfs.advance(after: run.decisions) { return true }
            if let progress, clock.now - lastProgress >= progressEvery {
                lastProgress = clock.now
                report.seconds = (clock.now - start).inSeconds
                progress(report)
            }
        }
    }

    /// The picker of the next schedule.
    mutating func picker(_ dfs: DFSExplorer) -> any SchedulePicker {
        if let replay = config.replay { return ReplayPicker(replay) }
        switch config.strategy {
        case .dfs:
            return dfs
        case .pct:
            // The first schedule is the default one, which also measures the steps PCT
            // spreads its priority changes over.
            return report.schedulesExplored == 0
                ? ReplayPicker(Schedule())
                : PCTPicker(threads: target.actorNames.count, depth: config.depth, steps: estimatedSteps, random: &random)
        case .random:
            return RandomPicker(seed: random.next())
        }
    }

    /// Counts a run into the report; true when the search stops at it.
    mutating func record(_ run: ScheduleOutcome) -> Bool {
        report.schedulesExplored += 1
        report.maxSteps = max(report.maxSteps, run.decisions.count)
        report.maxPreemptions = max(
            report.maxPreemptions, run.decisions.last.map { $0.preemptionsBefore + ($0.preempts($0.chosen) ? 1 : 0) } ?? 0)
        estimatedSteps = max(estimatedSteps, run.decisions.count)
        let schedule = Schedule(run.decisions)
        if config.replay != nil { report.replayTrace = trace(run.decisions, names: run.names) }
        if config.recordSchedules { report.scheduleList.append(schedule.description) }
        guard let first = run.findings.first else { return false }
        report.violations += 1
        if report.violationList.count < ExploreReport.listedViolationsLimit {
            report.violationList.append(
                ExploreListedViolation(
                    subtree: subtree, schedule: schedule.description, finding: first, replayCommand: config.replayCommand(schedule)))
        }
        if report.firstViolation == nil {
            report.firstViolation = ExploreViolation(
                schedule: schedule, finding: first, findings: run.findings,
                trace: trace(run.decisions, names: run.names), replayCommand: config.replayCommand(schedule))
        }
        return !config.keepGoing || run.stuck
    }
}

/// A dfs search split into subtrees: the prefixes naming them in the order the whole search
/// meets them, found by one run each (`runs`), at `depth` branch points. `stuck` is set when
/// a run could not finish (a deadlock, a livelock): the split stops there, incomplete.
public struct ExploreSplit: Sendable {
    public var depth: Int
    public var prefixes: [[Int]]
    public var runs = 0
    public var stuck: ExploreListedViolation?
}

/// The subtrees of `config`'s dfs search at `depth` branch points. Their searches together
/// run exactly the schedules the whole search runs, each once.
public func splitExplore(_ config: ExploreConfig, target: ExploreTarget? = nil, depth: Int) -> ExploreSplit {
    var split = ExploreSplit(depth: depth, prefixes: depth == 0 ? [[]] : [])
    guard depth > 0 else { return split }
    let target = target ?? config.target
    let dfs = DFSExplorer(bound: config.preemptionBound, splitDepth: depth)
    while true {
        let run = runOneSchedule(config, target, picker: dfs)
        split.runs += 1
        split.prefixes.append(subtreePrefix(run.decisions, depth: depth, bound: config.preemptionBound))
        if run.stuck, let finding = run.findings.first {
            let schedule = Schedule(run.decisions)
            split.stuck = ExploreListedViolation(
                subtree: split.prefixes.count - 1, schedule: schedule.description, finding: finding,
                replayCommand: config.replayCommand(schedule))
            return split
        }
        if !dfs.advance(after: run.decisions) { return split }
    }
}

/// The split at the fewest branch points that gives at least `subtrees` subtrees, or as many
/// as the tree has (a deeper split adds none); the runs of the shallower tries are counted.
public func splitExplore(_ config: ExploreConfig, target: ExploreTarget? = nil, subtrees: Int, maxDepth: Int = 64) -> ExploreSplit {
    var split = splitExplore(config, target: target, depth: 0)
    var runs = 0
    for depth in 1...max(maxDepth, 1) where split.prefixes.count < subtrees {
        let deeper = splitExplore(config, target: target, depth: depth)
        runs += deeper.runs
        let same = deeper.prefixes.count == split.prefixes.count
        split = deeper
        if same || split.stuck != nil { break }
    }
    split.runs = runs
    return split
}

private func isDone(_ report: ExploreReport, _ config: ExploreConfig) -> Bool {
    if config.replay != nil { return report.schedulesExplored >= 1 }
    let limit =
        config.strategy == .dfs ? config.schedules : (config.schedules > 0 ? config.schedules : ExploreConfig.defaultRandomSchedules)
    return limit > 0 && report.schedulesExplored >= limit
}

struct ScheduleOutcome {
    let names: [String]
    let decisions: [ScheduleDecision]
    let findings: [ExploreFinding]
    /// The run's threads could not all finish (deadlock, step limit, divergence).
    let stuck: Bool
}

/// Runs one schedule of the scenario and checks it.
func runOneSchedule(_ config: ExploreConfig, _ target: ExploreTarget, picker: any SchedulePicker) -> ScheduleOutcome {
    let run = ScheduleRun(names: target.actorNames, picker: picker, stepLimit: config.stepLimit)
    let instance = target.make(IOMapEnvironment(interleaver: run))
    var end = run.run(instance.bodies)
    if end == .finished, let replay = config.replay, let last = replay.choices.last, last.step >= run.decisions.count {
        end = .diverged("step \(last.step) is past the end: the schedule made \(run.decisions.count) decisions")
    }
    switch end {
    case .finished:
        return ScheduleOutcome(names: run.names, decisions: run.decisions, findings: instance.check(), stuck: false)
    case .deadlock(let who):
        return ScheduleOutcome(
            names: run.names, decisions: run.decisions, findings: [ExploreFinding("deadlock", "no thread can run: \(who)")], stuck: true)
    case .stepLimit(let n):
        return ScheduleOutcome(
            names: run.names, decisions: run.decisions,
            findings: [ExploreFinding("livelock", "the schedule took more than \(n) decisions")], stuck: true)
    case .diverged(let why):
        let what =
            config.replay != nil
            ? "the schedule does not fit this scenario: \(why)"
            : "the scenario behaved differently under the same choices (is something in it not deterministic?): \(why)"
        return ScheduleOutcome(
            names: run.names, decisions: run.decisions,
            findings: [ExploreFinding(config.replay != nil ? "schedule" : "nondeterminism", what)], stuck: true)
    }
}

/// The schedule's context switches as lines: the step, who was running and where it was,
/// and who ran next.
public func trace(_ decisions: [ScheduleDecision], names: [String]) -> [String] {
    var lines: [String] = []
    for (step, d) in decisions.enumerated() {
        let next = names[d.chosen]
        guard let current = d.current else {
            lines.append("step \(step): start → \(next)")
            continue
        }
        if d.currentEnabled && d.chosen == current { continue }
        let who = names[current]
        let site = d.site.map(String.init(describing:)) ?? "?"
        let how: String
        if d.currentEnabled {
            how = "preempted at \(site)"
        } else if d.site?.kind == .blocked {
            how = "blocked: \(site.dropFirst("blocked ".count)) is taken"
        } else {
            how = "finished"
        }
        lines.append("step \(step): \(who) \(how) → \(next)")
    }
    return lines
}
