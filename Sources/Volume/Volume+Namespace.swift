// Counterpart: the inode operations XFS gives directories (fs/xfs/xfs_iops.c:
// xfs_vn_lookup, xfs_vn_create, xfs_vn_mknod, xfs_vn_mkdir, xfs_vn_symlink, xfs_vn_link,
// xfs_vn_unlink, xfs_vn_rename, xfs_vn_setattr; fs/xfs/xfs_inode.c: xfs_create,
// xfs_remove, xfs_rename, xfs_inactive) and the VFS's *at() system calls above them.
//
// Each call runs a plan of Sources/Volume/Namespace (which checks the request and says what
// records it takes) as one transaction under the namespace lock, then does what the plan
// leaves to the volume: freeing the blocks of a file whose last name went, or leaving it on
// the orphan list while it is open. Timestamps come from the volume's clock, whatever the
// caller's says.

import ExtentFS
import IOMap
import IOMapBase

/// What stat(2) reports of an inode: its attributes with the live size of an open file,
/// and the blocks it holds, delalloc included (as XFS's st_blocks counts them).
public struct VolumeStat: Hashable, Sendable {
    public var inode: InodeNumber
    public var attributes: InodeAttributes
    /// Bytes: the live size for a regular file in memory, else the recorded one.
    public var size: Int
    /// 512-byte units.
    public var blocks512: Int
    public var mode: UInt32 { attributes.mode }
}

extension Volume {
    /// Runs `plan` as one transaction with the namespace lock held exclusive.
    func change<V>(_ plan: (borrowing MetadataState) throws(Errno) -> NamespacePlan<V>) throws(Errno) -> V {
        try namespace.withExclusive { () throws(Errno) -> V in
            try journal.transact { (s: borrowing MetadataState) throws(Errno) -> ([LogRecord], V) in
                let p = try plan(s)
                return (p.records, p.value)
            }
        }
    }

    /// The caller with the volume's clock.
    func stamped(_ caller: Caller) -> Caller {
        var c = caller
        c.now = now
        return c
    }

    /// What an unlink, or a rename over a name, must know of the inode the name holds: is a
    /// handle holding it open, and has it an in-memory file at all. A plan must orphan a
    /// cached inode rather than free it in its own transaction: the file may hold what the
    /// metadata does not show yet (delalloc, dirty pages), which settle's freeUnreferenced
    /// discards first; freed at once, the file stayed in the table and its next writeback
    /// logged records for an inode that no longer existed (the crash tests found it: write,
    /// close, unlink, sync). Taken before the plan runs, under the namespace lock (so the
    /// name keeps its inode): the plan runs under the metadata lock, inside which the inode
    /// table's lock may not be taken. Only that one inode is looked at; sets of the whole
    /// table, built on every call, made a loop of unlinks quadratic in the files cached.
    func victim(in dir: InodeNumber, _ name: [UInt8]) -> (ino: InodeNumber, open: Bool, cached: Bool)? {
        guard let ino = try? journal.read({ (s: borrowing MetadataState) throws(Errno) in try s.lookup(in: dir, name, caller: .root()) })
        else { return nil }
        return inodes.withLock { t in (ino, (t[ino]?.opens ?? 0) > 0, t[ino] != nil) }
    }

    // MARK: Queries

    public func lookup(_ dir: InodeNumber, _ name: [UInt8], caller: Caller = .root()) throws(Errno) -> InodeNumber {
        try journal.read { (s: borrowing MetadataState) throws(Errno) in try s.lookup(in: dir, name, caller: caller) }
    }

    public func lookup(_ dir: InodeNumber, _ name: String, caller: Caller = .root()) throws(Errno) -> InodeNumber {
        try lookup(dir, Array(name.utf8), caller: caller)
    }

    /// The inode `path` names (absolute, or relative to `start`).
    public func resolve(_ path: String, from start: InodeNumber = .root, followFinalSymlink: Bool = true, caller: Caller = .root())
        throws(Errno) -> InodeNumber
    {
        try journal.read { (s: borrowing MetadataState) throws(Errno) in
            try s.resolve(path, from: start, followFinalSymlink: followFinalSymlink, caller: caller)
        }
    }

    public func stat(_ ino: InodeNumber) throws(Errno) -> VolumeStat {
        let view = try journal.read { (s: borrowing MetadataState) throws(Errno) in try s.stat(ino) }
        var st = VolumeStat(inode: ino, attributes: view.attributes, size: Int(view.attributes.size), blocks512: 0)
        if let f = inodes.withLock({ $0[ino]?.file }) {
            st.size = f.size
            let records = f.extentRecords
            st.blocks512 = records.reduce(0) { $0 + $1.blockCount } * blockSize / 512
        } else {
            st.blocks512 = Int(view.blocks) * blockSize / 512
        }
        return st
    }

    public func readlink(_ ino: InodeNumber) throws(Errno) -> [UInt8] {
        try journal.read { (s: borrowing MetadataState) throws(Errno) in try s.readlink(ino) }
    }

    // MARK: Creating names

    /// open(O_CREAT[|O_EXCL]) of a regular file.
    public func create(in dir: InodeNumber, _ name: String, permissions: UInt16, exclusive: Bool = true, caller: Caller = .root())
        throws(Errno) -> CreateResult
    {
        try create(in: dir, name: Array(name.utf8), permissions: permissions, exclusive: exclusive, caller: caller)
    }

    public func mknod(in dir: InodeNumber, _ name: String, type: FileType, permissions: UInt16, rdev: UInt64 = 0, caller: Caller = .root())
        throws(Errno) -> InodeNumber
    {
        try mknod(in: dir, name: Array(name.utf8), type: type, permissions: permissions, rdev: rdev, caller: caller)
    }

    public func mkdir(in dir: InodeNumber, _ name: String, permissions: UInt16, caller: Caller = .root()) throws(Errno) -> InodeNumber {
        try mkdir(in: dir, name: Array(name.utf8), permissions: permissions, caller: caller)
    }

    public func symlink(in dir: InodeNumber, _ name: String, target: String, caller: Caller = .root()) throws(Errno) -> InodeNumber {
        try symlink(in: dir, name: Array(name.utf8), target: Array(target.utf8), caller: caller)
    }

    public func link(_ source: InodeNumber, in dir: InodeNumber, _ name: String, caller: Caller = .root()) throws(Errno) {
        try link(source, in: dir, name: Array(name.utf8), caller: caller)
    }

    // MARK: Removing names

    /// unlink(2). A regular file that loses its last name while open stays, orphaned,
    /// until its last close; one that is not open has its blocks freed now.
    public func unlink(in dir: InodeNumber, _ name: String, caller: Caller = .root()) throws(Errno) {
        try unlink(in: dir, name: Array(name.utf8), caller: caller)
    }

    public func rmdir(in dir: InodeNumber, _ name: String, caller: Caller = .root()) throws(Errno) {
        try rmdir(in: dir, name: Array(name.utf8), caller: caller)
    }

    /// rename(2) / renameat2 with RENAME_NOREPLACE or RENAME_EXCHANGE.
    public func rename(
        from oldDir: InodeNumber, _ oldName: String, to newDir: InodeNumber, _ newName: String, flags: RenameFlags = [],
        caller: Caller = .root()
    ) throws(Errno) {
        try rename(from: oldDir, name: Array(oldName.utf8), to: newDir, name: Array(newName.utf8), flags: flags, caller: caller)
    }

    /// `.renameTwoRecords`: a plain rename's records as two transactions, the old name
    /// removed in the first, and in the second the new name added (replacing what it named)
    /// with the rest of the plan; nil for what it does not split (an exchange, a no-op).
    static func renameInTwo(_ records: [LogRecord], _ s: borrowing MetadataState) -> (first: [LogRecord], second: [LogRecord])? {
        guard case .rename(let fromDir, let from, let toDir, let to, false, let cookie)? = records.first,
            let moving = s[fromDir]?.directory?[from]
        else { return nil }
        var second: [LogRecord] = []
        if s[toDir]?.directory?[to] != nil { second.append(.removeEntry(directory: toDir, name: to)) }
        second.append(.addEntry(directory: toDir, name: to, target: moving.inode, type: moving.type, cookie: cookie))
        return ([.removeEntry(directory: fromDir, name: from)], second + records.dropFirst())
    }

    /// After a transaction that removed an inode's last name: an orphan nobody holds open
    /// is freed now (its blocks, then the inode).
    /// Frees what a plan left unreferenced, unless `victim` (the inode the name held) is open.
    func settle(_ gone: Unreferenced?, victim: (ino: InodeNumber, open: Bool, cached: Bool)?) throws(Errno) {
        guard case .orphaned(let ino) = gone, !(victim?.ino == ino && victim?.open == true) else { return }
        try freeUnreferenced(ino)
    }

    // MARK: Durability

    /// fsync(2) of a directory (xfs_dir_fsync): forces the log up to the last checkpoint
    /// with a change to directory `ino` (an entry created, removed or renamed in it, its
    /// attributes, its xattrs), and with it everything logged before that change. A
    /// directory has no data to write back, so this is the log force alone; it is what
    /// makes a create, unlink or rename durable without fsync of the file or sync, as
    /// applications fsync a directory after renaming into it. ENOENT when there is no such
    /// inode, ENOTDIR when it is not a directory (a file's fsync is FileHandle's).
    public func fsyncDirectory(_ ino: InodeNumber) throws(Errno) {
        guard let type = journal.read({ $0[ino]?.attributes.type }) else { throw .noSuchFileOrDirectory }
        guard type == .directory else { throw .notDirectory }
        try journal.commit(ino, wroteData: false, dataOnly: false)
    }

    // MARK: Attributes

    /// chmod, chown, utimes (setattr without a size: truncate is a file's).
    @discardableResult
    public func setAttributes(_ ino: InodeNumber, _ change: AttributeChange, caller: Caller = .root()) throws(Errno) -> InodeAttributes {
        let c = stamped(caller)
        return try self.change { (s: borrowing MetadataState) throws(Errno) in try s.planSetAttributes(ino, change, caller: c) }
    }

    // MARK: Directories and extended attributes

    /// readdir from `cookie` (0: the start): ".", "..", then the entries in cookie order.
    public func readdir(_ dir: InodeNumber, after cookie: UInt64 = 0, limit: Int = Int.max) throws(Errno) -> [DirectoryListing] {
        try journal.read { (s: borrowing MetadataState) throws(Errno) in try s.readdir(dir, after: cookie, limit: limit) }
    }

    public func setxattr(_ ino: InodeNumber, _ name: String, _ value: [UInt8], flags: XattrFlags = [], caller: Caller = .root())
        throws(Errno)
    {
        try setxattr(ino, name: Array(name.utf8), value, flags: flags, caller: caller)
    }

    public func getxattr(_ ino: InodeNumber, _ name: String, caller: Caller = .root()) throws(Errno) -> [UInt8] {
        try getxattr(ino, name: Array(name.utf8), caller: caller)
    }

    public func listxattr(_ ino: InodeNumber, caller: Caller = .root()) throws(Errno) -> [String] {
        try listxattrNames(ino, caller: caller).map { String(decoding: $0, as: UTF8.self) }
    }

    public func removexattr(_ ino: InodeNumber, _ name: String, caller: Caller = .root()) throws(Errno) {
        try removexattr(ino, name: Array(name.utf8), caller: caller)
    }
}
