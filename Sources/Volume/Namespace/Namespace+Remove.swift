// Counterpart: the removing directory operations of fs/namei.c (do_unlinkat and vfs_unlink,
// do_rmdir and vfs_rmdir, may_delete with check_sticky), XFS's xfs_remove and xfs_droplink,
// and the end of an unlinked inode (xfs_inactive, xfs_iunlink_remove, xfs_ifree).
//
// The last name of an inode going is where data can be lost or leaked, so the plan says
// what became of the inode (Unreferenced): freed at once when it holds nothing and nobody
// has it open, otherwise orphaned, for the volume to finish with planFreeInode.

import IOMapBase

extension MetadataState {
    /// unlink: removes a name of a non-directory (EISDIR for a directory, and for ".", ".."
    /// and "/"). Returns what became of the inode if that was its last name; `isOpen` says
    /// which inodes the volume holds open (orphaned instead of freed).
    public func planUnlink(
        in dir: InodeNumber, _ name: [UInt8], caller: Caller, isOpen: (InodeNumber) -> Bool = { _ in false }
    ) throws(Errno) -> NamespacePlan<Unreferenced?> {
        let d = try searchableDirectory(dir, caller, for: name)
        guard case .name(let bytes) = LastComponent(name) else { throw .isDirectory }
        let n = try LastComponent.fileName(bytes)
        guard let entry = d.directory![n] else { throw .noSuchFileOrDirectory }
        if LastComponent.trailingSlash(name) { throw entry.type == .directory ? .isDirectory : .notDirectory }
        try checkMayDelete(entry.inode, from: d, asDirectory: false, caller)
        var b = PlanBuilder(self)
        b.append(.removeEntry(directory: dir, name: n))
        b.touchEntries(dir, caller.now)
        b.addLinks(entry.inode, -1)
        b.touchChange(entry.inode, caller.now)
        let gone = b.attributes(of: entry.inode).nlink == 0 ? b.release(entry.inode, isOpen: isOpen) : nil
        return b.plan(gone)
    }

    /// rmdir: removes an empty directory. ENOTDIR for a non-directory, ENOTEMPTY when it has
    /// entries, and as Linux: "." is EINVAL, ".." ENOTEMPTY, "/" EBUSY.
    public func planRmdir(
        in dir: InodeNumber, _ name: [UInt8], caller: Caller, isOpen: (InodeNumber) -> Bool = { _ in false }
    ) throws(Errno) -> NamespacePlan<Unreferenced> {
        let d = try searchableDirectory(dir, caller, for: name)
        let n: FileName
        switch LastComponent(name) {
        case .root: throw .resourceBusy
        case .dot: throw .invalidArgument
        case .dotDot: throw .directoryNotEmpty
        case .name(let bytes): n = try LastComponent.fileName(bytes)
        }
        guard let entry = d.directory![n] else { throw .noSuchFileOrDirectory }
        try checkMayDelete(entry.inode, from: d, asDirectory: true, caller)
        if !(inodes[entry.inode]!.directory!.isEmpty) { throw .directoryNotEmpty }
        var b = PlanBuilder(self)
        b.append(.removeEntry(directory: dir, name: n))
        b.touchEntries(dir, caller.now)
        b.addLinks(dir, -1)
        b.update(entry.inode) {
            $0.nlink = 0
            $0.ctime = caller.now
        }
        let gone = b.release(entry.inode, isOpen: isOpen)
        return b.plan(gone)
    }

    /// The end of an orphan (or of any inode with no name): removeOrphan if it is on the
    /// list, and freeInode. Its blocks must be unmapped already (the volume logs
    /// unmapAndIntendFree before). ENOENT if there is no such inode; EBUSY if it still has a
    /// name or still maps blocks.
    public func planFreeInode(_ inode: InodeNumber) throws(Errno) -> NamespacePlan<Void> {
        guard let rec = inodes[inode] else { throw .noSuchFileOrDirectory }
        if rec.attributes.nlink != 0 || !rec.extents.isEmpty { throw .resourceBusy }
        let records: [LogRecord] = orphans.contains(inode) ? [.removeOrphan(inode), .freeInode(inode)] : [.freeInode(inode)]
        return NamespacePlan(records: records, value: ())
    }

    /// may_delete, for `victim` named in directory `d`: EACCES without write and search
    /// permission on the directory; EPERM in a sticky directory unless the caller owns the
    /// victim or the directory, or is privileged; ENOTDIR or EISDIR when the victim's type is
    /// not the one asked for; EBUSY for the root; ENOENT in a removed directory.
    /// `attributes`, when the caller read them already, are the victim's.
    func checkMayDelete(
        _ victim: InodeNumber, from d: InodeRecord, asDirectory: Bool, _ caller: Caller, attributes: InodeAttributes? = nil
    ) throws(Errno) {
        let v = attributes ?? inodes[victim]!.attributes
        if !d.attributes.permits([.write, .execute], to: caller) { throw .permissionDenied }
        if Self.stickyForbids(directory: d.attributes, victim: v, caller) { throw .notPermitted }
        if asDirectory {
            if v.type != .directory { throw .notDirectory }
            if victim == .root { throw .resourceBusy }
        } else if v.type == .directory {
            throw .isDirectory
        }
        if d.attributes.nlink == 0 { throw .noSuchFileOrDirectory }
    }

    /// check_sticky: in a sticky directory only the owner of an entry, the owner of the
    /// directory or a privileged caller may remove or replace the entry.
    static func stickyForbids(directory: InodeAttributes, victim: InodeAttributes, _ caller: Caller) -> Bool {
        guard directory.permissions & 0o1000 != 0 else { return false }
        return victim.uid != caller.uid && directory.uid != caller.uid && !caller.privileged
    }
}
