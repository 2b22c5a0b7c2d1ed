// Counterpart: none in the kernel. The search strategies of a systematic concurrency tester:
// CHESS's iterative preemption bounding (exhaustive depth-first search over every schedule
// with at most K preemptions), PCT (Burckhardt et al., "A randomized scheduler with
// probabilistic guarantees of finding bugs", ASPLOS 2010), seeded random choice, and replay
// of a printed schedule (shuttle's ReplayScheduler).

import IOMapBase

/// A schedule as printed and replayed: the decisions that differ from the default choice
/// (the current thread goes on if it can, otherwise the lowest-numbered runnable thread),
/// written `STEP:THREAD` and joined by commas, for example `7:1,31:0`; `-` when every
/// decision was the default.
public struct Schedule: Sendable, Equatable, CustomStringConvertible {
    /// Deviations from the default, by step, ascending.
    public var choices: [(step: Int, thread: Int)]

    public init(choices: [(step: Int, thread: Int)] = []) { self.choices = choices }

    /// The schedule a run's decisions made.
    public init(_ decisions: [ScheduleDecision]) {
        choices = decisions.enumerated().compactMap { step, d in d.chosen == d.defaultChoice ? nil : (step, d.chosen) }
    }

    public static func == (l: Schedule, r: Schedule) -> Bool {
        l.choices.map(\.step) == r.choices.map(\.step) && l.choices.map(\.thread) == r.choices.map(\.thread)
    }

    public var description: String {
        choices.isEmpty ? "-" : choices.map { "\($0.step):\($0.thread)" }.joined(separator: ",")
    }

    /// Parses the printed form; throws a message naming what is wrong.
    public init(parsing text: String) throws(ScheduleParseError) {
        let trimmed = String(text.filter { !$0.isWhitespace })
        guard trimmed != "-" else {
            self.init()
            return
        }
        var choices: [(step: Int, thread: Int)] = []
        for item in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let step = Int(parts[0]), let thread = Int(parts[1]), step >= 0, thread >= 0, thread < 64 else {
                throw ScheduleParseError(text: text, reason: "'\(item)' is not STEP:THREAD")
            }
            if let last = choices.last, step <= last.step {
                throw ScheduleParseError(text: text, reason: "steps must increase, but \(step) follows \(last.step)")
            }
            choices.append((step, thread))
        }
        self.init(choices: choices)
    }
}

public struct ScheduleParseError: Error, CustomStringConvertible {
    public let text: String
    public let reason: String
    public var description: String {
        "schedule '\(text)': \(reason) (a schedule is STEP:THREAD pairs joined by commas, or '-')"
    }
}

/// Follows a fixed list of choices and takes the default everywhere else.
final class ReplayPicker: SchedulePicker {
    private let choices: [Int: Int]
    init(_ schedule: Schedule) {
        choices = Dictionary(schedule.choices.map { ($0.step, $0.thread) }, uniquingKeysWith: { a, _ in a })
    }
    func pick(_ d: ScheduleDecision, step: Int) -> Int { choices[step] ?? d.defaultChoice }
}

/// Exhaustive depth-first search over the schedules with at most `bound` preemptions.
///
/// Each run follows a prefix of choices and takes defaults after it. After the run, the next
/// prefix is found by backtracking: the last decision with an untried alternative within the
/// bound gets that alternative. Alternatives are tried in a fixed order (the default first,
/// then the other runnable threads ascending), so every schedule is run exactly once, provided
/// the scenario is deterministic, which a replayed prefix verifies at every step.
///
/// A search can be confined to a part of the tree, for a shard of a split search: `floor`
/// keeps the first `floor` choices fixed (the subtree of `prefix`), and `splitDepth` keeps
/// every choice after the first `splitDepth` branch points at its default (one run per
/// subtree, enumerating them in the order the whole search meets them).
final class DFSExplorer: SchedulePicker {
    let bound: Int
    private var prefix: [Int]
    private let floor: Int
    private let splitDepth: Int?

    init(bound: Int, prefix: [Int] = [], splitDepth: Int? = nil) {
        self.bound = bound
        self.prefix = prefix
        self.floor = prefix.count
        self.splitDepth = splitDepth
    }

    func pick(_ d: ScheduleDecision, step: Int) -> Int {
        step < prefix.count ? prefix[step] : d.defaultChoice
    }

    /// Sets up the next schedule after a run that made `decisions`; false when every schedule
    /// within the bound (and the confinement) has been run.
    func advance(after decisions: [ScheduleDecision]) -> Bool {
        let ceiling = splitDepth.map { subtreePrefix(decisions, depth: $0, bound: bound).count } ?? decisions.count
        var i = ceiling - 1
        while i >= floor {
            let d = decisions[i]
            let order = [d.defaultChoice] + d.enabledThreads.filter { $0 != d.defaultChoice }
            if let at = order.firstIndex(of: d.chosen) {
                for alternative in order[(at + 1)...] where d.preemptionsBefore + (d.preempts(alternative) ? 1 : 0) <= bound {
                    prefix = decisions[..<i].map(\.chosen) + [alternative]
                    return true
                }
            }
            i -= 1
        }
        return false
    }
}

/// Whether the search has more than one choice within `bound` at decision `d`.
func isBranchPoint(_ d: ScheduleDecision, bound: Int) -> Bool {
    d.enabledThreads.contains { $0 != d.defaultChoice && d.preemptionsBefore + (d.preempts($0) ? 1 : 0) <= bound }
}

/// The choices that name the subtree of a split search at `depth` a run belongs to: those up
/// to and including its `depth`-th branch point, or up to its last when it has fewer.
/// Schedules with the same subtree prefix differ only after it.
func subtreePrefix(_ decisions: [ScheduleDecision], depth: Int, bound: Int) -> [Int] {
    var seen = 0
    var end = 0
    for (i, d) in decisions.enumerated() where seen < depth && isBranchPoint(d, bound: bound) {
        seen += 1
        end = i + 1
    }
    return decisions[..<end].map(\.chosen)
}

/// Uniform random choice among the runnable threads at every decision.
final class RandomPicker: SchedulePicker {
    private var random: SeededRandom
    init(seed: UInt64) { random = SeededRandom(seed: seed) }
    func pick(_ d: ScheduleDecision, step: Int) -> Int {
        let threads = d.enabledThreads
        return threads[Int(random.next() % UInt64(threads.count))]
    }
}

/// PCT with depth `depth`: threads get distinct random priorities above `depth`; at
/// `depth - 1` steps chosen at random among the first `steps` the running thread drops to a
/// priority below all initial ones; the highest-priority runnable thread always runs. A bug
/// that needs `depth` ordering constraints is found in each schedule with probability at
/// least 1 / (threads × steps^(depth-1)).
final class PCTPicker: SchedulePicker {
    private var priority: [Int]
    private var changeAt: [Int: Int] = [:]

    init(threads: Int, depth: Int, steps: Int, random: inout SeededRandom) {
        var order = Array(0..<threads)
        order.shuffle(using: &random)
        priority = Array(repeating: 0, count: threads)
        for (rank, t) in order.enumerated() { priority[t] = depth + rank }
        for k in 1..<max(depth, 1) {
            changeAt[Int(random.next() % UInt64(max(steps, 1)))] = depth - k
        }
    }

    func pick(_ d: ScheduleDecision, step: Int) -> Int {
        if let low = changeAt[step], let current = d.current { priority[current] = low }
        var best = -1
        for t in d.enabledThreads where best < 0 || priority[t] > priority[best] { best = t }
        return best
    }
}
