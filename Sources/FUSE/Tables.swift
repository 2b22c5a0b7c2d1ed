// Counterpart: the daemon's side of fs/fuse/inode.c's nlookup (fuse_iget counts a lookup for
// every entry the daemon returns; fuse_evict_inode and fuse_queue_forget hand the count back
// in FORGET) and of fs/fuse/file.c's struct fuse_file (the `fh` the daemon chose at open,
// sent back with every request on that open file).
//
// Node ids are the volume's inode numbers (the root is 1 in both, and the volume never
// reuses a number), so the node table holds no translation, only what the kernel holds: how
// many lookups it has not yet forgotten. A request naming a node the kernel cannot hold is a
// bug on one side or the other, and is answered ESTALE rather than served on a guess. The
// handle table maps each `fh` to what the open made: a directory, or a regular file's
// FileHandle(s) of the volume.

import IOMapBase
import Synchronization
import Volume

/// The lookups the kernel holds, per node id.
public final class NodeTable: Sendable {
    let counts = Mutex<[UInt64: UInt64]>([:])

    public init() {}

    /// One more lookup of `nodeid` (an entry reply: lookup, create, mkdir, mknod, symlink,
    /// link, a readdirplus entry).
    public func remember(_ nodeid: UInt64) {
        counts.withLock { $0[nodeid, default: 0] += 1 }
    }

    /// FORGET: the kernel drops `n` lookups. The root is never forgotten (the kernel holds
    /// it for the mount's life, and it may be named by lookups of ".." too).
    public func forget(_ nodeid: UInt64, _ n: UInt64) {
        counts.withLock { t in
            guard let c = t[nodeid] else { return }
            if c <= n { t[nodeid] = nil } else { t[nodeid] = c - n }
        }
    }

    /// Whether the kernel may name `nodeid`.
    public func knows(_ nodeid: UInt64) -> Bool {
        nodeid == ProtocolFlags.rootID || counts.withLock { $0[nodeid] != nil }
    }

    public func lookups(_ nodeid: UInt64) -> UInt64 { counts.withLock { $0[nodeid] ?? 0 } }

    public var count: Int { counts.withLock { $0.count } }
}

/// Who a write is by, as far as the set-id bits care: the FileHandle serving it is the one
/// opened for that caller.
struct CallerKey: Hashable {
    var uid: UInt32
    var gid: UInt32
    var privileged: Bool

    init(_ c: Caller) {
        uid = c.uid
        gid = c.gid
        privileged = c.privileged
    }
}

/// One open regular file: the FileHandle of the opener, and one per other writer that wrote
/// through the same open (a child after fork, a privileged writeback of mmap pages), so that
/// each write clears set-id bits as its own writer would.
public final class OpenFile: Sendable {
    public let inode: InodeNumber
    let opener: CallerKey
    public let primary: FileHandle
    let others = Mutex<[CallerKey: FileHandle]>([:])

    init(inode: InodeNumber, caller: Caller, handle: FileHandle) {
        self.inode = inode
        self.opener = CallerKey(caller)
        self.primary = handle
    }

    /// The FileHandle for writes by `caller`, opened on first use.
    func handle(for caller: Caller, volume: Volume) throws(Errno) -> FileHandle {
        let key = CallerKey(caller)
        if key == opener { return primary }
        return try others.withLock { (t: inout [CallerKey: FileHandle]) throws(Errno) -> FileHandle in
            if let h = t[key] { return h }
            let h = try volume.open(inode, caller: caller)
            t[key] = h
            return h
        }
    }

    /// Closes every FileHandle of this open (RELEASE, or the daemon ending).
    public func close() {
        try? primary.close()
        for h in others.withLock({ Array($0.values) }) { try? h.close() }
    }
}

/// What an `fh` names.
public enum OpenObject: Sendable {
    case file(OpenFile)
    case directory(InodeNumber)
}

/// The open files and directories, by the `fh` given to the kernel.
public final class HandleTable: Sendable {
    struct State {
        var next: UInt64 = 1
        var entries: [UInt64: OpenObject] = [:]
    }

    let state = Mutex(State())

    public init() {}

    public func insert(_ object: OpenObject) -> UInt64 {
        state.withLock { s in
            let fh = s.next
            s.next += 1
            s.entries[fh] = object
            return fh
        }
    }

    public func get(_ fh: UInt64) -> OpenObject? { state.withLock { $0.entries[fh] } }

    public func remove(_ fh: UInt64) -> OpenObject? { state.withLock { $0.entries.removeValue(forKey: fh) } }

    /// Takes every entry out (the daemon ending: opens the kernel never released).
    public func removeAll() -> [OpenObject] {
        state.withLock { s in
            defer { s.entries = [:] }
            return Array(s.entries.values)
        }
    }

    public var count: Int { state.withLock { $0.entries.count } }

    /// The open file `fh` names, or EBADF.
    func file(_ fh: UInt64) throws(Errno) -> OpenFile {
        guard case .file(let f)? = get(fh) else { throw .badFileDescriptor }
        return f
    }

    /// The open directory `fh` names, or EBADF.
    func directory(_ fh: UInt64) throws(Errno) -> InodeNumber {
        guard case .directory(let d)? = get(fh) else { throw .badFileDescriptor }
        return d
    }
}
