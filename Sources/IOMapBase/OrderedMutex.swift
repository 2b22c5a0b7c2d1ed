// Counterpart: spinlocks and short-held mutexes such as XFS's ILOCK, the xarray lock and
// the free-space counters' locks, each at its place in LockLevel's hierarchy.

import Synchronization

#if IOMAP_TSAN
#if canImport(Glibc)
import Glibc
#endif
#endif

/// A closure-scoped mutex that knows its place in the lock hierarchy.
public final class OrderedMutex<Value: ~Copyable>: Sendable {
    public let level: LockLevel
    public let name: String
    #if IOMAP_TSAN
    // Thread Sanitizer does not see Synchronization.Mutex's futex hand-off and reports
    // false races between critical sections; a pthread mutex it understands.
    private let mutex: PThreadMutex<Value>
    #else
    private let mutex: Mutex<Value>
    #endif

    public init(_ level: LockLevel, _ name: String, _ value: consuming sending Value) {
        self.level = level
        self.name = name
        #if IOMAP_TSAN
        self.mutex = PThreadMutex(value)
        #else
        self.mutex = Mutex(value)
        #endif
    }

    @inline(__always)
    public func withLock<R: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending R
    ) throws(E) -> sending R {
        LockDep.willAcquire(level, name)
        defer { LockDep.released(level) }
        return try mutex.withLock(body)
    }
}

#if IOMAP_TSAN
/// A value behind a pthread mutex, for Thread Sanitizer builds only.
final class PThreadMutex<Value: ~Copyable>: @unchecked Sendable {
    // Guarded by: mutex.
    private let value: UnsafeMutablePointer<Value>
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    init(_ initial: consuming sending Value) {
        value = .allocate(capacity: 1)
        value.initialize(to: initial)
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
    }

    deinit {
        value.deinitialize(count: 1)
        value.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    func withLock<R: ~Copyable, E: Error>(_ body: (inout sending Value) throws(E) -> sending R) throws(E) -> sending R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}
#endif
