// Counterpart: kthread_run and the wait of kthread_stop (kernel/kthread.c): a thread of its
// own for one function, waited for when it is done with.
//
// It is here, below everything, for the layers above the engine: the volume's background
// log force (docs/DESIGN.md decision 13) and the test harnesses' workers. The engine itself
// starts no thread (decision 1). These are plain OS threads, not tasks: the engine's locks
// sleep the calling thread, and a cooperative pool of two threads would deadlock on them.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// An OS thread running one closure; `join()` waits for it, `detach()` lets it end alone.
public final class JoinableThread: @unchecked Sendable {
    // Guarded by: nothing needed; written once in init, before any other thread can see the
    // object, and only read after.
    private var handle = pthread_t()

    private final class Body {
        let run: @Sendable () -> Void
        init(_ run: @escaping @Sendable () -> Void) { self.run = run }
    }

    /// Starts `body` on a new thread; a thread that cannot be made is a fatal error.
    public init(_ body: @escaping @Sendable () -> Void) {
        let rc = Self.start(body, &handle)
        precondition(rc == 0, "pthread_create failed with \(rc)")
    }

    /// Starts `body` on a new thread, or returns nil (and drops `body`) when the system
    /// cannot make one: for a thread the caller can do without.
    public init?(starting body: @escaping @Sendable () -> Void) {
        guard Self.start(body, &handle) == 0 else { return nil }
    }

    /// pthread_create's result.
    private static func start(_ body: @escaping @Sendable () -> Void, _ handle: inout pthread_t) -> Int32 {
        let box = Unmanaged.passRetained(Body(body))
        let rc = pthread_create(
            &handle, nil,
            { raw in
                let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
                body.run()
                return nil
            }, box.toOpaque())
        if rc != 0 { box.release() }
        return rc
    }

    /// Waits for the thread to finish.
    public func join() {
        pthread_join(handle, nil)
    }

    /// Lets the thread run on and end without anyone waiting for it.
    public func detach() {
        pthread_detach(handle)
    }
}
