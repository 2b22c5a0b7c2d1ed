// Counterpart: none in the kernel; the volume's promises, tested: what fsync returned for
// survives a crash, a clean unmount keeps everything, and each ordering rule of
// docs/VOLUME.md holds, with a deliberate bug per rule that the rule's test catches.

import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import PageCache
import Testing
import Volume

/// One ordering rule of docs/VOLUME.md as its test checks it.
struct OrderingRule: Sendable, CustomTestStringConvertible {
    let name: String
    /// Runs the rule's setting with `bugs`; true when the rule was broken.
    let broken: @Sendable (_ bugs: DeliberateBugs) throws -> Bool
    /// The deliberate bug that must break the rule, and what its failure to do so means.
    let canary: DeliberateBugs
    let canaryComment: String

    var testDescription: String { name }
}

@Suite("Volume: durability and the ordering rules")
struct VolumeDurabilityTests {
    @Test("a file fsync'd survives a crash; what came after the fsync may not; fsck is clean")
    func fsyncSurvivesCrash() throws {
        let rig = try VolumeRig()
        let ino = try rig.volume.create(in: .root, "a", permissions: 0o644).inode
        let h = try rig.volume.open(ino)
        let first = pattern(10000, seed: 1)
        try h.write(first, at: 0)
        try h.fsync()
        try h.write(pattern(5000, seed: 2), at: 20000)
        let v = try rig.crashAndMount()
        let again = try v.open(try v.lookup(.root, "a"))
        #expect(again.size == 10000)
        #expect(try again.read(count: 10000, at: 0) == first)
        try rig.expectClean("after the crash")
    }

    @Test("a clean unmount keeps a tree, and the next mount finds it equal")
    func unmountKeepsTree() throws {
        let rig = try VolumeRig()
        let v = rig.volume
        let d = try v.mkdir(in: .root, "dir", permissions: 0o750)
        let sub = try v.mkdir(in: d, "sub", permissions: 0o700)
        let f = try v.create(in: sub, "file", permissions: 0o640).inode
        let h = try v.open(f)
        try h.write(pattern(3 * 4096 + 100, seed: 3), at: 0)
        try h.allocate(offset: 1 << 20, length: 8192, keepSize: true)
        try h.write(pattern(100, seed: 4), at: 5 << 20)
        try v.link(f, in: d, "hardlink")
        _ = try v.symlink(in: .root, "link", target: "dir/sub/file")
        try h.close()
        // The recorded sizes and extents are the written-back ones: compare after a sync.
        try v.sync()
        let before = v.state
        let after = try rig.unmountAndMount().state
        #expect(after.inodes == before.inodes)
        let back = try rig.volume.open(try rig.volume.resolve("/link"))
        #expect(try back.read(count: 100, at: 5 << 20) == pattern(100, seed: 4))
        #expect(try back.seekData(from: 4 * 4096) == 5 << 20)
        try rig.expectClean("after the remount")
    }

    @Test("flushes per fsync: 1 for an overwrite, 2 for an allocating write, 0 with nothing dirty")
    func flushesPerFsync() throws {
        let rig = try VolumeRig()
        let h = try rig.volume.open(try rig.volume.create(in: .root, "f", permissions: 0o644).inode)
        try h.write(pattern(8192, seed: 5), at: 0)
        var before = rig.volume.journal.stats.flushes
        try h.fsync()
        #expect(rig.volume.journal.stats.flushes - before == 2, "allocating write")
        try h.write(pattern(4096, seed: 6), at: 0)
        before = rig.volume.journal.stats.flushes
        try h.fsync()
        #expect(rig.volume.journal.stats.flushes - before == 1, "overwrite of written blocks")
        before = rig.volume.journal.stats.flushes
        try h.fsync()
        #expect(rig.volume.journal.stats.flushes - before == 0, "nothing dirty")
    }

    /// Rule 1's setting: file `a`'s blocks were freed (its unlink committed), `b` reuses
    /// them and its fsync crashes at the flush after its checkpoint, keeping the log and
    /// losing `b`'s data. `b` must then read zeroes or its own data, never `a`'s.
    static func exposesStaleBlocks(bugs: DeliberateBugs) throws -> Bool {
        let rig = try VolumeRig(bugs: bugs)
        let v = rig.volume
        try v.writeDurablyThenUnlink("a", pattern(16384, seed: 7))
        try v.sync()
        let b = try v.createAndOpen("b")
        try b.write(pattern(16384, seed: 8), at: 0)
        let logEnd = try DeviceLogStore.open(rig.device).metadataBlocks
        // Crash at the flush that would make the checkpoint durable; keep the log's blocks.
        rig.device.armCrash(atFlush: bugs.contains(.commitBeforeData) ? 1 : 2, keeping: { block, _ in block < logEnd })
        #expect(throws: Errno.self) { try b.fsync() }
        let w = try rig.mountAfterArmedCrash()
        guard let ino = try? w.lookup(.root, "b") else { return false }
        let back = try w.open(ino).read(count: 16384, at: 0)
        let stale = pattern(16384, seed: 7)
        return zip(back, stale).contains { $0 != 0 && $0 == $1 } && back != pattern(16384, seed: 8)
    }

    /// Rule 2's setting: `a` fsync'd; its unlink is logged but not committed when `b`
    /// allocates, writes and its fsync crashes after the data flush, before the checkpoint.
    /// After recovery `a` must still hold its data.
    static func reusesBeforeCommit(bugs: DeliberateBugs) throws -> Bool {
        let rig = try VolumeRig(blocks: 2048, bugs: bugs)
        let v = rig.volume
        let data = pattern(64 * 4096, seed: 9)
        try v.writeDurablyThenUnlink("a", data)
        let b = try v.createAndOpen("b")
        try b.write(pattern(64 * 4096, seed: 10), at: 0)
        rig.device.armCrash(atFlush: 2)
        #expect(throws: Errno.self) { try b.fsync() }
        let w = try rig.mountAfterArmedCrash()
        let back = try w.open(try w.lookup(.root, "a")).read(count: data.count, at: 0)
        return back != data
    }

    /// Rule 3's setting: a snapshot is written (the log is small, so checkpoints soon do
    /// not fit) and the crash keeps the superblock write but loses the snapshot's blocks.
    static func snapshotLost(bugs: DeliberateBugs) throws -> Bool {
        let rig = try VolumeRig(logBlocks: 16, bugs: bugs)
        let v = rig.volume
        _ = try v.mkdir(in: .root, "d", permissions: 0o755)
        try v.sync()
        rig.device.armCrash(atFlush: bugs.contains(.superblockBeforeSnapshot) ? 1 : 2, keeping: { block, _ in block < 2 })
        #expect(throws: Errno.self) { try v.journal.writeSnapshotNow(clean: false) }
        rig.device.revive()
        do {
            let w = try Volume.mount(device: rig.device, options: rig.options)
            return (try? w.lookup(.root, "d")) == nil
        } catch {
            return true
        }
    }

    /// Whether fsync of `a` wrote `b`'s dirty data.
    static func fsyncWritesOthers(bugs: DeliberateBugs) throws -> Bool {
        let rig = try VolumeRig(bugs: bugs)
        let v = rig.volume
        let a = try v.createAndOpen("a")
        let b = try v.createAndOpen("b")
        try b.write(pattern(8192, seed: 11), at: 0)
        try a.write(pattern(8192, seed: 12), at: 0)
        try a.fsync()
        return !b.file.mapping.hasTagged(.dirty)
    }

    /// Rules 1–4 of docs/VOLUME.md, each with its setting (which tells whether the rule was
    /// broken) and the deliberate bug that breaks it.
    static let orderingRules = [
        OrderingRule(
            name: "rule 1: data reaches the disk before the record that makes it readable", broken: exposesStaleBlocks,
            canary: .commitBeforeData,
            canaryComment: "the canary: committing before the data must expose a's blocks"),
        OrderingRule(
            name: "rule 2: freed blocks are not reused before the free commits", broken: reusesBeforeCommit, canary: .reuseBeforeCommit,
            canaryComment: "the canary: reusing at once must overwrite a's data"),
        OrderingRule(
            name: "rule 3: a snapshot is durable before the superblock names it", broken: snapshotLost, canary: .superblockBeforeSnapshot,
            canaryComment: "the canary: naming it first must lose the snapshot"),
        OrderingRule(
            name: "rule 4: fsync writes back only its own file", broken: fsyncWritesOthers, canary: .fsyncWritesEverything,
            canaryComment: "the canary: ext3's fsync writes everything"),
    ]

    @Test("rules 1–4: each rule holds, and its canary bug breaks it", arguments: orderingRules)
    func rule(_ rule: OrderingRule) throws {
        #expect(try !rule.broken([]))
        #expect(try rule.broken(rule.canary), Comment(rawValue: rule.canaryComment))
    }

    /// Flushes taken by an fsync whose changes another fsync already made durable.
    func flushesOfSharedForce(bugs: DeliberateBugs) throws -> Int {
        let rig = try VolumeRig(bugs: bugs)
        let v = rig.volume
        let a = try v.createAndOpen("a")
        let b = try v.createAndOpen("b")
        try v.setAttributes(b.inode, .chmod(0o600))
        try a.fsync()
        let before = v.journal.stats.flushes
        try b.fsync()
        return v.journal.stats.flushes - before
    }

    @Test("rule 5: an fsync whose changes a concurrent force covered flushes nothing (group commit)")
    func rule5() throws {
        #expect(try flushesOfSharedForce(bugs: []) == 0)
        #expect(try flushesOfSharedForce(bugs: .forceAlone) > 0, "the canary: forcing alone flushes again")
    }
}
