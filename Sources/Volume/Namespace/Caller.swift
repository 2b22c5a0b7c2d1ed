// Counterpart: the file-system identity of struct cred (include/linux/cred.h: fsuid, fsgid,
// group_info), in_group_p() (kernel/groups.c), and the permission checks of fs/namei.c
// (generic_permission, acl_permission_check) and fs/inode.c (inode_owner_or_capable).
//
// Every namespace plan is asked on behalf of someone: the checks Linux makes against the
// caller's credentials are made here against a Caller, so that the volume (a FUSE server, a
// tool) gives a process the errnos its kernel would.

import IOMapBase

/// Who performs a namespace operation, and when.
public struct Caller: Hashable, Sendable {
    /// The file-system user id (fsuid): the owner of what it creates, checked against owners.
    public var uid: UInt32
    /// The file-system group id (fsgid): the group of what it creates, outside set-group-id
    /// directories.
    public var gid: UInt32
    /// Supplementary groups.
    public var groups: [UInt32]
    /// Whether the caller holds the capabilities root has over files: CAP_DAC_OVERRIDE and
    /// CAP_DAC_READ_SEARCH (permission bits), CAP_FOWNER (owner checks, sticky directories),
    /// CAP_FSETID (set-id bits kept), CAP_CHOWN, CAP_MKNOD, and CAP_SYS_ADMIN (trusted.* and
    /// security.* attributes). One switch: the volume has no finer capability model.
    public var privileged: Bool
    /// The time the operation stamps on what it changes.
    public var now: Timestamp

    /// A caller; `privileged` defaults to whether `uid` is 0.
    public init(uid: UInt32, gid: UInt32, groups: [UInt32] = [], privileged: Bool? = nil, now: Timestamp = .zero) {
        self.uid = uid
        self.gid = gid
        self.groups = groups
        self.privileged = privileged ?? (uid == 0)
        self.now = now
    }

    /// Root, with every capability.
    public static func root(now: Timestamp = .zero) -> Caller { Caller(uid: 0, gid: 0, privileged: true, now: now) }

    /// Whether `gid` is the caller's group or one of its supplementary groups (in_group_p).
    public func isMember(of gid: UInt32) -> Bool { gid == self.gid || groups.contains(gid) }

    /// inode_owner_or_capable: the owner, or CAP_FOWNER.
    public func ownsOrIsPrivileged(_ a: InodeAttributes) -> Bool { privileged || a.uid == uid }

    /// in_group_or_capable: a member of `gid`, or CAP_FSETID.
    func isMemberOrPrivileged(_ gid: UInt32) -> Bool { privileged || isMember(of: gid) }
}

/// What a caller wants to do with an inode, as the MAY_READ, MAY_WRITE and MAY_EXEC bits of
/// the kernel (and of the permission triads: 4, 2, 1).
public struct Access: OptionSet, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let read = Access(rawValue: 4)
    public static let write = Access(rawValue: 2)
    /// Execute a file; search a directory.
    public static let execute = Access(rawValue: 1)
}

extension InodeAttributes {
    /// Whether the permission bits let `caller` have `access` (generic_permission; no ACLs).
    /// One triad decides: the owner's if the caller owns the inode, else the group's if it
    /// is a member, else the others'. A privileged caller may read and write anything,
    /// search any directory, and execute a file when any execute bit is set.
    public func permits(_ access: Access, to caller: Caller) -> Bool {
        let triad: UInt16
        if caller.uid == uid {
            triad = (permissions >> 6) & 7
        } else if caller.isMember(of: gid) {
            triad = (permissions >> 3) & 7
        } else {
            triad = permissions & 7
        }
        if access.rawValue & ~triad == 0 { return true }
        guard caller.privileged else { return false }
        if type == .directory || !access.contains(.execute) { return true }
        return permissions & 0o111 != 0
    }
}

extension MetadataState {
    /// Checks that `caller` may have `access` to `inode`: ENOENT if there is no such inode,
    /// EACCES if the permission bits refuse. The volume checks an open's access mode with it.
    public func checkAccess(_ inode: InodeNumber, _ access: Access, caller: Caller) throws(Errno) {
        guard let rec = inodes[inode] else { throw .noSuchFileOrDirectory }
        guard rec.attributes.permits(access, to: caller) else { throw .permissionDenied }
    }
}
