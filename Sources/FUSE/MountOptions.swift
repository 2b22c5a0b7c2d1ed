// Counterpart: fs/fuse/inode.c's fuse_fs_parameters and fuse_parse_param (the options the
// kernel's fuse file system takes: fd, rootmode, user_id, group_id, default_permissions,
// allow_other) and the mount(2) call util/fusermount.c and mount.fuse make with them.
//
// `iomap mount -o` takes a small set of options and refuses every other one by name before
// anything is opened or mounted: a misspelt option silently ignored would mount something
// other than what was asked. `default_permissions` is always passed to the kernel (it checks
// permission bits against its cached attributes, the daemon need not), so it is accepted and
// changes nothing.

import CFUSE
import IOMapBase

#if canImport(Glibc)
    import Glibc
#endif

/// What `-o` asked for.
public struct MountOptions: Hashable, Sendable {
    public var readOnly = false
    public var allowOther = false
    public var cache: CacheMode = .direct
    /// The mount's source, as /proc/mounts shows it; nil: the image's path.
    public var fsname: String?
    /// Mount as type `fuse.SUBTYPE` instead of plain `fuse`.
    public var subtype: String?
    public var nosuid = false
    public var nodev = false
    public var noexec = false

    public init() {}

    /// The options accepted, as `iomap mount --help` lists them.
    public static let accepted = [
        "ro", "rw", "allow_other", "default_permissions", "cache=direct|writeback", "fsname=NAME", "subtype=NAME", "suid", "nosuid",
        "dev", "nodev", "exec", "noexec",
    ]

    /// Parses each `-o` argument (comma-separated options); the first unknown or malformed
    /// option is the error, by name.
    public static func parse(_ arguments: [String]) throws(MountOptionError) -> MountOptions {
        var o = MountOptions()
        for argument in arguments {
            for item in argument.split(separator: ",", omittingEmptySubsequences: true).map(String.init) {
                try o.apply(item)
            }
        }
        return o
    }

    mutating func apply(_ item: String) throws(MountOptionError) {
        let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let key = parts[0]
        let value = parts.count > 1 ? parts[1] : nil
        switch (key, value) {
        case ("ro", nil): readOnly = true
        case ("rw", nil): readOnly = false
        case ("allow_other", nil): allowOther = true
        case ("default_permissions", nil): break
        case ("suid", nil): nosuid = false
        case ("nosuid", nil): nosuid = true
        case ("dev", nil): nodev = false
        case ("nodev", nil): nodev = true
        case ("exec", nil): noexec = false
        case ("noexec", nil): noexec = true
        case ("cache", let v?):
            guard let mode = CacheMode(rawValue: v) else { throw MountOptionError("cache=\(v): the cache is direct or writeback") }
            cache = mode
        case ("fsname", let v?):
            guard !v.isEmpty, !v.contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" }) else {
                throw MountOptionError("fsname=\(v): the name must be non-empty, without spaces")
            }
            fsname = v
        case ("subtype", let v?):
            guard !v.isEmpty, v.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" || $0 == ".") })
            else { throw MountOptionError("subtype=\(v): the subtype is letters, digits, '_', '-' and '.'") }
            subtype = v
        default:
            throw MountOptionError("unknown mount option '\(item)' (accepted: \(Self.accepted.joined(separator: ", ")))")
        }
    }

    /// The file-system type for mount(2).
    public var fsType: String { subtype.map { "fuse.\($0)" } ?? "fuse" }

    /// The data string for mount(2): the connection's descriptor, the root's mode, the
    /// mounting user, and the permission model.
    public func mountData(fd: Int32, rootMode: UInt32, uid: UInt32, gid: UInt32) -> String {
        var d = "fd=\(fd),rootmode=\(String(rootMode, radix: 8)),user_id=\(uid),group_id=\(gid),default_permissions"
        if allowOther { d += ",allow_other" }
        return d
    }

    /// mount(2)'s flags.
    public var mountFlags: UInt {
        var f: UInt = 0
        if readOnly { f |= UInt(CFUSE_MS_RDONLY) }
        if nosuid { f |= UInt(CFUSE_MS_NOSUID) }
        if nodev { f |= UInt(CFUSE_MS_NODEV) }
        if noexec { f |= UInt(CFUSE_MS_NOEXEC) }
        return f
    }
}

/// A `-o` option refused, in words that name it.
public struct MountOptionError: Error, Hashable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The kernel side of mounting: the calls a root daemon makes itself (no fusermount3).
public enum FUSEMount {
    /// Opens /dev/fuse: the connection's first descriptor.
    public static func openDevice() throws(Errno) -> Int32 {
        let fd = cfuse_open_device()
        if fd < 0 { throw Errno(rawValue: -fd) }
        return fd
    }

    /// mount(2) of a FUSE file system served on `fd` at `target`.
    public static func mount(
        source: String, target: String, options: MountOptions, fd: Int32, rootMode: UInt32, uid: UInt32, gid: UInt32
    ) throws(Errno) {
        let data = options.mountData(fd: fd, rootMode: rootMode, uid: uid, gid: gid)
        let rc = cfuse_mount(source, target, options.fsType, options.mountFlags, data)
        if rc < 0 { throw Errno(rawValue: -rc) }
    }

    /// umount2(2), lazily (MNT_DETACH) if asked.
    public static func unmount(_ target: String, lazy: Bool) throws(Errno) {
        let rc = cfuse_umount(target, lazy ? 1 : 0)
        if rc < 0 { throw Errno(rawValue: -rc) }
    }
}
