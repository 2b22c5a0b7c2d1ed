// `iomap mount` by a user who may not call mount(2): the mount goes through fusermount3
// (Debian's fuse3), which hands the /dev/fuse descriptor back over a unix socket, and
// `fusermount3 -u` unmounts. As root the tests run the tool as `nobody` through setpriv; as
// anybody else, as themselves. Without fusermount3, /dev/fuse, or (as root) setpriv and a
// `nobody` user, they print why and skip.

import ExtentFS
import FUSE
import Foundation
import Testing
import Volume

#if canImport(Glibc)
    import Glibc
#endif

/// Who runs the unprivileged mount, and how to run a command as them.
struct UnprivilegedUser {
    let uid: uid_t
    let gid: gid_t
    /// setpriv and its arguments, or nothing when the tests already run unprivileged.
    let prefix: [String]
    let fusermount: String

    /// The user, or nil after printing why the tests cannot run.
    static let found: UnprivilegedUser? = {
        func skip(_ why: String) -> UnprivilegedUser? {
            print("unprivileged mount tests skipped: \(why)")
            return nil
        }
        guard let fusermount = FUSEMount.fusermountPath() else { return skip("no fusermount3 (Debian: apt-get install fuse3)") }
        var st = stat()
        guard stat("/dev/fuse", &st) == 0 else { return skip("no /dev/fuse") }
        // fusermount3 opens /dev/fuse as the user: Debian makes it 0666.
        if geteuid() != 0 {
            guard access("/dev/fuse", R_OK | W_OK) == 0 else { return skip("/dev/fuse is not readable and writable by this user") }
        } else if st.st_mode & 0o006 != 0o006 {
            return skip("/dev/fuse is mode \(String(st.st_mode & 0o777, radix: 8)), not usable by other users (Debian makes it 0666)")
        }
        if geteuid() != 0 { return UnprivilegedUser(uid: getuid(), gid: getgid(), prefix: [], fusermount: fusermount) }
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let setpriv else { return skip("running as root and no setpriv to become another user") }
        guard let pw = getpwnam("nobody") else { return skip("running as root and no user 'nobody' to become") }
        let uid = pw.pointee.pw_uid
        let gid = pw.pointee.pw_gid
        return UnprivilegedUser(
            uid: uid, gid: gid, prefix: [setpriv, "--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", "--"], fusermount: fusermount)
    }()

    /// Runs `executable arguments` as this user.
    func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
        guard let first = prefix.first else {
            return try FUSETests.run(URL(fileURLWithPath: executable), arguments, environment: environment)
        }
        return try FUSETests.run(
            URL(fileURLWithPath: first), Array(prefix.dropFirst()) + [executable] + arguments, environment: environment)
    }

    func shell(_ command: String) throws -> CommandResult { try run("/bin/sh", ["-c", command]) }
}

/// A volume image, a mount point and a copy of the `iomap` tool in a directory the user owns
/// (a copy, so that the user need not be able to reach the build directory).
final class UnprivilegedFixture {
    let user: UnprivilegedUser
    let root: String
    let image: String
    let mountpoint: String
    let tool: String
    let log: String

    init(_ user: UnprivilegedUser) throws {
        self.user = user
        var template = Array("/tmp/iomap-fuse-user-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw FixtureError("mkdtemp failed") }
        root = String(cString: made)
        image = root + "/vol.img"
        mountpoint = root + "/mnt"
        tool = root + "/iomap"
        log = root + "/daemon.log"
        mkdir(mountpoint, 0o755)
        try FileManager.default.copyItem(atPath: try iomapExecutable().path, toPath: tool)
        let device = try FileBlockDevice(path: image, blockSize: 4096, blockCount: 64 * 256, create: true)
        var format = FormatOptions()
        format.uid = user.uid
        format.gid = user.gid
        try Volume.format(device: device, options: format)
        chmod(root, 0o755)
        for p in [root, image, mountpoint, tool] { chown(p, user.uid, user.gid) }
    }

    func mount(_ extra: [String] = [], environment: [String: String] = [:]) throws -> CommandResult {
        try user.run(tool, ["mount", image, mountpoint, "--log", log] + extra, environment: environment)
    }

    var mountLine: [String]? {
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        return mounts.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }.first { $0.count > 3 && $0[1] == mountpoint }
    }

    var daemonLog: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// Waits until no daemon holds the image's lock.
    func waitForDaemon(seconds: Double = 30) -> Bool { waitForImageLock(image, seconds: seconds) }

    func cleanup() {
        if mountLine != nil { _ = try? user.run(user.fusermount, ["-u", "-z", mountpoint]) }
        if geteuid() == 0, mountLine != nil { umount2(mountpoint, 2) }
        _ = waitForDaemon(seconds: 10)
        try? FileManager.default.removeItem(atPath: root)
    }
}

@Suite("iomap mount without root: through fusermount3", .serialized)
struct UnprivilegedMountTests {
    @Test("a user mounts through fusermount3, writes and reads, unmounts with fusermount3 -u; the bytes are there after")
    func mountAsUser() throws {
        guard let user = UnprivilegedUser.found else { return }
        let f = try UnprivilegedFixture(user)
        defer { f.cleanup() }
        let r = try f.mount()
        try #require(r.status == 0, "iomap mount as uid \(user.uid) exited \(r.status): \(r.stderr)\n\(f.daemonLog)")
        let line = try #require(f.mountLine, "not in /proc/self/mounts")
        #expect(line[2] == "fuse" && line[3].contains("user_id=\(user.uid)"), "\(line)")
        #expect(line[3].contains("nosuid") && line[3].contains("nodev"), "fusermount3 adds nosuid,nodev: \(line)")
        let wrote = try user.shell("echo hello > \(f.mountpoint)/f && cat \(f.mountpoint)/f")
        #expect(wrote.status == 0 && wrote.stdout == "hello\n", "\(wrote.status) \(wrote.stdout) \(wrote.stderr)")
        if geteuid() == 0 {
            // Without allow_other the kernel lets only the mounting user in, root included.
            var st = stat()
            #expect(stat(f.mountpoint + "/f", &st) == -1 && errno == EACCES, "root reached a user's mount without allow_other")
        }
        let u = try user.run(user.fusermount, ["-u", f.mountpoint])
        #expect(u.status == 0, "fusermount3 -u: \(u.stderr)")
        #expect(f.waitForDaemon(), "the daemon still holds the image\n\(f.daemonLog)")
        #expect(f.mountLine == nil)
        let again = try f.mount()
        try #require(again.status == 0, "\(again.stderr)")
        let read = try user.shell("cat \(f.mountpoint)/f")
        #expect(read.stdout == "hello\n", "after fusermount3 -u and a new mount: \(read.stdout) \(read.stderr)")
        #expect(try user.run(user.fusermount, ["-u", f.mountpoint]).status == 0)
        #expect(f.waitForDaemon())
    }

    @Test("not root and no fusermount3: the mount says so and exits 1")
    func noFusermount() throws {
        guard let user = UnprivilegedUser.found else { return }
        let f = try UnprivilegedFixture(user)
        defer { f.cleanup() }
        let r = try f.mount(environment: ["IOMAP_FUSERMOUNT": f.root + "/no-fusermount3"])
        #expect(r.status == 1, "exit \(r.status)")
        #expect(r.stderr.contains("not root, and no fusermount3"), "\(r.stderr)")
        #expect(f.mountLine == nil)
    }

    @Test("allow_other without user_allow_other in /etc/fuse.conf is refused by name")
    func allowOther() throws {
        guard let user = UnprivilegedUser.found else { return }
        guard !FUSEMount.userAllowOther() else {
            print("allow_other test skipped: /etc/fuse.conf has user_allow_other")
            return
        }
        let f = try UnprivilegedFixture(user)
        defer { f.cleanup() }
        let r = try f.mount(["-o", "allow_other"])
        #expect(r.status == 1 && r.stderr.contains("user_allow_other"), "\(r.status) \(r.stderr)")
        #expect(f.mountLine == nil)
    }

    @Test("the options fusermount3 gets: names escaped, no descriptor or ids")
    func fusermountOptions() throws {
        var o = try MountOptions.parse(["ro,nosuid,subtype=iomap,allow_other"])
        #expect(
            FUSEMount.fusermountOptions(o, source: "/a,b\\c.img")
                == "default_permissions,fsname=/a\\,b\\\\c.img,subtype=iomap,allow_other,ro,nosuid")
        o = MountOptions()
        #expect(FUSEMount.fusermountOptions(o, source: "vol") == "default_permissions,fsname=vol")
    }
}
