// Counterpart: fs/fuse/dir.c's inode operations as the daemon answers them: fuse_lookup_name,
// fuse_do_getattr, fuse_do_setattr, fuse_mknod/fuse_mkdir/fuse_symlink (create_new_entry),
// fuse_link, fuse_rename2.
//
// Each makes the volume's call of the same name for the request's sender. Every reply that
// hands the kernel an entry counts a lookup of its node (NodeTable) before it is sent: a
// count one too high only keeps a node id valid longer, one too low would refuse a node the
// kernel still holds.

import CFUSE
import IOMapBase
import Synchronization
import Volume

extension FUSEServer {
    /// An entry reply for `ino`, counting the lookup it gives the kernel.
    func entry(_ ino: InodeNumber, _ reply: ReplyBuffer) throws(Errno) {
        let st = try volume.stat(ino)
        nodes.remember(ino.rawValue)
        reply.append(Encode.entry(st, blockSize: volume.blockSize, timeouts: options.timeouts))
    }

    func lookup(_ dir: InodeNumber, _ name: [UInt8], _ c: Caller, _ reply: ReplyBuffer) throws(Errno) {
        try entry(try volume.lookup(dir, name, caller: c), reply)
    }

    func getattr(_ ino: InodeNumber, _ reply: ReplyBuffer) throws(Errno) {
        reply.append(Encode.attrOut(try volume.stat(ino), blockSize: volume.blockSize, timeouts: options.timeouts))
    }

    /// SETATTR: a size first (truncate, through a handle opened for the sender, so that an
    /// unprivileged truncate clears set-id bits as Linux's does), then mode, owner and
    /// times in one change (the volume checks them in setattr_prepare's order).
    func setattr(_ ino: InodeNumber, _ s: SetattrRequest, _ c: Caller, _ reply: ReplyBuffer) throws(Errno) {
        if let size = s.size {
            guard let n = Int(exactly: size) else { throw .fileTooLarge }
            let handle = try volume.open(ino, caller: c)
            defer { try? handle.close() }
            try handle.truncate(to: n)
        }
        var change = AttributeChange()
        if let mode = s.mode { change.permissions = UInt16(mode & 0o7777) }
        if s.uid != nil || s.gid != nil { change.ownership = Ownership(uid: s.uid, gid: s.gid) }
        change.atime = s.atime.map(Self.timeChange)
        change.mtime = s.mtime.map(Self.timeChange)
        if change != AttributeChange() { try volume.setAttributes(ino, change, caller: c) }
        try getattr(ino, reply)
    }

    static func timeChange(_ t: SetattrRequest.TimeArgument) -> TimeChange {
        switch t {
        case .now: return .now
        case .set(let s, let ns): return .set(Timestamp(seconds: s, nanoseconds: ns))
        }
    }

    /// MKNOD: the type is in the mode's S_IFMT bits; the volume refuses a directory or a
    /// symlink made so, as mknod(2) does.
    func mknod(_ dir: InodeNumber, _ name: [UInt8], _ mode: UInt32, _ rdev: UInt32, _ c: Caller, _ reply: ReplyBuffer) throws(Errno) {
        let type: FileType
        if mode & 0o170000 == 0 {
            type = .regular
        } else {
            guard let t = FileType(mode: mode) else { throw .invalidArgument }
            type = t
        }
        let ino = try volume.mknod(in: dir, name: name, type: type, permissions: UInt16(mode & 0o7777), rdev: UInt64(rdev), caller: c)
        try entry(ino, reply)
    }

    /// RENAME and RENAME2: RENAME_NOREPLACE and RENAME_EXCHANGE; RENAME_WHITEOUT (overlayfs'
    /// whiteouts) is not supported.
    func rename(_ dir: InodeNumber, _ old: [UInt8], _ newDir: UInt64, _ new: [UInt8], _ flags: UInt32, _ c: Caller) throws(Errno) {
        guard flags & ~(LinuxABI.renameNoReplace | LinuxABI.renameExchange) == 0 else { throw .invalidArgument }
        guard nodes.knows(newDir) else { throw Self.stale }
        try volume.rename(
            from: dir, name: old, to: InodeNumber(newDir), name: new, flags: RenameFlags(rawValue: flags), caller: c)
    }

    /// LINK: the kernel gets one more lookup of the linked inode.
    func link(_ source: InodeNumber, _ dir: InodeNumber, _ name: [UInt8], _ c: Caller, _ reply: ReplyBuffer) throws(Errno) {
        guard nodes.knows(source.rawValue) else { throw Self.stale }
        try volume.link(source, in: dir, name: name, caller: c)
        try entry(source, reply)
    }
}
