// Counterpart: none in the kernel; XFS keeps secondary superblocks for xfs_repair, not for
// mount. The volume's two copies are both written by every update (copy 0, a flush, copy 1,
// a flush) and the place the old superblock named is reused only after that, so either copy
// alone names an intact snapshot and log tail: one damaged copy, at any moment, mounts
// (docs/FORMAT.md "Two copies"). These tests cut an update between its writes, damage the
// copy that survives it, and count what an update costs.

import ExtentFS
import IOMapBase
import IOMapTesting
import Testing

@testable import Volume

@Suite("Volume: superblock fallback")
struct SuperblockFallbackTests {
    /// A volume with "logged" in a durable checkpoint and "sealed" only in the open one, so
    /// that a snapshot holds "sealed" and the log does not.
    func volumeAboutToSnapshot() throws -> VolumeRig {
        let rig = try VolumeRig()
        _ = try rig.volume.mkdir(in: .root, "logged", permissions: 0o755)
        try rig.volume.sync()
        _ = try rig.volume.mkdir(in: .root, "sealed", permissions: 0o755)
        return rig
    }

    /// The two copies as read from the disk (nil: refused).
    func copies(_ rig: VolumeRig) -> [Superblock?] {
        (0..<2).map { try? decodeSuperblock(try rig.disk.readBlocks($0, count: 1), at: $0) }
    }

    /// Flips a byte of superblock `copy` on the disk.
    func damage(_ rig: VolumeRig, copy: Int) throws {
        try rig.disk.writeBlocks(copy, try rig.disk.readBlocks(copy, count: 1).flipping(200, mask: 0x10))
    }

    func has(_ v: Volume, _ name: String) -> Bool { (try? v.lookup(.root, name)) != nil }

    /// fsck's superblock errors on the rig's device.
    func superblockErrors(_ rig: VolumeRig) throws -> [String] { try rig.fsck().checks.first { $0.code == "S" }?.errors ?? [] }

    @Test("a snapshot writes both copies alike, with three flushes; the fsync path keeps its counts")
    func bothCopiesAndFlushes() throws {
        let rig = try volumeAboutToSnapshot()
        let before = rig.volume.journal.stats.flushes
        try rig.volume.journal.writeSnapshotNow(clean: false)
        #expect(rig.volume.journal.stats.flushes - before == 3, "the snapshot, copy 0, copy 1")
        let c = copies(rig)
        let (a, b) = (try #require(c[0]), try #require(c[1]))
        #expect(a.generation == b.generation && a.snapshot == b.snapshot && a.replayStart == b.replayStart)
        #expect(a.snapshot == rig.volume.journal.anchor.snapshot)
        let f = try rig.volume.createAndOpen("f")
        var last = rig.volume.journal.stats.flushes
        func flushes(_ body: () throws -> Void) throws -> Int {
            try body()
            defer { last = rig.volume.journal.stats.flushes }
            return rig.volume.journal.stats.flushes - last
        }
        #expect(
            try flushes {
                try f.write(pattern(8192, seed: 41), at: 0); try f.fsync()
            } == 2, "allocating write")
        #expect(
            try flushes {
                try f.write(pattern(4096, seed: 42), at: 0); try f.fsync()
            } == 1, "overwrite")
    }

    @Test("the newest copy damaged after later checkpoints: the other copy mounts all of it, fsck names the damaged one")
    func newestDamagedLater() throws {
        let rig = try volumeAboutToSnapshot()
        try rig.volume.journal.writeSnapshotNow(clean: false)
        for name in ["after1", "after2"] {
            _ = try rig.volume.mkdir(in: .root, name, permissions: 0o755)
            try rig.volume.journal.forceAll()
        }
        rig.device.crash()
        let newest = try chooseSuperblock(copy0: try rig.disk.readBlocks(0, count: 1), copy1: try rig.disk.readBlocks(1, count: 1)).copy
        try damage(rig, copy: newest)
        rig.device.revive()
        #expect(try superblockErrors(rig) == ["superblock \(newest): bad CRC"])
        #expect(try rig.fsck().exitStatus == 4)
        let w = try rig.mountAfterArmedCrash()
        #expect(["logged", "sealed", "after1", "after2"].allSatisfy { has(w, $0) })
        // The mount rewrote the damaged copy from the other before writing anything else.
        #expect(try superblockErrors(rig) == [])
        try rig.expectClean("after the mount")
    }

    @Test("an update cut before copy 0 was durable: the old superblock mounts, whole or with copy 0 torn")
    func cutBeforeCopyZero() throws {
        for torn in [false, true] {
            let rig = try volumeAboutToSnapshot()
            // The snapshot's flushes: its blocks, copy 0, copy 1. The second loses copy 0's
            // write, or keeps it for the flip below to tear.
            rig.device.armCrash(atFlush: 2) { block, _ in torn && block == 0 }
            #expect(throws: Errno.ioError) { try rig.volume.journal.writeSnapshotNow(clean: false) }
            if torn { try damage(rig, copy: 0) }
            rig.device.revive()
            #expect(try superblockErrors(rig) == (torn ? ["superblock 0: bad CRC"] : []), "torn: \(torn)")
            let w = try rig.mountAfterArmedCrash()
            #expect(has(w, "logged") && !has(w, "sealed"), "torn: \(torn): the old snapshot and log; the snapshot's fsync never returned")
            try rig.expectClean("torn: \(torn), after the mount")
        }
    }

    @Test("an update cut after copy 0 was durable: copy 0 mounts, the mount rewrites copy 1, and copy 0 damaged next falls back to it")
    func cutAfterCopyZero() throws {
        let rig = try volumeAboutToSnapshot()
        rig.device.armCrash(atFlush: 3)
        #expect(throws: Errno.ioError) { try rig.volume.journal.writeSnapshotNow(clean: false) }
        rig.device.revive()
        let c = copies(rig)
        #expect((c[0]?.generation ?? 0) == (c[1]?.generation ?? 0) + 1, "copy 1 is one update behind")
        #expect(try superblockErrors(rig) == [], "an older copy is not damage")
        var w = try rig.mountAfterArmedCrash()
        #expect(has(w, "logged") && has(w, "sealed"))
        // The mount made copy 1 copy 0, then wrote its snapshot to both (every mount writes one).
        let after = copies(rig)
        #expect(
            after[1]?.generation == after[0]?.generation && (after[0]?.generation ?? 0) > (c[0]?.generation ?? 0),
            "the mount made copy 1 copy 0")
        // Data reuses the blocks of the snapshot copy 1 named before; copy 0 is then damaged.
        let f = try w.createAndOpen("f")
        try f.write(pattern(256 * 1024, seed: 43), at: 0)
        try f.fsync()
        try damage(rig, copy: 0)
        w = try rig.crashAndMount()
        #expect(has(w, "logged") && has(w, "sealed") && has(w, "f"))
        try rig.expectClean("after the fallback mount")
    }
}
