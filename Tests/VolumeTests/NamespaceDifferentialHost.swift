// Counterpart: none in the kernel; the host side of the namespace differential test. The
// same calls go to the real kernel, on a fresh directory of tmpfs, from one thread of their
// own that has its own root (unshare(CLONE_FS) then chroot, so that absolute paths and
// symlink targets mean the same on both sides) and takes each step's credentials with the
// calls Linux keeps per thread: setfsuid, setfsgid, the raw setgroups system call, capset.

import Foundation
import Glibc
import Volume

/// Who makes a step.
enum Who: Hashable, Sendable, CustomStringConvertible {
    case root
    case user(uid: UInt32, gid: UInt32, groups: [UInt32])

    static let alice = Who.user(uid: 1000, gid: 1000, groups: [3000])
    static let bob = Who.user(uid: 2000, gid: 2000, groups: [])

    func caller(now: Timestamp) -> Caller {
        switch self {
        case .root: return .root(now: now)
        case .user(let uid, let gid, let groups): return Caller(uid: uid, gid: gid, groups: groups, privileged: false, now: now)
        }
    }

    var description: String {
        switch self {
        case .root: return "root"
        case .user(let uid, let gid, let groups): return "uid \(uid) gid \(gid) groups \(groups)"
        }
    }
}

/// A time given to utimensat.
enum TimeArg: Hashable, Sendable {
    case now
    case seconds(Int64)
}

/// One call, named by paths (absolute: the two roots are the same place).
enum DiffOp: Hashable, Sendable {
    case create(String, UInt16, exclusive: Bool)
    case mknod(String, FileType, UInt16, rdev: UInt64)
    case mkdir(String, UInt16)
    case symlink(String, target: String)
    case readlink(String)
    case link(String, String)
    case unlink(String)
    case rmdir(String)
    case rename(String, String, flags: UInt32)
    case setxattr(String, name: String, value: String, flags: Int32)
    case getxattr(String, name: String)
    case removexattr(String, name: String)
    case listxattr(String)
    case chmod(String, UInt16, follow: Bool)
    case chown(String, uid: UInt32?, gid: UInt32?)
    case utimes(String, atime: TimeArg?, mtime: TimeArg?)
    case stat(String, follow: Bool)
    /// truncate(path, 0) of an empty file: what a writer's set-id clearing does.
    case truncate(String)
    /// Opens the file, unlinks it (its last name) and links the open, unnamed inode at the
    /// second path (linkat with AT_EMPTY_PATH), then closes it; the errno is the link's.
    case linkOrphan(String, String)
}

/// A step of a run: the call, who makes it, and (in the scripted cases) the errno Linux is
/// known to give, by name.
struct Step: Hashable, Sendable, CustomStringConvertible {
    var op: DiffOp
    var who: Who = .root
    var expect: String? = nil

    var description: String {
        let text = "\(op)"
        let short = text.count > 160 ? String(text.prefix(150)) + "…(\(text.count) chars)" : text
        return "\(short) as \(who)" + (expect.map { ", Linux gives \($0)" } ?? "")
    }
}

/// What one inode looks like, as both sides can tell: no times (see Stamp), no directory
/// sizes, no inode numbers.
struct Node: Hashable, Sendable {
    var type: FileType
    var permissions: UInt16
    var uid: UInt32
    var gid: UInt32
    var nlink: UInt32
    /// Regular files and symlinks only.
    var size: Int64
    var rdev: UInt64
    var target: [UInt8]?
    var xattrs: [[UInt8]: [UInt8]]
}

/// An inode's identity and change times at one path.
struct Stamp: Hashable, Sendable {
    var inode: UInt64
    var mtime: Timestamp
    var ctime: Timestamp
}

/// The tree after a step, by path ("/" included).
struct Snapshot: Sendable {
    var nodes: [String: Node] = [:]
    var stamps: [String: Stamp] = [:]
    /// Each directory's names in readdir order (tmpfs keeps stable offsets, given in the
    /// order names arrive, as our cookies are).
    var listings: [String: [String]] = [:]

    /// For each path of `self` whose inode `after` still has: whether its mtime and ctime
    /// changed (an inode moved by a rename is found by its number).
    func changes(to after: Snapshot) -> [String: String] {
        var byInode: [UInt64: Stamp] = [:]
        for s in after.stamps.values { byInode[s.inode] = s }
        var out: [String: String] = [:]
        for (path, s) in stamps {
            guard let t = byInode[s.inode] else { continue }
            out[path] = (t.mtime != s.mtime ? "m" : "-") + (t.ctime != s.ctime ? "c" : "-")
        }
        return out
    }
}

/// The errno of a step (0 for success), what it returned, and the tree after it.
struct Outcome: Sendable {
    var errno: Int32
    var output: String
    var after: Snapshot
}

/// The C functions Swift's Glibc module leaves out (renameat2, the xattr calls, setfsuid,
/// unshare) and the raw system calls whose glibc wrappers would change every thread.
enum Host {
    nonisolated(unsafe) static let library = dlopen(nil, RTLD_NOW)
    static func symbol<T>(_ name: String, _: T.Type) -> T { unsafeBitCast(dlsym(library, name)!, to: T.self) }

    typealias CPath = UnsafePointer<CChar>
    nonisolated(unsafe) static let renameat2 = symbol(
        "renameat2", (@convention(c) (Int32, CPath, Int32, CPath, UInt32) -> Int32).self)
    nonisolated(unsafe) static let lsetxattr = symbol(
        "lsetxattr", (@convention(c) (CPath, CPath, UnsafeRawPointer?, Int, Int32) -> Int32).self)
    nonisolated(unsafe) static let lgetxattr = symbol(
        "lgetxattr", (@convention(c) (CPath, CPath, UnsafeMutableRawPointer?, Int) -> Int).self)
    nonisolated(unsafe) static let llistxattr = symbol(
        "llistxattr", (@convention(c) (CPath, UnsafeMutablePointer<CChar>?, Int) -> Int).self)
    nonisolated(unsafe) static let lremovexattr = symbol("lremovexattr", (@convention(c) (CPath, CPath) -> Int32).self)
    nonisolated(unsafe) static let setfsuid = symbol("setfsuid", (@convention(c) (UInt32) -> Int32).self)
    nonisolated(unsafe) static let setfsgid = symbol("setfsgid", (@convention(c) (UInt32) -> Int32).self)
    nonisolated(unsafe) static let unshare = symbol("unshare", (@convention(c) (Int32) -> Int32).self)
    /// syscall(2) called with three arguments (its variadic integers pass as fixed ones).
    nonisolated(unsafe) static let syscall3 = symbol("syscall", (@convention(c) (Int, Int, Int, Int) -> Int).self)
    nonisolated(unsafe) static let syscall4 = symbol("syscall", (@convention(c) (Int, Int, Int, Int, Int) -> Int).self)

    /// fchmodat2 (Linux 6.6), called directly: glibc's fallback for AT_SYMLINK_NOFOLLOW goes
    /// through /proc, which the chrooted thread does not have. The same number everywhere.
    static let sysFchmodat2 = 452

    static func fchmodat2(_ path: String, _ mode: UInt16, _ flags: Int32) -> Int32 {
        let rc = path.withCString { syscall4(sysFchmodat2, Int(AT_FDCWD), Int(bitPattern: $0), Int(mode), Int(flags)) }
        return rc == 0 ? 0 : -1
    }

    /// Waits until the coarse clock has ticked twice. tmpfs stamps a directory with the
    /// time it takes for the inode an entry names, coarse unless that inode's time was read
    /// since its change; two ticks put every later stamp past every earlier one, so that a
    /// step's changes always show.
    static func waitForClockTicks() {
        var now = Glibc.timespec()
        for _ in 0..<2 {
            clock_gettime(CLOCK_REALTIME_COARSE, &now)
            let start = now
            while now.tv_sec == start.tv_sec && now.tv_nsec == start.tv_nsec {
                usleep(100)
                clock_gettime(CLOCK_REALTIME_COARSE, &now)
            }
        }
    }

    #if arch(x86_64)
        static let (sysSetgroups, sysCapget, sysCapset) = (116, 125, 126)
    #elseif arch(arm64)
        static let (sysSetgroups, sysCapget, sysCapset) = (159, 90, 91)
    #endif

    static let cloneFS: Int32 = 0x200
    static let renameNoreplaceExchange: UInt32 = 3

    /// The 64-bit effective and permitted capability sets of the calling thread.
    static func capabilities() -> (effective: UInt64, permitted: UInt64) {
        var header: [UInt32] = [0x2008_0522, 0]
        var data = [UInt32](repeating: 0, count: 6)
        _ = header.withUnsafeMutableBytes { h in
            data.withUnsafeMutableBytes { d in syscall3(sysCapget, Int(bitPattern: h.baseAddress), Int(bitPattern: d.baseAddress), 0) }
        }
        return (UInt64(data[0]) | UInt64(data[3]) << 32, UInt64(data[1]) | UInt64(data[4]) << 32)
    }

    /// Sets the calling thread's effective capabilities (within its permitted ones).
    static func setEffective(_ effective: UInt64, permitted: UInt64) {
        var header: [UInt32] = [0x2008_0522, 0]
        var data: [UInt32] = [UInt32(truncatingIfNeeded: effective), UInt32(truncatingIfNeeded: permitted), 0]
        data += [UInt32(truncatingIfNeeded: effective >> 32), UInt32(truncatingIfNeeded: permitted >> 32), 0]
        let rc = header.withUnsafeMutableBytes { h in
            data.withUnsafeMutableBytes { d in syscall3(sysCapset, Int(bitPattern: h.baseAddress), Int(bitPattern: d.baseAddress), 0) }
        }
        precondition(rc == 0, "capset failed: \(errno)")
    }

    static func setGroups(_ groups: [UInt32]) {
        let rc = groups.withUnsafeBufferPointer { syscall3(sysSetgroups, groups.count, Int(bitPattern: $0.baseAddress), 0) }
        precondition(rc == 0, "setgroups failed: \(errno)")
    }

    /// Takes `who`'s file-system credentials on the calling thread: root with every
    /// capability it is permitted, or a user with none.
    static func become(_ who: Who, permitted: UInt64) {
        setEffective(permitted, permitted: permitted)
        switch who {
        case .root:
            _ = setfsuid(0)
            _ = setfsgid(0)
            setGroups([0])
        case .user(let uid, let gid, let groups):
            setGroups([gid] + groups)
            _ = setfsgid(gid)
            _ = setfsuid(uid)
            setEffective(0, permitted: permitted)
        }
    }
}

/// A result handed from the host thread to the test's (the semaphore orders the accesses).
/// Guarded by: the semaphore the host thread signals after its one write.
final class HandOff<T: Sendable>: @unchecked Sendable {
    var value: T?
}

/// Runs `steps` against the kernel in `directory` (which must be empty, on tmpfs), on a
/// thread that roots itself there; returns the tree before the first step and each step's
/// outcome.
func runOnHost(directory: String, steps: [Step]) -> (initial: Snapshot, outcomes: [Outcome]) {
    let box = HandOff<(Snapshot, [Outcome])>()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        box.value = hostRun(directory, steps)
        done.signal()
    }
    thread.stackSize = 16 << 20
    thread.start()
    done.wait()
    return box.value!
}

private func hostRun(_ directory: String, _ steps: [Step]) -> (Snapshot, [Outcome]) {
    precondition(Host.unshare(Host.cloneFS) == 0, "unshare(CLONE_FS) failed: \(errno)")
    precondition(chroot(directory) == 0 && chdir("/") == 0, "chroot failed: \(errno)")
    umask(0)
    let permitted = Host.capabilities().permitted
    let initial = hostSnapshot()
    var outcomes: [Outcome] = []
    for step in steps {
        Host.become(step.who, permitted: permitted)
        let (e, output) = hostPerform(step.op)
        Host.become(.root, permitted: permitted)
        outcomes.append(Outcome(errno: e, output: output, after: hostSnapshot()))
        Host.waitForClockTicks()
    }
    return (initial, outcomes)
}

private func result(_ rc: Int32) -> (Int32, String) { (rc == 0 ? 0 : errno, "") }

private func hostPerform(_ op: DiffOp) -> (Int32, String) {
    switch op {
    case .create(let p, let mode, let exclusive):
        let flags = O_CREAT | O_RDONLY | O_NONBLOCK | O_NOCTTY | O_NOFOLLOW | (exclusive ? O_EXCL : 0)
        let fd = open(p, flags, mode_t(mode))
        if fd < 0 { return (errno, "") }
        close(fd)
        return (0, "")
    case .mknod(let p, let type, let mode, let rdev):
        return result(mknodat(AT_FDCWD, p, mode_t(type.modeBits) | mode_t(mode), dev_t(rdev)))
    case .mkdir(let p, let mode): return result(mkdirat(AT_FDCWD, p, mode_t(mode)))
    case .symlink(let p, let target): return result(symlinkat(target, AT_FDCWD, p))
    case .readlink(let p):
        var buffer = [CChar](repeating: 0, count: 8192)
        let n = readlinkat(AT_FDCWD, p, &buffer, buffer.count)
        if n < 0 { return (errno, "") }
        return (0, String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
    case .link(let from, let to): return result(linkat(AT_FDCWD, from, AT_FDCWD, to, 0))
    case .unlink(let p): return result(unlinkat(AT_FDCWD, p, 0))
    case .rmdir(let p): return result(unlinkat(AT_FDCWD, p, AT_REMOVEDIR))
    case .rename(let from, let to, let flags): return result(Host.renameat2(AT_FDCWD, from, AT_FDCWD, to, flags))
    case .chmod(let p, let mode, let follow):
        return result(Host.fchmodat2(p, mode, follow ? 0 : AT_SYMLINK_NOFOLLOW))
    case .chown(let p, let uid, let gid):
        return result(fchownat(AT_FDCWD, p, uid ?? UInt32.max, gid ?? UInt32.max, AT_SYMLINK_NOFOLLOW))
    case .utimes(let p, let a, let m):
        var times = [timespec(a), timespec(m)]
        return result(utimensat(AT_FDCWD, p, &times, AT_SYMLINK_NOFOLLOW))
    case .stat(let p, let follow):
        var st = Glibc.stat()
        if fstatat(AT_FDCWD, p, &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) != 0 { return (errno, "") }
        return (0, "\(FileType(mode: st.st_mode).map { "\($0)" } ?? "?")")
    case .truncate(let p): return result(truncate(p, 0))
    case .linkOrphan(let p, let to):
        let fd = open(p, O_RDONLY | O_NOFOLLOW)
        if fd < 0 { return (errno, "") }
        defer { close(fd) }
        if unlink(p) != 0 { return (errno, "") }
        return result(linkat(fd, "", AT_FDCWD, to, 0x1000))  // AT_EMPTY_PATH
    default: return hostXattr(op)
    }
}

private func timespec(_ t: TimeArg?) -> Glibc.timespec {
    switch t {
    case nil: return Glibc.timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)
    case .now: return Glibc.timespec(tv_sec: 0, tv_nsec: (1 << 30) - 1)
    case .seconds(let s): return Glibc.timespec(tv_sec: Int(s), tv_nsec: 0)
    }
}

private func hostXattr(_ op: DiffOp) -> (Int32, String) {
    switch op {
    case .setxattr(let p, let name, let value, let flags):
        let bytes = Array(value.utf8)
        return result(bytes.withUnsafeBytes { Host.lsetxattr(p, name, $0.baseAddress, bytes.count, flags) })
    case .getxattr(let p, let name):
        var buffer = [UInt8](repeating: 0, count: 70_000)
        let n = Host.lgetxattr(p, name, &buffer, buffer.count)
        return n < 0 ? (errno, "") : (0, String(decoding: buffer[0..<n], as: UTF8.self))
    case .removexattr(let p, let name): return result(Host.lremovexattr(p, name))
    case .listxattr(let p):
        guard let names = hostXattrNames(p) else { return (errno, "") }
        return (0, names.map { String(decoding: $0, as: UTF8.self) }.sorted().joined(separator: ","))
    default: preconditionFailure("not an xattr call: \(op)")
    }
}

private func hostXattrNames(_ path: String) -> [[UInt8]]? {
    var buffer = [CChar](repeating: 0, count: 65536)
    let n = Host.llistxattr(path, &buffer, buffer.count)
    if n < 0 { return nil }
    return buffer[0..<n].split(separator: 0).map { $0.map { UInt8(bitPattern: $0) } }
}

/// The tree under the thread's root, read with lstat, readlink and the xattr calls.
private func hostSnapshot() -> Snapshot {
    var snap = Snapshot()
    var pending = ["/"]
    while let path = pending.popLast() {
        var st = Glibc.stat()
        precondition(lstat(path, &st) == 0, "lstat \(path): \(errno)")
        let type = FileType(mode: st.st_mode)!
        var node = Node(
            type: type, permissions: UInt16(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid, nlink: UInt32(st.st_nlink),
            size: type == .regular || type == .symlink ? Int64(st.st_size) : 0, rdev: UInt64(st.st_rdev), target: nil, xattrs: [:])
        if type == .symlink {
            var buffer = [CChar](repeating: 0, count: 8192)
            let n = readlink(path, &buffer, buffer.count)
            node.target = buffer[0..<max(n, 0)].map { UInt8(bitPattern: $0) }
        }
        for name in hostXattrNames(path) ?? [] {
            var value = [UInt8](repeating: 0, count: 70_000)
            let n = String(decoding: name, as: UTF8.self).withCString { Host.lgetxattr(path, $0, &value, value.count) }
            node.xattrs[name] = Array(value[0..<max(n, 0)])
        }
        snap.nodes[path] = node
        snap.stamps[path] = Stamp(inode: UInt64(st.st_ino), mtime: Timestamp(st.st_mtim), ctime: Timestamp(st.st_ctim))
        if type == .directory {
            let names = hostEntries(path)
            snap.listings[path] = names
            pending += names.map { path == "/" ? "/" + $0 : path + "/" + $0 }
        }
    }
    return snap
}

private func hostEntries(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

extension Timestamp {
    init(_ t: Glibc.timespec) { self.init(seconds: Int64(t.tv_sec), nanoseconds: UInt32(t.tv_nsec)) }
}
