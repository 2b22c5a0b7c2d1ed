// Counterpart: the daemon's half of fs/fuse/dir.c and fs/fuse/file.c: each request the
// kernel's inode, file and address-space operations send, answered from the volume.
//
// The server is the dispatcher alone: it takes one request's bytes and fills one reply, with
// no descriptor or thread of its own (Session.swift reads and writes /dev/fuse), so the whole
// protocol can be driven by tests from byte buffers. It holds what the kernel's view needs:
// the lookups the kernel holds (NodeTable), the open files (HandleTable), what INIT settled,
// and the counters. Each request runs as the process that made it: its uid and gid build
// the volume's Caller, so creation owners, set-id clearing and the volume's own permission
// checks are the caller's, as a kernel file system's are.

import CFUSE
import IOMapBase
import PageCache
import Synchronization
import Volume

#if canImport(Glibc)
    import Glibc
#endif

/// How the server answers.
public struct ServerOptions: Sendable {
    public var cache: CacheMode = .direct
    public var timeouts = CacheTimeouts()
    /// Where every WRITE is recorded before the volume sees it (`--record-writes`), or nil.
    public var recorder: WriteRecorder?
    public init() {}
}

public final class FUSEServer: Sendable {
    public let volume: Volume
    public let options: ServerOptions
    public let nodes = NodeTable()
    public let handles = HandleTable()
    public let stats = Stats()
    /// What the kernel may hold in its page cache, per inode (CachedRanges.swift).
    let kernelCached = KernelCachedRanges()
    /// The bases of pages a direct write reached while the kernel may cache them, for the
    /// three-way merge of their writeback (WritebackMerge.swift).
    let merge = WritebackMerge()

    /// Page invalidations for the kernel, sent by a thread of their own (Invalidator.swift).
    let invalidator = Invalidator()

    /// Invalidations queued and sent (for the tests and --json-stats).
    public var invalidationsQueued: Int { invalidator.queued }
    public var invalidationsSent: Int { invalidator.sent }

    /// Base pages the writeback merge holds (for the tests).
    public var mergePagesHeld: Int { merge.pagesHeld }
    let settled = Mutex<Negotiated?>(nil)
    /// Whether INIT was answered: read by every request, so an atomic, not the mutex.
    let initialized = Atomic<Bool>(false)
    let destroyed = Atomic<Bool>(false)

    public init(volume: Volume, options: ServerOptions = ServerOptions()) {
        self.volume = volume
        self.options = options
    }

    /// What INIT settled, once it has been answered.
    public var negotiated: Negotiated? { settled.withLock { $0 } }

    /// Whether DESTROY arrived: the kernel sends nothing more.
    public var isDestroyed: Bool { destroyed.load(ordering: .acquiring) }

    /// Closes every open the kernel did not release: the connection ended (umount drops
    /// RELEASEs still queued) or the daemon is stopping. Returns how many there were.
    @discardableResult
    public func closeAllHandles() -> Int {
        let open = handles.removeAll()
        for case .file(let f) in open {
            f.close()
            kernelCached.released(f.inode)
            merge.released(f.inode)
        }
        return open.count
    }

    /// Serves one request, as read from /dev/fuse, into `reply`. Returns the reply message
    /// to write back, or nil when the request takes none (FORGET, INTERRUPT) or cannot be
    /// answered (no header to name it).
    public func serve(_ bytes: UnsafeRawBufferPointer, into reply: ReplyBuffer) -> UnsafeRawBufferPointer? {
        serve(decoding: { () throws(RequestDecodeError) in try Request.decode(bytes) }, into: reply)
    }

    /// Serves a WRITE read in two pieces, its data in `lender` (Request.decodeWrite).
    public func serveWrite(head: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, lender: ReceiveBlock, into reply: ReplyBuffer)
        -> UnsafeRawBufferPointer?
    {
        serve(
            decoding: { () throws(RequestDecodeError) in try Request.decodeWrite(head: head, payload: payload, lender: lender) },
            into: reply)
    }

    func serve(decoding: () throws(RequestDecodeError) -> Request, into reply: ReplyBuffer) -> UnsafeRawBufferPointer? {
        reply.reset()
        let request: Request
        do throws(RequestDecodeError) {
            request = try decoding()
        } catch {
            stats.badRequests.add(1, ordering: .relaxed)
            guard case .badArguments(let h, let e) = error else { return nil }
            stats.request(h.opcode)
            if Self.takesNoReply(h.opcode) { return nil }
            stats.errors.add(1, ordering: .relaxed)
            return reply.finish(unique: h.unique, error: e)
        }
        let h = request.header
        stats.request(h.opcode)
        do throws(Errno) {
            guard try dispatch(request, reply) else { return nil }
            return reply.finish(unique: h.unique, error: nil)
        } catch {
            stats.errors.add(1, ordering: .relaxed)
            if error == Self.notImplemented { stats.notImplemented(h.opcode) }
            return reply.finish(unique: h.unique, error: error)
        }
    }

    /// ENOSYS, the answer to an opcode the daemon does not serve.
    static let notImplemented = Errno(rawValue: ENOSYS)
    /// ESTALE, the answer to a node id the kernel cannot hold.
    static let stale = Errno(rawValue: ESTALE)

    /// FORGET, BATCH_FORGET and INTERRUPT are never answered: the kernel waits for nothing.
    static func takesNoReply(_ opcode: UInt32) -> Bool {
        opcode == Opcode.forget.rawValue || opcode == Opcode.batchForget.rawValue || opcode == Opcode.interrupt.rawValue
    }

    /// Routes a decoded request; false when it takes no reply.
    func dispatch(_ request: Request, _ reply: ReplyBuffer) throws(Errno) -> Bool {
        let h = request.header
        switch request.operation {
        case .initialize(let major, let minor, let readahead, let flags):
            try initialize(major: major, minor: minor, readahead: readahead, offered: flags, reply)
            return true
        case .forget(let n):
            nodes.forget(h.nodeid, n)
            return false
        case .batchForget(let items):
            for i in items { nodes.forget(i.nodeid, i.nlookup) }
            return false
        case .interrupt:
            // Requests here are not interruptible: each finishes and is answered, which is
            // what the kernel then takes; the interrupt itself needs no answer.
            return false
        case .destroy:
            destroyed.store(true, ordering: .releasing)
            return true
        case .unsupported:
            throw Self.notImplemented
        case .ioctl:
            throw Errno(rawValue: ENOTTY)
        default:
            break
        }
        guard initialized.load(ordering: .acquiring) else { throw .ioError }
        guard nodes.knows(h.nodeid) else { throw Self.stale }
        try withCaller(h, groupsFirst: Self.keepsSetGIDByGroup(request.operation)) { (caller: Caller) throws(Errno) in
            try route(request.operation, h, caller, reply)
        }
        return true
    }

    /// Serves the operations on a node.
    func route(_ op: Operation, _ h: RequestHeader, _ c: Caller, _ reply: ReplyBuffer) throws(Errno) {
        let ino = InodeNumber(h.nodeid)
        switch op {
        case .lookup(let name): try lookup(ino, name, c, reply)
        case .getattr: try getattr(ino, reply)
        case .setattr(let s): try setattr(ino, s, c, reply)
        case .readlink: reply.append(bytes: try volume.readlink(ino))
        case .symlink(let name, let target): try entry(try volume.symlink(in: ino, name: name, target: target, caller: c), reply)
        case .mknod(let name, let mode, let rdev): try mknod(ino, name, mode, rdev, c, reply)
        case .mkdir(let name, let mode):
            try entry(try volume.mkdir(in: ino, name: name, permissions: UInt16(mode & 0o7777), caller: c), reply)
        case .unlink(let name): try volume.unlink(in: ino, name: name, caller: c)
        case .rmdir(let name): try volume.rmdir(in: ino, name: name, caller: c)
        case .rename(let newDir, let old, let new, let flags): try rename(ino, old, newDir, new, flags, c)
        case .link(let oldNode, let name): try link(InodeNumber(oldNode), ino, name, c, reply)
        case .statfs: reply.append(Encode.statfs(volume.statfs()))
        case .access(let mask): try volume.checkAccess(ino, Access(rawValue: UInt16(mask & 7)), caller: c)
        case .setxattr(let name, let value, let flags):
            try volume.setxattr(ino, name: name, value, flags: XattrFlags(rawValue: flags & 3), caller: c)
        case .getxattr(let name, let size): try sized(try volume.getxattr(ino, name: name, caller: c), size, reply)
        case .listxattr(let size):
            try sized(try volume.listxattrNames(ino, caller: c).flatMap { $0 + [0] }, size, reply)
        case .removexattr(let name): try volume.removexattr(ino, name: name, caller: c)
        case .syncfs:
            stats.engineFsyncs.add(1, ordering: .relaxed)
            try volume.sync()
        default: try routeFile(op, ino, c, reply)
        }
    }

    /// Serves the operations on an open file or directory, and those that make one.
    func routeFile(_ op: Operation, _ ino: InodeNumber, _ c: Caller, _ reply: ReplyBuffer) throws(Errno) {
        switch op {
        case .open(let flags): try open(ino, flags, c, reply)
        case .create(let name, let flags, let mode): try create(ino, name, flags, mode, c, reply)
        case .read(let fh, let offset, let size, let flags): try read(fh, offset, size, flags, reply)
        case .write(let fh, let offset, let data, let flags, let lender): try write(fh, offset, data, flags, lender, c, reply)
        case .release(let fh): release(fh)
        case .flush(let fh): _ = try handles.file(fh)
        case .fsync(let fh, let datasync): try fsync(fh, datasync)
        case .fallocate(let fh, let offset, let length, let mode): try fallocate(fh, offset, length, mode)
        case .lseek(let fh, let offset, let whence): try lseek(fh, offset, whence, reply)
        case .copyFileRange(let fhIn, let offIn, _, let fhOut, let offOut, let length, let flags, let wide):
            try copyFileRange(fhIn, offIn, fhOut, offOut, length, flags, wide: wide, c, reply)
        case .opendir: try opendir(ino, reply)
        case .readdir(let fh, let offset, let size, let plus): try readdir(fh, offset, size, plus, reply)
        case .releasedir(let fh): _ = handles.remove(fh)
        case .fsyncdir(let fh, _): try fsyncdir(fh)
        default: throw Self.notImplemented
        }
    }

    /// INIT: the negotiation (Init.swift), remembered for the mount's life.
    func initialize(major: UInt32, minor: UInt32, readahead: UInt32, offered: InitFlags, _ reply: ReplyBuffer) throws(Errno) {
        let (out, n) = try Negotiation.reply(major: major, minor: minor, maxReadahead: readahead, offered: offered, mode: options.cache)
        settled.withLock { $0 = n }
        initialized.store(true, ordering: .releasing)
        reply.append(out)
    }

    /// Runs `body` as the request's sender. The kernel sends uid and gid but not the
    /// supplementary groups; a refusal the groups could lift (EACCES, EPERM) is tried again
    /// with the groups /proc says the sender has, as libfuse's fuse_req_getgroups reads them.
    /// A refused plan changed nothing, so running it twice is safe. `groupsFirst` reads the
    /// groups before the first try, for a request the groups decide without a refusal.
    func withCaller(_ h: RequestHeader, groupsFirst: Bool = false, _ body: (Caller) throws(Errno) -> Void) throws(Errno) {
        if groupsFirst && h.uid != 0 && h.pid != 0 {
            return try body(Caller(uid: h.uid, gid: h.gid, groups: supplementaryGroups(pid: h.pid)))
        }
        let caller = Caller(uid: h.uid, gid: h.gid)
        do throws(Errno) {
            try body(caller)
        } catch {
            guard error == .permissionDenied || error == .notPermitted, !caller.privileged, h.pid != 0 else { throw error }
            let groups = supplementaryGroups(pid: h.pid)
            guard !groups.isEmpty else { throw error }
            try body(Caller(uid: h.uid, gid: h.gid, groups: groups))
        }
    }

    /// Whether the volume keeps or drops set-group-id in this request by the caller's groups
    /// without refusing anything, so that the groups must be read before the first try:
    /// - a chmod to a mode with S_ISGID (kept only for a member of the file's group), a
    ///   create, mknod or mkdir with S_ISGID in its mode (kept in a set-group-id directory
    ///   only for a member of its group): the kernel has already applied both rules with
    ///   every group of the sender (default_permissions: its setattr_prepare, and the VFS's
    ///   set-group-id stripping at create);
    /// - an open or create, whose FileHandle serves the opener's writes, and a truncate
    ///   through SETATTR: a write or truncate clears S_ISGID of a file without group execute
    ///   only for a non-member of its group (Linux's setattr_should_drop_sgid).
    /// Judging these with the primary group alone drops bits the kernel keeps for a
    /// supplementary group. Each reads /proc/PID/status once.
    static func keepsSetGIDByGroup(_ op: Operation) -> Bool {
        let setGID: UInt32 = 0o2000
        switch op {
        case .setattr(let s): return (s.mode ?? 0) & setGID != 0 || s.size != nil
        case .mknod(_, let mode, _), .mkdir(_, let mode): return mode & setGID != 0
        case .open, .create: return true
        default: return false
        }
    }

    /// A value the kernel asked for with a buffer of `size` bytes (getxattr, listxattr):
    /// size 0 asks for the length alone, a value longer than the buffer is ERANGE.
    func sized(_ value: [UInt8], _ size: UInt32, _ reply: ReplyBuffer) throws(Errno) {
        if size == 0 {
            var out = fuse_getxattr_out()
            out.size = UInt32(value.count)
            reply.append(out)
            return
        }
        guard value.count <= Int(size) else { throw .outOfRange }
        reply.append(bytes: value)
    }
}

/// The supplementary groups of process `pid`, from the "Groups:" line of /proc/PID/status;
/// empty when the process is gone or the line cannot be read.
func supplementaryGroups(pid: UInt32) -> [UInt32] {
    let fd = Glibc.open("/proc/\(pid)/status", O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < 1 << 16 {
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 4096) }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    let text = String(decoding: bytes, as: UTF8.self)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Groups:") }) else { return [] }
    return line.dropFirst("Groups:".count).split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
}
