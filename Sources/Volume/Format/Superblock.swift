// Counterpart: struct xfs_dsb (fs/xfs/libxfs/xfs_format.h), its verifier and feature checks
// (xfs_sb.c: xfs_validate_sb_read, xfs_validate_sb_common, xfs_sb_has_incompat_feature) and
// the superblock copies XFS keeps in every allocation group (here two, written in turn).
//
// The superblock is the one block written in place, so there are two copies and each write
// goes to the older one: a torn superblock write leaves the other copy valid and merely one
// generation behind (docs/VOLUME.md ordering rule 3). The superblock names the snapshot and
// the log position replay starts from, which is all a mount needs to find the rest.

/// The three feature words, as ext4 and XFS v5 have them: an unknown compatible bit is
/// ignored, an unknown read-only-compatible bit allows reading but not writing, an unknown
/// incompatible bit refuses the volume.
public struct FeatureFlags: Hashable, Sendable {
    public var compatible: UInt64
    public var readOnlyCompatible: UInt64
    public var incompatible: UInt64

    public init(compatible: UInt64 = 0, readOnlyCompatible: UInt64 = 0, incompatible: UInt64 = 0) {
        self.compatible = compatible
        self.readOnlyCompatible = readOnlyCompatible
        self.incompatible = incompatible
    }

    /// The bits this version of the format knows: none yet (docs/FORMAT.md "Features").
    public static let known = FeatureFlags()
}

/// Where the current snapshot is: its root block and its sequence.
public struct SnapshotLocation: Hashable, Sendable {
    public var root: Int
    public var sequence: UInt64
}

/// A place in the log: a block offset from the log's start and the least sequence a
/// checkpoint found there may have.
public struct LogPosition: Hashable, Sendable {
    public var offset: Int
    public var sequence: UInt64
}

/// The superblock's contents (docs/FORMAT.md "Superblock").
public struct Superblock: Hashable, Sendable {
    public var version: UInt32 = formatVersion
    public var features = FeatureFlags()
    public var geometry: VolumeGeometry
    /// Which copy is newest: each write takes the other copy and the next generation. It is
    /// the header's sequence field.
    public var generation: UInt64
    public var snapshot: SnapshotLocation
    /// Replay applies the checkpoints from here on, in order (docs/FORMAT.md "The log").
    public var replayStart: LogPosition
    /// Set by a clean unmount (the log holds nothing past the snapshot), cleared by the
    /// first superblock write of a mount.
    public var cleanUnmount: Bool
    public var created: Timestamp

    public init(
        geometry: VolumeGeometry, generation: UInt64, snapshot: SnapshotLocation, replayStart: LogPosition, cleanUnmount: Bool,
        created: Timestamp
    ) {
        self.geometry = geometry
        self.generation = generation
        self.snapshot = snapshot
        self.replayStart = replayStart
        self.cleanUnmount = cleanUnmount
        self.created = created
    }

    public var uuid: VolumeUUID { geometry.uuid }

    /// The payload's size in this version; a later version may append compatible fields.
    static let payloadSize = 104
    static let cleanFlag: UInt32 = 1

    /// The block for copy `copy` (0 or 1, which is also its address).
    public func encode(copy: Int) -> [UInt8] {
        precondition(copy == 0 || copy == 1, "a superblock copy is block 0 or 1")
        var w = ByteWriter(capacity: Self.payloadSize)
        w.u32(version)
        w.u32(UInt32(geometry.blockSize))
        w.u64(features.compatible)
        w.u64(features.readOnlyCompatible)
        w.u64(features.incompatible)
        w.u64(UInt64(geometry.blockCount))
        w.u64(UInt64(geometry.log.start))
        w.u64(UInt64(geometry.log.length))
        w.u64(UInt64(snapshot.root))
        w.u64(snapshot.sequence)
        w.u64(UInt64(replayStart.offset))
        w.u64(replayStart.sequence)
        w.u32(cleanUnmount ? Self.cleanFlag : 0)
        w.u32(created.nanoseconds)
        w.i64(created.seconds)
        var block = [UInt8].block(payload: w.bytes, blockSize: geometry.blockSize)
        BlockHeader(
            kind: .superblock, uuid: geometry.uuid, owner: 0, address: copy, sequence: generation, index: UInt32(copy),
            payloadLength: w.count
        ).seal(&block)
        return block
    }

    /// Whether the volume may be written: unknown read-only-compatible features allow a
    /// read-only mount only.
    public func checkWritable(copy: Int = 0) throws(FormatError) {
        let unknown = features.readOnlyCompatible & ~FeatureFlags.known.readOnlyCompatible
        if unknown != 0 { throw FormatError(.superblock, copy, .unknownReadOnlyCompatibleFeatures(unknown)) }
    }
}

/// Decodes the superblock read from block `address` (0 or 1). The block size is the length
/// of `bytes`, which must match the superblock's own field.
public func decodeSuperblock(_ bytes: [UInt8], at address: Int) throws(FormatError) -> Superblock {
    try decodeSuperblock(bytes, at: address, verifyCRC: true)
}

func decodeSuperblock(_ bytes: [UInt8], at address: Int, verifyCRC: Bool) throws(FormatError) -> Superblock {
    func fail(_ c: FormatCheck) -> FormatError { FormatError(.superblock, address, c) }
    let n = bytes.count
    guard n >= VolumeGeometry.minimumBlockSize, n <= VolumeGeometry.maximumBlockSize, n & (n - 1) == 0 else {
        throw fail(.truncated(bytes: n, expected: max(VolumeGeometry.minimumBlockSize, n.nextPowerOfTwo)))
    }
    let header = try BlockExpectation(
        kind: .superblock, address: address, blockSize: n, uuid: nil, owner: 0, sequence: .any, index: UInt32(truncatingIfNeeded: address),
        verifyCRC: verifyCRC
    ).check(bytes)
    guard Int(header.payloadLength) >= Superblock.payloadSize else {
        throw fail(.badPayloadLength(header.payloadLength, limit: Superblock.payloadSize))
    }
    var r = FieldReader(
        ByteReader(bytes, from: BlockHeader.size, to: BlockHeader.size + Superblock.payloadSize), kind: .superblock, address: address)
    return try readSuperblockPayload(&r, header: header, blockSize: n, fail: fail)
}

private func readSuperblockPayload(
    _ r: inout FieldReader, header: BlockHeader, blockSize n: Int, fail: (FormatCheck) -> FormatError
) throws(FormatError) -> Superblock {
    let version = try r.u32()
    guard version == formatVersion else { throw fail(.unsupportedVersion(version)) }
    let blockSize = Int(try r.u32())
    let features = FeatureFlags(compatible: try r.u64(), readOnlyCompatible: try r.u64(), incompatible: try r.u64())
    let unknown = features.incompatible & ~FeatureFlags.known.incompatible
    guard unknown == 0 else { throw fail(.unknownIncompatibleFeatures(unknown)) }
    guard blockSize == n else { throw fail(.malformed("block size \(blockSize), but the block read is \(n) bytes")) }
    var fields: [Int] = []
    for name in ["block count", "log start", "log length", "snapshot root"] {
        let v = try r.u64()
        guard v <= maximumBlockNumber else { throw fail(.malformed("\(name) \(v) is out of range")) }
        fields.append(Int(v))
    }
    let geometry = VolumeGeometry(
        uuid: header.uuid, blockSize: blockSize, blockCount: fields[0], log: LogRegion(start: fields[1], length: fields[2]))
    if let problem = geometry.problem { throw fail(.malformed(problem)) }
    let root = fields[3]
    guard geometry.isDataBlock(root) else { throw fail(.malformed("snapshot root \(root) is not a data block")) }
    let snapshotSequence = try r.u64()
    let replayOffset = try r.u64()
    guard replayOffset < UInt64(geometry.log.length) else {
        throw fail(.malformed("replay offset \(replayOffset) is past the \(geometry.log.length)-block log"))
    }
    let replaySequence = try r.u64()
    let flags = try r.u32()
    guard flags & ~Superblock.cleanFlag == 0 else { throw fail(.malformed("unknown flags 0x\(String(flags, radix: 16))")) }
    let ns = try r.u32()
    guard ns < 1_000_000_000 else { throw fail(.malformed("creation time has \(ns) nanoseconds")) }
    let seconds = try r.i64()
    var sb = Superblock(
        geometry: geometry, generation: header.sequence, snapshot: SnapshotLocation(root: root, sequence: snapshotSequence),
        replayStart: LogPosition(offset: Int(replayOffset), sequence: replaySequence), cleanUnmount: flags & Superblock.cleanFlag != 0,
        created: Timestamp(seconds: seconds, nanoseconds: ns))
    sb.features = features
    return sb
}

/// The largest block number the format accepts (2^40): far past any device, and small enough
/// that sums of block numbers cannot overflow.
let maximumBlockNumber: UInt64 = 1 << 40

extension Int {
    fileprivate var nextPowerOfTwo: Int {
        var p = 1
        while p < self && p < Int.max / 2 { p <<= 1 }
        return p
    }
}

/// The superblock a mount uses, and what became of the other copy.
public struct SuperblockChoice: Sendable {
    public enum OtherCopy: Hashable, Sendable {
        /// Valid, of an older generation.
        case older(generation: UInt64)
        /// Valid, of the same generation (a new volume: mkfs writes both copies alike).
        case sameGeneration
        /// Not valid, for this reason (a torn write of the copy, or damage).
        case rejected(FormatError)
    }

    public var superblock: Superblock
    /// The copy it was read from (0 or 1).
    public var copy: Int
    public var other: OtherCopy

    /// The copy written next: a mount rewrites it from this one when it is older or damaged,
    /// before anything can reuse the place it names.
    public var nextWriteCopy: Int { 1 - copy }
}

/// Picks the newest valid superblock of the two copies' bytes. A copy that is intact but of
/// an unsupported version or feature set refuses the volume, whichever copy is newer: falling
/// back to the other copy would silently mount an older state. Both copies invalid throws
/// copy 0's error with copy 1's in its message.
public func chooseSuperblock(copy0: [UInt8], copy1: [UInt8]) throws(FormatError) -> SuperblockChoice {
    let results = [copy0, copy1].enumerated().map { i, bytes in
        Result { () throws(FormatError) in try decodeSuperblock(bytes, at: i) }
    }
    var valid: [(Int, Superblock)] = []
    var errors: [Int: FormatError] = [:]
    for (i, r) in results.enumerated() {
        switch r {
        case .success(let sb): valid.append((i, sb))
        case .failure(let e):
            if e.category == .unsupported { throw e }
            errors[i] = e
        }
    }
    switch valid.count {
    case 2:
        let (a, b) = (valid[0].1, valid[1].1)
        guard a.uuid == b.uuid else {
            throw FormatError(.superblock, 1, .otherVolume, context: "copy 0 is of volume \(a.uuid), copy 1 of \(b.uuid)")
        }
        if b.generation > a.generation { return SuperblockChoice(superblock: b, copy: 1, other: .older(generation: a.generation)) }
        let other: SuperblockChoice.OtherCopy = a.generation == b.generation ? .sameGeneration : .older(generation: b.generation)
        return SuperblockChoice(superblock: a, copy: 0, other: other)
    case 1:
        let (i, sb) = valid[0]
        return SuperblockChoice(superblock: sb, copy: i, other: .rejected(errors[1 - i]!))
    default:
        throw errors[0]!.classed(.corrupt, context: "copy 1 is no better: \(errors[1]!)")
    }
}
