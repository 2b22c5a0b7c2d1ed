// Counterpart: none in the kernel; the crash tests of dm-log-writes (fstests' replays of a
// logged workload to each mark) and of CrashMonkey, in process: seeded workloads on a
// volume, cut by a power loss at random points, recovered, and checked against what the
// workload was promised. The workload, its cuts and the oracle are in
// Sources/IOMapTesting/Volume (CrashWorkload.swift, CrashCase.swift, and CrashModel.swift,
// whose opening comment states the oracle exactly). In short:
// - mount recovers, and fsck is clean on the crashed image and after every mount;
// - the tree after the crash (every name, with the inode it names) is the tree after some
//   prefix of the ops, no shorter than what returned made durable: sync (everything before
//   it), fsync of a file (every op up to the file's last logged change: so a file created
//   then fsync'd is there, under the name it had), fdatasync (the same for changes that are
//   not timestamps alone), and any op during which the journal wrote a checkpoint. A name
//   unlinked before such a point is gone, and every rename, forced or not, is atomic: no
//   prefix has both of its names or neither. (An fsync of a file with nothing logged since
//   its last force forces nothing, as in XFS, so it does not make another file's unlink
//   durable; the model does not claim that.)
// - a file with no data op since its last fsync, fdatasync or sync (or the phase's start,
//   or its creation) has exactly that size and those bytes; one changed since has a size
//   between the least and the greatest it had since, and each byte is one of those states'
//   bytes at that offset (zero past a state's end): the fsync'd byte, one a later write
//   stored there, or a zero a later truncate, punch or extension made. Never another
//   file's byte, the wrong offset's, or the poison the disk starts with (a block the
//   metadata calls written that never was);
// - recovery is idempotent: a crash during the mount's own writes, or right after it,
//   recovers to the same volume, and the recovered volume takes new writes (a probe file
//   created, written and fsync'd survives the next crash).
// Cut points: after a random op, each unflushed write kept by a coin of random bias; or at
// a random flush (inside an fsync, a sync or a snapshot), keeping a seeded coin's choice,
// only the log's blocks, only the others, or none. A second phase then runs from the
// recovered volume and is cut and checked again.
//
// Every failure prints its seed and a replay line; VOLUME_CRASH_SEED=N runs that seed alone,
// printing its listing as it goes (VOLUME_CRASH_BUG=commitBeforeData, reuseBeforeCommit,
// superblockBeforeSnapshot, fsyncSkipsForce or renameTwoRecords replays a canary's seed with
// that bug). VOLUME_CRASH_SOAK=seconds runs fresh seeds for that long.

import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import Testing
import Volume

#if canImport(Glibc)
    import Glibc
#endif

/// An environment variable, or nil.
func crashEnvironment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

/// The seeds a run checks: 1...count, or the one VOLUME_CRASH_SEED names.
func crashSeeds(_ count: UInt64) -> [UInt64] {
    if let one = crashEnvironment("VOLUME_CRASH_SEED").flatMap(UInt64.init) { return [one] }
    return Array(1...count)
}

/// The command that runs `seed` alone, with its listing.
func replayLine(_ seed: UInt64) -> String {
    "SWIFT_DETERMINISTIC_HASHING=1 VOLUME_CRASH_SEED=\(seed) swift test -c release -Xswiftc -enable-testing --skip-build "
        + "--filter VolumeCrashTests"
}

/// Runs `seeds` with `bugs`, printing each failing seed with its violations, its replay line
/// and (when one seed was asked for) its whole listing. The failing results.
func runCrashSeeds(_ seeds: [UInt64], bugs: DeliberateBugs = [], label: String) -> (failed: [CrashCaseResult], all: [CrashCaseResult]) {
    var failed: [CrashCaseResult] = []
    var all: [CrashCaseResult] = []
    let listing = crashEnvironment("VOLUME_CRASH_SEED") != nil
    for seed in seeds {
        var config = CrashCaseConfig(seed: seed)
        config.bugs = bugs
        config.trace = listing
        if listing { print("\(label) seed \(seed):") }
        let r = runCrashCase(config)
        all.append(r)
        guard !r.violations.isEmpty else { continue }
        failed.append(r)
        if bugs.isEmpty || listing {
            let replay = replayLine(seed)
            let extra = bugs.isEmpty ? "" : " (with VOLUME_CRASH_BUG=\(label))"
            print("\(label): seed \(seed): \(r.violations.count) violations:\n  " + r.violations.joined(separator: "\n  "))
            print("  replay: \(replay)\(extra)")
        }
    }
    return (failed, all)
}

/// A one-line summary of what a run covered.
func crashSummary(_ all: [CrashCaseResult]) -> String {
    let ops = all.reduce(0) { $0 + $1.ops }
    let flush = all.reduce(0) { $0 + $1.flushCrashes }
    let mount = all.reduce(0) { $0 + $1.mountCrashes }
    let mounts = all.reduce(0) { $0 + $1.mounts }
    let files = all.reduce(0) { $0 + $1.filesChecked }
    let exact = all.reduce(0) { $0 + $1.exactFiles }
    return "\(all.count) seeds, \(ops) ops, \(flush) crashes at a workload's flush, \(mount) during a mount, \(mounts) mounts, "
        + "\(files) files checked (\(exact) held to exact contents)"
}

/// A deliberate bug the crash cases must catch, by the name VOLUME_CRASH_BUG gives it.
struct CrashCanary: Sendable, CustomTestStringConvertible {
    let bug: DeliberateBugs
    let name: String
    /// What the bug breaks.
    let breaks: String

    var testDescription: String { "\(name): \(breaks)" }

    static let all = [
        CrashCanary(bug: .commitBeforeData, name: "commitBeforeData", breaks: "committing before the data (rule 1)"),
        CrashCanary(bug: .reuseBeforeCommit, name: "reuseBeforeCommit", breaks: "reusing freed blocks before the free commits (rule 2)"),
        CrashCanary(
            bug: .superblockBeforeSnapshot, name: "superblockBeforeSnapshot", breaks: "naming a snapshot before it is durable (rule 3)"),
        CrashCanary(
            bug: .fsyncSkipsForce, name: "fsyncSkipsForce", breaks: "fsync, fdatasync, msync and directory fsync that do not force"),
        // Caught only where a force falls between the rename's two transactions: in the
        // cases whose background force is a coin at transaction boundaries.
        CrashCanary(bug: .renameTwoRecords, name: "renameTwoRecords", breaks: "a rename logged as two transactions"),
    ]
}

/// The deliberate bug VOLUME_CRASH_BUG names, for replaying a canary's seed.
func replayBugs() -> DeliberateBugs {
    let name = crashEnvironment("VOLUME_CRASH_BUG")
    return CrashCanary.all.first { $0.name == name }?.bug ?? []
}

@Suite("Volume: crash basics")
struct VolumeCrashTests {
    @Test("seeded workloads cut at random points recover to a volume the oracle allows")
    func seededCrashes() {
        let bugs = replayBugs()
        let label = bugs.isEmpty ? "crash" : crashEnvironment("VOLUME_CRASH_BUG") ?? "bug"
        let (failed, all) = runCrashSeeds(crashSeeds(200), bugs: bugs, label: label)
        print("VolumeCrashTests: \(crashSummary(all)); \(failed.count) failed")
        if bugs.isEmpty {
            #expect(failed.map(\.seed) == [], "each failed seed printed its violations and a replay line")
        }
    }

    @Test(
        "the canaries: each deliberate bug is caught by some seed", .enabled(if: crashEnvironment("VOLUME_CRASH_SEED") == nil),
        arguments: CrashCanary.all)
    func canary(_ c: CrashCanary) {
        let (failed, all) = runCrashSeeds(Array(1...200), bugs: c.bug, label: c.name)
        let first = failed.first.map { " (first: seed \($0.seed): \($0.violations[0]))" } ?? ""
        print("VolumeCrashTests canary \(c.name): caught by \(failed.count) of \(all.count) seeds\(first)")
        #expect(failed.count > 0, "no seed caught .\(c.name)")
    }

    /// The regression of the first bug these tests found (seed 1; fixed in the mount at the
    /// same time by 1278219): a crash after the unmap and free intent of an unlinked file
    /// were forced, before the done record was, left an open intent whose blocks the mount
    /// freed twice (usedBlocks leaves them free already), and the allocator trapped.
    @Test("regression: a crash that leaves a free intent open mounts, and its blocks are free once")
    func openIntentAtMount() throws {
        let rig = try VolumeRig()
        let v = rig.volume
        try v.writeDurablyThenUnlink("a", pattern(12 * 4096, seed: 21))
        let b = try v.createAndOpen("b")
        try b.write(pattern(100, seed: 22), at: 0)
        // b's fsync forces the checkpoint with a's unmap and intent; the done record the
        // force's end logs is in the open checkpoint, which the crash loses.
        try b.fsync()
        #expect(!v.state.intents.isEmpty || v.journal.stats.checkpoints > 0)
        let w = try rig.crashAndMount()
        #expect(w.state.intents.isEmpty)
        #expect((try? w.lookup(.root, "a")) == nil)
        try rig.expectClean("after the mount that finished the intent")
        // The blocks are free once: a file as large as the freed one fits, and fsck agrees.
        let c = try w.open(try w.create(in: .root, "c", permissions: 0o644).inode)
        try c.write(pattern(12 * 4096, seed: 23), at: 0)
        try c.fsync()
        let x = try rig.crashAndMount()
        #expect(try x.open(try x.lookup(.root, "c")).read(count: 12 * 4096, at: 0) == pattern(12 * 4096, seed: 23))
        try rig.expectClean("after the next crash")
    }

    /// The regression of the second (seed 47): a file written (delalloc, no blocks recorded),
    /// closed and unlinked was freed by the unlink's own transaction, its in-memory file left
    /// in the volume's table with the dirty data; the next sync wrote it back and logged an
    /// allocation for an inode that no longer existed, and the journal trapped.
    @Test("regression: unlink of a closed file with unwritten delalloc discards its cached data")
    func unlinkCachedDelalloc() throws {
        let rig = try VolumeRig()
        let v = rig.volume
        let free = v.statfs().freeBlocks
        let ino = try v.create(in: .root, "a", permissions: 0o644).inode
        let a = try v.open(ino)
        try a.write(pattern(62197, seed: 24), at: 649)
        try a.close()
        let b = try v.createAndOpen("b")
        try b.write(pattern(5000, seed: 25), at: 0)
        try b.close()
        try v.rename(from: .root, "b", to: .root, "a")
        #expect(v.state[ino] == nil)
        try v.unlink(in: .root, "a")
        try v.sync()
        #expect(v.state.inodes.count == 1)
        #expect(v.statfs().freeBlocks == free, "the delalloc reservations went back")
        try rig.crashAndMount()
        try rig.expectClean("after the crash")
        #expect(rig.volume.state.inodes.count == 1)
    }

    /// The regression of the third (seeds 66 and 102): an empty file with blocks fallocate'd
    /// past its end (KEEP_SIZE) could not be freed, at its unlink or as an orphan at mount:
    /// truncating it to 0 changed nothing, and the free found blocks still mapped (EBUSY).
    @Test("regression: an empty file with blocks past its end is freed at unlink and as an orphan at mount")
    func freeEmptyPreallocated() throws {
        let rig = try VolumeRig()
        let v = rig.volume
        let a = try v.createAndOpen("a")
        try a.allocate(offset: 43899, length: 22164, keepSize: true)
        try a.close()
        try v.unlink(in: .root, "a")
        let b = try v.createAndOpen("b")
        try b.allocate(offset: 4096, length: 8192, keepSize: true)
        try v.unlink(in: .root, "b")
        try b.fsync()
        // b is an orphan holding blocks; the crash leaves it for the mount to free.
        let w = try rig.crashAndMount()
        #expect(w.state.inodes.count == 1 && w.state.orphans.isEmpty)
        try rig.expectClean("after the mount freed the orphan")
    }

    /// The regression of the fourth (soak seeds 291575693981 and 291575687273): a truncate
    /// up logged the new size while the zeroed tail of the old end's block was only in the
    /// page cache; a force of another file committed the size, and after a crash the file
    /// showed the bytes that block held past its old end.
    @Test("regression: a truncate up never shows the old bytes past the old end after a crash")
    func truncateUpZeroesTheOldEnd() throws {
        let rig = try VolumeRig()
        let v = rig.volume
        let a = try v.createAndOpen("a")
        let data = pattern(16384, seed: 26)
        try a.write(data, at: 0)
        try a.fsync()
        try a.truncate(to: 16301)
        try a.truncate(to: 101_790)
        // b's fsync forces the log, and with it a's sizes: a itself is not fsync'd.
        let b = try v.createAndOpen("b")
        try b.write(pattern(100, seed: 27), at: 0)
        try b.fsync()
        let w = try rig.crashAndMount()
        let back = try w.open(try w.lookup(.root, "a"))
        let size = back.size
        #expect(size == 101_790, "the forced size")
        let got = try back.read(count: size, at: 0)
        #expect(Array(got[0..<16301]) == Array(data[0..<16301]))
        let stale = got[16301...].indices.filter { got[$0] != 0 }
        #expect(stale.count == 0, "\(stale.count) bytes past the old end are not zero, the first at \(stale.first ?? 0)")
        try rig.expectClean("after the crash")
    }

    @Test("a longer soak (VOLUME_CRASH_SOAK=seconds)", .enabled(if: crashEnvironment("VOLUME_CRASH_SOAK") != nil))
    func soak() {
        let seconds = Int(crashEnvironment("VOLUME_CRASH_SOAK") ?? "") ?? 60
        var generator = SystemRandomNumberGenerator()
        let base = UInt64.random(in: 1_000_000...UInt64(1) << 40, using: &generator)
        print("VolumeCrashTests soak: \(seconds) s of seeds from \(base) on")
        let clock = ContinuousClock()
        let end = clock.now + .seconds(seconds)
        var seed = base
        var all: [CrashCaseResult] = []
        var failed: [CrashCaseResult] = []
        while clock.now < end {
            let batch = Array(seed..<seed + 10)
            let r = runCrashSeeds(batch, label: "soak")
            all += r.all
            failed += r.failed
            seed += 10
        }
        print("VolumeCrashTests soak: seeds \(base)..<\(seed): \(crashSummary(all)); failed: \(failed.map(\.seed))")
        #expect(failed.map(\.seed) == [], "each failed seed printed its violations and a replay line")
    }
}
