// Counterpart: the kthreads and worker processes a kernel stress test starts (fstests'
// holetest threads, fsstress children): plain OS threads, joined at the end.
//
// The harnesses need real preemptive threads, not tasks: the engine's locks sleep the
// calling thread, and a cooperative pool of two threads would deadlock on them.

import IOMapBase

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// IOMapBase's OS thread, under the name the harnesses' users have always imported it by.
public typealias JoinableThread = IOMapBase.JoinableThread

/// Runs `body(i)` for `i` in `0..<count`, each on its own thread, and waits for all.
public func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let threads = (0..<count).map { i in JoinableThread { body(i) } }
    for t in threads { t.join() }
}

/// A reusable barrier for a fixed number of threads (pthread_barrier_t).
public final class ThreadBarrier: @unchecked Sendable {
    private let barrier: UnsafeMutablePointer<pthread_barrier_t>

    public init(count: Int) {
        precondition(count > 0, "a barrier needs at least one thread")
        barrier = .allocate(capacity: 1)
        pthread_barrier_init(barrier, nil, UInt32(count))
    }

    deinit {
        pthread_barrier_destroy(barrier)
        barrier.deallocate()
    }

    /// Waits until every thread of the barrier has called `wait()`.
    public func wait() { _ = pthread_barrier_wait(barrier) }
}

/// Gives up the CPU, as a preempted kernel thread would.
public func yieldProcessor() { _ = sched_yield() }

/// Sleeps the calling thread for about `micros` microseconds.
public func sleepMicroseconds(_ micros: Int) { _ = usleep(UInt32(micros)) }

extension Duration {
    /// The duration in seconds, for reports.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
