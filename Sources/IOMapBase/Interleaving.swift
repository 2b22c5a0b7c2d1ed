// Counterpart: none in the kernel. This is the runtime switch a deterministic scheduler
// (as CHESS, loom and shuttle do) uses to decide which thread runs next: every
// sleeping lock of docs/KERNEL-MODEL.md §9 (i_rwsem, the invalidate lock, folio locks and the
// writeback wait, the extent-map lock) and every hook point H1–H7 is a yield point.
//
// Reaching the interleaver. The hook points fire through the injected environment
// (IOMapEnvironment.interleaver). The lock primitives sit below every layer that sees the
// environment (a folio does not know its file system), so they reach the same interleaver
// through the thread: the explorer binds it to each thread it runs. With nothing bound
// anywhere, a lock operation pays one relaxed load of a process-wide counter and a branch.
//
// A lock under an interleaver never sleeps in the operating system: it tries, and when the
// lock is taken it tells the interleaver it is blocked on that lock and waits to be run
// again, so the scheduler never hands control to a thread that cannot make progress, and
// knows when no thread can (a deadlock).

import CIOMapBase

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Where a thread under an interleaver reached a yield point.
public struct YieldSite: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        /// About to acquire a lock (it may turn out to be taken).
        case acquire
        /// Just acquired a lock.
        case acquired
        /// Just released a lock.
        case release
        /// A lock or condition this thread waits for is unavailable.
        case blocked
        /// A hook point of docs/KERNEL-MODEL.md §9.
        case hook
    }

    public let kind: Kind
    /// The lock's name, or the hook point's label.
    public let name: String
    /// A byte offset that identifies the object (a folio's position), or -1.
    public let offset: Int

    @inline(__always)
    public init(_ kind: Kind, _ name: String, offset: Int = -1) {
        self.kind = kind
        self.name = name
        self.offset = offset
    }

    public var description: String {
        let at = offset >= 0 ? " \(offset)" : ""
        switch kind {
        case .hook: return "\(name)\(at)"
        default: return "\(kind.rawValue) \(name)\(at)"
        }
    }
}

/// A scheduler that runs threads one at a time and switches between them only at yield
/// points. Every method is called by the thread that holds the right to run.
public protocol Interleaver: AnyObject, Sendable {
    /// A yield point: the scheduler may run another thread before this one returns.
    func yield(_ site: YieldSite, actor: Int)
    /// The calling thread cannot go on until `key` is signalled (a lock it needs is held, a
    /// folio it waits for is under writeback). Returns when it should try again.
    func block(on key: ObjectIdentifier, _ site: YieldSite, actor: Int)
    /// Makes every thread blocked on `key` runnable again (it will re-check its condition).
    func signal(_ key: ObjectIdentifier)
}

public enum Interleaving {
    /// An interleaver bound to a thread, with the thread's index among the interleaver's.
    public final class Binding: Sendable {
        public let interleaver: any Interleaver
        public let actor: Int
        init(_ interleaver: any Interleaver, actor: Int) {
            self.interleaver = interleaver
            self.actor = actor
        }
    }

    // The process-wide count of bound threads and the calling thread's binding live in C
    // (CIOMapBase), where Swift reads them without an accessor call: every lock operation of
    // the live engine reads the count.

    /// The binding of the calling thread, if an interleaver runs it.
    @inlinable @inline(__always)
    public static var current: Binding? {
        if ciomap_bound_thread_count() == 0 { return nil }
        return boundBinding()
    }

    @usableFromInline @inline(never)
    static func boundBinding() -> Binding? {
        guard let raw = ciomap_get_thread_binding() else { return nil }
        return Unmanaged<Binding>.fromOpaque(raw).takeUnretainedValue()
    }

    /// Runs `body` on the calling thread with `interleaver` deciding at every yield point,
    /// as its thread number `actor`.
    public static func bound<R>(to interleaver: any Interleaver, actor: Int, _ body: () throws -> R) rethrows -> R {
        precondition(ciomap_get_thread_binding() == nil, "a thread can be bound to one interleaver at a time")
        let binding = Binding(interleaver, actor: actor)
        ciomap_set_thread_binding(Unmanaged.passRetained(binding).toOpaque())
        ciomap_add_bound_threads(1)
        defer {
            ciomap_add_bound_threads(-1)
            ciomap_set_thread_binding(nil)
            Unmanaged.passUnretained(binding).release()
        }
        return try body()
    }

    /// A yield point for the calling thread, if an interleaver runs it.
    @inline(__always)
    public static func yield(_ site: @autoclosure () -> YieldSite) {
        guard let b = current else { return }
        b.interleaver.yield(site(), actor: b.actor)
    }

    /// Wakes threads blocked on `object`, if the calling thread runs under an interleaver.
    @inline(__always)
    public static func signal(_ object: AnyObject) {
        guard let b = current else { return }
        b.interleaver.signal(ObjectIdentifier(object))
    }

    /// Acquires something under an interleaver: yields, then tries `attempt` until it
    /// succeeds, telling the interleaver each time it fails that the thread is blocked on
    /// `object`; yields again once acquired.
    @inline(never)
    public static func acquire(
        _ b: Binding, _ object: AnyObject, _ name: String, offset: Int = -1, _ attempt: () -> Bool
    ) {
        b.interleaver.yield(YieldSite(.acquire, name, offset: offset), actor: b.actor)
        while !attempt() {
            b.interleaver.block(on: ObjectIdentifier(object), YieldSite(.blocked, name, offset: offset), actor: b.actor)
        }
        b.interleaver.yield(YieldSite(.acquired, name, offset: offset), actor: b.actor)
    }

    /// Waits under an interleaver until `done` holds, blocked on `object` meanwhile.
    @inline(never)
    public static func wait(_ b: Binding, _ object: AnyObject, _ name: String, offset: Int = -1, until done: () -> Bool) {
        while !done() {
            b.interleaver.block(on: ObjectIdentifier(object), YieldSite(.blocked, name, offset: offset), actor: b.actor)
        }
    }

    /// After a release under an interleaver: wakes the threads blocked on `object`, then yields.
    @inline(never)
    public static func released(_ b: Binding, _ object: AnyObject, _ name: String, offset: Int = -1) {
        b.interleaver.signal(ObjectIdentifier(object))
        b.interleaver.yield(YieldSite(.release, name, offset: offset), actor: b.actor)
    }
}
