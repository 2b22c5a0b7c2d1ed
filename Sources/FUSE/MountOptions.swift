// Counterpart: fs/fuse/inode.c's fuse_fs_parameters and fuse_parse_param (the options the
// kernel's fuse file system takes: fd, rootmode, user_id, group_id, default_permissions,
// allow_other) and the mount(2) call util/fusermount.c and mount.fuse make with them.
//
// A user who is not root mounts through fusermount3 (MountRoute), as libfuse does: the
// options then travel to it as its own `-o` string.
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

/// How a mount is made, and so how it is unmade.
public enum MountRoute: Sendable, Equatable {
    /// mount(2) and umount2(2) by the daemon itself: root (CAP_SYS_ADMIN).
    case kernel
    /// Through fusermount3 at this path (set-user-id root), for a user who may not call
    /// mount(2), as libfuse and go-fuse mount: it opens /dev/fuse, mounts, and hands the
    /// descriptor back over a unix socket; `fusermount3 -u` unmounts.
    case fusermount(String)
}

/// Why a mount could not be made, in words.
public struct MountFailure: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The kernel side of mounting: mount(2) as root, or fusermount3 for anybody else.
public enum FUSEMount {
    /// fusermount3: `IOMAP_FUSERMOUNT` if set (an install elsewhere, or a test that wants
    /// none), else the first on PATH or in /usr/bin and /bin.
    public static func fusermountPath() -> String? {
        if let given = getenv("IOMAP_FUSERMOUNT").map({ String(cString: $0) }) {
            return access(given, X_OK) == 0 ? given : nil
        }
        let path = getenv("PATH").map { String(cString: $0) } ?? ""
        let dirs = path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin"]
        return dirs.map { $0 + "/fusermount3" }.first { access($0, X_OK) == 0 }
    }

    /// How this process can mount: itself as root, else through fusermount3; neither is
    /// the error, saying so.
    public static func route(options: MountOptions) throws(MountFailure) -> MountRoute {
        if geteuid() == 0 { return .kernel }
        guard let fusermount = fusermountPath() else {
            throw MountFailure(
                "not root, and no fusermount3 to mount through (Debian: apt-get install fuse3; or set IOMAP_FUSERMOUNT): "
                    + "only root or fusermount3 can mount a FUSE file system")
        }
        if options.allowOther && !userAllowOther() {
            throw MountFailure(
                "allow_other needs 'user_allow_other' in /etc/fuse.conf when not root (fusermount3 refuses it otherwise)")
        }
        return .fusermount(fusermount)
    }

    /// Whether /etc/fuse.conf has a `user_allow_other` line (comments after '#' ignored).
    public static func userAllowOther(config: String = "/etc/fuse.conf") -> Bool {
        guard let f = fopen(config, "r") else { return false }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 4096)
        while fgets(&line, Int32(line.count), f) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let setting = text.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            if setting.trimmingWhitespace == "user_allow_other" { return true }
        }
        return false
    }

    /// The `-o` string fusermount3 takes: what mount(2) would get but the descriptor, root
    /// mode and ids (fusermount3 sets those itself, from its own uid and the mount point),
    /// with the mount flags and names as options.
    public static func fusermountOptions(_ options: MountOptions, source: String) -> String {
        // fusermount3 takes a backslash before a comma (or a backslash) in fsname=.
        let escaped = source.flatMap { $0 == "," || $0 == "\\" ? ["\\", $0] : [$0] }
        var o = ["default_permissions", "fsname=" + String(escaped)]
        if let subtype = options.subtype { o.append("subtype=\(subtype)") }
        if options.allowOther { o.append("allow_other") }
        if options.readOnly { o.append("ro") }
        if options.nosuid { o.append("nosuid") }
        if options.nodev { o.append("nodev") }
        if options.noexec { o.append("noexec") }
        return o.joined(separator: ",")
    }

    /// Mounts `target` through fusermount3; returns the connection's descriptor.
    public static func mountWithFusermount(
        _ fusermount: String, source: String, target: String, options: MountOptions
    ) throws(MountFailure) -> Int32 {
        var message = [CChar](repeating: 0, count: 4096)
        var status: Int32 = 0
        let fd = cfuse_fusermount_mount(
            fusermount, fusermountOptions(options, source: source), target, &message, message.count, &status)
        if fd >= 0 { return fd }
        let said = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).trimmingWhitespace
        if fd == -EIO {
            throw MountFailure("\(fusermount) failed (wait status \(status))\(said.isEmpty ? "" : ": \(said)")")
        }
        throw MountFailure("cannot run \(fusermount): \(Errno(rawValue: -fd).symbolicName)")
    }

    /// Unmounts `target` the way `route` mounted it (lazily, MNT_DETACH or `-z`, if asked).
    public static func unmount(_ target: String, lazy: Bool, route: MountRoute) throws(MountFailure) {
        switch route {
        case .kernel:
            do throws(Errno) { try unmount(target, lazy: lazy) } catch {
                throw MountFailure("umount \(target): \(error.symbolicName)")
            }
        case .fusermount(let fusermount):
            var message = [CChar](repeating: 0, count: 4096)
            let rc = cfuse_fusermount_unmount(fusermount, target, lazy ? 1 : 0, &message, message.count)
            guard rc != 0 else { return }
            let said = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw MountFailure("\(fusermount) -u \(target) failed (\(rc)): \(said.trimmingWhitespace)")
        }
    }

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

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and newlines (no Foundation here).
    var trimmingWhitespace: String {
        let ws: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        return String(String(drop(while: ws).reversed()).drop(while: ws).reversed())
    }
}
