// Counterpart: none in the kernel; the token-passing scheduler of CHESS, loom and shuttle
// (as CHESS, loom and shuttle do), run on the engine's own lock primitives.
//
// One ScheduleRun runs one schedule of a scenario: a real OS thread per actor, exactly one
// of them holding the token at any moment. A thread gives the token up only at a yield
// point (a lock operation or hook point, see IOMapBase's Interleaving), where the strategy
// picks the next thread among those that can run. A thread that finds a lock taken tells the
// run it is blocked on that lock and is not picked again until the holder releases it. When
// no thread can run and some have not finished, the run reports a deadlock.
//
// Everything between two yield points runs as one atomic step: unlocked flag reads and the
// leaf locks beneath ILOCK never interleave with other threads. Schedules are therefore
// sequences of decisions, and a decision is a preemption only when the thread that reached
// the yield point could have gone on but another was picked.

import IOMapBase

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One decision of a schedule: who reached a yield point, who could run, who was picked.
public struct ScheduleDecision: Sendable {
    /// The thread that reached the yield point (nil for the first decision).
    public let current: Int?
    /// Whether that thread could go on (false when it blocked or finished).
    public let currentEnabled: Bool
    /// Bit i set: thread i can run.
    public let enabled: UInt64
    /// The thread picked.
    public var chosen: Int
    /// Preemptions made by the decisions before this one.
    public let preemptionsBefore: Int
    /// Where the current thread was.
    public let site: YieldSite?

    /// The choice made when nobody asks for anything else: the current thread goes on if it
    /// can, otherwise the lowest-numbered thread that can run.
    public var defaultChoice: Int {
        if let current, currentEnabled { return current }
        return enabled.trailingZeroBitCount
    }

    /// Whether picking `thread` here preempts the current thread.
    public func preempts(_ thread: Int) -> Bool {
        guard let current, currentEnabled else { return false }
        return thread != current
    }

    public func canRun(_ thread: Int) -> Bool { thread >= 0 && thread < 64 && enabled & (1 << UInt64(thread)) != 0 }

    /// The threads that can run, ascending.
    public var enabledThreads: [Int] { (0..<64).filter { canRun($0) } }
}

/// Picks the next thread at each decision of one schedule.
public protocol SchedulePicker: AnyObject {
    /// The thread to run next; it must be one that can run.
    func pick(_ decision: ScheduleDecision, step: Int) -> Int
}

/// How one schedule ended.
public enum ScheduleEnd: Sendable, Equatable {
    case finished
    /// No thread could run; each blocked thread with what it waits for.
    case deadlock(String)
    /// The schedule ran more decisions than the limit (a livelock, or a runaway scenario).
    case stepLimit(Int)
    /// A replayed schedule asked for a thread that could not run at that step.
    case diverged(String)
}

/// Runs one schedule of a set of actor closures, each on its own thread.
public final class ScheduleRun: Interleaver, @unchecked Sendable {
    enum Status: Equatable {
        case runnable
        case blocked(ObjectIdentifier)
        case done
    }

    // Guarded by: slot.
    private let slot = WaitSlot()
    private var status: [Status]
    private var blockedOn: [YieldSite?]
    private var token = -1
    private var ended: ScheduleEnd?
    private var preemptions = 0
    /// Every decision, in order.
    public private(set) var decisions: [ScheduleDecision] = []
    private let picker: any SchedulePicker
    private let stepLimit: Int
    public let names: [String]

    public init(names: [String], picker: any SchedulePicker, stepLimit: Int = 200_000) {
        precondition(!names.isEmpty && names.count <= 64, "a schedule runs 1 to 64 threads")
        self.names = names
        self.picker = picker
        self.stepLimit = stepLimit
        status = Array(repeating: .runnable, count: names.count)
        blockedOn = Array(repeating: nil, count: names.count)
    }

    /// Runs `bodies` (one per name) under this schedule and returns how it ended. After a
    /// deadlock or an exceeded step limit the stuck threads are left parked for good: they
    /// hold engine locks and cannot be unwound, so the caller stops exploring.
    public func run(_ bodies: [@Sendable () -> Void]) -> ScheduleEnd {
        precondition(bodies.count == names.count, "one body per thread")
        let threads = bodies.enumerated().map { i, body in
            JoinableThread { [self] in
                Interleaving.bound(to: self, actor: i) {
                    waitForToken(i, lockFirst: true)
                    body()
                    slot.lock()
                    status[i] = .done
                    decide(from: i, enabled: false, YieldSite(.hook, "finished"))
                    slot.unlock()
                }
            }
        }
        slot.lock()
        decide(from: nil, enabled: false, nil)
        while ended == nil { slot.wait() }
        let end = ended!
        slot.unlock()
        if end == .finished { for t in threads { t.join() } }
        return end
    }

    // MARK: Interleaver

    public func yield(_ site: YieldSite, actor: Int) {
        slot.lock()
        decide(from: actor, enabled: true, site)
        waitForToken(actor, lockFirst: false)
    }

    public func block(on key: ObjectIdentifier, _ site: YieldSite, actor: Int) {
        slot.lock()
        status[actor] = .blocked(key)
        blockedOn[actor] = site
        decide(from: actor, enabled: false, site)
        waitForToken(actor, lockFirst: false)
    }

    public func signal(_ key: ObjectIdentifier) {
        slot.lock()
        for i in status.indices where status[i] == .blocked(key) {
            status[i] = .runnable
            blockedOn[i] = nil
        }
        slot.unlock()
    }

    // MARK: Scheduling

    /// Waits until `actor` holds the token, then returns with the slot unlocked. A thread of
    /// a run that ended abnormally never returns.
    private func waitForToken(_ actor: Int, lockFirst: Bool) {
        if lockFirst { slot.lock() }
        while token != actor { slot.wait() }
        slot.unlock()
    }

    /// Picks the next thread; called with the slot locked by the thread giving up the token.
    private func decide(from current: Int?, enabled currentEnabled: Bool, _ site: YieldSite?) {
        var mask: UInt64 = 0
        for i in status.indices where status[i] == .runnable { mask |= 1 << UInt64(i) }
        guard mask != 0 else {
            if status.allSatisfy({ $0 == .done }) {
                end(.finished)
            } else {
                let stuck = status.indices.compactMap { i -> String? in
                    guard case .blocked = status[i] else { return nil }
                    return "\(names[i]) waits at \(blockedOn[i].map(String.init(describing:)) ?? "?")"
                }
                end(.deadlock(stuck.joined(separator: "; ")))
            }
            return
        }
        guard decisions.count < stepLimit else { return end(.stepLimit(stepLimit)) }
        var d = ScheduleDecision(
            current: current, currentEnabled: currentEnabled, enabled: mask, chosen: -1,
            preemptionsBefore: preemptions, site: site)
        let choice = picker.pick(d, step: decisions.count)
        guard d.canRun(choice) else {
            return end(
                .diverged(
                    "step \(decisions.count): thread \(choice) cannot run (runnable: \(d.enabledThreads.map(String.init).joined(separator: ",")))"
                ))
        }
        d.chosen = choice
        if d.preempts(choice) { preemptions += 1 }
        decisions.append(d)
        token = choice
        if choice != current { slot.broadcast() }
    }

    private func end(_ how: ScheduleEnd) {
        ended = how
        token = -1
        slot.broadcast()
    }
}
