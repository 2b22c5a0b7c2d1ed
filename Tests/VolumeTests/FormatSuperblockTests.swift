// Counterpart: none in the kernel; tests of the superblock's encoding, its checks
// (xfs_validate_sb_common's kind) and the choice between the two copies.

import IOMapBase
import Testing

@testable import Volume

@Suite("Format: superblock")
struct FormatSuperblockTests {
    func superblock(generation: UInt64 = 7, blockSize: Int = 4096) -> Superblock {
        Superblock(
            geometry: formatGeometry(blockSize: blockSize), generation: generation, snapshot: SnapshotLocation(root: 900, sequence: 41),
            replayStart: LogPosition(offset: 12, sequence: 42), cleanUnmount: true,
            created: Timestamp(seconds: -5, nanoseconds: 999_999_999))
    }

    @Test("round trip, both copies, every block size")
    func roundTrip() throws {
        for bs in [512, 1024, 4096, 65536] {
            var sb = superblock(blockSize: bs)
            sb.features.compatible = 0x10
            for copy in [0, 1] {
                let bytes = sb.encode(copy: copy)
                #expect(bytes.count == bs)
                #expect(try decodeSuperblock(bytes, at: copy) == sb)
            }
        }
        #expect(Array(superblock().encode(copy: 0)[0..<4]) == Array("IMSB".utf8), "the magic reads as text in a dump")
    }

    @Test("the newest valid copy wins; why the other lost")
    func choice() throws {
        let old = superblock(generation: 7).encode(copy: 0)
        let new = superblock(generation: 8).encode(copy: 1)
        var c = try chooseSuperblock(copy0: old, copy1: new)
        #expect(c.copy == 1 && c.superblock.generation == 8 && c.other == .older(generation: 7) && c.nextWriteCopy == 0)
        c = try chooseSuperblock(copy0: superblock(generation: 9).encode(copy: 0), copy1: new)
        #expect(c.copy == 0 && c.other == .older(generation: 8) && c.nextWriteCopy == 1)
        c = try chooseSuperblock(copy0: old, copy1: superblock(generation: 7).encode(copy: 1))
        #expect(c.copy == 0 && c.other == .sameGeneration)

        // A torn write of the newer copy leaves the older one.
        c = try chooseSuperblock(copy0: old, copy1: new.flipping(300))
        #expect(c.copy == 0 && c.superblock.generation == 7)
        guard case .rejected(let why) = c.other else {
            Issue.record("copy 1 should be rejected")
            return
        }
        #expect(why.description == "superblock 1: bad CRC")
        let both = formatError { () throws(FormatError) in
            try chooseSuperblock(copy0: old.flipping(100), copy1: [UInt8](repeating: 0, count: 4096))
        }
        #expect(both?.description == "superblock 0: bad CRC (copy 1 is no better: superblock 1: bad magic 0x00000000 (never written))")
    }

    @Test("copies of two volumes, and a newer copy this reader cannot read, refuse the volume")
    func refusals() {
        var other = superblock(generation: 8)
        other.geometry.uuid = VolumeUUID(high: 1, low: 2)
        let e = formatError { () throws(FormatError) in
            try chooseSuperblock(copy0: superblock().encode(copy: 0), copy1: other.encode(copy: 1))
        }
        #expect(e?.check == .otherVolume)
        var future = superblock(generation: 8)
        future.features.incompatible = 0x4
        let f = formatError { () throws(FormatError) in
            try chooseSuperblock(copy0: superblock().encode(copy: 0), copy1: future.encode(copy: 1))
        }
        #expect(f?.description == "superblock 1: unknown incompatible feature 0x4")
        #expect(f?.category == .unsupported)
    }

    @Test("features: unknown incompatible refused, unknown read-only-compatible read but not written, unknown compatible ignored")
    func features() throws {
        var sb = superblock()
        sb.features.incompatible = 0x4
        let e = formatError { () throws(FormatError) in try decodeSuperblock(sb.encode(copy: 0), at: 0) }
        #expect(e?.description == "superblock 0: unknown incompatible feature 0x4")
        sb.features = FeatureFlags(compatible: 0xF0, readOnlyCompatible: 0x8)
        let read = try decodeSuperblock(sb.encode(copy: 0), at: 0)
        #expect(read.features.compatible == 0xF0)
        let w = formatError { () throws(FormatError) in try read.checkWritable() }
        #expect(w?.description == "superblock 0: unknown read-only-compatible feature 0x8 (read-only)")
        #expect(formatError { () throws(FormatError) in try superblock().checkWritable() } == nil)
        sb = superblock()
        // A later version, and version 1 (before the log's sector stamps), are refused.
        for version in [formatVersion + 1, 1] {
            sb.version = version
            #expect(
                formatError { () throws(FormatError) in try decodeSuperblock(sb.encode(copy: 0), at: 0) }?.check
                    == .unsupportedVersion(version))
        }
    }

    @Test("a flip of any byte is caught and named; with the CRC check off most are not (canary)")
    func flips() {
        let bytes = superblock(blockSize: 512).encode(copy: 1)
        var missedWithoutCRC = 0
        for i in 0..<bytes.count {
            let flipped = bytes.flipping(i, mask: 0x10)
            let e = formatError { () throws(FormatError) in try decodeSuperblock(flipped, at: 1) }
            #expect(e?.description.hasPrefix("superblock 1: ") == true, "byte \(i): \(String(describing: e))")
            #expect(i < 4 ? e?.check == .badMagic(found: flipped.le(UInt32.self, at: 0)) : e?.check == .badCRC, "byte \(i)")
            if formatError({ () throws(FormatError) in try decodeSuperblock(flipped, at: 1, verifyCRC: false) }) == nil {
                missedWithoutCRC += 1
            }
        }
        #expect(missedWithoutCRC > 300, "the flips are caught by the CRC, not by luck: \(missedWithoutCRC)")
    }

    @Test("misdirected, truncated and impossible superblocks")
    func malformed() {
        let bytes = superblock().encode(copy: 0)
        #expect(
            formatError { () throws(FormatError) in try decodeSuperblock(bytes, at: 1) }?.description
                == "superblock 1: wrong self address (says 0)")
        #expect(
            formatError { () throws(FormatError) in try decodeSuperblock(Array(bytes[0..<100]), at: 0) }?.check
                == .truncated(bytes: 100, expected: 512))
        #expect(formatError { () throws(FormatError) in try decodeSuperblock(Array(bytes[0..<1024]), at: 0) }?.check == .badCRC)
        var sb = superblock()
        sb.snapshot.root = 10
        #expect(
            formatError { () throws(FormatError) in try decodeSuperblock(sb.encode(copy: 0), at: 0) }?.description
                == "superblock 0: snapshot root 10 is not a data block")
        sb = superblock()
        sb.geometry.log = LogRegion(start: 2, length: 1 << 21)
        #expect(
            formatError { () throws(FormatError) in try decodeSuperblock(sb.encode(copy: 0), at: 0) }?.check
                == .malformed("log blocks [2, 2097154) runs past the 1048576 blocks of the volume"))
        sb = superblock()
        sb.replayStart.offset = 64
        #expect(formatError { () throws(FormatError) in try decodeSuperblock(sb.encode(copy: 0), at: 0) } != nil)
    }

    @Test("UUIDs: text form, bytes, random version 4")
    func uuid() {
        let u = VolumeUUID(high: 0x0123_4567_89AB_4DEF, low: 0x8123_4567_89AB_CDEF)
        #expect(u.description == "01234567-89ab-4def-8123-456789abcdef")
        #expect(VolumeUUID(bytes: u.bytes) == u)
        var rng = SeededRandom(seed: 1)
        let r = VolumeUUID.random(using: &rng)
        #expect(r.bytes[6] >> 4 == 4 && r.bytes[8] >> 6 == 2)
    }
}
