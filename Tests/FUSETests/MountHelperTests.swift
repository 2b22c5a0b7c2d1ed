// Counterpart: none in the kernel; mount(8)'s helper for the type fuse.iomap (`iomap
// install-mount-helper`), run as mount(8) runs it, and through mount(8) itself.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The fields of /proc/self/mounts' line for `mountpoint`.
func mountsFields(_ mountpoint: String) -> [String] {
    let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
    let line = mounts.split(separator: "\n").first { $0.split(separator: " ").dropFirst().first.map(String.init) == mountpoint }
    return line.map { $0.split(separator: " ").map(String.init) } ?? []
}

@Suite("iomap install-mount-helper", .serialized, .enabled(if: MountEnvironment.available, "needs root and /dev/fuse"))
struct MountHelperTests {
    @Test("the helper as mount(8) calls it: mount(8)'s own flags and options dropped, the type fuse.iomap; a bad option refused")
    func helperAsMountCallsIt() throws {
        let f = try MountFixture()
        defer { f.cleanup() }
        let installed = try runIOMap(["install-mount-helper", "--dir", f.root])
        #expect(installed.status == 0, "\(installed.stderr)")
        let helper = URL(fileURLWithPath: f.root + "/mount.fuse.iomap")
        let r = try run(helper, [f.image, f.mountpoint, "-n", "-o", "rw,noatime,defaults,fsname=helped"])
        #expect(r.status == 0, "\(r.stderr)")
        let fields = mountsFields(f.mountpoint)
        #expect(fields.count > 3 && fields[0] == "helped" && fields[2] == "fuse.iomap", "\(fields)")
        try writeFile(f.path("via-helper"), Array("helper".utf8), fsync: true)
        #expect(fileHolds(f.path("via-helper"), Array("helper".utf8)))
        try f.umount()
        let bad = try run(helper, [f.image, f.mountpoint, "-o", "bogus"])
        #expect(bad.status == 2 && bad.stderr.contains("bogus"), "\(bad.status): \(bad.stderr)")
        #expect(mountsFields(f.mountpoint).isEmpty, "nothing mounted after a refused option")
        let usage = try run(helper, [f.image])
        #expect(usage.status == 2 && usage.stderr.contains("usage"))
    }

    @Test("mount -t fuse.iomap IMAGE DIR through mount(8), with the helper in /sbin")
    func throughMount8() throws {
        let target = "/sbin/mount.fuse.iomap"
        guard !FileManager.default.fileExists(atPath: target) else {
            print("mount(8) test skipped: \(target) exists and is not this test's to replace")
            return
        }
        let f = try MountFixture()
        defer {
            f.cleanup()
            unlink(target)
        }
        #expect(try runIOMap(["install-mount-helper"]).status == 0)
        let r = try run(URL(fileURLWithPath: "/bin/mount"), ["-t", "fuse.iomap", f.image, f.mountpoint])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(mountsFields(f.mountpoint).dropFirst(2).first == "fuse.iomap", "\(mountsFields(f.mountpoint))")
        try writeFile(f.path("via-mount"), Array("mount(8)".utf8), fsync: true)
        try f.umount()
    }
}
