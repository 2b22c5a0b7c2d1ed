// Counterpart: the geometry fields of struct xfs_dsb (fs/xfs/libxfs/xfs_format.h: sb_uuid,
// sb_blocksize, sb_dblocks, sb_logstart, sb_logblocks) and the layout mkfs.xfs chooses.
//
// The volume is one device: two superblock copies, a circular log, and the rest, which holds
// snapshots and file data (docs/FORMAT.md "Layout"). These values come from the superblock
// and every block reader and writer takes them, so that no block is read or written
// without knowing whose volume and which place it is.

/// The format version this code writes and the only one it reads.
public let formatVersion: UInt32 = 2

/// A volume's identity: 16 bytes, stored in the order of their text form.
public struct VolumeUUID: Hashable, Sendable, CustomStringConvertible {
    /// Bytes 0-7 and 8-15, each read big-endian (so that comparing words compares bytes).
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The UUID of 16 bytes.
    public init(bytes: [UInt8]) {
        precondition(bytes.count == 16, "a UUID is 16 bytes, got \(bytes.count)")
        self.init(bytes, at: 0)
    }

    /// The UUID at `offset` of `bytes`, which the caller has bounds-checked.
    init(_ bytes: [UInt8], at offset: Int) {
        high = UInt64(bigEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self) })
        low = UInt64(bigEndian: bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self) })
    }

    /// A random (version 4) UUID drawn from `rng`: mkfs passes a generator seeded from the
    /// system's entropy, tests a seeded one.
    public static func random<G: RandomNumberGenerator>(using rng: inout G) -> VolumeUUID {
        let high = (rng.next() & ~0xF000) | 0x4000
        let low = (rng.next() & ~(0xC000 << 48)) | (0x8000 << 48)
        return VolumeUUID(high: high, low: low)
    }

    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) } + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
    }

    func store(into b: UnsafeMutableRawBufferPointer, at offset: Int) {
        b.storeBytes(of: high.bigEndian, toByteOffset: offset, as: UInt64.self)
        b.storeBytes(of: low.bigEndian, toByteOffset: offset + 8, as: UInt64.self)
    }

    /// The 8-4-4-4-12 text form.
    public var description: String {
        let hex = bytes.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }
        return [0..<4, 4..<6, 6..<8, 8..<10, 10..<16].map { hex[$0].joined() }.joined(separator: "-")
    }
}

/// The circular log: `length` blocks from `start`.
public struct LogRegion: Hashable, Sendable, CustomStringConvertible {
    public var start: Int
    public var length: Int

    public var end: Int { start + length }

    /// The device address of log block `offset`, counted from the start and wrapping.
    public func address(ofOffset offset: Int) -> Int { start + offset % length }

    /// Whether device block `address` is in the log.
    public func contains(_ address: Int) -> Bool { address >= start && address < end }

    /// The layout's recommendation: the log right after the superblocks, min(64 MiB, 1/64 of
    /// the volume) long, and at least `minimumLength` blocks.
    public static func recommended(blockSize: Int, blockCount: Int) -> LogRegion {
        let wanted = min((64 << 20) / blockSize, blockCount / 64)
        return LogRegion(start: firstLogBlock, length: max(wanted, minimumLength))
    }

    /// Superblock copies occupy blocks 0 and 1; the log may start at 2.
    public static let firstLogBlock = 2
    /// The shortest log the format allows: room for a checkpoint of a few records and a wrap.
    public static let minimumLength = 16

    public var description: String { "log blocks [\(start), \(end))" }
}

/// Where a volume's metadata lives and whose it is: what every block reader and writer needs.
public struct VolumeGeometry: Hashable, Sendable {
    public var uuid: VolumeUUID
    public var blockSize: Int
    public var blockCount: Int
    public var log: LogRegion

    /// The smallest block size the format allows, and the largest.
    public static let minimumBlockSize = 512
    public static let maximumBlockSize = 65536

    /// Whether `address` is a block that may hold a snapshot or file data: on the device,
    /// neither a superblock nor in the log.
    public func isDataBlock(_ address: Int) -> Bool {
        address >= LogRegion.firstLogBlock && address < blockCount && !log.contains(address)
    }

    /// Whether blocks `[start, start + count)` are all data blocks (count at least 1).
    public func isDataRun(start: Int, count: Int) -> Bool {
        count >= 1 && isDataBlock(start) && isDataBlock(start + count - 1) && !(start < log.end && start + count > log.start)
    }

    /// What is wrong with this geometry, or nil (the superblock reader's geometry checks).
    public var problem: String? {
        if blockSize < Self.minimumBlockSize || blockSize > Self.maximumBlockSize || blockSize & (blockSize - 1) != 0 {
            return "block size \(blockSize) is not a power of two from 512 to 65536"
        }
        if log.start < LogRegion.firstLogBlock { return "\(log) overlaps the superblocks" }
        if log.length < LogRegion.minimumLength { return "\(log) is shorter than \(LogRegion.minimumLength) blocks" }
        if log.end > blockCount || log.end < log.start { return "\(log) runs past the \(blockCount) blocks of the volume" }
        return nil
    }
}
