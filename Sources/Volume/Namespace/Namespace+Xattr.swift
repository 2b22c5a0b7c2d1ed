// Counterpart: extended attributes in fs/xattr.c (setxattr_copy, xattr_permission,
// xattr_resolve_name, vfs_setxattr, vfs_getxattr, vfs_removexattr, listxattr) with the
// capability checks of security/commoncap.c (cap_inode_setxattr, cap_inode_removexattr),
// and the in-memory store of mm/shmem.c and fs/xattr.c (simple_xattr_set, simple_xattr_list).
//
// Three namespaces are stored: user.* (regular files and directories only, under the
// permission bits), trusted.* (privileged callers only, hidden from the others' lists) and
// security.* (anyone reads, privileged callers write). system.* (POSIX ACLs) and any other
// prefix are EOPNOTSUPP.

import IOMapBase

/// setxattr's flags.
public struct XattrFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// XATTR_CREATE: EEXIST if the attribute exists.
    public static let create = XattrFlags(rawValue: 1)
    /// XATTR_REPLACE: ENODATA if it does not.
    public static let replace = XattrFlags(rawValue: 2)
}

/// The namespace an attribute name is in, by its prefix.
enum XattrNamespace {
    case user, trusted, security, unsupported

    static let prefixes: [(XattrNamespace, [UInt8])] = [
        (.user, Array("user.".utf8)), (.trusted, Array("trusted.".utf8)), (.security, Array("security.".utf8)),
    ]

    /// The namespace, and whether the name is the prefix alone (EINVAL).
    static func of(_ name: [UInt8]) -> (XattrNamespace, bareprefix: Bool) {
        for (ns, prefix) in prefixes where name.starts(with: prefix) { return (ns, name.count == prefix.count) }
        return (.unsupported, false)
    }
}

extension MetadataState {
    /// The longest attribute name, prefix included (XATTR_NAME_MAX).
    public static let maxXattrNameLength = 255
    /// The largest attribute value (XATTR_SIZE_MAX).
    public static let maxXattrValueSize = 65536

    /// setxattr: EINVAL for unknown flags; ERANGE for an empty name or one longer than 255
    /// bytes; E2BIG for a value over 64 KiB; the namespace's permission (EPERM, EACCES);
    /// EOPNOTSUPP for an unsupported prefix, EINVAL for a prefix alone; EEXIST with
    /// `.create`, ENODATA with `.replace`. Sets the ctime.
    public func planSetXattr(
        _ inode: InodeNumber, name: [UInt8], value: [UInt8], flags: XattrFlags = [], caller: Caller
    ) throws(Errno) -> NamespacePlan<Void> {
        try Self.checkXattrRequest(name: name, valueSize: value.count, flags: flags)
        guard let rec = inodes[inode] else { throw .noSuchFileOrDirectory }
        try checkXattrAccess(rec, name, write: true, caller)
        let exists = rec.xattrs[name] != nil
        if flags.contains(.create) && exists { throw .fileExists }
        if flags.contains(.replace) && !exists { throw .noData }
        var b = PlanBuilder(self)
        b.append(.setXattr(inode, name: name, value: value))
        b.touchChange(inode, caller.now)
        return b.plan(())
    }

    /// removexattr: the checks of setxattr, then ENODATA if there is no such attribute.
    public func planRemoveXattr(_ inode: InodeNumber, name: [UInt8], caller: Caller) throws(Errno) -> NamespacePlan<Void> {
        try Self.checkXattrName(name)
        guard let rec = inodes[inode] else { throw .noSuchFileOrDirectory }
        try checkXattrAccess(rec, name, write: true, caller)
        if rec.xattrs[name] == nil { throw .noData }
        var b = PlanBuilder(self)
        b.append(.removeXattr(inode, name: name))
        b.touchChange(inode, caller.now)
        return b.plan(())
    }

    /// getxattr: ERANGE for a bad name; ENODATA for trusted.* asked by an unprivileged
    /// caller and for user.* of anything but a regular file or directory, as for a missing
    /// attribute; EACCES without read permission (user.*); EOPNOTSUPP, EINVAL as setxattr.
    public func getxattr(_ inode: InodeNumber, name: [UInt8], caller: Caller) throws(Errno) -> [UInt8] {
        try Self.checkXattrName(name)
        guard let rec = inodes[inode] else { throw .noSuchFileOrDirectory }
        try checkXattrAccess(rec, name, write: false, caller)
        guard let value = rec.xattrs[name] else { throw .noData }
        return value
    }

    /// listxattr: the names in byte order, without trusted.* for an unprivileged caller.
    /// (tmpfs lists in hash order: compare as sets.)
    public func listxattr(_ inode: InodeNumber, caller: Caller) throws(Errno) -> [[UInt8]] {
        guard let rec = inodes[inode] else { throw .noSuchFileOrDirectory }
        let visible = rec.xattrs.keys.filter { caller.privileged || XattrNamespace.of($0).0 != .trusted }
        return visible.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// setxattr's checks of what it copies in, made before the path walk: EINVAL for unknown
    /// flags, the name as checkXattrName, E2BIG for a value over 64 KiB.
    public static func checkXattrRequest(name: [UInt8], valueSize: Int, flags: XattrFlags) throws(Errno) {
        if flags.rawValue & ~XattrFlags([.create, .replace]).rawValue != 0 { throw .invalidArgument }
        try checkXattrName(name)
        if valueSize > maxXattrValueSize { throw .argListTooLong }
    }

    /// The name as the xattr syscalls copy it in, before the path walk: 1 to 255 bytes
    /// (ERANGE), no NUL (EINVAL: a C string cannot carry one).
    public static func checkXattrName(_ name: [UInt8]) throws(Errno) {
        if name.isEmpty || name.count > maxXattrNameLength { throw .outOfRange }
        if name.contains(0) { throw .invalidArgument }
    }

    /// xattr_permission, the capability check of security.* writes, then the handler lookup.
    func checkXattrAccess(_ rec: InodeRecord, _ name: [UInt8], write: Bool, _ caller: Caller) throws(Errno) {
        let a = rec.attributes
        let (ns, bare) = XattrNamespace.of(name)
        switch ns {
        case .security:
            if write && !caller.privileged { throw .notPermitted }
        case .trusted:
            if !caller.privileged { throw write ? .notPermitted : .noData }
        case .user, .unsupported:
            if ns == .user && a.type != .regular && a.type != .directory { throw write ? .notPermitted : .noData }
            if ns == .user && write && a.type == .directory && a.permissions & 0o1000 != 0 && !caller.ownsOrIsPrivileged(a) {
                throw .notPermitted
            }
            if !a.permits(write ? .write : .read, to: caller) { throw .permissionDenied }
        }
        if ns == .unsupported { throw .notSupported }
        if bare { throw .invalidArgument }
    }
}
