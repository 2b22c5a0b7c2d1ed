// The explorer's scheduler on small targets whose answers are known independently: the
// number of schedules within a preemption bound (counted by brute force), a lost update
// that needs a preemption, deadlocks (its canaries), and exact replay.

import IOMapBase
import IOMapTesting
import PageCache
import Synchronization
import Testing

/// A lock built directly on the interleaving API (not order-checked), for a lock inversion.
final class ToyLock: Sendable {
    let held = Atomic<Bool>(false)
    let name: String
    init(_ name: String) { self.name = name }
    func lock() {
        let b = Interleaving.current!
        Interleaving.acquire(b, self, name) {
            held.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        }
    }
    func unlock() {
        held.store(false, ordering: .releasing)
        Interleaving.released(Interleaving.current!, self, name)
    }
}

/// Counts, by brute force over every interleaving of the threads' segments (a thread with n
/// yield points runs n + 1 segments), those with at most `bound` preemptions: a switch away
/// from a thread that still has segments left.
func bruteForceSchedules(segments: [Int], bound: Int) -> Int {
    func go(_ left: [Int], _ current: Int?, _ preemptions: Int) -> Int {
        if left.allSatisfy({ $0 == 0 }) { return 1 }
        var total = 0
        for t in left.indices where left[t] > 0 {
            let p = preemptions + ((current != nil && current != t && left[current!] > 0) ? 1 : 0)
            guard p <= bound else { continue }
            var next = left
            next[t] -= 1
            total += go(next, t, p)
        }
        return total
    }
    return go(segments, nil, 0)
}

/// Threads that do nothing but pass `yields[i]` yield points each.
func yieldingTarget(_ yields: [Int]) -> ExploreTarget {
    ExploreTarget(actorNames: yields.indices.map { "t\($0)" }) { _ in
        ScenarioInstance(
            bodies: yields.map { n in { for _ in 0..<n { Interleaving.yield(YieldSite(.hook, "step")) } } },
            check: { [] })
    }
}

/// Two threads each add one to a shared counter by reading it, yielding, and writing it back.
func lostUpdateTarget() -> ExploreTarget {
    ExploreTarget(actorNames: ["a", "b"]) { _ in
        let counter = Mutex(0)
        let add: @Sendable () -> Void = {
            let seen = counter.withLock { $0 }
            Interleaving.yield(YieldSite(.hook, "between read and write"))
            counter.withLock { $0 = seen + 1 }
        }
        return ScenarioInstance(
            bodies: [add, add],
            check: {
                let n = counter.withLock { $0 }
                return n == 2 ? [] : [ExploreFinding("lost-update", "counter is \(n) after two increments")]
            })
    }
}

@Suite("Explorer scheduler")
struct ExplorerTests {
    @Test("dfs runs exactly the schedules within the preemption bound, as counted by brute force", arguments: [0, 1, 2, 3])
    func dfsCountMatchesBruteForce(bound: Int) {
        for yields in [[2, 2], [3, 1], [1, 1, 1], [2, 0, 3]] {
            var config = ExploreConfig(scenario: .eofBlock)
            config.preemptionBound = bound
            let report = runExplore(config, target: yieldingTarget(yields))
            #expect(report.exhausted)
            #expect(report.violations == 0)
            #expect(
                report.schedulesExplored == bruteForceSchedules(segments: yields.map { $0 + 1 }, bound: bound),
                "threads with \(yields) yields at bound \(bound)")
        }
    }

    @Test("a lost update needs one preemption: bound 0 misses it, bound 1 finds it, and its schedule replays to it")
    func lostUpdate() throws {
        var config = ExploreConfig(scenario: .eofBlock)
        config.preemptionBound = 0
        let serial = runExplore(config, target: lostUpdateTarget())
        #expect(serial.exhausted && serial.violations == 0 && serial.schedulesExplored == 2)

        config.preemptionBound = 1
        let found = runExplore(config, target: lostUpdateTarget())
        let v = try #require(found.firstViolation)
        #expect(v.finding.invariant == "lost-update")
        #expect(v.schedule.choices.count == 1)

        var replay = ExploreConfig(scenario: .eofBlock)
        replay.replay = try Schedule(parsing: v.schedule.description)
        let again = runExplore(replay, target: lostUpdateTarget())
        #expect(again.schedulesExplored == 1)
        #expect(again.firstViolation?.finding == v.finding)
        #expect(again.firstViolation?.schedule == v.schedule)
    }

    @Test("keep-going counts every violating schedule; pct and random find the lost update too")
    func otherStrategies() throws {
        var config = ExploreConfig(scenario: .eofBlock)
        config.preemptionBound = 2
        config.keepGoing = true
        let all = runExplore(config, target: lostUpdateTarget())
        #expect(all.exhausted)
        #expect(all.violations > 0 && all.violations < all.schedulesExplored)
        for strategy in [ExploreStrategy.pct, .random] {
            var c = ExploreConfig(scenario: .eofBlock)
            c.strategy = strategy
            c.seed = 346
            c.depth = 2
            c.schedules = 200
            let r = runExplore(c, target: lostUpdateTarget())
            #expect(r.firstViolation?.finding.invariant == "lost-update", "\(strategy) with seed 346")
        }
    }

    @Test("canary: a lock inversion deadlocks under some schedule, which is reported with what each thread waits for")
    func lockInversionDeadlock() throws {
        let target = ExploreTarget(actorNames: ["ab", "ba"]) { _ in
            let a = ToyLock("lock A")
            let b = ToyLock("lock B")
            return ScenarioInstance(
                bodies: [
                    {
                        a.lock(); b.lock(); b.unlock(); a.unlock()
                    },
                    {
                        b.lock(); a.lock(); a.unlock(); b.unlock()
                    },
                ],
                check: { [] })
        }
        let report = runExplore(ExploreConfig(scenario: .eofBlock), target: target)
        let v = try #require(report.firstViolation)
        #expect(v.finding.invariant == "deadlock")
        #expect(v.finding.detail.contains("ab waits at blocked lock B"))
        #expect(v.finding.detail.contains("ba waits at blocked lock A"))
        #expect(!report.exhausted)
    }

    @Test("canary: waiting for a writeback that never ends is a deadlock on the engine's own folio primitive")
    func writebackWaitDeadlock() throws {
        let target = ExploreTarget(actorNames: ["starter", "waiter"]) { _ in
            let folio = Folio(pos: 8192, size: 4096, blockShift: 12)
            return ScenarioInstance(
                bodies: [
                    {
                        folio.lock()
                        folio.startWriteback()
                        folio.unlock()
                    },
                    { folio.waitWriteback() },
                ],
                check: { [] })
        }
        let report = runExplore(ExploreConfig(scenario: .eofBlock), target: target)
        let v = try #require(report.firstViolation)
        #expect(v.finding == ExploreFinding("deadlock", "no thread can run: waiter waits at blocked writeback of folio 8192"))
    }

    @Test("folio locks taken in turn by threads under the scheduler never hang, whatever the schedule")
    func folioLockContention() {
        let target = ExploreTarget(actorNames: ["x", "y", "z"]) { _ in
            let folio = Folio(pos: 0, size: 4096, blockShift: 12)
            let inside = Mutex(0)
            let body: @Sendable () -> Void = {
                folio.lock()
                inside.withLock { $0 += 1 }
                Interleaving.yield(YieldSite(.hook, "holding"))
                let n = inside.withLock { v in
                    v -= 1
                    return v
                }
                precondition(n == 0, "two threads inside the folio lock")
                folio.unlock()
            }
            return ScenarioInstance(bodies: [body, body, body], check: { [] })
        }
        var config = ExploreConfig(scenario: .eofBlock)
        config.preemptionBound = 3
        let report = runExplore(config, target: target)
        #expect(report.exhausted && report.violations == 0)
        #expect(report.schedulesExplored > 6)
    }

    @Test("schedules print and parse back; bad ones are refused with the reason")
    func scheduleText() throws {
        #expect(try Schedule(parsing: "7:1,31:0").description == "7:1,31:0")
        #expect(try Schedule(parsing: "-") == Schedule())
        #expect(Schedule().description == "-")
        for bad in ["7", "7:x", "7:1,3:0", "-1:0", "1:64", ""] {
            #expect(throws: ScheduleParseError.self, "'\(bad)'") { try Schedule(parsing: bad) }
        }
    }
}
