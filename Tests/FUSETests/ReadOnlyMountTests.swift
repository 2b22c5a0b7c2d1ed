// Read-only mounts: `-o ro`, an image with no write permission, and a read-only loop device.
// Each must serve the volume's bytes, refuse every change with EROFS, and leave the image
// byte for byte as it was, even when the volume had a log to replay (a kill -9 before) and
// writes its clean snapshot at unmount. Root and /dev/fuse only, as the other mount tests.

import FUSE
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("iomap mount: read-only", .serialized, .enabled(if: MountEnvironment.available, "needs root and /dev/fuse"))
struct ReadOnlyMountTests {
    /// A fixture whose volume holds `kept` (fsync'd) and whose daemon was killed, so that
    /// the next mount has a log to replay.
    func dirtyVolume() throws -> (MountFixture, [UInt8]) {
        let f = try MountFixture()
        try f.mount()
        let kept = pattern(200_000, seed: 4)
        try writeFile(f.path("kept"), kept, fsync: true)
        let pid = try #require(f.daemonPID)
        #expect(kill(pid, SIGKILL) == 0)
        #expect(f.waitForDaemon())
        let r = try run(URL(fileURLWithPath: "/bin/umount"), [f.mountpoint])
        #expect(r.status == 0, "umount of the dead mount: \(r.stderr)")
        return (f, kept)
    }

    func imageBytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// What a read-only mount must show: the file, EROFS for a change, "ro" in the flags.
    func checkReadOnly(_ f: MountFixture, _ kept: [UInt8]) {
        #expect(fileHolds(f.path("kept"), kept), "the replayed file reads back")
        #expect(open(f.path("new"), O_WRONLY | O_CREAT | O_CLOEXEC, 0o644) == -1 && errno == EROFS)
        #expect(open(f.path("kept"), O_WRONLY | O_CLOEXEC) == -1 && errno == EROFS)
        #expect(mkdir(f.path("dir"), 0o755) == -1 && errno == EROFS)
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        let line = mounts.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }.first {
            $0.count > 3 && $0[1] == f.mountpoint
        }
        #expect(line?[3].split(separator: ",").contains("ro") == true, "\(line ?? [])")
    }

    @Test("-o ro over a volume with a log to replay: the data is served, changes are EROFS, and the image is unchanged after umount")
    func optionRO() throws {
        let (f, kept) = try dirtyVolume()
        defer { f.cleanup() }
        let before = try imageBytes(f.image)
        try f.mount(["-o", "ro"])
        checkReadOnly(f, kept)
        _ = readFile(f.path("kept"))
        try f.umount()
        #expect(try imageBytes(f.image) == before, "-o ro wrote to the image")
        // A read-write mount afterwards still finds the log to replay, and the file.
        try f.mount()
        #expect(fileHolds(f.path("kept"), kept))
        try f.umount()
        #expect(try runIOMap(["fsck", f.image]).status == 0)
    }

    @Test("an image with no write permission bit mounts read-only, saying so, and is not written")
    func noWritePermission() throws {
        let (f, kept) = try dirtyVolume()
        defer { f.cleanup() }
        chmod(f.image, 0o444)
        let before = try imageBytes(f.image)
        let r = try f.mount()
        #expect(r.stderr.contains("mounting read-only") && r.stderr.contains("no write permission"), "\(r.stderr)")
        checkReadOnly(f, kept)
        try f.umount()
        #expect(try imageBytes(f.image) == before, "a 0444 image was written")
    }

    @Test("a read-only loop device mounts read-only, saying so, and is not written")
    func readOnlyLoopDevice() throws {
        guard FileManager.default.fileExists(atPath: "/dev/loop-control"),
            let losetup = ["/usr/sbin/losetup", "/sbin/losetup", "/usr/bin/losetup"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else {
            print("read-only loop device test skipped: no loop devices or no losetup")
            return
        }
        let (f, kept) = try dirtyVolume()
        defer { f.cleanup() }
        let attach = try run(URL(fileURLWithPath: losetup), ["-r", "-f", "--show", f.image])
        let device = attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try #require(attach.status == 0 && device.hasPrefix("/dev/loop"), "losetup -r: \(attach.stderr)")
        defer { _ = try? run(URL(fileURLWithPath: losetup), ["-d", device]) }
        let before = try imageBytes(f.image)
        let r = try runIOMap(["mount", device, f.mountpoint, "--log", f.log, "--pid-file", f.pidFile])
        #expect(r.status == 0, "\(r.stderr)\n\(f.daemonLog)")
        #expect(r.stderr.contains("read-only block device") && r.stderr.contains("mounting read-only"), "\(r.stderr)")
        checkReadOnly(f, kept)
        let pid = f.daemonPID
        let u = try run(URL(fileURLWithPath: "/bin/umount"), [f.mountpoint])
        #expect(u.status == 0, "\(u.stderr)")
        // The daemon locked the device node, not the file: wait for it to exit.
        let deadline = Date().addingTimeInterval(30)
        while let pid, kill(pid, 0) == 0, Date() < deadline { usleep(5000) }
        #expect(try imageBytes(f.image) == before, "a read-only loop device's image was written")
    }
}
