// Counterpart: struct rw_semaphore (kernel/locking/rwsem.c), used for inode->i_rwsem and
// mapping->invalidate_lock, and the hashed folio wait table of mm/filemap.c
// (folio_wait_table), which lets a folio's lock and writeback bits sleep without a
// per-folio wait queue.
//
// These are sleeping locks that may be held across calls, which Synchronization.Mutex's
// closure scope cannot express, and which need a condition variable that Synchronization
// lacks; so they sit on pthread mutexes and condition variables.

import CIOMapBase
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A pthread mutex and condition variable at a stable address.
public final class WaitSlot: @unchecked Sendable {
    // Guarded by: itself (the pthread objects synchronise their own use).
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    public init() {
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        precondition(pthread_mutex_init(mutex, nil) == 0, "pthread_mutex_init failed")
        precondition(pthread_cond_init(cond, nil) == 0, "pthread_cond_init failed")
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    @inline(__always) public func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) public func unlock() { pthread_mutex_unlock(mutex) }
    /// Waits for a broadcast; the caller holds the slot's mutex.
    @inline(__always) public func wait() { pthread_cond_wait(cond, mutex) }
    @inline(__always) public func broadcast() { pthread_cond_broadcast(cond) }
}

/// A fixed table of wait slots shared by every folio, hashed by object identity, as the
/// kernel shares folio_wait_table. Sharing is safe because waiters always re-check their
/// own condition after a wake-up.
public enum WaitTable {
    static let slots: [WaitSlot] = (0..<256).map { _ in WaitSlot() }

    @inline(__always)
    public static func slot(for object: AnyObject) -> WaitSlot {
        let bits = UInt(bitPattern: ObjectIdentifier(object).hashValue)
        return slots[Int((bits >> 6) & 255)]
    }
}

/// A sleeping reader/writer lock in the lock hierarchy; writers are preferred so that a
/// stream of readers cannot starve truncate or a buffered write.
///
/// Like the kernel's rwsem, the uncontended cases are one atomic operation on one word (the
/// write path takes i_rwsem on every call, seek and read take it shared); only a thread that
/// must wait takes the wait slot's mutex and sleeps on its condition variable.
public final class RWSleepLock: @unchecked Sendable {
    // Guarded by: the state word is atomic; the sleeper and waiting-writer counts by `slot`.
    public let level: LockLevel
    public let name: String
    /// Bit 0: held for writing. Bit 1: a writer waits (new readers queue behind it). Bit 2:
    /// some thread sleeps in the slot (an unlock must wake them). Bits 3 and up: readers.
    private let state = Atomic<Int>(0)
    private static let writerBit = 1
    private static let writerWaitingBit = 2
    private static let sleepersBit = 4
    private static let reader = 8
    /// pthread_self of the exclusive holder, 0 when none.
    private let owner = Atomic<UInt>(0)
    private let slot = WaitSlot()
    @exclusivity(unchecked) private var sleepers = 0
    @exclusivity(unchecked) private var waitingWriters = 0

    public init(level: LockLevel, name: String) {
        self.level = level
        self.name = name
    }

    // MARK: Attempts

    private func takeShared() -> Bool {
        var s = state.load(ordering: .relaxed)
        while s & (Self.writerBit | Self.writerWaitingBit) == 0 {
            let (done, seen) = state.weakCompareExchange(
                expected: s, desired: s + Self.reader, successOrdering: .acquiring, failureOrdering: .relaxed)
            if done { return true }
            s = seen
        }
        return false
    }

    private func takeExclusive() -> Bool {
        var s = state.load(ordering: .relaxed)
        while s & Self.writerBit == 0 && s < Self.reader {
            let (done, seen) = state.weakCompareExchange(
                expected: s, desired: s | Self.writerBit, successOrdering: .acquiring, failureOrdering: .relaxed)
            if done {
                owner.store(UInt(bitPattern: Int(bitPattern: pthread_self())), ordering: .relaxed)
                return true
            }
            s = seen
        }
        return false
    }

    /// How many times a thread that finds the lock held tries again, with a spin-wait hint
    /// between tries, before it sleeps: about a microsecond, the length of a buffered write's
    /// hold, so that two threads writing one file hand the lock over without a futex sleep
    /// and wake-up each time (rwsem's optimistic spinning, bounded because we cannot see
    /// whether the owner runs).
    private static let spins = 256

    /// Retries `take` up to `spins` times before the caller sleeps.
    @inline(__always)
    private func spinTake(_ take: () -> Bool) -> Bool {
        for i in 0..<Self.spins {
            // Loads only until the word looks free, then one attempt: a holder that
            // releases and retakes within a few dozen nanoseconds (a writer's next write)
            // leaves a short window, which a pause between loads would miss.
            if i >= 32 { ciomap_cpu_relax() }
            if state.load(ordering: .relaxed) & Self.writerBit == 0, take() { return true }
        }
        return false
    }

    /// A try-lock: one attempt, which lockdep records only when it succeeds.
    private func tryTake(_ take: () -> Bool) -> Bool {
        guard take() else { return false }
        LockDep.didTryAcquire(level, name)
        return true
    }

    // MARK: Waiting (slot held)

    /// Counts a waiter in: the first of its kind sets `bit`, which the fast paths see.
    private func countIn(_ count: inout Int, setting bit: Int) {
        count += 1
        if count == 1 { state.bitwiseOr(bit, ordering: .acquiringAndReleasing) }
    }

    /// Counts a waiter out: the last of its kind clears `bit`.
    private func countOut(_ count: inout Int, clearing bit: Int) {
        count -= 1
        if count == 0 { state.bitwiseAnd(~bit, ordering: .acquiringAndReleasing) }
    }

    private func startSleeping() { countIn(&sleepers, setting: Self.sleepersBit) }
    private func stopSleeping() { countOut(&sleepers, clearing: Self.sleepersBit) }
    private func startWaitingAsWriter() { countIn(&waitingWriters, setting: Self.writerWaitingBit) }
    private func stopWaitingAsWriter() { countOut(&waitingWriters, clearing: Self.writerWaitingBit) }

    /// After a release that saw sleepers: wake them all to re-check.
    private func wakeSleepers() {
        slot.lock()
        slot.broadcast()
        slot.unlock()
    }

    // MARK: Shared

    public func lockShared() {
        LockDep.willAcquire(level, name)
        if let b = Interleaving.current {
            Interleaving.acquire(b, self, name) { takeShared() }
            return
        }
        if takeShared() || spinTake(takeShared) { return }
        slot.lock()
        startSleeping()
        while !takeShared() { slot.wait() }
        stopSleeping()
        slot.unlock()
    }

    public func tryLockShared() -> Bool { tryTake(takeShared) }

    public func unlockShared() {
        let old = state.subtract(Self.reader, ordering: .releasing).oldValue
        precondition(old >= Self.reader, "\(name): shared unlock without a shared holder")
        if old & Self.sleepersBit != 0 { wakeSleepers() }
        LockDep.released(level)
        if let b = Interleaving.current { Interleaving.released(b, self, name) }
    }

    // MARK: Exclusive

    public func lockExclusive() {
        LockDep.willAcquire(level, name)
        if let b = Interleaving.current {
            // Counted as waiting from its first failed attempt on, so that new readers queue
            // behind it as they would behind a sleeping writer.
            var registered = false
            Interleaving.acquire(b, self, name) {
                if takeExclusive() {
                    if registered {
                        slot.lock()
                        stopWaitingAsWriter()
                        slot.unlock()
                    }
                    return true
                }
                if !registered {
                    registered = true
                    slot.lock()
                    startWaitingAsWriter()
                    slot.unlock()
                }
                return false
            }
            return
        }
        if takeExclusive() || spinTake(takeExclusive) { return }
        slot.lock()
        startWaitingAsWriter()
        startSleeping()
        while !takeExclusive() { slot.wait() }
        stopSleeping()
        stopWaitingAsWriter()
        slot.unlock()
    }

    public func tryLockExclusive() -> Bool { tryTake(takeExclusive) }

    public func unlockExclusive() {
        precondition(state.load(ordering: .relaxed) & Self.writerBit != 0, "\(name): exclusive unlock without an exclusive holder")
        owner.store(0, ordering: .relaxed)
        let old = state.bitwiseAnd(~Self.writerBit, ordering: .releasing).oldValue
        if old & Self.sleepersBit != 0 { wakeSleepers() }
        LockDep.released(level)
        if let b = Interleaving.current { Interleaving.released(b, self, name) }
    }

    // MARK: Scoped

    /// Runs `body` with the lock held shared.
    public func withShared<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lockShared()
        defer { unlockShared() }
        return try body()
    }

    /// Runs `body` with the lock held exclusive.
    public func withExclusive<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lockExclusive()
        defer { unlockExclusive() }
        return try body()
    }

    // MARK: Queries

    /// True when the calling thread holds the lock exclusively (lockdep_assert_held_write).
    public var isHeldExclusiveByCurrentThread: Bool {
        state.load(ordering: .acquiring) & Self.writerBit != 0
            && owner.load(ordering: .relaxed) == UInt(bitPattern: Int(bitPattern: pthread_self()))
    }

    /// True when anybody holds the lock, shared or exclusive.
    public var isLocked: Bool {
        let s = state.load(ordering: .acquiring)
        return s & Self.writerBit != 0 || s >= Self.reader
    }
}
