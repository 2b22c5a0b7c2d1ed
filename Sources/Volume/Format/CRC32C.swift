// Counterpart: fs/xfs/libxfs/xfs_cksum.h (xfs_start_cksum_safe, xfs_update_cksum,
// xfs_verify_cksum): the CRC32C of a block computed with its own CRC field taken as zero.
//
// The checksum itself is C (Sources/CIOMapBase/crc32c.c) because Swift has no portable way
// to reach the SSE4.2 instruction; this file is the Swift face of it and the one place that
// knows how a block's CRC skips its own field.

import CIOMapBase

/// CRC32C (Castagnoli), with zlib's convention: start from 0, chain by passing the last value.
public enum CRC32C {
    /// The CRC of `bytes`, continuing from `crc`.

    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return ciomap_crc32c(crc, base, bytes.count)
    }

    /// The CRC of `bytes`, continuing from `crc`.

    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The CRC by the software tables, whatever the CPU has (tests compare it with the default).
    public static func softwareChecksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { b in b.baseAddress.map { ciomap_crc32c_software(crc, $0, b.count) } ?? crc }
    }

    /// The CRC by the SSE4.2 instruction (the tables where the CPU lacks it).
    public static func hardwareChecksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { b in b.baseAddress.map { ciomap_crc32c_hardware(crc, $0, b.count) } ?? crc }
    }

    /// Whether this CPU has the SSE4.2 crc32 instruction.
    public static var hardwareAvailable: Bool { ciomap_crc32c_hardware_available() != 0 }

    /// The CRC of a whole block whose 4-byte CRC field at `fieldOffset` counts as zero, so
    /// that the same function serves to seal a block and to verify it, with no copy.
    public static func blockChecksum(_ block: UnsafeRawBufferPointer, fieldOffset: Int) -> UInt32 {
        let zero: UInt32 = 0
        var crc = checksum(UnsafeRawBufferPointer(rebasing: block[0..<fieldOffset]))
        crc = withUnsafeBytes(of: zero) { checksum($0, continuing: crc) }
        return checksum(UnsafeRawBufferPointer(rebasing: block[(fieldOffset + 4)...]), continuing: crc)
    }
}
