// Counterpart: rename of fs/namei.c (do_renameat2 with lock_rename's trap, vfs_rename) and
// of the file systems (shmem_rename2 and simple_rename_exchange in mm/shmem.c and fs/libfs.c,
// XFS's xfs_rename): the flags, the checks in their order, the link counts and times.
//
// One LogRecord.rename carries the move (or the swap), so replay cannot see half a rename;
// the link counts and times of the directories and inodes involved are setAttributes of the
// same transaction, and a replaced victim that lost its last name is freed or orphaned there.

import IOMapBase

/// renameat2's flags. RENAME_WHITEOUT (4), which only overlay file systems use, is not
/// supported: like any unknown bit, EINVAL.
public struct RenameFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// RENAME_NOREPLACE: EEXIST if the new name exists.
    public static let noReplace = RenameFlags(rawValue: 1)
    /// RENAME_EXCHANGE: swap the two names, which must both exist (ENOENT otherwise).
    public static let exchange = RenameFlags(rawValue: 2)
}

/// A rename whose names were looked up: the entries and directories involved.
struct RenameRequest {
    var oldDir: InodeNumber
    var newDir: InodeNumber
    /// The directories' records as the lookups read them, kept for the checks and the
    /// records after them: each read of a record out of the inode table is a copy of it (a
    /// retain and a release of every table and array it holds), and a rename read each
    /// directory three or four times.
    var od: InodeRecord
    var nd: InodeRecord
    var oldName: FileName
    var newName: FileName
    var moving: DirectoryEntry
    var target: DirectoryEntry?
    var exchange: Bool

    var isDirectory: Bool { moving.type == .directory }
    var targetIsDirectory: Bool { target?.type == .directory }
}

extension MetadataState {
    /// rename and renameat2: moves `oldName` of `oldDir` to `newName` of `newDir`, replacing
    /// what is there (a file by a non-directory, an empty directory by a directory:
    /// otherwise ENOTDIR, EISDIR, ENOTEMPTY), or swapping with it (`.exchange`). EINVAL for
    /// both flags and for moving a directory into itself; ENOTEMPTY (EINVAL when exchanging)
    /// when the new name is an ancestor of the old; EBUSY for ".", ".." or "/" (EEXIST with
    /// `.noReplace` on the new side). Two names of one inode: success, nothing changes.
    /// Returns what became of a replaced inode that lost its last name.
    public func planRename(
        from oldDir: InodeNumber, _ oldName: [UInt8], to newDir: InodeNumber, _ newName: [UInt8], flags: RenameFlags = [],
        caller: Caller, limits: NamespaceLimits = .standard, isOpen: (InodeNumber) -> Bool = { _ in false }
    ) throws(Errno) -> NamespacePlan<Unreferenced?> {
        let r = try renameRequest(oldDir, oldName, newDir, newName, flags, caller)
        if r.moving.inode == r.target?.inode { return NamespacePlan(records: [], value: nil) }
        let movingAttributes = try checkRenamePermissions(r, caller, limits)
        if !r.exchange, let t = r.target, t.type == .directory, !inodes[t.inode]!.directory!.isEmpty {
            throw .directoryNotEmpty
        }
        return renameRecords(r, movingAttributes, caller, isOpen)
    }

    /// do_renameat2 up to vfs_rename: the flags, both directories, the odd names, the two
    /// lookups, the flags against what they found, and lock_rename's trap.
    func renameRequest(
        _ oldDir: InodeNumber, _ oldName: [UInt8], _ newDir: InodeNumber, _ newName: [UInt8], _ flags: RenameFlags, _ caller: Caller
    ) throws(Errno) -> RenameRequest {
        try Self.checkRenameFlags(flags)
        let od = try searchableDirectory(oldDir, caller, for: oldName)
        // Within one directory its first check stands for the second, unless the old name
        // was "/", which needed no search permission where the new name does.
        let nd = oldDir == newDir && !LastComponent.isRoot(oldName) ? od : try searchableDirectory(newDir, caller, for: newName)
        guard case .name(let oldBytes) = LastComponent(oldName) else { throw .resourceBusy }
        guard case .name(let newBytes) = LastComponent(newName) else {
            throw flags.contains(.noReplace) ? .fileExists : .resourceBusy
        }
        let on = try LastComponent.fileName(oldBytes)
        guard let moving = od.directory![on] else { throw .noSuchFileOrDirectory }
        let nn = try LastComponent.fileName(newBytes)
        let target = nd.directory![nn]
        if flags.contains(.noReplace) && target != nil { throw .fileExists }
        if flags.contains(.exchange) && target == nil { throw .noSuchFileOrDirectory }
        let exchange = flags.contains(.exchange)
        // A trailing slash on a name wants a directory there.
        if exchange && target!.type != .directory && LastComponent.trailingSlash(newName) { throw .notDirectory }
        if moving.type != .directory && (LastComponent.trailingSlash(oldName) || (!exchange && LastComponent.trailingSlash(newName))) {
            throw .notDirectory
        }
        if oldDir != newDir {
            // The child of one directory on the way to the other, when one is the other's
            // ancestor: moving it would cut the tree loose, replacing it would remove a
            // directory holding the source.
            if let trap = childOnPath(from: oldDir, to: newDir), trap == moving.inode { throw .invalidArgument }
            if let trap = childOnPath(from: newDir, to: oldDir), trap == target?.inode {
                throw exchange ? .invalidArgument : .directoryNotEmpty
            }
        }
        return RenameRequest(
            oldDir: oldDir, newDir: newDir, od: od, nd: nd, oldName: on, newName: nn, moving: moving, target: target, exchange: exchange)
    }

    /// renameat2's check of the flags, before any path walk: EINVAL for an unknown bit and
    /// for RENAME_NOREPLACE with RENAME_EXCHANGE.
    public static func checkRenameFlags(_ flags: RenameFlags) throws(Errno) {
        if flags.rawValue & ~RenameFlags([.noReplace, .exchange]).rawValue != 0 { throw .invalidArgument }
        if flags.contains([.noReplace, .exchange]) { throw .invalidArgument }
    }

    /// vfs_rename's checks: removing the old name, creating or removing (or, exchanging,
    /// replacing) the new one, write permission on a directory whose ".." changes, and the
    /// link limit of a directory gaining a subdirectory. Returns the moved inode's attributes,
    /// read once here for the checks and the records (each read copies its record).
    func checkRenamePermissions(_ r: RenameRequest, _ caller: Caller, _ limits: NamespaceLimits) throws(Errno) -> InodeAttributes {
        let od = r.od
        let nd = r.nd
        let moving = inodes[r.moving.inode]!.attributes
        try checkMayDelete(r.moving.inode, from: od, asDirectory: r.isDirectory, caller, attributes: moving)
        if let t = r.target {
            try checkMayDelete(t.inode, from: nd, asDirectory: r.exchange ? r.targetIsDirectory : r.isDirectory, caller)
        } else {
            try checkMayCreate(in: nd, caller)
        }
        guard r.oldDir != r.newDir else { return moving }
        if r.isDirectory && !moving.permits(.write, to: caller) { throw .permissionDenied }
        if r.exchange && r.targetIsDirectory && !inodes[r.target!.inode]!.attributes.permits(.write, to: caller) {
            throw .permissionDenied
        }
        if r.isDirectory && !r.targetIsDirectory && nd.attributes.nlink >= limits.maxLinks { throw .tooManyLinks }
        if r.exchange && !r.isDirectory && r.targetIsDirectory && od.attributes.nlink >= limits.maxLinks { throw .tooManyLinks }
        return moving
    }

    /// The transaction: the rename record; both directories' mtime and ctime; the ctime of
    /// the moved inode and of the one replaced or swapped; link counts where a directory
    /// changes parent or a victim goes.
    func renameRecords(
        _ r: RenameRequest, _ moving: InodeAttributes, _ caller: Caller, _ isOpen: (InodeNumber) -> Bool
    ) -> NamespacePlan<Unreferenced?> {
        var b = PlanBuilder(self)
        let now = caller.now
        b.append(
            .rename(
                fromDirectory: r.oldDir, from: r.oldName, toDirectory: r.newDir, to: r.newName, exchange: r.exchange,
                cookie: r.nd.directory!.nextCookie))
        b.touchEntries(r.oldDir, now, current: r.od.attributes)
        b.touchEntries(r.newDir, now, current: r.nd.attributes)
        b.touchChange(r.moving.inode, now, current: moving)
        let crosses = r.oldDir != r.newDir
        var gone: Unreferenced? = nil
        if r.exchange {
            b.touchChange(r.target!.inode, now)
            if crosses && r.isDirectory != r.targetIsDirectory {
                b.addLinks(r.isDirectory ? r.oldDir : r.newDir, -1)
                b.addLinks(r.isDirectory ? r.newDir : r.oldDir, 1)
            }
            return b.plan(gone)
        }
        if r.isDirectory && crosses {
            b.addLinks(r.oldDir, -1)
            b.addLinks(r.newDir, 1)
        }
        if let t = r.target {
            b.touchChange(t.inode, now)
            if t.type == .directory {
                b.update(t.inode) { $0.nlink = 0 }
                b.addLinks(r.newDir, -1)
            } else {
                b.addLinks(t.inode, -1)
            }
            if b.attributes(of: t.inode).nlink == 0 { gone = b.release(t.inode, isOpen: isOpen) }
        }
        return b.plan(gone)
    }

    /// The child of `ancestor` on the way up from `start` to it (`start` itself when it is a
    /// child of `ancestor`), or nil when `ancestor` is not above `start`.
    func childOnPath(from ancestor: InodeNumber, to start: InodeNumber) -> InodeNumber? {
        var child = start
        for _ in 0...inodes.count {
            guard let parent = inodes[child]?.directory?.parent, parent != child else { return nil }
            if parent == ancestor { return child }
            child = parent
        }
        return nil
    }
}
