// Counterpart: the v5 self-describing metadata headers of XFS (fs/xfs/libxfs/xfs_format.h:
// the crc, uuid, owner, blkno and lsn fields of struct xfs_dsb, xfs_btree_block and
// xfs_dir3_blk_hdr) and their verifiers (the xfs_buf_ops read_verify functions).
//
// Every metadata block of the volume opens with the same 56-byte header, so that one
// function checks what XFS's verifiers check on each read: the kind (magic), a torn or
// rotted block (CRC), a block of another file system (UUID), a misdirected write (the
// block's own address), a lost write that left an older block in place (the sequence), and
// a block of another structure (owner, index). docs/FORMAT.md "The block header".

/// The kinds of metadata block, each with its magic.
public enum BlockKind: UInt8, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case superblock
    case log
    case snapshotRoot
    case snapshotMap
    case inodes
    case directories
    case extents
    case xattrs
    case symlinks
    case orphans
    case intents

    /// The four ASCII characters a block of this kind starts with.
    public var magicText: String {
        switch self {
        case .superblock: return "IMSB"
        case .log: return "IMLG"
        case .snapshotRoot: return "IMSR"
        case .snapshotMap: return "IMSM"
        case .inodes: return "IMIN"
        case .directories: return "IMDR"
        case .extents: return "IMEX"
        case .xattrs: return "IMXA"
        case .symlinks: return "IMSL"
        case .orphans: return "IMOR"
        case .intents: return "IMFI"
        }
    }

    /// The magic as the first four bytes read as a little-endian word.
    public var magic: UInt32 {
        magicText.utf8.reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    /// How a message names block `address` of this kind. A log block has two numbers, its
    /// device block and its offset in the log (the log's start apart); every message names the
    /// device block, and says so.
    public func name(_ address: Int) -> String { self == .log ? "\(self) \(address) (device block)" : "\(self) \(address)" }

    public var description: String {
        switch self {
        case .superblock: return "superblock"
        case .log: return "log block"
        case .snapshotRoot: return "snapshot root block"
        case .snapshotMap: return "snapshot map block"
        case .inodes: return "inode block"
        case .directories: return "directory block"
        case .extents: return "extent block"
        case .xattrs: return "xattr block"
        case .symlinks: return "symlink block"
        case .orphans: return "orphan block"
        case .intents: return "intent block"
        }
    }

    /// The kind whose magic this is, if any.
    public init?(magic: UInt32) {
        guard let k = BlockKind.allCases.first(where: { $0.magic == magic }) else { return nil }
        self = k
    }

    /// A magic for a message: its characters when printable, what kind it is when known.
    static func describeMagic(_ m: UInt32) -> String {
        if m == 0 { return "0x00000000 (never written)" }
        let bytes = (0..<4).map { UInt8(truncatingIfNeeded: m >> (8 * $0)) }
        let text = bytes.allSatisfy { $0 >= 0x20 && $0 < 0x7F } ? "\"\(String(decoding: bytes, as: UTF8.self))\"" : ""
        let digits = String(m, radix: 16)
        let hex = "0x" + String(repeating: "0", count: 8 - digits.count) + digits
        let kind = BlockKind(magic: m).map { " (\($0)'s)" } ?? ""
        return (text.isEmpty ? hex : text) + kind
    }
}

/// The header every metadata block starts with (docs/FORMAT.md "The block header").
public struct BlockHeader: Hashable, Sendable {
    public var magic: UInt32
    public var crc: UInt32
    public var uuid: VolumeUUID
    /// The address of the first block of the structure this one belongs to: the checkpoint's
    /// head, the snapshot's root; 0 for the superblocks.
    public var owner: UInt64
    /// Where the block was meant to be written.
    public var address: UInt64
    /// The sequence of the write that made it: the checkpoint's, the snapshot's, the
    /// superblock's generation.
    public var sequence: UInt64
    /// The block's position in its structure (block i of a checkpoint, of a snapshot; the copy
    /// of a superblock).
    public var index: UInt32
    /// Bytes of payload after the header.
    public var payloadLength: UInt32

    /// The header's size; the payload starts here.
    public static let size = 56
    /// Where the CRC field sits.
    public static let crcOffset = 4

    public init(
        kind: BlockKind, uuid: VolumeUUID, owner: UInt64, address: Int, sequence: UInt64, index: UInt32, payloadLength: Int
    ) {
        magic = kind.magic
        crc = 0
        self.uuid = uuid
        self.owner = owner
        self.address = UInt64(address)
        self.sequence = sequence
        self.index = index
        self.payloadLength = UInt32(payloadLength)
    }

    /// The header of `block`, which holds at least `size` bytes.
    init(reading block: [UInt8]) {
        magic = block.le(UInt32.self, at: 0)
        crc = block.le(UInt32.self, at: 4)
        uuid = VolumeUUID(block, at: 8)
        owner = block.le(UInt64.self, at: 24)
        address = block.le(UInt64.self, at: 32)
        sequence = block.le(UInt64.self, at: 40)
        index = block.le(UInt32.self, at: 48)
        payloadLength = block.le(UInt32.self, at: 52)
    }

    /// Writes the header into the first `size` bytes of `block` and seals the block with its CRC.
    func seal(_ block: inout [UInt8]) {
        precondition(block.count >= Self.size + Int(payloadLength), "payload of \(payloadLength) bytes overruns the block")
        block.withUnsafeMutableBytes { b in
            b.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt32.self)
            b.storeBytes(of: 0, toByteOffset: 4, as: UInt32.self)
            uuid.store(into: b, at: 8)
            b.storeBytes(of: owner.littleEndian, toByteOffset: 24, as: UInt64.self)
            b.storeBytes(of: address.littleEndian, toByteOffset: 32, as: UInt64.self)
            b.storeBytes(of: sequence.littleEndian, toByteOffset: 40, as: UInt64.self)
            b.storeBytes(of: index.littleEndian, toByteOffset: 48, as: UInt32.self)
            b.storeBytes(of: payloadLength.littleEndian, toByteOffset: 52, as: UInt32.self)
            let crc = CRC32C.blockChecksum(UnsafeRawBufferPointer(b), fieldOffset: Self.crcOffset)
            b.storeBytes(of: crc.littleEndian, toByteOffset: 4, as: UInt32.self)
        }
    }
}

/// What a reader expects of a block's header (BlockExpectation.check).
struct BlockExpectation {
    enum Sequence {
        case exactly(UInt64)
        case atLeast(UInt64)
        case any
    }

    var kind: BlockKind
    var address: Int
    var blockSize: Int
    /// nil for a superblock, which is where the UUID is learnt.
    var uuid: VolumeUUID?
    var owner: UInt64
    var sequence: Sequence
    var index: UInt32?
    /// Off only in the tests' canaries, which show that a flip is caught by the CRC and by
    /// nothing else.
    var verifyCRC = true

    /// Checks `block` in the order of docs/FORMAT.md: length, magic, CRC, UUID, self address,
    /// sequence, owner, index, payload length. Throws the first failure.
    func check(_ block: [UInt8]) throws(FormatError) -> BlockHeader {
        func fail(_ c: FormatCheck) -> FormatError { FormatError(kind, address, c) }
        guard block.count == blockSize, blockSize >= BlockHeader.size else {
            throw fail(.truncated(bytes: block.count, expected: blockSize))
        }
        let h = BlockHeader(reading: block)
        guard h.magic == kind.magic else { throw fail(.badMagic(found: h.magic)) }
        if verifyCRC {
            let crc = block.withUnsafeBytes { CRC32C.blockChecksum($0, fieldOffset: BlockHeader.crcOffset) }
            guard crc == h.crc else { throw fail(.badCRC) }
        }
        if let uuid, h.uuid != uuid { throw fail(.otherVolume) }
        guard h.address == UInt64(address) else { throw fail(.wrongAddress(says: h.address)) }
        switch sequence {
        case .exactly(let s): guard h.sequence == s else { throw fail(.wrongSequence(h.sequence, expected: s)) }
        case .atLeast(let s): guard h.sequence >= s else { throw fail(.olderSequence(h.sequence, atLeast: s)) }
        case .any: break
        }
        guard h.owner == owner else { throw fail(.wrongOwner(h.owner, expected: owner)) }
        if let index, h.index != index { throw fail(.wrongIndex(h.index, expected: index)) }
        let limit = blockSize - BlockHeader.size
        guard Int(h.payloadLength) <= limit else { throw fail(.badPayloadLength(h.payloadLength, limit: limit)) }
        return h
    }
}

extension [UInt8] {
    /// A block of `blockSize` bytes: header room, then `payload`, then zeros.
    static func block(payload: [UInt8], blockSize: Int) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: blockSize)
        b.replaceSubrange(BlockHeader.size..<BlockHeader.size + payload.count, with: payload)
        return b
    }
}
