// Counterpart: the "stale data past the on-disk size" window that xfs_setattr_size closes by
// writing back from the on-disk size before it logs a new one, here for every way the
// recorded size can rise: an I/O completion's size update (xfs_setfilesize) after a punch,
// a zero range or a ranged writeback flushed only the blocks past the old end, and a size
// change (truncate, fallocate).
//
// Each test leaves a file whose last block holds, on the disk, bytes past the recorded size
// that the file had before a truncate (the truncate's zeroing was lost in a crash), raises
// the recorded size by one path while the zeroed tail of that block is only in the page
// cache, commits the raise through another file's fsync, and crashes: the old bytes must
// never show. The soak of VolumeCrashTests found the punch case (docs/VOLUME.md rule 1).

import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import Testing
import Volume

@Suite("Volume: no stale bytes past the old end after a crash")
struct VolumeStaleTailTests {
    /// The recorded size the file is cut to, inside its last written block.
    static let oldEnd = 10_000
    /// Where the raising operation writes, far past the old end's block.
    static let far = 100_000

    /// A volume whose file "a" is `oldEnd` bytes recorded, over a last block that holds the
    /// file's earlier bytes past `oldEnd` on the disk: 12,000 bytes written and fsync'd, a
    /// truncate to `oldEnd` committed by another file's fsync, then a crash that lost the
    /// truncate's zeroing of the block. Returns the rig (mounted again), a's handle and the
    /// bytes a held.
    func fileOverStaleTail() throws -> (VolumeRig, FileHandle, [UInt8]) {
        let rig = try VolumeRig()
        let data = pattern(12_000, seed: 31)
        try newFile(rig.volume, "a", data).truncate(to: Self.oldEnd)
        _ = try newFile(rig.volume, "b", pattern(100, seed: 32))
        let w = try rig.crashAndMount()
        #expect(w.state[try w.lookup(.root, "a")]?.attributes.size == Int64(Self.oldEnd), "the truncate was committed")
        return (rig, try w.open(try w.lookup(.root, "a")), data)
    }

    /// A new file `name` holding `bytes`, fsync'd: the fsync forces the log, so that what
    /// the other files logged is committed while their data is not written back.
    func newFile(_ v: Volume, _ name: String, _ bytes: [UInt8]) throws -> FileHandle {
        let f = try v.createAndOpen(name)
        try f.write(bytes, at: 0)
        try f.fsync()
        return f
    }

    /// After `raise` grew a's recorded size past `far`, another file's fsync and a crash:
    /// a keeps its first `oldEnd` bytes and reads zero from there to `far`.
    func expectNoStaleTail(_ raise: (FileHandle) throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (rig, a, data) = try fileOverStaleTail()
        try raise(a)
        let recorded = rig.volume.state[a.inode]?.attributes.size ?? 0
        #expect(recorded > Int64(Self.far), "the raise is logged (recorded size \(recorded))", sourceLocation: sourceLocation)
        _ = try newFile(rig.volume, "c", pattern(100, seed: 32))
        let w = try rig.crashAndMount()
        let back = try w.open(try w.lookup(.root, "a"))
        #expect(back.size > Self.far, "the forced size", sourceLocation: sourceLocation)
        let got = try back.read(count: Self.far, at: 0)
        #expect(Array(got[0..<Self.oldEnd]) == Array(data[0..<Self.oldEnd]), sourceLocation: sourceLocation)
        let stale = (Self.oldEnd..<Self.far).filter { got[$0] != 0 }
        #expect(
            stale.count == 0, "\(stale.count) bytes past the old end are not zero, the first at \(stale.first ?? 0)",
            sourceLocation: sourceLocation)
        try rig.expectClean("after the crash", sourceLocation: sourceLocation)
    }

    @Test("a punch that writes back only its range, past the old end")
    func punch() throws {
        try expectNoStaleTail { a in
            try a.write(pattern(100, seed: 33), at: Self.far)
            try a.punchHole(offset: Self.far, length: 50)
        }
    }

    @Test("a zero range (KEEP_SIZE) that writes back only its range, past the old end")
    func zeroRange() throws {
        try expectNoStaleTail { a in
            try a.write(pattern(100, seed: 34), at: Self.far)
            try a.zeroRange(offset: Self.far + 10, length: 20, keepSize: true)
        }
    }

    @Test("a write past the old end written back alone (sync_file_range)")
    func rangedWriteback() throws {
        try expectNoStaleTail { a in
            try a.write(pattern(100, seed: 35), at: Self.far)
            let r = a.file.writeback(ByteRange(Self.far, Self.far + 100))
            #expect(r.bytesWritten > 0)
        }
    }

    @Test("a fallocate that grows the file")
    func fallocateGrows() throws {
        try expectNoStaleTail { a in try a.allocate(offset: Self.far, length: 4096) }
    }

    @Test("a truncate up")
    func truncateUp() throws {
        try expectNoStaleTail { a in try a.truncate(to: Self.far + 1) }
    }
}
