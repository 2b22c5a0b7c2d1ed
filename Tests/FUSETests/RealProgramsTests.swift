// Debian's own I/O programs through the mount: fio writing sequentially, randomly and
// through mmap with crc32c verification of every block, and stress-ng's file stressors with
// --verify. A program that is missing skips its test with the reason (`.ci/run` installs
// them as root). fio's verification is shown to have teeth: a byte changed behind its back
// makes `--verify_only` fail.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The program on PATH or in /usr/bin, or nil (printing that the test is skipped).
func program(_ name: String, for test: String) -> URL? {
    let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/bin", "/usr/local/bin"]
    if let dir = dirs.first(where: { FileManager.default.isExecutableFile(atPath: $0 + "/" + name) }) {
        return URL(fileURLWithPath: dir + "/" + name)
    }
    print("\(test) skipped: \(name) is not installed (apt-get install \(name); .ci/run does so as root)")
    return nil
}

@Suite("iomap mount: real programs", .serialized, .enabled(if: MountEnvironment.available, "needs root and /dev/fuse"))
struct RealProgramsTests {
    /// One fio job on `dir`, verified with crc32c. No verify state file: fio would leave one in
    /// the working directory (the repository's, under `swift test`).
    func fioJob(_ fio: URL, _ dir: String, _ arguments: [String]) throws -> CommandResult {
        try run(fio, ["--directory=\(dir)", "--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0", "--minimal"] + arguments)
    }

    @Test("fio with verify=crc32c: sequential, random and mmap writes read back whole; a changed byte fails --verify_only")
    func fio() throws {
        guard let fio = program("fio", for: "fio test") else { return }
        let seed = mountTestSeed("fio")
        let f = try MountFixture(megabytes: 256)
        defer { f.cleanup() }
        try f.mount()
        let jobs: [[String]] = [
            ["--name=seq", "--rw=write", "--bs=64k", "--size=48m", "--ioengine=psync", "--end_fsync=1"],
            ["--name=rand", "--rw=randwrite", "--bs=4k", "--size=16m", "--ioengine=psync", "--randseed=\(seed)"],
            ["--name=unaligned", "--rw=randwrite", "--bsrange=512-96k", "--size=16m", "--ioengine=psync", "--randseed=\(seed)"],
            ["--name=mapped", "--rw=randwrite", "--bs=4k", "--size=8m", "--ioengine=mmap", "--randseed=\(seed)"],
        ]
        for job in jobs {
            let r = try fioJob(fio, f.mountpoint, job + ["--do_verify=1"])
            #expect(r.status == 0, "fio \(job.joined(separator: " ")) (seed \(seed)): \(r.stderr)\n\(r.stdout.suffix(2000))")
        }
        // The canary: write without verifying, change one byte, verify only.
        let canary = ["--name=canary", "--rw=write", "--bs=64k", "--size=4m", "--ioengine=psync"]
        #expect(try fioJob(fio, f.mountpoint, canary + ["--do_verify=0"]).status == 0)
        let fd = open(f.path("canary.0.0"), O_RDWR | O_CLOEXEC)
        var byte: UInt8 = 0
        #expect(pread(fd, &byte, 1, 100_000) == 1)
        byte ^= 0xFF
        #expect(pwrite(fd, &byte, 1, 100_000) == 1)
        close(fd)
        let caught = try fioJob(fio, f.mountpoint, canary + ["--verify_only"])
        #expect(caught.status != 0, "fio --verify_only must fail on a changed byte: \(caught.stdout.suffix(500))")
        try f.umount()
        let fsck = try runIOMap(["fsck", f.image])
        #expect(fsck.status == 0, "\(fsck.stdout)")
    }

    @Test("stress-ng's file stressors (hdd, seek, fallocate, mmap on a file, dir, rename, readahead) with --verify: a clean run")
    func stressNG() throws {
        guard let stress = program("stress-ng", for: "stress-ng test") else { return }
        let f = try MountFixture(megabytes: 512)
        defer { f.cleanup() }
        try f.mount()
        // Every stressor stops at its op count; --timeout is only a backstop against one that
        // does not (stress-ng's default is a day). iomix is left out: its parent waits for the
        // timeout even after its workers have done their ops.
        let r = try run(
            stress,
            [
                "--temp-path", f.mountpoint, "--verify", "--metrics-brief", "--timeout", "300s", "--hdd", "2", "--hdd-ops", "400",
                "--hdd-bytes", "8M", "--seek", "1", "--seek-ops", "2000", "--seek-size", "16M", "--fallocate", "1", "--fallocate-ops", "20",
                "--mmap", "1", "--mmap-file", "--mmap-ops", "4", "--mmap-bytes", "1M", "--dir", "1", "--dir-ops", "200", "--rename", "1",
                "--rename-ops", "2000", "--readahead", "1", "--readahead-ops", "200", "--readahead-bytes", "8M",
            ])
        #expect(r.status == 0, "stress-ng exited \(r.status): \(r.stderr.suffix(3000))")
        #expect(r.stderr.contains("successful run completed") || r.stdout.contains("successful run completed"), "\(r.stderr.suffix(1000))")
        try f.umount()
        let fsck = try runIOMap(["fsck", f.image])
        #expect(fsck.status == 0, "\(fsck.stdout)")
    }
}
