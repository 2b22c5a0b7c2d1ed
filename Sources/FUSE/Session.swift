// Counterpart: fs/fuse/dev.c's device side: fuse_dev_read/fuse_dev_write (one request read,
// one reply written, per system call), fuse_dev_ioctl_clone (FUSE_DEV_IOC_CLONE: another
// descriptor on the same connection, with its own processing queue), and the ENODEV a read
// gets once fuse_abort_conn has ended the connection (umount, or an abort through
// /sys/fs/fuse/connections).
//
// Several request threads, each blocked in read(2) on its own cloned descriptor: the kernel
// hands each request to one reader, and a request that sleeps in the engine (a lock, a
// flush) holds only its own thread. Each thread owns a read buffer as large as the largest
// WRITE plus headers, and a reply buffer as large as the largest READ, allocated once. The
// threads are plain OS threads (JoinableThread): the engine's locks sleep the calling
// thread, which a cooperative task pool would not survive. The session ends when every
// thread has seen the connection end.
//
// A request is read in two pieces (readv): its first `Request.writeHeadSize` bytes, a
// WRITE's headers, into the read buffer, the rest into the thread's receive block, folio
// memory that a new folio can take whole instead of copying a WRITE's data
// (ReceiveBlock.swift). Any other request's rest is moved up behind its head, so that
// it decodes from one buffer as before.

import CFUSE
import IOMapBase
import PageCache
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

public final class FUSESession: Sendable {
    public let server: FUSEServer
    /// The descriptor mount(2) was given; the clones come from it.
    public let deviceFD: Int32
    let workers = Mutex<[JoinableThread]>([])
    let invalidatorThread = Mutex<JoinableThread?>(nil)
    let clones = Mutex<[Int32]>([])
    let cloned = Atomic<Int>(0)
    /// How many request threads read a clone of the mount's descriptor (a thread whose clone
    /// failed shares the mount's).
    public var clonedThreads: Int { cloned.load(ordering: .relaxed) }

    /// A request never exceeds the largest WRITE and its headers; the kernel refuses a
    /// smaller buffer (fuse_dev_do_read: at least FUSE_MIN_READ_BUFFER, and at least the
    /// headers plus max_write).
    static let readBufferSize = Negotiation.maxWrite + 64 * 1024
    /// A READ asks for at most `maxPages` pages (more than `maxWrite` where the kernel lets
    /// a request hold that many).
    static let replyBufferSize = Negotiation.maxPages * 4096 + 4096

    public init(server: FUSEServer, deviceFD: Int32) {
        self.server = server
        self.deviceFD = deviceFD
    }

    /// Starts `count` request threads: the first reads the mount's descriptor, each other
    /// a clone of it (or, if the kernel refuses a clone, the mount's descriptor too).
    public func start(threads count: Int) {
        var started: [JoinableThread] = []
        for i in 0..<max(1, count) {
            var fd = deviceFD
            if i > 0 {
                let clone = cfuse_clone_device(deviceFD)
                if clone >= 0 {
                    fd = clone
                    clones.withLock { $0.append(clone) }
                    cloned.add(1, ordering: .relaxed)
                }
            }
            let descriptor = fd
            started.append(JoinableThread { [self] in self.serve(descriptor) })
        }
        // The invalidations' own thread, on the mount's descriptor (Invalidator.swift).
        invalidatorThread.withLock { $0 = JoinableThread { [self] in self.server.invalidator.run(self.deviceFD) } }
        workers.withLock { $0 += started }
    }

    /// Waits until INIT has been answered, up to `timeout`: the mount then serves requests.
    public func waitForInit(timeout: Duration) -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while server.negotiated == nil {
            if clock.now >= deadline { return false }
            var ts = timespec(tv_sec: 0, tv_nsec: 1_000_000)
            nanosleep(&ts, nil)
        }
        return true
    }

    /// Waits for every request thread to end, then closes the clones.
    public func join() {
        for t in workers.withLock({ w -> [JoinableThread] in
            defer { w = [] }
            return w
        }) { t.join() }
        server.invalidator.stop()
        invalidatorThread.withLock { t -> JoinableThread? in
            defer { t = nil }
            return t
        }?.join()
        for fd in clones.withLock({ c -> [Int32] in
            defer { c = [] }
            return c
        }) { close(fd) }
    }

    /// One request thread: read a request, serve it, write the reply, until the
    /// connection ends (ENODEV) or DESTROY came.
    func serve(_ fd: Int32) {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.readBufferSize, alignment: 4096)
        defer { buffer.deallocate() }
        let reply = ReplyBuffer(capacity: Self.replyBufferSize)
        let receive = ReceiveBlock(shift: Negotiation.maxWrite.trailingZeroBitCount)
        // Made once: a request thread reads thousands of times a second. Only the block's
        // address changes, after a folio took it.
        var pieces = [
            iovec(iov_base: buffer.baseAddress, iov_len: Request.writeHeadSize), iovec(iov_base: receive.base, iov_len: receive.size),
        ]
        while !server.isDestroyed {
            pieces[1].iov_base = receive.base
            let n = readv(fd, &pieces, 2)
            if n < 0 {
                let e = errno
                // EINTR: a signal; EAGAIN: another reader took the request; ENOENT: the
                // request was interrupted before it was read. Anything else (ENODEV: the
                // connection ended) ends this thread.
                if e == EINTR || e == EAGAIN || e == ENOENT { continue }
                return
            }
            let message = serveRead(n, buffer, receive, into: reply)
            receive.renew()
            guard let message else { continue }
            // ENOENT: the request was interrupted or aborted, and nobody waits for it.
            if cfuse_write(fd, message.baseAddress, message.count) == -Int(ENODEV) { return }
        }
    }

    /// Serves the `n` bytes just read: a WRITE from its two pieces, anything else from one
    /// buffer once its rest has been moved up behind its head.
    func serveRead(_ n: Int, _ buffer: UnsafeMutableRawBufferPointer, _ receive: ReceiveBlock, into reply: ReplyBuffer)
        -> UnsafeRawBufferPointer?
    {
        let head = Request.writeHeadSize
        if n > head {
            let h = UnsafeRawBufferPointer(buffer).loadUnaligned(as: fuse_in_header.self)
            if h.opcode == Opcode.write.rawValue && h.total_extlen == 0 {
                return server.serveWrite(
                    head: UnsafeRawBufferPointer(rebasing: buffer[0..<head]),
                    payload: UnsafeRawBufferPointer(start: receive.base, count: n - head), lender: receive, into: reply)
            }
            (buffer.baseAddress! + head).copyMemory(from: receive.base, byteCount: n - head)
        }
        return server.serve(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), into: reply)
    }
}
