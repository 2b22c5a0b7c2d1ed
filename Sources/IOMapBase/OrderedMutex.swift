// Counterpart: spinlocks and short-held mutexes such as XFS's ILOCK, the xarray lock and
// the free-space counters' locks, each at its place in LockLevel's hierarchy.

import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A closure-scoped mutex that knows its place in the lock hierarchy.
public final class OrderedMutex<Value: ~Copyable>: Sendable {
    public let level: LockLevel
    public let name: String
    // Inlinable, so that every client specializes withLock for its value type: called
    // unspecialized across modules, it instantiated generic metadata on every call.
    #if IOMAP_TSAN
        // Thread Sanitizer does not see Synchronization.Mutex's futex hand-off and reports
        // false races between critical sections; a pthread mutex it understands.
        @usableFromInline let mutex: PThreadMutex<Value>
    #else
        @usableFromInline let mutex: Mutex<Value>
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

    @inlinable @inline(__always)
    public func withLock<R, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending R
    ) throws(E) -> sending R {
        LockDep.willAcquire(level, name)
        defer { LockDep.released(level) }
        if level.isInterleaved, let b = Interleaving.current { return try interleavedWithLock(b, body) }
        return try mutex.withLock(body)
    }

    /// The same under an interleaver: tries the mutex until it is free (blocked on it
    /// meanwhile), yields once inside it, and yields again after releasing it. Inlined like
    /// withLock: passed to a function that is not, `body` became a closure with a context
    /// and an indirect call on the live path too, retaining what it captured.
    @inlinable @inline(__always)
    func interleavedWithLock<R, E: Error>(
        _ b: Interleaving.Binding, _ body: (inout sending Value) throws(E) -> sending R
    ) throws(E) -> sending R {
        b.interleaver.yield(YieldSite(.acquire, name), actor: b.actor)
        while true {
            let outcome: Result<R, E>? = mutex.withLockIfAvailable { value -> sending Result<R, E> in
                b.interleaver.yield(YieldSite(.acquired, name), actor: b.actor)
                do throws(E) { return .success(try body(&value)) } catch { return .failure(error) }
            }
            if let outcome {
                Interleaving.released(b, self, name)
                return try outcome.get()
            }
            b.interleaver.block(on: ObjectIdentifier(self), YieldSite(.blocked, name), actor: b.actor)
        }
    }
}

/// A value behind a pthread mutex. Thread Sanitizer sees its hand-offs, which it cannot see
/// in Synchronization.Mutex's futex, so sanitizer builds (-DIOMAP_TSAN) use it in place of
/// Mutex: in OrderedMutex, and in the test harnesses through IOMapTesting's HarnessMutex.
public final class PThreadMutex<Value: ~Copyable>: @unchecked Sendable {
    // Guarded by: mutex.
    private let value: UnsafeMutablePointer<Value>
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init(_ initial: consuming sending Value) {
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

    public func withLock<R: ~Copyable, E: Error>(_ body: (inout sending Value) throws(E) -> sending R) throws(E) -> sending R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }

    /// Runs `body` if the mutex is free, or returns nil at once (pthread_mutex_trylock).
    public func withLockIfAvailable<R, E: Error>(_ body: (inout sending Value) throws(E) -> sending R) throws(E) -> sending R? {
        guard pthread_mutex_trylock(mutex) == 0 else { return nil }
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}
