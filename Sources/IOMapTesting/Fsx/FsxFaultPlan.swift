// Counterpart: fstests' fsx (ltp/fsx.c) has no fault injection; this is the plan behind our
// fault sites (docs/TESTING.md, Fault sites): random answers, recorded per op, or the
// recorded ones replayed, so that a log replays exactly.

import IOMapBase
import Synchronization

/// Decides faults at random and records them, or replays recorded ones.
final class FsxFaultPlan: Sendable {
    struct State {
        var random: SeededRandom
        var sites: Set<FaultSite>
        var rates: [FaultSite: Double]
        var replay: [FsxFault]?
        var fired: [FsxFault] = []
        var counts: [FaultSite: Int] = [:]
        /// Queries so far in this op, per site (copies as shortCopy) and offset.
        var queries: [QueryKey: Int] = [:]
    }

    struct QueryKey: Hashable {
        var site: FaultSite
        var offset: Int
    }

    let state: HarnessMutex<State>
    /// Faults are recorded relative to the run's offset base, so a log replays at any base.
    let base: Int

    init(seed: UInt64, sites: Set<FaultSite>, rates: [FaultSite: Double], base: Int) {
        state = HarnessMutex(State(random: SeededRandom(seed: seed ^ 0xF5_F5F5), sites: sites, rates: rates))
        self.base = base
    }

    /// Starts an op: with `replay`, exactly those faults fire; without, random ones.
    func begin(replay: [FsxFault]?) {
        state.withLock {
            $0.replay = replay
            $0.fired = []
            $0.queries = [:]
        }
    }

    /// The faults that fired since `begin`.
    func end() -> [FsxFault] { state.withLock { $0.fired } }

    /// Where the user buffer of a write of `length` bytes at `offset` (relative) stops being
    /// readable, if it does: a recorded fault on replay, a random one otherwise (at `rate`,
    /// or the site's own).
    func userBufferFault(offset: Int, length: Int, rate: Double? = nil) -> Int? {
        state.withLock { s -> Int? in
            if let replay = s.replay {
                guard let i = replay.firstIndex(where: { $0.site == .userBufferFault }) else { return nil }
                let f = replay[i]
                s.replay!.remove(at: i)
                s.fired.append(f)
                s.counts[.userBufferFault, default: 0] += 1
                return f.offset
            }
            guard s.sites.contains(.userBufferFault), let p = rate ?? s.rates[.userBufferFault],
                Double.random(in: 0..<1, using: &s.random) < p
            else { return nil }
            let f = FsxFault(site: .userBufferFault, offset: offset + Int.random(in: 0..<length, using: &s.random), value: 0)
            s.fired.append(f)
            s.counts[.userBufferFault, default: 0] += 1
            return f.offset
        }
    }

    func answer(_ q: FaultQuery) -> Int? {
        let offset = q.offset - base
        return state.withLock { s -> Int? in
            let isCopy = q.site == .shortCopy
            let key = QueryKey(site: q.site, offset: offset)
            let nth = s.queries[key, default: 0]
            s.queries[key] = nth + 1
            if s.replay != nil { return Self.replayed(&s, q, offset: offset, nth: nth) }
            func hit(_ site: FaultSite) -> Bool {
                guard s.sites.contains(site), let p = s.rates[site] else { return false }
                return Double.random(in: 0..<1, using: &s.random) < p
            }
            var fault: FsxFault?
            if isCopy {
                if hit(.zeroCopy) {
                    fault = FsxFault(site: .zeroCopy, offset: offset, value: 0, nth: nth)
                } else if q.length > 1 && hit(.shortCopy) {
                    fault = FsxFault(site: .shortCopy, offset: offset, value: Int.random(in: 1..<q.length, using: &s.random), nth: nth)
                }
            } else if hit(q.site) {
                fault = FsxFault(site: q.site, offset: offset, value: q.site == .writebackIOError ? q.length : 1, nth: nth)
            }
            guard let fault else { return nil }
            s.fired.append(fault)
            s.counts[fault.site, default: 0] += 1
            return isCopy ? fault.value : 1
        }
    }

    /// The answer to the `nth` query at `offset` on replay: the recorded fault, if any.
    static func replayed(_ s: inout State, _ q: FaultQuery, offset: Int, nth: Int) -> Int? {
        let isCopy = q.site == .shortCopy
        guard
            let i = s.replay!.firstIndex(where: {
                $0.offset == offset && $0.nth == nth
                    && (isCopy ? ($0.site == .shortCopy || $0.site == .zeroCopy) : $0.site == q.site)
            })
        else { return nil }
        var f = s.replay![i]
        s.replay!.remove(at: i)
        // A writeback error fails the run that asked, whatever its length was when the log
        // was recorded: runs follow the mappings, which another file system lays out
        // differently. What fired is what the model must forget.
        if f.site == .writebackIOError { f.value = q.length }
        s.fired.append(f)
        s.counts[f.site, default: 0] += 1
        return isCopy ? min(f.value, q.length) : 1
    }
}
