// Counterpart: spinlocks and short-held mutexes such as XFS's ILOCK, the xarray lock and
// the free-space counters' locks, each at its place in LockLevel's hierarchy.

import Synchronization

/// A closure-scoped mutex that knows its place in the lock hierarchy.
public final class OrderedMutex<Value: ~Copyable>: Sendable {
    public let level: LockLevel
    public let name: String
    private let mutex: Mutex<Value>

    public init(_ level: LockLevel, _ name: String, _ value: consuming sending Value) {
        self.level = level
        self.name = name
        self.mutex = Mutex(value)
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
