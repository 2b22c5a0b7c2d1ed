// Counterpart: changing attributes in fs/attr.c (may_setattr, setattr_prepare with chown_ok
// and chgrp_ok, notify_change, setattr_should_drop_sgid, setattr_should_drop_suidgid), the
// callers of fs/open.c (chmod_common, chown_common), fs/utimes.c (vfs_utimes), and
// file_remove_privs (fs/inode.c); stat's view of an inode (fs/stat.c, generic_fillattr).
//
// The size is not an attribute here: the data path sets it (setSize), with truncate's
// ordering. Every change stamps the ctime, as notify_change does.

import IOMapBase

/// A new value for atime or mtime (utimensat's times; nil is UTIME_OMIT).
public enum TimeChange: Hashable, Sendable {
    /// UTIME_NOW: the caller's time.
    case now
    case set(Timestamp)
}

/// A chown: each id nil is chown's -1 (kept). Both nil is chown(file, -1, -1), which still
/// clears set-user-id and set-group-id bits as every chown of a non-directory does.
public struct Ownership: Hashable, Sendable {
    public var uid: UInt32?
    public var gid: UInt32?

    public init(uid: UInt32? = nil, gid: UInt32? = nil) {
        self.uid = uid
        self.gid = gid
    }
}

/// What a setattr changes; nil members are left alone. One syscall sets one group (chmod,
/// chown, utimes); several together are checked in setattr_prepare's order.
public struct AttributeChange: Hashable, Sendable {
    public var permissions: UInt16?
    public var ownership: Ownership?
    public var atime: TimeChange?
    public var mtime: TimeChange?

    public init(permissions: UInt16? = nil, ownership: Ownership? = nil, atime: TimeChange? = nil, mtime: TimeChange? = nil) {
        self.permissions = permissions
        self.ownership = ownership
        self.atime = atime
        self.mtime = mtime
    }

    public static func chmod(_ permissions: UInt16) -> AttributeChange { AttributeChange(permissions: permissions) }
    public static func chown(uid: UInt32? = nil, gid: UInt32? = nil) -> AttributeChange {
        AttributeChange(ownership: Ownership(uid: uid, gid: gid))
    }
    public static func times(atime: TimeChange?, mtime: TimeChange?) -> AttributeChange { AttributeChange(atime: atime, mtime: mtime) }

    /// Both times to now (utimes(NULL), or UTIME_NOW twice): what a writer may do to a file it
    /// does not own (ATTR_TOUCH).
    var isTouch: Bool { atime == .now && mtime == .now }
    /// Any other change of times, which needs the owner (ATTR_TIMES_SET).
    var setsTimes: Bool { (atime != nil || mtime != nil) && !isTouch }
}

/// stat's view of an inode.
public struct StatView: Hashable, Sendable {
    public var inode: InodeNumber
    public var attributes: InodeAttributes
    /// The blocks its recorded extents map (volume blocks, not 512-byte units).
    public var blocks: Int64

    /// st_mode: type and permission bits.
    public var mode: UInt32 { attributes.mode }
}

extension MetadataState {
    /// setattr without size: chmod, chown, utimes. EPERM for chmod by other than the owner,
    /// for chown by an unprivileged caller (but an owner may set the group to one of its
    /// own), and for explicit times by other than the owner; EACCES for touching the times
    /// of a file the caller neither owns nor may write; EOPNOTSUPP for chmod of a symlink.
    /// chmod clears set-group-id when the caller is neither in the file's group nor
    /// privileged; a chown of a non-directory clears set-user-id, and set-group-id when
    /// group-executable or the caller is neither in the group nor privileged (whoever the
    /// caller is, root too, as Linux does). Returns the new attributes.
    public func planSetAttributes(
        _ inode: InodeNumber, _ change: AttributeChange, caller: Caller
    ) throws(Errno) -> NamespacePlan<InodeAttributes> {
        guard let old = inodes[inode]?.attributes else { throw .noSuchFileOrDirectory }
        if change.isTouch && !caller.ownsOrIsPrivileged(old) && !old.permits(.write, to: caller) { throw .permissionDenied }
        if change.permissions != nil && old.type == .symlink { throw .notSupported }
        var new = old
        var modeChanges = change.permissions != nil
        if let p = change.permissions { new.permissions = p & 0o7777 }
        if let o = change.ownership {
            try Self.checkChown(o, old, caller)
            if old.type != .directory && old.permissions & 0o4000 != 0 {
                new.permissions &= ~0o4000
                modeChanges = true
            }
            if old.type != .directory && Self.shouldDropSetGID(old, caller) {
                new.permissions &= ~0o2000
                modeChanges = true
            }
            new.uid = o.uid ?? old.uid
            new.gid = o.gid ?? old.gid
        }
        if modeChanges {
            if !caller.ownsOrIsPrivileged(old) { throw .notPermitted }
            if !caller.isMemberOrPrivileged(new.gid) { new.permissions &= ~0o2000 }
        }
        if change.setsTimes && !caller.ownsOrIsPrivileged(old) { throw .notPermitted }
        if let a = change.atime { new.atime = Self.time(a, caller) }
        if let m = change.mtime { new.mtime = Self.time(m, caller) }
        new.ctime = caller.now
        return NamespacePlan(records: [.setAttributes(inode, new)], value: new)
    }

    /// file_remove_privs, for a write or truncate by `caller`: on a regular file, an
    /// unprivileged caller clears set-user-id, and set-group-id when it is group-executable
    /// or the caller is not in the group. No records when nothing is to clear. The ctime is
    /// left to the write's own time update, as in Linux.
    public func planClearSetID(_ inode: InodeNumber, caller: Caller) throws(Errno) -> NamespacePlan<Void> {
        guard let old = inodes[inode]?.attributes else { throw .noSuchFileOrDirectory }
        guard old.type == .regular && !caller.privileged else { return NamespacePlan(records: [], value: ()) }
        var new = old
        if old.permissions & 0o4000 != 0 { new.permissions &= ~0o4000 }
        if Self.shouldDropSetGID(old, caller) { new.permissions &= ~0o2000 }
        if new == old { return NamespacePlan(records: [], value: ()) }
        return NamespacePlan(records: [.setAttributes(inode, new)], value: ())
    }

    /// stat: ENOENT if there is no such inode.
    public func stat(_ inode: InodeNumber) throws(Errno) -> StatView {
        guard let rec = inodes[inode] else { throw .noSuchFileOrDirectory }
        return StatView(inode: inode, attributes: rec.attributes, blocks: rec.blockCount)
    }

    /// chown_ok and chgrp_ok: a privileged caller may give any ids; the owner may "change"
    /// the owner to itself and the group to its own or one of its groups.
    static func checkChown(_ o: Ownership, _ a: InodeAttributes, _ caller: Caller) throws(Errno) {
        if caller.privileged { return }
        if let uid = o.uid, !(caller.uid == a.uid && uid == a.uid) { throw .notPermitted }
        if let gid = o.gid, !(caller.uid == a.uid && (gid == a.gid || caller.isMember(of: gid))) { throw .notPermitted }
    }

    /// setattr_should_drop_sgid: set-group-id goes when the file is group-executable, or
    /// when the caller is neither in its group nor privileged.
    static func shouldDropSetGID(_ a: InodeAttributes, _ caller: Caller) -> Bool {
        guard a.permissions & 0o2000 != 0 else { return false }
        return a.permissions & 0o010 != 0 || !caller.isMemberOrPrivileged(a.gid)
    }

    static func time(_ t: TimeChange, _ caller: Caller) -> Timestamp {
        switch t {
        case .now: return caller.now
        case .set(let time): return time
        }
    }
}
