// Counterpart: the creating directory operations of fs/namei.c (filename_create, may_create,
// vfs_create and open's O_CREAT, vfs_mknod with may_mknod, vfs_mkdir, vfs_symlink, vfs_link
// with may_linkat and safe_hardlink_source), the new inode's owner and mode of fs/inode.c
// (inode_init_owner, mode_strip_sgid), and XFS's xfs_create, xfs_symlink and xfs_link.
//
// The checks run in the order Linux makes them, so that a request wrong in two ways gets the
// errno a process would: the parent's search permission, the odd last components, the name's
// length, an existing entry, then the parent's write permission and the type's own rules.

import IOMapBase

/// What open(O_CREAT) found or made.
public struct CreateResult: Hashable, Sendable {
    public var inode: InodeNumber
    /// False when a non-exclusive create found the name already there (the existing inode,
    /// which the volume opens with its own access checks; a symlink is not followed here).
    public var created: Bool

    public init(inode: InodeNumber, created: Bool) {
        self.inode = inode
        self.created = created
    }
}

extension MetadataState {
    /// open(O_CREAT) of a regular file; with `exclusive` (O_EXCL) an existing name is EEXIST,
    /// without it the existing inode is returned (EISDIR for a directory, EACCES as
    /// checkCreateInSticky says; a symlink is returned unchecked, for the volume to follow,
    /// or with O_NOFOLLOW to check with checkCreateInSticky and refuse with ELOOP).
    /// `permissions` has the umask already applied. EEXIST or EISDIR for ".", ".." and "/";
    /// EISDIR for a name given with a trailing slash.
    public func planCreate(
        in dir: InodeNumber, _ name: [UInt8], permissions: UInt16, exclusive: Bool, caller: Caller,
        limits: NamespaceLimits = .standard
    ) throws(Errno) -> NamespacePlan<CreateResult> {
        let d = try searchableDirectory(dir, caller, for: name)
        guard case .name(let bytes) = LastComponent(name) else { throw exclusive ? .fileExists : .isDirectory }
        if LastComponent.trailingSlash(name) { throw .isDirectory }
        let n = try LastComponent.fileName(bytes)
        if let existing = d.directory![n] {
            if exclusive { throw .fileExists }
            if existing.type == .directory { throw .isDirectory }
            if existing.type != .symlink { try checkCreateInSticky(existing.inode, in: dir, caller: caller, limits: limits) }
            return NamespacePlan(records: [], value: CreateResult(inode: existing.inode, created: false))
        }
        try checkMayCreate(in: d, caller)
        let plan = planNewInode(.regular, permissions: permissions, in: dir, n, caller: caller)
        return NamespacePlan(records: plan.records, value: CreateResult(inode: plan.value, created: true))
    }

    /// mknod: a regular file, fifo, socket, or character or block device (with `rdev`; only a
    /// privileged caller may make devices, EPERM). A directory type is EPERM and a symlink
    /// EINVAL, before anything else; an existing name, ".", ".." or "/" is EEXIST.
    public func planMknod(
        in dir: InodeNumber, _ name: [UInt8], type: FileType, permissions: UInt16, rdev: UInt64 = 0, caller: Caller
    ) throws(Errno) -> NamespacePlan<InodeNumber> {
        try Self.checkMknodType(type)
        let (d, n) = try nameToCreate(in: dir, name, caller)
        try checkMayCreate(in: d, caller)
        let isDevice = type == .characterDevice || type == .blockDevice
        if isDevice && !caller.privileged { throw .notPermitted }
        return planNewInode(type, permissions: permissions, rdev: isDevice ? rdev : 0, in: dir, n, caller: caller)
    }

    /// mkdir: the new directory has 2 links ("." and its entry) and the parent one more (the
    /// new ".."); EMLINK when the parent already has `limits.maxLinks`. Set-id bits of
    /// `permissions` are dropped, as mkdir(2) does; set-group-id comes from the parent.
    public func planMkdir(
        in dir: InodeNumber, _ name: [UInt8], permissions: UInt16, caller: Caller, limits: NamespaceLimits = .standard
    ) throws(Errno) -> NamespacePlan<InodeNumber> {
        let (d, n) = try nameToCreate(in: dir, name, caller, directory: true)
        try checkMayCreate(in: d, caller)
        if d.attributes.nlink >= limits.maxLinks { throw .tooManyLinks }
        return planNewInode(.directory, permissions: permissions & 0o1777, in: dir, n, caller: caller)
    }

    /// symlink: the target is checked first, as the syscall copies it in before the lookup:
    /// empty is ENOENT, longer than 4095 bytes ENAMETOOLONG. Its size is the target's length.
    public func planSymlink(
        in dir: InodeNumber, _ name: [UInt8], target: [UInt8], caller: Caller
    ) throws(Errno) -> NamespacePlan<InodeNumber> {
        try Self.checkSymlinkTarget(target)
        let (d, n) = try nameToCreate(in: dir, name, caller)
        try checkMayCreate(in: d, caller)
        return planNewInode(.symlink, permissions: 0o777, target: target, in: dir, n, caller: caller)
    }

    /// link: a new name for `source`. EEXIST for a taken name (and ".", "..", "/"), EPERM for
    /// a directory, ENOENT for an inode with no name left (an open orphan), EMLINK at
    /// `limits.maxLinks`. A caller that does not own the source may link only a regular file
    /// it may read and write that is not set-user-id or executable set-group-id, else EPERM
    /// (fs.protected_hardlinks = 1, Linux's default).
    public func planLink(
        _ source: InodeNumber, in dir: InodeNumber, _ name: [UInt8], caller: Caller, limits: NamespaceLimits = .standard
    ) throws(Errno) -> NamespacePlan<Void> {
        guard let src = inodes[source]?.attributes else { throw .noSuchFileOrDirectory }
        let (d, n) = try nameToCreate(in: dir, name, caller)
        if limits.protectedHardlinks && !caller.ownsOrIsPrivileged(src) && !Self.isSafeHardlinkSource(src, caller) {
            throw .notPermitted
        }
        try checkMayCreate(in: d, caller)
        if src.type == .directory { throw .notPermitted }
        if src.nlink == 0 { throw .noSuchFileOrDirectory }
        if src.nlink >= limits.maxLinks { throw .tooManyLinks }
        var b = PlanBuilder(self)
        b.append(.addEntry(directory: dir, name: n, target: source, type: src.type, cookie: d.directory!.nextCookie))
        b.addLinks(source, 1)
        b.touchChange(source, caller.now)
        b.touchEntries(dir, caller.now)
        return b.plan(())
    }

    /// mknod's check of the type, which Linux makes before it walks the path (may_mknod):
    /// EPERM for a directory, EINVAL for a symlink. A caller that resolves a path before
    /// planning calls it first, to give a bad type and a bad path Linux's errno.
    public static func checkMknodType(_ type: FileType) throws(Errno) {
        if type == .directory { throw .notPermitted }
        if type == .symlink { throw .invalidArgument }
    }

    /// symlink's check of the target, made when the syscall copies it in, before the path
    /// walk: ENOENT if empty, ENAMETOOLONG past 4095 bytes, EINVAL for a NUL.
    public static func checkSymlinkTarget(_ target: [UInt8]) throws(Errno) {
        if target.isEmpty { throw .noSuchFileOrDirectory }
        if target.count > maxPathLength { throw .fileNameTooLong }
        if target.contains(0) { throw .invalidArgument }
    }

    /// may_create_in_sticky: EACCES for open(O_CREAT) of the existing `inode` of directory
    /// `dir` when the directory is sticky, the inode is owned by neither the directory's
    /// owner nor the caller (privileged or not), and the directory is world-writable (or,
    /// at level 2 of the policy, group-writable); regular files and fifos only under their
    /// policies (NamespaceLimits).
    public func checkCreateInSticky(_ inode: InodeNumber, in dir: InodeNumber, caller: Caller, limits: NamespaceLimits) throws(Errno) {
        guard let d = inodes[dir]?.attributes, let a = inodes[inode]?.attributes else { throw .noSuchFileOrDirectory }
        guard d.permissions & 0o1000 != 0 else { return }
        if a.type == .regular && limits.protectedRegular == 0 { return }
        if a.type == .fifo && limits.protectedFifos == 0 { return }
        if a.uid == d.uid || a.uid == caller.uid { return }
        if d.permissions & 0o002 != 0 { throw .permissionDenied }
        let level = a.type == .regular ? limits.protectedRegular : a.type == .fifo ? limits.protectedFifos : 0
        if d.permissions & 0o020 != 0 && level >= 2 { throw .permissionDenied }
    }

    /// The checks of filename_create: `dir` searchable, the last component an ordinary name
    /// (EEXIST for ".", ".." and "/"), of a valid length, not taken (EEXIST), and without a
    /// trailing slash unless a directory is made (ENOENT).
    func nameToCreate(
        in dir: InodeNumber, _ name: [UInt8], _ caller: Caller, directory: Bool = false
    ) throws(Errno) -> (InodeRecord, FileName) {
        let d = try searchableDirectory(dir, caller, for: name)
        guard case .name(let bytes) = LastComponent(name) else { throw .fileExists }
        let n = try LastComponent.fileName(bytes)
        if d.directory![n] != nil { throw .fileExists }
        if !directory && LastComponent.trailingSlash(name) { throw .noSuchFileOrDirectory }
        return (d, n)
    }

    /// may_create past the lookup: ENOENT in a directory that was removed (open, link count
    /// 0), EACCES without write and search permission on it.
    func checkMayCreate(in d: InodeRecord, _ caller: Caller) throws(Errno) {
        if d.attributes.nlink == 0 { throw .noSuchFileOrDirectory }
        if !d.attributes.permits([.write, .execute], to: caller) { throw .permissionDenied }
    }

    /// The transaction of every creation: the inode, its entry, the parent's times (and its
    /// link count for a directory).
    func planNewInode(
        _ type: FileType, permissions: UInt16, rdev: UInt64 = 0, target: [UInt8]? = nil, in dir: InodeNumber, _ name: FileName,
        caller: Caller
    ) -> NamespacePlan<InodeNumber> {
        let parent = inodes[dir]!
        let inode = InodeNumber(nextInode)
        precondition(inodes[inode] == nil, "the next inode number \(inode) is taken")
        var attrs = Self.newAttributes(type, permissions, in: parent.attributes, caller)
        attrs.rdev = rdev
        attrs.size = Int64(target?.count ?? 0)
        var b = PlanBuilder(self)
        b.append(.createInode(inode, attrs, parent: type == .directory ? dir : nil, symlinkTarget: target))
        b.append(.addEntry(directory: dir, name: name, target: inode, type: type, cookie: parent.directory!.nextCookie))
        if type == .directory { b.addLinks(dir, 1) }
        b.touchEntries(dir, caller.now)
        return b.plan(inode)
    }

    /// A new inode's attributes: owned by the caller; in a set-group-id directory, of the
    /// directory's group, a new directory set-group-id too, and a group-executable
    /// set-group-id file losing the bit unless the caller is in that group or privileged.
    static func newAttributes(_ type: FileType, _ permissions: UInt16, in parent: InodeAttributes, _ caller: Caller) -> InodeAttributes {
        var mode = permissions & 0o7777
        var gid = caller.gid
        if parent.permissions & 0o2000 != 0 {
            gid = parent.gid
            if type == .directory {
                mode |= 0o2000
            } else if mode & 0o2010 == 0o2010 && !caller.isMemberOrPrivileged(parent.gid) {
                mode &= ~0o2000
            }
        }
        return InodeAttributes(
            type: type, permissions: mode, uid: caller.uid, gid: gid, nlink: type == .directory ? 2 : 1, time: caller.now)
    }

    /// safe_hardlink_source: what protected_hardlinks lets a non-owner link.
    static func isSafeHardlinkSource(_ a: InodeAttributes, _ caller: Caller) -> Bool {
        if a.type != .regular { return false }
        if a.permissions & 0o4000 != 0 { return false }
        if a.permissions & 0o2010 == 0o2010 { return false }
        return a.permits([.read, .write], to: caller)
    }
}
