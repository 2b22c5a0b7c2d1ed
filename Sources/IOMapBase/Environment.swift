// Counterpart: the kernel's error-injection and debug knobs (XFS error tags such as
// write_delay_ms and wb_delay_ms, CONFIG_FAIL_*), gathered into one injected value.
//
// Every source of nondeterminism the engine may touch comes in through IOMapEnvironment
// (docs/DESIGN.md decision 2): the fault injector, the hook points of docs/KERNEL-MODEL.md §9 and the
// seeded randomness. The live environment has no faults and no hooks, and the engine
// checks for them with a single nil test.

import Synchronization

/// The deterministic hook points of docs/KERNEL-MODEL.md §9, where a test can run another actor's
/// operation in the middle of a write, a release, a writeback or an I/O completion.
public enum HookPoint: String, CaseIterable, Sendable {
    /// H1: after iomapBegin returned a mapping, before the first folio is locked.
    case afterIomapBegin = "H1"
    /// H2: in the validity check, with the folio locked.
    case iomapValid = "H2"
    /// H3: after a copy into the page cache, before iomapEnd runs.
    case afterCopy = "H3"
    /// H4: inside delalloc release, between SEEK_DATA and SEEK_HOLE.
    case releaseBetweenSeeks = "H4"
    /// H4: inside delalloc release, before each folio lookup.
    case releaseBeforeFolioLookup = "H4b"
    /// H5: in writeback, before the blocks of a folio are mapped.
    case writebackBeforeMapBlocks = "H5"
    /// H6a: in I/O completion, before the extent conversion: the folio is unlocked and still
    /// under writeback, its blocks written but their extents not yet converted. (The kernel
    /// completes I/O asynchronously, so this window is long there.)
    case completionBeforeConversion = "H6a"
    /// H6: in I/O completion, after the extent conversion and before writeback ends.
    case completionBeforeEndWriteback = "H6"
    /// H7: before a copy from the user buffer into a locked folio (where the injector may
    /// make the copy short).
    case beforeCopy = "H7"
}

/// What a hook is told: where it fired and the byte range the operation was working on.
public struct HookEvent: Sendable, CustomStringConvertible {
    public let point: HookPoint
    /// The file the operation works on.
    public let fileID: Int
    /// The byte range of the step that reached the hook.
    public let range: ByteRange

    public var description: String { "\(point.rawValue)(\(point)) file \(fileID) \(range)" }
}

/// A named place where a fault can be injected (the fsx section of docs/TESTING.md gives
/// their rates).
public enum FaultSite: String, CaseIterable, Sendable {
    /// H7: the copy from the user buffer stops early, at any byte.
    case shortCopy = "short-copy"
    /// The copy from the user buffer copies nothing.
    case zeroCopy = "zero-copy"
    /// A delalloc reservation fails with ENOSPC.
    case reserveENOSPC = "enospc"
    /// The mapping goes stale between iomapBegin and the first folio lock.
    case staleBeforeFolioLock = "stale-first"
    /// The mapping goes stale in the middle of a multi-folio mapping.
    case staleMidMapping = "stale-mid"
    /// Reading a partial block from the device fails.
    case readIOError = "read-eio"
    /// A writeback write to the device fails.
    case writebackIOError = "writeback-eio"
    /// The user buffer cannot be read from some byte on (the rest of it is unmapped): the
    /// copy stops there for good, and the write returns what it wrote, or EFAULT. The engine
    /// never asks for this one; a caller passes the faulting offset with the write.
    case userBufferFault = "efault"
}

/// What a fault query describes: the site and the operation's position and length.
public struct FaultQuery: Sendable {
    public let site: FaultSite
    public let offset: Int
    public let length: Int
}

/// SplitMix64: small, fast, and the same sequence on every platform for a given seed.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Decides whether each fault site fires. Either random, with a probability per site and
/// a seed, or scripted by a closure that sees every query (for scenario tests).
public final class FaultInjector: Sendable {
    public typealias Script = @Sendable (FaultQuery) -> Int?

    private struct State {
        var random: SeededRandom
        var rates: [FaultSite: Double]
        var counts: [FaultSite: Int] = [:]
        var enabled = true
    }

    private let state: OrderedMutex<State>
    private let script: Script?

    /// Random faults: each site in `rates` fires with its probability, drawn from `seed`.
    public init(seed: UInt64, rates: [FaultSite: Double]) {
        state = OrderedMutex(.leaf, "fault injector", State(random: SeededRandom(seed: seed), rates: rates))
        script = nil
    }

    /// Scripted faults: `script` answers each query. For copy sites the answer is the
    /// number of bytes the copy delivers; for other sites any non-nil answer means "fail".
    public init(script: @escaping Script) {
        state = OrderedMutex(.leaf, "fault injector", State(random: SeededRandom(seed: 0), rates: [:]))
        self.script = script
    }

    /// Suspends or resumes injection for every thread (used to let a cleanup or a check run
    /// fault-free in a single-threaded test).
    public func setEnabled(_ on: Bool) { state.withLock { $0.enabled = on } }

    /// True on a thread running inside `exempting`.
    @TaskLocal static var exempt = false

    /// True when the calling thread runs inside `exempting`: a hook that injects delays uses
    /// it to act on the threads being failed only.
    public static var isExempt: Bool { exempt }

    /// Runs `body` with no fault injected into anything this thread does, whatever the other
    /// threads are doing: a harness's mapped writers, checkers and flushers run so while its
    /// buffered writers are being failed.
    public static func exempting<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        let result = $exempt.withValue(true) { Result { () throws(E) -> T in try body() } }
        return try result.get()
    }

    /// How many faults fired, per site.
    public var injectedCounts: [FaultSite: Int] { state.withLock { $0.counts } }

    /// The number of bytes a copy of `length` bytes at `offset` should deliver, or nil
    /// for a full copy.
    public func copyLimit(offset: Int, length: Int) -> Int? {
        guard length > 0, !Self.exempt else { return nil }
        if let script {
            guard state.withLock({ $0.enabled }) else { return nil }
            if let n = script(FaultQuery(site: .shortCopy, offset: offset, length: length)) {
                let limited = min(max(n, 0), length)
                state.withLock { $0.counts[limited == 0 ? .zeroCopy : .shortCopy, default: 0] += 1 }
                return limited
            }
            return nil
        }
        return state.withLock { s -> Int? in
            guard s.enabled else { return nil }
            if let p = s.rates[.zeroCopy], p > 0, Double.random(in: 0..<1, using: &s.random) < p {
                s.counts[.zeroCopy, default: 0] += 1
                return 0
            }
            if length > 1, let p = s.rates[.shortCopy], p > 0, Double.random(in: 0..<1, using: &s.random) < p {
                s.counts[.shortCopy, default: 0] += 1
                return Int.random(in: 1..<length, using: &s.random)
            }
            return nil
        }
    }

    /// True when `site` should fail for an operation at `offset` of `length` bytes.
    public func fails(_ site: FaultSite, offset: Int, length: Int) -> Bool {
        if Self.exempt { return false }
        if let script {
            guard state.withLock({ $0.enabled }) else { return false }
            let hit = script(FaultQuery(site: site, offset: offset, length: length)) != nil
            if hit { state.withLock { $0.counts[site, default: 0] += 1 } }
            return hit
        }
        return state.withLock { s in
            guard s.enabled, let p = s.rates[site], p > 0 else { return false }
            let hit = Double.random(in: 0..<1, using: &s.random) < p
            if hit { s.counts[site, default: 0] += 1 }
            return hit
        }
    }
}

/// Everything nondeterministic the engine may consult. `.live` has nothing switched on.
public struct IOMapEnvironment: Sendable {
    public var faults: FaultInjector?
    public var hook: (@Sendable (HookEvent) -> Void)?
    /// A deterministic scheduler that decides, at every hook point and lock operation, which
    /// of its threads runs next (the explorer). Hook points reach it here; lock primitives
    /// reach it through the threads it binds (see Interleaving).
    public var interleaver: (any Interleaver)?

    public init(
        faults: FaultInjector? = nil, hook: (@Sendable (HookEvent) -> Void)? = nil, interleaver: (any Interleaver)? = nil
    ) {
        self.faults = faults
        self.hook = hook
        self.interleaver = interleaver
    }

    /// No faults, no hooks, no interleaver.
    public static let live = IOMapEnvironment()

    /// Fires a hook point: a yield point for the interleaver, if one runs this thread, then
    /// the hook. The hook acts as another thread would, so the locks this thread holds are
    /// hidden from the lock-order check while it runs.
    @inline(__always)
    public func fire(_ point: HookPoint, fileID: Int, range: ByteRange) {
        if let interleaver { yield(interleaver, point, range) }
        guard let hook else { return }
        LockDep.asOtherThread { hook(HookEvent(point: point, fileID: fileID, range: range)) }
    }

    @inline(never)
    func yield(_ interleaver: any Interleaver, _ point: HookPoint, _ range: ByteRange) {
        guard let b = Interleaving.current, b.interleaver === interleaver else { return }
        interleaver.yield(YieldSite(.hook, point.rawValue, offset: range.start), actor: b.actor)
    }
}
