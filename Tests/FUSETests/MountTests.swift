// `iomap mount` for real: a volume mounted through the kernel's FUSE and used with ordinary
// system calls, unmounted and mounted again, in a loop that gives the old daemon no time, and
// after a kill -9. They run only as root with /dev/fuse, and say why when they do not.

import CKernelShim
import FUSE
import Foundation
import IOMapBase
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("iomap mount: usage, no mount needed")
struct MountUsageTests {
    @Test("an unknown -o option is exit 2, named, and nothing is mounted", arguments: ["dax", "ro,bogus", "cache=none", "fd=3"])
    func unknownOption(option: String) throws {
        let f = try MountFixture(megabytes: 16)
        defer { f.cleanup() }
        let r = try runIOMap(["mount", f.image, f.mountpoint, "-o", option])
        #expect(r.status == 2, "exit \(r.status)")
        let named = option.split(separator: ",").last.map(String.init) ?? option
        #expect(r.stderr.contains(named), "\(r.stderr)")
        #expect(!f.isMounted)
        #expect(!FileManager.default.fileExists(atPath: f.pidFile), "no daemon started")
    }

    @Test("a missing image or mount point is exit 1 with the reason, nothing mounted")
    func missing() throws {
        guard MountEnvironment.available else { return }
        let f = try MountFixture(megabytes: 16)
        defer { f.cleanup() }
        let noImage = try runIOMap(["mount", f.root + "/nope.img", f.mountpoint])
        #expect(noImage.status == 1 && noImage.stderr.contains("nope.img"), "\(noImage.status) \(noImage.stderr)")
        let noDir = try runIOMap(["mount", f.image, f.root + "/nodir"])
        #expect(noDir.status == 1 && noDir.stderr.contains("nodir"), "\(noDir.status) \(noDir.stderr)")
        #expect(!f.isMounted)
    }
}

@Suite("iomap mount: through the kernel", .serialized, .enabled(if: MountEnvironment.available, "needs root and /dev/fuse"))
struct MountTests {
    @Test(
        "system calls through the mount: create, write, pread, rename, link, symlink, readdir, xattrs, fallocate, SEEK_DATA, fsync, mmap; then umount and mount again"
    )
    func systemCalls() throws {
        let f = try MountFixture()
        defer { f.cleanup() }
        try f.mount()
        #expect(f.isMounted)
        let big = pattern(3 << 20 + 123, seed: 1)
        try writeFile(f.path("big"), big, chunk: 100_000, fsync: true)
        #expect(fileHolds(f.path("big"), big))
        try namespaceCalls(f)
        try xattrCalls(f)
        try spaceAndSeekCalls(f)
        try mappedStore(f)
        let dirfd = open(f.mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(dirfd >= 0 && fsync(dirfd) == 0, "fsync of a directory (FSYNCDIR)")
        close(dirfd)
        try f.umount()
        let s = try f.statsReport()
        let enosys = s["enosys_by_opcode"] as? [String: Int] ?? [:]
        for op in ["fsync", "fsyncdir", "flush", "lseek", "fallocate"] { #expect(enosys[op] == nil, "\(op) answered ENOSYS") }
        #expect((s["engine_fsyncs"] as? Int ?? 0) >= 3, "\(s)")
        #expect(s["allow_mmap"] as? Bool == true)
        #expect(s["bad_requests"] as? Int == 0)
        #expect(s["threads_cloned"] as? Int == 3, "4 request threads, 3 on clones")
        try f.mount()
        #expect(fileHolds(f.path("big"), big), "the bytes after umount and mount")
        #expect(fileHolds(f.path("dir/renamed"), Array("hello".utf8)))
        #expect(Array((readFile(f.path("m")) ?? []).dropFirst(8192).prefix(8)) == Array("MAPPED!!".utf8))
        try f.umount()
        let fsck = try runIOMap(["fsck", f.image])
        #expect(fsck.status == 0, "\(fsck.stdout)")
    }

    func namespaceCalls(_ f: MountFixture) throws {
        #expect(mkdir(f.path("dir"), 0o755) == 0)
        try writeFile(f.path("small"), Array("hello".utf8))
        #expect(rename(f.path("small"), f.path("dir/renamed")) == 0)
        #expect(link(f.path("dir/renamed"), f.path("hard")) == 0)
        var st = stat()
        #expect(stat(f.path("hard"), &st) == 0 && st.st_nlink == 2 && st.st_size == 5)
        #expect(symlink("dir/renamed", f.path("sym")) == 0)
        var target = [CChar](repeating: 0, count: 256)
        let n = readlink(f.path("sym"), &target, 255)
        #expect(n == 11 && String(decoding: target[0..<max(0, n)].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "dir/renamed")
        #expect(fileHolds(f.path("sym"), Array("hello".utf8)), "through the symlink")
        #expect(listDirectory(f.mountpoint) == [".", "..", "big", "dir", "hard", "sym"])
        #expect(listDirectory(f.path("dir")) == [".", "..", "renamed"])
        #expect(unlink(f.path("hard")) == 0)
        #expect(rmdir(f.path("dir")) == -1 && errno == ENOTEMPTY)
        #expect(mkdir(f.path("dir"), 0o755) == -1 && errno == EEXIST)
    }

    func xattrCalls(_ f: MountFixture) throws {
        let p = f.path("big")
        #expect(setxattr(p, "user.colour", "blue", 4, 0) == 0)
        var value = [UInt8](repeating: 0, count: 64)
        #expect(getxattr(p, "user.colour", &value, 64) == 4 && Array(value[0..<4]) == Array("blue".utf8))
        #expect(getxattr(p, "user.colour", nil, 0) == 4)
        var names = [CChar](repeating: 0, count: 256)
        #expect(listxattr(p, &names, 256) == 12)
        #expect(removexattr(p, "user.colour") == 0)
        #expect(getxattr(p, "user.colour", &value, 64) == -1 && errno == ENODATA)
    }

    func spaceAndSeekCalls(_ f: MountFixture) throws {
        let fd = open(f.path("sparse"), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        defer { close(fd) }
        let data = pattern(65536, seed: 2)
        #expect(data.withUnsafeBytes { pwrite(fd, $0.baseAddress, 65536, 1 << 20) } == 65536)
        #expect(cks_seek_data(fd, 0) == 1 << 20)
        #expect(cks_seek_hole(fd, 1 << 20) == (1 << 20) + 65536)
        #expect(cks_fallocate(fd, Int32(CKS_FALLOC_PUNCH_HOLE), (1 << 20) + 4096, 8192) == 0)
        #expect(cks_seek_hole(fd, 1 << 20) == (1 << 20) + 4096)
        #expect(cks_seek_data(fd, (1 << 20) + 4096) == (1 << 20) + 12288)
        var back = [UInt8](repeating: 1, count: 8192)
        #expect(back.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 8192, (1 << 20) + 4096) } == 8192)
        #expect(back.allSatisfy { $0 == 0 }, "the punched range reads as zeroes")
        #expect(cks_fallocate(fd, Int32(CKS_FALLOC_ALLOCATE), 4 << 20, 4096) == 0)
        #expect(cks_size(fd) == (4 << 20) + 4096)
        #expect(cks_fallocate(fd, Int32(CKS_FALLOC_ZERO_RANGE_KEEP_SIZE), (1 << 20), 100) == 0)
        #expect(cks_seek_data(fd, (8 << 20)) == -Int64(ENXIO))
        #expect(cks_fsync(fd) == 0)
    }

    func mappedStore(_ f: MountFixture) throws {
        try storeWithoutMsync(f)
        let fd = open(f.path("m"), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        defer { close(fd) }
        #expect(ftruncate(fd, 65536) == 0)
        let bytes = Array("MAPPED!!".utf8)
        #expect(bytes.withUnsafeBytes { cks_mapped_store(fd, $0.baseAddress, 8, 8192) } == 0, "a shared writable mapping and msync")
        var back = [UInt8](repeating: 0, count: 8)
        #expect(back.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 8, 8192) } == 8)
        #expect(back == bytes, "pread sees the store after msync")
        #expect(cks_seek_data(fd, 0) == 8192, "SEEK_DATA sees it after msync")
        let later = Array("pwritten".utf8)
        #expect(later.withUnsafeBytes { pwrite(fd, $0.baseAddress, 8, 16384) } == 8)
        var mapped = [UInt8](repeating: 0, count: 8)
        #expect(mapped.withUnsafeMutableBytes { cks_mapped_load(fd, $0.baseAddress, 8, 16384) } == 0)
        #expect(mapped == later, "a new mapping sees a pwrite")
    }

    @Test("remount loop: 100 rounds of write, close without fsync, umount, mount at once: no byte lost")
    func remountLoop() throws {
        let f = try MountFixture()
        defer { f.cleanup() }
        // IOMAP_REMOUNT_ROUNDS runs a longer (or shorter) loop; 100 take about 15 s here.
        let rounds = ProcessInfo.processInfo.environment["IOMAP_REMOUNT_ROUNDS"].flatMap { Int($0) } ?? 100
        var lost: [String] = []
        for round in 0..<rounds {
            // Every tenth round's daemon takes 400 ms more to unmount the volume after the
            // kernel let it go: a mount that did not wait for it would find the image as it
            // was before its last writes.
            try f.mount(environment: round % 10 == 1 ? ["IOMAP_MOUNT_TEST_UNMOUNT_DELAY_MS": "400"] : [:])
            // The file the last daemon had when it was let go, unsynced, and a few older ones.
            for earlier in Set([round - 1, round / 2, round / 3].filter { $0 >= 0 && $0 < round }) {
                if !fileHolds(f.path("file-\(earlier)"), remountBytes(earlier)) { lost.append("round \(round): file-\(earlier)") }
            }
            try writeFile(f.path("file-\(round)"), remountBytes(round))
            // umount returns before the daemon has unmounted the volume; the next mount
            // must wait for it on the image's lock, with no wait here.
            let r = try run(URL(fileURLWithPath: "/bin/umount"), [f.mountpoint])
            #expect(r.status == 0, "umount: \(r.stderr)")
        }
        try f.mount()
        for i in 0..<rounds where !fileHolds(f.path("file-\(i)"), remountBytes(i)) { lost.append("at the end: file-\(i)") }
        #expect(lost.isEmpty, "\(lost.count) files not as written: \(lost.prefix(10))")
        try f.umount()
        let fsck = try runIOMap(["fsck", f.image])
        #expect(fsck.status == 0, "\(fsck.stdout)")
    }

    /// Round `i`'s file: 100 KB and some, its size and bytes different every round.
    func remountBytes(_ i: Int) -> [UInt8] { pattern(100_000 + 37 * i, seed: UInt8(truncatingIfNeeded: i)) }

    @Test("kill -9 of the daemon: the dead mount is named, and after umount the next mount recovers; fsck clean, the fsync'd file intact")
    func killNine() throws {
        let f = try MountFixture()
        defer { f.cleanup() }
        try f.mount()
        let synced = pattern(300_000, seed: 9)
        try writeFile(f.path("synced"), synced, fsync: true)
        try writeFile(f.path("unsynced"), pattern(50_000, seed: 10))
        let pid = try #require(f.daemonPID)
        #expect(kill(pid, SIGKILL) == 0)
        #expect(f.waitForDaemon(), "the killed daemon's lock is gone")
        var st = stat()
        #expect(stat(f.mountpoint, &st) == -1 && errno == ENOTCONN, "the mount is dead")
        let again = try runIOMap(["mount", f.image, f.mountpoint])
        #expect(again.status == 1 && again.stderr.contains("umount"), "\(again.stderr)")
        let r = try run(URL(fileURLWithPath: "/bin/umount"), [f.mountpoint])
        #expect(r.status == 0, "umount of the dead mount: \(r.stderr)")
        try f.mount()
        #expect(fileHolds(f.path("synced"), synced))
        try f.umount()
        let fsck = try runIOMap(["fsck", f.image])
        #expect(fsck.status == 0, "\(fsck.stdout)")
    }

    @Test("-o ro,subtype=,fsname=,allow_other: the mount's type, source and flags; writes are EROFS")
    func options() throws {
        let f = try MountFixture()
        defer { f.cleanup() }
        try f.mount()
        try writeFile(f.path("kept"), Array("kept".utf8), fsync: true)
        try f.umount()
        try f.mount(["-o", "ro,subtype=iomap,fsname=testvol", "-o", "allow_other"])
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        let line = mounts.split(separator: "\n").first { $0.split(separator: " ").dropFirst().first.map(String.init) == f.mountpoint }
        let fields = line.map { $0.split(separator: " ").map(String.init) } ?? []
        #expect(fields.count > 3 && fields[0] == "testvol" && fields[2] == "fuse.iomap", "\(fields)")
        let flags = fields.count > 3 ? fields[3].split(separator: ",").map(String.init) : []
        #expect(flags.contains("ro") && flags.contains("allow_other") && flags.contains("default_permissions"), "\(flags)")
        #expect(fileHolds(f.path("kept"), Array("kept".utf8)))
        #expect(open(f.path("new"), O_WRONLY | O_CREAT | O_CLOEXEC, 0o644) == -1 && errno == EROFS)
        try f.umount()
    }

    @Test("another user: refused a 0600 file; a write of theirs clears set-user-id, and what they create is theirs")
    func otherUser() throws {
        let f = try MountFixture()
        defer { f.cleanup() }
        // mkdtemp made the fixture's directory 0700: the other user must be able to reach the
        // mount point, or every refusal below would be the fixture's, not the mount's.
        chmod(f.root, 0o755)
        try f.mount(["-o", "allow_other"])
        chmod(f.mountpoint, 0o1777)
        try writeFile(f.path("private"), Array("secret".utf8))
        chmod(f.path("private"), 0o600)
        try writeFile(f.path("setuid"), Array("x".utf8))
        chmod(f.path("setuid"), 0o4777)
        let asUser = ["--reuid=1000", "--regid=1000", "--clear-groups", "/bin/sh", "-c"]
        let setpriv = URL(fileURLWithPath: "/usr/bin/setpriv")
        let denied = try run(setpriv, asUser + ["cat \(f.path("private"))"])
        #expect(denied.status != 0 && denied.stderr.contains("Permission denied"), "\(denied.stderr)")
        let wrote = try run(setpriv, asUser + ["printf y >> \(f.path("setuid")) && echo mine > \(f.path("theirs"))"])
        #expect(wrote.status == 0, "\(wrote.stderr)")
        var st = stat()
        #expect(stat(f.path("setuid"), &st) == 0 && st.st_mode & 0o7777 == 0o777, "set-user-id cleared: \(String(st.st_mode, radix: 8))")
        #expect(stat(f.path("theirs"), &st) == 0 && st.st_uid == 1000 && st.st_gid == 1000)
        try f.umount()
    }

    /// A store through a shared mapping, not yet written back: SEEK_DATA must not call it a
    /// hole (the kernel sends LSEEK without writing its dirty pages back first).
    func storeWithoutMsync(_ f: MountFixture) throws {
        let fd = open(f.path("unsynced-map"), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        defer { close(fd) }
        #expect(ftruncate(fd, 1 << 20) == 0)
        let store = 512 * 1024
        guard let map = mmap(nil, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), map != MAP_FAILED else {
            Issue.record("mmap: errno \(errno)")
            return
        }
        map.storeBytes(of: 0x4D, toByteOffset: store, as: UInt8.self)
        let data = cks_seek_data(fd, 4096)
        #expect(data >= 0 && data <= store, "SEEK_DATA before msync: \(data)")
        let hole = cks_seek_hole(fd, Int64(store))
        #expect(hole > store, "SEEK_HOLE from the stored byte: \(hole)")
        #expect(msync(map, 1 << 20, MS_SYNC) == 0)
        munmap(map, 1 << 20)
    }
}
