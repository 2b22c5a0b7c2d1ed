// Counterpart: none in the kernel; tests of the CRC32C (the kernel's crc32c self-test
// vectors are the published Castagnoli ones used here) and of the byte writer and reader.

import Foundation
import IOMapBase
import Testing

@testable import Volume

@Suite("Format: CRC32C and byte coding")
struct FormatCRCTests {
    @Test("known vectors")
    func vectors() {
        let vectors: [([UInt8], UInt32)] = [
            (Array("123456789".utf8), 0xE306_9283),
            ([], 0),
            ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
            ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
            ((0..<32).map { UInt8($0) }, 0x46DD_794E),
            ((0..<32).map { UInt8(31 - $0) }, 0x113F_DB5C),
        ]
        for (bytes, crc) in vectors {
            #expect(CRC32C.checksum(bytes) == crc, "\(bytes.count) bytes")
            #expect(CRC32C.softwareChecksum(bytes) == crc, "\(bytes.count) bytes, software")
            #expect(CRC32C.hardwareChecksum(bytes) == crc, "\(bytes.count) bytes, hardware")
        }
    }

    @Test("hardware == software on random buffers, lengths and alignments; chaining == one pass")
    func hardwareMatchesSoftware() {
        let seed = UInt64.random(in: 0...UInt64.max)
        print("FormatCRCTests seed \(seed)")
        var rng = SeededRandom(seed: seed)
        print("CRC32C hardware available: \(CRC32C.hardwareAvailable)")
        for _ in 0..<2000 {
            let n = Int.random(in: 0...5000, using: &rng)
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let skip = Int.random(in: 0...min(7, n), using: &rng)
            let slice = Array(bytes[skip...])
            let hw = CRC32C.hardwareChecksum(slice)
            #expect(hw == CRC32C.softwareChecksum(slice), "seed \(seed), \(slice.count) bytes")
            let cut = Int.random(in: 0...slice.count, using: &rng)
            let chained = CRC32C.checksum(Array(slice[cut...]), continuing: CRC32C.checksum(Array(slice[..<cut])))
            #expect(chained == hw, "seed \(seed): chaining at \(cut)")
            let unaligned = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[skip...])) }
            #expect(unaligned == hw, "seed \(seed): from an unaligned pointer")
        }
    }

    @Test("a block's CRC skips its own field")
    func blockChecksum() {
        var block = (0..<512).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let a = block.withUnsafeBytes { CRC32C.blockChecksum($0, fieldOffset: 4) }
        block[5] ^= 0xFF
        #expect(block.withUnsafeBytes { CRC32C.blockChecksum($0, fieldOffset: 4) } == a)
        block[8] ^= 1
        #expect(block.withUnsafeBytes { CRC32C.blockChecksum($0, fieldOffset: 4) } != a)
        var zeroed = block
        zeroed.replaceSubrange(4..<8, with: [0, 0, 0, 0])
        #expect(block.withUnsafeBytes { CRC32C.blockChecksum($0, fieldOffset: 4) } == CRC32C.checksum(zeroed))
    }

    @Test("the writer writes little-endian; the reader reads it back and throws past the end")
    func bytes() throws {
        var w = ByteWriter(capacity: 64)
        w.u8(0xAB)
        w.u16(0x1234)
        w.u32(0xDEAD_BEEF)
        w.u64(0x0102_0304_0506_0708)
        w.i64(-2)
        w.raw([9, 9])
        w.zeros(3)
        w.patchU32(0x0A0B_0C0D, at: 21)
        #expect(
            w.bytes == [0xAB, 0x34, 0x12, 0xEF, 0xBE, 0xAD, 0xDE, 8, 7, 6, 5, 4, 3, 2, 1] + [0xFE] + [UInt8](repeating: 0xFF, count: 5)
                + [0x0D, 0x0C, 0x0B, 0x0A, 0, 0, 0])
        var r = ByteReader(w.bytes)
        #expect(try r.u8() == 0xAB)
        #expect(try r.u16() == 0x1234)
        #expect(try r.u32() == 0xDEAD_BEEF)
        #expect(try r.u64() == 0x0102_0304_0506_0708)
        #expect(r.remaining == 13)
        #expect(throws: DecodeError(offset: 15, wanted: 14, available: 13)) { try r.raw(14) }
        #expect(throws: DecodeError.self) { try r.raw(-1) }
        _ = try r.raw(10)
        #expect(throws: DecodeError(offset: 25, wanted: 4, available: 3)) { try r.u32() }
        #expect(try r.raw(3) == [0, 0, 0])
        #expect(r.isAtEnd)
        #expect(throws: DecodeError.self) { try r.u8() }
        var bounded = ByteReader(w.bytes, from: 2, to: 4)
        #expect(throws: DecodeError.self) { try bounded.u32() }
        #expect(try bounded.u16() == 0xEF12)
    }
}
