// Counterpart: fs/fuse/readdir.c (fuse_readdir_uncached, parse_dirfile, parse_dirplusfile,
// fuse_direntplus_link) and fs/fuse/dir.c's fuse_dir_open, fuse_dir_release and
// fuse_dir_fsync, as the daemon answers them.
//
// A directory handle holds nothing but the inode: the volume's entries carry stable cookies
// (the offset the kernel sends back to resume after an entry), so each READDIR reads from
// the volume afresh, and an entry added or removed between two calls is seen or not as
// POSIX allows, never repeated or skipped around it.

import CFUSE
import IOMapBase
import Synchronization
import Volume

extension FUSEServer {
    func opendir(_ ino: InodeNumber, _ reply: ReplyBuffer) throws(Errno) {
        guard try volume.stat(ino).attributes.type == .directory else { throw .notDirectory }
        reply.append(Encode.open(fh: handles.insert(.directory(ino)), flags: 0))
    }

    /// READDIR and READDIRPLUS: as many whole entries after `offset` as fit in `size`
    /// bytes. A READDIRPLUS entry carries the inode's attributes and counts a lookup, but
    /// "." and ".." go with node id 0 (attributes not given): the kernel links neither and
    /// would never forget them.
    func readdir(_ fh: UInt64, _ offset: UInt64, _ size: UInt32, _ plus: Bool, _ reply: ReplyBuffer) throws(Errno) {
        let dir = try handles.directory(fh)
        let room = min(Int(size), reply.space)
        let perEntry = plus ? Encode.direntplusSize(nameLength: 1) : Encode.direntSize(nameLength: 1)
        let entries = try volume.readdir(dir, after: offset, limit: room / perEntry + 1)
        var used = 0
        for e in entries {
            let need = plus ? Encode.direntplusSize(nameLength: e.name.count) : Encode.direntSize(nameLength: e.name.count)
            guard used + need <= room else { break }
            if plus { appendEntryForReaddirplus(e, reply) }
            Encode.appendDirent(reply, inode: e.inode.rawValue, cookie: e.cookie, type: UInt32(e.type.rawValue), name: e.name)
            used += need
        }
    }

    /// The fuse_entry_out before a READDIRPLUS entry: its inode's, or zeroes (no
    /// attributes) for "." and ".." and for an entry whose inode went in between.
    func appendEntryForReaddirplus(_ e: DirectoryListing, _ reply: ReplyBuffer) {
        let isDot = e.name == [0x2E] || e.name == [0x2E, 0x2E]
        if !isDot, let st = try? volume.stat(e.inode) {
            nodes.remember(e.inode.rawValue)
            reply.append(Encode.entry(st, blockSize: volume.blockSize, timeouts: options.timeouts))
        } else {
            reply.append(fuse_entry_out())
        }
    }

    /// FSYNCDIR: the directory's changes made durable, never ENOSYS.
    func fsyncdir(_ fh: UInt64) throws(Errno) {
        let dir = try handles.directory(fh)
        stats.engineFsyncs.add(1, ordering: .relaxed)
        try syncDirectory(dir)
    }

    /// Makes a directory's entries durable: the log forced up to the directory's last change
    /// (Volume.fsyncDirectory, xfs_dir_fsync's force).
    func syncDirectory(_ dir: InodeNumber) throws(Errno) {
        try volume.fsyncDirectory(dir)
    }
}
