// The project's checkers run through a real mount (and on tmpfs beside it, as the control):
// the generic/346 race on a real file (`iomap race --dir`), the differential tester
// (`iomap difftest --dir`), the daemon's fsync and ENOSYS counters, 100 remount cycles and
// 20 kill -9 cycles. Each checker is also shown failing on its canary, so a pass means
// something. They run only as root with /dev/fuse, and say why when they do not.

import CKernelShim
import FUSE
import Foundation
import IOMapBase
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A seed for a randomized mount test: IOMAP_FUSE_SEED if set, else a random one; printed
/// with the test's name, so that a failure can be run again.
func mountTestSeed(_ test: String) -> UInt64 {
    let seed = ProcessInfo.processInfo.environment["IOMAP_FUSE_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0..<1 << 40)
    print("\(test): seed \(seed) (replay: IOMAP_FUSE_SEED=\(seed) swift test ... --filter FUSETests)")
    return seed
}

/// `iomap ARGS --json`: the exit status, the one JSON object on stdout, and stderr.
func runIOMapJSON(_ arguments: [String]) throws -> (status: Int32, json: [String: Any], stderr: String) {
    let r = try runIOMap(arguments + ["--json"])
    let object = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any]
    if object == nil { Issue.record("iomap \(arguments.joined(separator: " ")) printed no JSON object: \(r.stdout)\n\(r.stderr)") }
    return (r.status, object ?? [:], r.stderr)
}

/// A new directory on tmpfs (/dev/shm), the control the mount is compared with.
final class TmpfsDirectory {
    let path: String

    init() throws {
        var template = Array("/dev/shm/iomap-control-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw FixtureError("mkdtemp in /dev/shm: errno \(errno)") }
        path = String(cString: made)
        chmod(path, 0o755)
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        var type: UInt64 = 0
        defer { close(fd) }
        guard fd >= 0, cks_fs_type(fd, &type) == 0, type == 0x0102_1994 else { throw FixtureError("/dev/shm is not tmpfs here") }
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

@Suite("iomap mount: the checkers through the kernel", .serialized, .enabled(if: MountEnvironment.available, "needs root and /dev/fuse"))
struct MountCheckerTests {
    /// The race's options for a test-sized run: 4 MiB, 2 rounds per layout.
    func raceArguments(_ dir: String, seed: UInt64) -> [String] {
        ["race", "--dir", dir, "--size", "4", "--rounds", "2", "--fail-rate", "0.2", "--seed", String(seed)]
    }

    @Test("iomap race --dir on tmpfs and on a cache=writeback mount: no slot lost; --canary loses mapped writers' slots")
    func raceOnFile() throws {
        let seed = mountTestSeed("race --dir")
        let shm = try TmpfsDirectory()
        defer { shm.remove() }
        let control = try runIOMapJSON(raceArguments(shm.path, seed: seed))
        #expect(control.status == 0 && control.json["slots_lost"] as? Int == 0, "tmpfs: \(control.stderr)")
        #expect((control.json["failed_writes"] as? Int ?? 0) > 0, "the buffers' PROT_NONE tails made writes fail")
        let canary = try runIOMapJSON(raceArguments(shm.path, seed: seed) + ["--canary"])
        #expect(canary.status == 1, "the canary must lose slots: \(canary.json)")
        #expect((canary.json["mapped_slots_lost"] as? Int ?? 0) > 0, "\(canary.json)")
        #expect(canary.stderr.contains("run again: iomap race --dir"), "\(canary.stderr)")
        let f = try MountFixture(megabytes: 64)
        defer { f.cleanup() }
        try f.mount(["-o", "cache=writeback"])
        let mounted = try runIOMapJSON(raceArguments(f.mountpoint, seed: seed))
        #expect(mounted.status == 0 && mounted.json["slots_lost"] as? Int == 0, "cache=writeback: \(mounted.stderr)")
        #expect(mounted.json["dir_fstype"] as? String == "fuse")
        let mountCanary = try runIOMapJSON(raceArguments(f.mountpoint, seed: seed) + ["--canary"])
        #expect(mountCanary.status == 1 && (mountCanary.json["mapped_slots_lost"] as? Int ?? 0) > 0, "\(mountCanary.json)")
        try f.umount()
    }

    /// In the default cache=direct mode a pwrite is a direct WRITE: the kernel writes back
    /// and invalidates its cached pages of the range first, but a mapped store into the same
    /// page can fault the page in again (without the pwrite's bytes) before the WRITE
    /// reaches the daemon, and that page's writeback would put the old bytes back over the
    /// pwrite's. The daemon's three-way merge of such writebacks (WritebackMerge.swift) keeps
    /// them; without it this run lost 108-184 pwrite slots.
    @Test("iomap race --dir on the default cache=direct mount: no slot lost, pwrite's nor mapped writer's")
    func raceOnDirectMount() throws {
        let seed = mountTestSeed("race --dir, cache=direct")
        let f = try MountFixture(megabytes: 64)
        defer { f.cleanup() }
        try f.mount()
        let r = try runIOMapJSON(raceArguments(f.mountpoint, seed: seed))
        #expect(r.status == 0 && r.json["slots_lost"] as? Int == 0, "\(r.stderr)")
        #expect(r.json["mapped_slots_lost"] as? Int == 0, "\(r.stderr)")
        try f.umount()
    }

    @Test("iomap difftest --dir on the mount and on tmpfs: 0 mismatches, SEEK answers checked against the bytes; --seek-canary caught")
    func difftestThroughTheMount() throws {
        let seed = mountTestSeed("difftest --dir")
        let f = try MountFixture(megabytes: 256)
        defer { f.cleanup() }
        try f.mount()
        let shm = try TmpfsDirectory()
        defer { shm.remove() }
        for (dir, fstype) in [(f.mountpoint, "fuse"), (shm.path, "tmpfs")] {
            let r = try runIOMapJSON(["difftest", "--dir", dir, "--ops", "10000", "--seed", String(seed)])
            #expect(r.status == 0 && r.json["mismatches"] as? Int == 0, "\(fstype): \(r.json["first_mismatch"] ?? "-")\n\(r.stderr)")
            #expect(r.json["dir_fstype"] as? String == fstype)
            #expect(r.json["seek_content_checked"] as? Bool == true, "\(r.json)")
            #expect((r.json["seek_probes"] as? Int ?? 0) > 3000, "\(r.json)")
            #expect((r.json["ops"] as? Int ?? 0) > 9000, "\(r.json)")
            let canary = try runIOMapJSON(["difftest", "--dir", dir, "--ops", "3000", "--seed", String(seed), "--seek-canary"])
            let field = (canary.json["first_mismatch"] as? [String: Any])?["field"] as? String ?? ""
            #expect(canary.status == 1 && field.hasPrefix("seek_data"), "\(fstype) seek canary: \(canary.json)")
            #expect(canary.stderr.contains("--seek-canary"), "the replay line names the canary: \(canary.stderr)")
        }
        try f.umount()
        let s = try f.statsReport()
        #expect(s["bad_requests"] as? Int == 0, "\(s)")
        let fsck = try runIOMap(["fsck", f.image])
        #expect(fsck.status == 0, "\(fsck.stdout)")
    }
}

@Suite("iomap mount: counters", .serialized, .enabled(if: MountEnvironment.available, "needs root and /dev/fuse"))
struct MountCounterTests {
    /// The daemon's counters now: the stats file is removed, SIGUSR1 asks for a new one, and
    /// the daemon writes it by rename, so it is whole once it exists.
    func counters(_ f: MountFixture) throws -> [String: Any] {
        let pid = try #require(f.daemonPID)
        unlink(f.stats)
        #expect(kill(pid, SIGUSR1) == 0)
        let deadline = Date().addingTimeInterval(30)
        while !FileManager.default.fileExists(atPath: f.stats) {
            if Date() > deadline { throw FixtureError("no stats file 30 s after SIGUSR1") }
            usleep(2000)
        }
        return try f.statsReport()
    }

    func engineFsyncs(_ f: MountFixture) throws -> Int { try counters(f)["engine_fsyncs"] as? Int ?? -1 }

    /// How many engine fsyncs `body` caused; `body` says whether its calls succeeded.
    func fsyncsCounted(_ f: MountFixture, _ what: String, _ body: () -> Bool) throws -> Int {
        let before = try engineFsyncs(f)
        let ok = body()
        #expect(ok, "\(what) failed: errno \(errno)")
        return try engineFsyncs(f) - before
    }

    @Test("one engine fsync per fsync, fdatasync, msync(MS_SYNC) and directory fsync; none for sync(2) or close; 0 ENOSYS over the run")
    func fsyncCounts() throws {
        let f = try MountFixture()
        defer { f.cleanup() }
        try f.mount()
        let fd = open(f.path("counted"), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        let data = pattern(65536, seed: 5)
        #expect(data.withUnsafeBytes { pwrite(fd, $0.baseAddress, 65536, 0) } == 65536)
        #expect(try fsyncsCounted(f, "fsync") { fsync(fd) == 0 } == 1, "fsync")
        #expect(try fsyncsCounted(f, "fdatasync") { fdatasync(fd) == 0 } == 1, "fdatasync")
        let map = try #require(mmap(nil, 65536, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0))
        #expect(map != MAP_FAILED)
        map.storeBytes(of: 0x5A, toByteOffset: 100, as: UInt8.self)
        #expect(try fsyncsCounted(f, "msync") { msync(map, 65536, MS_SYNC) == 0 } == 1, "msync(MS_SYNC) of a dirty mapping")
        #expect(try fsyncsCounted(f, "msync") { msync(map, 65536, MS_SYNC) == 0 } == 1, "msync(MS_SYNC) of a clean mapping")
        munmap(map, 65536)
        let dir = open(f.mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(try fsyncsCounted(f, "directory fsync") { fsync(dir) == 0 } == 1, "fsync of a directory")
        close(dir)
        // What FUSE.md says does not reach the engine: sync(2) (a plain fuse mount's sync_fs
        // does nothing) and close (FLUSH answers 0 without a flush).
        #expect(
            try fsyncsCounted(f, "sync") {
                sync()
                return true
            } == 0, "sync(2)")
        #expect(try fsyncsCounted(f, "open and close") { close(open(f.path("counted"), O_RDONLY | O_CLOEXEC)) == 0 } == 0, "open and close")
        // The counter's canary: two fsyncs must count two, or the deltas above prove nothing.
        #expect(try fsyncsCounted(f, "two fsyncs") { fsync(fd) == 0 && fsync(fd) == 0 } == 2, "two fsyncs")
        close(fd)
        try ordinaryCalls(f)
        let s = try counters(f)
        #expect(s["enosys"] as? Int == 0, "ENOSYS replies: \(s["enosys_by_opcode"] ?? "-")")
        let requests = s["requests"] as? [String: Int] ?? [:]
        for op in ["fsync", "fsyncdir", "flush", "lseek", "fallocate", "write", "read", "setattr"] {
            #expect((requests[op] ?? 0) > 0, "the run sent \(op): \(requests)")
        }
        try f.umount()
    }

    /// Every kind of call a program makes on files, so that an opcode the daemon does not
    /// serve would be counted as ENOSYS.
    func ordinaryCalls(_ f: MountFixture) throws {
        #expect(mkdir(f.path("d"), 0o755) == 0)
        try writeFile(f.path("d/a"), pattern(10_000, seed: 6))
        #expect(rename(f.path("d/a"), f.path("d/b")) == 0 && link(f.path("d/b"), f.path("d/c")) == 0)
        #expect(symlink("b", f.path("d/s")) == 0 && readFile(f.path("d/s")) == pattern(10_000, seed: 6))
        #expect(listDirectory(f.path("d")) == [".", "..", "b", "c", "s"])
        #expect(setxattr(f.path("d/b"), "user.k", "v", 1, 0) == 0 && removexattr(f.path("d/b"), "user.k") == 0)
        var st = stat()
        #expect(stat(f.path("d/b"), &st) == 0 && chmod(f.path("d/b"), 0o600) == 0 && truncate(f.path("d/b"), 5000) == 0)
        var sfs = statvfs()
        #expect(statvfs(f.mountpoint, &sfs) == 0)
        let fd = open(f.path("d/b"), O_RDWR | O_CLOEXEC)
        defer { close(fd) }
        #expect(cks_fallocate(fd, Int32(CKS_FALLOC_PUNCH_HOLE), 0, 4096) == 0)
        #expect(cks_fallocate(fd, Int32(CKS_FALLOC_ZERO_RANGE), 4096, 100) == 0)
        #expect(cks_fallocate(fd, Int32(CKS_FALLOC_ALLOCATE_KEEP_SIZE), 0, 1 << 20) == 0)
        #expect(cks_seek_data(fd, 0) >= 0 && cks_seek_hole(fd, 0) >= 0)
        #expect(unlink(f.path("d/c")) == 0 && unlink(f.path("d/s")) == 0)
    }
}

/// What the kill -9 workload has made durable: files whose fsync returned 0 and which it
/// never touched again, with their bytes.
// Guarded by: lock.
final class DurableFiles: @unchecked Sendable {
    private let lock = NSLock()
    private var files: [String: [UInt8]] = [:]
    func add(_ name: String, _ bytes: [UInt8]) { lock.withLock { files[name] = bytes } }
    var all: [String: [UInt8]] { lock.withLock { files } }
}

@Suite("iomap mount: kill -9 cycles", .serialized, .enabled(if: MountEnvironment.available, "needs root and /dev/fuse"))
struct MountKillCycleTests {
    /// Creates, writes, overwrites, renames and unlinks files until a call fails (the daemon
    /// was killed: ENOTCONN), fsyncing half of the new files and recording those.
    static func workload(_ dir: String, cycle: Int, seed: UInt64, durable: DurableFiles) {
        var rng = SplitMix(seed: seed ^ UInt64(cycle) << 32)
        var scratch: [String] = []
        for i in 0..<100_000 {
            let name = "c\(cycle)-\(i)"
            let bytes = pattern(Int(rng.next() % 300_000) + 1, seed: UInt8(truncatingIfNeeded: rng.next()))
            let fd = open(dir + "/" + name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if fd < 0 { return }
            let wrote = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, bytes.count, 0) }
            let synced = wrote == bytes.count && rng.next() % 2 == 0 && fsync(fd) == 0
            if close(fd) != 0 || wrote != bytes.count { return }
            if synced { durable.add(name, bytes) } else { scratch.append(name) }
            // Unsynced files are changed further; fsync'd ones never again.
            if let other = scratch.randomElement(using: &rng) {
                switch rng.next() % 3 {
                case 0: if unlink(dir + "/" + other) != 0 { return } else { scratch.removeAll { $0 == other } }
                case 1: if rename(dir + "/" + other, dir + "/" + other + "r") != 0 { return } else { scratch.removeAll { $0 == other } }
                default: if truncate(dir + "/" + other, off_t(rng.next() % 100_000)) != 0 { return }
                }
            }
        }
    }

    /// The fsync'd files that do not hold their bytes.
    static func damaged(_ f: MountFixture, _ durable: DurableFiles) -> [String] {
        durable.all.compactMap { name, bytes in fileHolds(f.path(name), bytes) ? nil : name }.sorted()
    }

    @Test(
        "20 cycles of a random workload killed with kill -9 at a random moment: the next mount recovers, fsync'd files intact, fsck clean")
    func killCycles() throws {
        let seed = mountTestSeed("kill -9 cycles")
        var rng = SplitMix(seed: seed)
        let f = try MountFixture(megabytes: 256)
        defer { f.cleanup() }
        let durable = DurableFiles()
        let cycles = ProcessInfo.processInfo.environment["IOMAP_KILL_CYCLES"].flatMap { Int($0) } ?? 20
        for cycle in 0..<cycles {
            try f.mount()
            let done = DispatchSemaphore(value: 0)
            let dir = f.mountpoint
            Thread {
                Self.workload(dir, cycle: cycle, seed: seed, durable: durable)
                done.signal()
            }.start()
            // A random moment: 0 to 300 ms into the workload.
            usleep(UInt32(rng.next() % 300_000))
            let pid = try #require(f.daemonPID)
            #expect(kill(pid, SIGKILL) == 0)
            done.wait()
            #expect(f.waitForDaemon(), "cycle \(cycle): the killed daemon's lock is gone")
            let r = try run(URL(fileURLWithPath: "/bin/umount"), [f.mountpoint])
            #expect(r.status == 0, "cycle \(cycle): umount of the dead mount: \(r.stderr)")
            try f.mount()
            let bad = Self.damaged(f, durable)
            #expect(bad.isEmpty, "cycle \(cycle) (seed \(seed)): fsync'd files not intact: \(bad.prefix(10))")
            if cycle == cycles - 1 { try canary(f, durable) }
            try f.umount()
            let fsck = try runIOMap(["fsck", f.image])
            #expect(fsck.status == 0, "cycle \(cycle) (seed \(seed)): \(fsck.stdout)")
        }
        print("kill -9 cycles: \(cycles) cycles, \(durable.all.count) fsync'd files checked after every recovery")
        #expect(durable.all.count > 0, "the workloads fsync'd files")
    }

    /// The check's canary: one fsync'd file changed by a byte must be named, then put back.
    func canary(_ f: MountFixture, _ durable: DurableFiles) throws {
        guard let (name, bytes) = durable.all.first else { return }
        var changed = bytes
        changed[changed.count / 2] ^= 0xFF
        try writeFile(f.path(name), changed)
        #expect(Self.damaged(f, durable) == [name], "the check must find a changed byte")
        try writeFile(f.path(name), bytes, fsync: true)
    }
}
