// Counterpart: readdir of fs/readdir.c (iterate_dir, filldir64) over a directory that keeps
// stable offsets, as xfs_readdir's dataptr cookies (fs/xfs/xfs_dir2_readdir.c) and
// dcache_readdir's emitting "." and ".." first (fs/libfs.c).
//
// A caller reads in pieces and resumes from the cookie of the last entry it got; cookies
// are never reused (Directory), so entries that stay are neither repeated nor skipped
// whatever is added or removed between the pieces.

import IOMapBase

/// One entry of a readdir: what getdents64 reports (d_name, d_ino, d_type, d_off).
public struct DirectoryListing: Hashable, Sendable {
    public var name: [UInt8]
    public var inode: InodeNumber
    public var type: FileType
    /// Where to resume to read what follows this entry.
    public var cookie: UInt64

    public init(name: [UInt8], inode: InodeNumber, type: FileType, cookie: UInt64) {
        self.name = name
        self.inode = inode
        self.type = type
        self.cookie = cookie
    }
}

extension MetadataState {
    /// The entries of `dir` after `cookie` (0 for the start), at most `limit`: "." (cookie 1)
    /// and ".." (cookie 2) first, then the stored entries in cookie order. ENOENT, ENOTDIR.
    /// Permission is the open's (read on the directory), not checked here.
    public func readdir(_ dir: InodeNumber, after cookie: UInt64 = 0, limit: Int = Int.max) throws(Errno) -> [DirectoryListing] {
        guard let rec = inodes[dir] else { throw .noSuchFileOrDirectory }
        guard let d = rec.directory else { throw .notDirectory }
        var out: [DirectoryListing] = []
        if cookie < 1 && out.count < limit { out.append(DirectoryListing(name: [0x2E], inode: dir, type: .directory, cookie: 1)) }
        if cookie < 2 && out.count < limit {
            out.append(DirectoryListing(name: [0x2E, 0x2E], inode: d.parent, type: .directory, cookie: 2))
        }
        for (name, entry) in d.entries(after: max(cookie, 2), limit: limit - out.count) {
            out.append(DirectoryListing(name: name.bytes, inode: entry.inode, type: entry.type, cookie: entry.cookie))
        }
        return out
    }
}
