// Counterpart: struct rw_semaphore (kernel/locking/rwsem.c), used for inode->i_rwsem and
// mapping->invalidate_lock, and the hashed folio wait table of mm/filemap.c
// (folio_wait_table), which lets a folio's lock and writeback bits sleep without a
// per-folio wait queue.
//
// These are sleeping locks that may be held across calls, which Synchronization.Mutex's
// closure scope cannot express, and which need a condition variable that Synchronization
// lacks; so they sit on pthread mutexes and condition variables.

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
public final class RWSleepLock: @unchecked Sendable {
    public let level: LockLevel
    public let name: String
    private let slot = WaitSlot()
    // Guarded by: slot. No dynamic exclusivity checks: every access is under the slot's
    // mutex, and the checks cost more than the uncontended lock itself.
    @exclusivity(unchecked) private var readers = 0
    @exclusivity(unchecked) private var writer = false
    @exclusivity(unchecked) private var waitingWriters = 0
    @exclusivity(unchecked) private var owner: pthread_t?

    public init(level: LockLevel, name: String) {
        self.level = level
        self.name = name
    }

    public func lockShared() {
        LockDep.willAcquire(level, name)
        if let b = Interleaving.current {
            Interleaving.acquire(b, self, name) { takeShared() }
            return
        }
        slot.lock()
        while writer || waitingWriters > 0 { slot.wait() }
        readers += 1
        slot.unlock()
    }

    public func tryLockShared() -> Bool {
        guard takeShared() else { return false }
        LockDep.didTryAcquire(level, name)
        return true
    }

    private func takeShared() -> Bool {
        slot.lock()
        defer { slot.unlock() }
        if writer || waitingWriters > 0 { return false }
        readers += 1
        return true
    }

    public func unlockShared() {
        slot.lock()
        precondition(readers > 0, "\(name): shared unlock without a shared holder")
        readers -= 1
        if readers == 0 { slot.broadcast() }
        slot.unlock()
        LockDep.released(level)
        if let b = Interleaving.current { Interleaving.released(b, self, name) }
    }

    public func lockExclusive() {
        LockDep.willAcquire(level, name)
        if let b = Interleaving.current {
            // Counted as waiting from its first attempt on, so that new readers queue behind
            // it as they would behind a sleeping writer.
            var registered = false
            Interleaving.acquire(b, self, name) {
                if !registered {
                    registered = true
                    slot.lock()
                    waitingWriters += 1
                    slot.unlock()
                }
                return takeExclusive(waiting: true)
            }
            return
        }
        slot.lock()
        waitingWriters += 1
        while writer || readers > 0 { slot.wait() }
        waitingWriters -= 1
        writer = true
        owner = pthread_self()
        slot.unlock()
    }

    public func tryLockExclusive() -> Bool {
        guard takeExclusive(waiting: false) else { return false }
        LockDep.didTryAcquire(level, name)
        return true
    }

    private func takeExclusive(waiting: Bool) -> Bool {
        slot.lock()
        defer { slot.unlock() }
        if writer || readers > 0 { return false }
        if waiting { waitingWriters -= 1 }
        writer = true
        owner = pthread_self()
        return true
    }

    public func unlockExclusive() {
        slot.lock()
        precondition(writer, "\(name): exclusive unlock without an exclusive holder")
        writer = false
        owner = nil
        slot.broadcast()
        slot.unlock()
        LockDep.released(level)
        if let b = Interleaving.current { Interleaving.released(b, self, name) }
    }

    /// True when the calling thread holds the lock exclusively (lockdep_assert_held_write).
    public var isHeldExclusiveByCurrentThread: Bool {
        slot.lock()
        defer { slot.unlock() }
        guard writer, let owner else { return false }
        return pthread_equal(owner, pthread_self()) != 0
    }

    /// True when anybody holds the lock, shared or exclusive.
    public var isLocked: Bool {
        slot.lock()
        defer { slot.unlock() }
        return writer || readers > 0
    }

    @inline(__always)
    public func withShared<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lockShared()
        defer { unlockShared() }
        return try body()
    }

    @inline(__always)
    public func withExclusive<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lockExclusive()
        defer { unlockExclusive() }
        return try body()
    }
}
