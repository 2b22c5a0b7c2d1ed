// Counterpart: lockdep (kernel/locking/lockdep.c), reduced to a per-thread stack of held
// lock levels checked against LockLevel's order.
//
// Compiled in only with -DIOMAP_LOCKDEP so that the live engine pays nothing. The check is
// deliberately simple: it traps when a thread acquires a lock whose level is not strictly
// greater than the innermost level it holds, and names both locks.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

public enum LockDep {
    /// True when lock-order checking is compiled in.
    public static let isEnabled: Bool = {
        #if IOMAP_LOCKDEP
            return true
        #else
            return false
        #endif
    }()

    #if IOMAP_LOCKDEP
        final class HeldLocks {
            var stack: [(level: LockLevel, name: String)] = []
        }

        static let key: pthread_key_t = {
            var key = pthread_key_t()
            let rc = pthread_key_create(&key) { raw in
                guard let raw else { return }
                Unmanaged<HeldLocks>.fromOpaque(raw).release()
            }
            precondition(rc == 0, "pthread_key_create failed")
            return key
        }()

        static var current: HeldLocks {
            if let raw = pthread_getspecific(key) {
                return Unmanaged<HeldLocks>.fromOpaque(raw).takeUnretainedValue()
            }
            let held = HeldLocks()
            pthread_setspecific(key, Unmanaged.passRetained(held).toOpaque())
            return held
        }
    #endif

    // The three entry points below are inlinable and empty unless lockdep is compiled in,
    // so that the live engine's lock operations make no call into them at all.

    /// Records that the calling thread is about to acquire `name` at `level`; traps on an
    /// order violation.
    @inlinable @inline(__always)
    public static func willAcquire(_ level: LockLevel, _ name: @autoclosure () -> String) {
        #if IOMAP_LOCKDEP
            checkedWillAcquire(level, name())
        #endif
    }

    /// Records a successful try-acquire, which cannot deadlock and so is not order-checked,
    /// but must still be tracked so that locks nested inside it are checked.
    @inlinable @inline(__always)
    public static func didTryAcquire(_ level: LockLevel, _ name: @autoclosure () -> String) {
        #if IOMAP_LOCKDEP
            checkedDidTryAcquire(level, name())
        #endif
    }

    /// Records a release. Locks may be released out of order.
    @inlinable @inline(__always)
    public static func released(_ level: LockLevel) {
        #if IOMAP_LOCKDEP
            checkedReleased(level)
        #endif
    }

    #if IOMAP_LOCKDEP
        @usableFromInline
        static func checkedWillAcquire(_ level: LockLevel, _ name: String) {
            let held = current
            if let inner = held.stack.last, inner.level >= level {
                fatalError(
                    "lock order violation: acquiring \(name) (order \(level.rawValue)) while holding \(inner.name) (order \(inner.level.rawValue))"
                )
            }
            held.stack.append((level, name))
        }

        @usableFromInline
        static func checkedDidTryAcquire(_ level: LockLevel, _ name: String) {
            current.stack.append((level, name))
        }

        @usableFromInline
        static func checkedReleased(_ level: LockLevel) {
            let held = current
            if let i = held.stack.lastIndex(where: { $0.level == level }) {
                held.stack.remove(at: i)
            } else {
                fatalError("lock bookkeeping: releasing a \(level) this thread does not hold")
            }
        }
    #endif

    /// The levels the calling thread holds, outermost first (empty unless lockdep is on).
    public static func heldLevels() -> [LockLevel] {
        #if IOMAP_LOCKDEP
            return current.stack.map(\.level)
        #else
            return []
        #endif
    }

    /// Runs `body` as if on another thread: the locks this thread holds are hidden from the
    /// order check while it runs. Hook points use it to act out another task's operation
    /// (a mapped store, a writeback) in the middle of a write, which is what a real race
    /// does on a second CPU.
    public static func asOtherThread<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        #if IOMAP_LOCKDEP
            let held = current
            let saved = held.stack
            held.stack = []
            defer { held.stack = saved }
        #endif
        return try body()
    }
}
