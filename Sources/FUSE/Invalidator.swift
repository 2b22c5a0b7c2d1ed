// Counterpart: the daemon's side of FUSE_NOTIFY_INVAL_INODE (fs/fuse/dev.c's
// fuse_notify_inval_inode, which runs fuse_reverse_inval_inode in the writer's context).
//
// Why a thread of its own: the kernel handles the notification inside the daemon's write(2),
// and dropping pages can wait on a page lock held by a READ in flight, or write a dirty page
// back (launder) and wait for that WRITE's answer. A request thread that sent it would wait
// on requests that only the request threads can answer; so the request threads only queue,
// and this thread, which serves no request, sends. When the connection has ended, the
// kernel answers ENODEV and the thread stops.
//
// What is queued: the pages the writeback merge (WritebackMerge.swift) left stale in the
// kernel's copy, which is clean but still holds bytes from before a pwrite; dropped, the next
// load through the mapping faults the daemon's bytes in.

import CFUSE
import IOMapBase
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

final class Invalidator: @unchecked Sendable {
    // Guarded by: slot's mutex (pending, stopped).
    private var pending: [(node: UInt64, offset: Int64, length: Int64)] = []
    private var stopped = false
    private let slot = WaitSlot()
    private let queuedCount = Atomic<Int>(0)
    private let sentCount = Atomic<Int>(0)

    /// Notifications queued, and sent (the kernel took them).
    var queued: Int { queuedCount.load(ordering: .relaxed) }
    var sent: Int { sentCount.load(ordering: .relaxed) }

    /// Queues an invalidation of `length` bytes of node `node`'s pages from `offset`.
    func enqueue(_ node: UInt64, offset: Int, length: Int) {
        queuedCount.add(1, ordering: .relaxed)
        slot.lock()
        pending.append((node, Int64(offset), Int64(length)))
        slot.broadcast()
        slot.unlock()
    }

    /// Ends `run` (what is still queued is dropped: the connection is going).
    func stop() {
        slot.lock()
        stopped = true
        slot.broadcast()
        slot.unlock()
    }

    /// The thread's body: sends what is queued on `fd` until stopped or the connection ends.
    func run(_ fd: Int32) {
        while true {
            slot.lock()
            while pending.isEmpty && !stopped { slot.wait() }
            if stopped {
                slot.unlock()
                return
            }
            let batch = pending
            pending = []
            slot.unlock()
            for n in batch {
                let r = Self.send(fd, n.node, n.offset, n.length)
                if r == -Int(ENODEV) { return }
                // ENOENT: the kernel no longer knows the inode (forgotten); nothing to drop.
                if r >= 0 { sentCount.add(1, ordering: .relaxed) }
            }
        }
    }

    /// One FUSE_NOTIFY_INVAL_INODE message: an out header with unique 0 and the code in its
    /// error field, then fuse_notify_inval_inode_out.
    static func send(_ fd: Int32, _ node: UInt64, _ offset: Int64, _ length: Int64) -> Int {
        var message = [UInt8](
            repeating: 0, count: MemoryLayout<fuse_out_header>.size + MemoryLayout<fuse_notify_inval_inode_out>.size)
        message.withUnsafeMutableBytes { p in
            var h = fuse_out_header()
            h.len = UInt32(p.count)
            h.error = Int32(FUSE_NOTIFY_INVAL_INODE.rawValue)
            h.unique = 0
            var body = fuse_notify_inval_inode_out()
            body.ino = node
            body.off = offset
            body.len = length
            p.storeBytes(of: h, as: fuse_out_header.self)
            p.storeBytes(of: body, toByteOffset: MemoryLayout<fuse_out_header>.size, as: fuse_notify_inval_inode_out.self)
        }
        return message.withUnsafeBytes { cfuse_write(fd, $0.baseAddress, $0.count) }
    }
}
