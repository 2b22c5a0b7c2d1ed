// Counterpart: none in the kernel; XFS writes its metadata in place (inode chunks, directory
// and attribute blocks, the bmap btree) through the AIL. The entries follow its on-disk
// records in what they hold: struct xfs_dinode's core (fs/xfs/libxfs/xfs_format.h),
// xfs_dir2_data_entry, xfs_bmbt_rec, xfs_attr_leaf_name_local, the AGI unlinked lists and
// the EFI's extents.
//
// A snapshot is the whole MetadataState written to blocks the caller has taken from free
// space (copy-on-write: never over the current snapshot): a root block listing every block
// of the snapshot as runs, map blocks if the list does not fit the root, then one run of
// typed blocks per section, each packed with whole entries; an entry larger than a block
// spills into the blocks after it (docs/FORMAT.md "Snapshot"). Encoding is split in two so
// that the caller can allocate exactly the blocks needed: SnapshotImage encodes the
// sections and knows the count; blocks(sequence:addresses:uuid:) frames them at the
// addresses.

/// The sections of a snapshot, in the order their blocks are listed.
enum SnapshotSection: Int, CaseIterable {
    case inodes, directories, extents, xattrs, symlinks, orphans, intents

    var kind: BlockKind {
        switch self {
        case .inodes: return .inodes
        case .directories: return .directories
        case .extents: return .extents
        case .xattrs: return .xattrs
        case .symlinks: return .symlinks
        case .orphans: return .orphans
        case .intents: return .intents
        }
    }
}

/// The snapshot's fixed sizes (docs/FORMAT.md "Snapshot").
enum SnapshotLayout {
    /// Root fields before its runs: next inode, next intent, total blocks, total runs, map
    /// block count, runs in the root, then (entries, blocks) per section.
    static let rootFieldsSize = 40 + 16 * SnapshotSection.allCases.count
    /// Map block fields before its runs: runs in the block, reserved.
    static let mapFieldsSize = 8
    /// A run: start (8 bytes), count (4 bytes).
    static let runSize = 12
    /// A section block's continuation prefix.
    static let prefixSize = 4
    static let inodeEntrySize = 8 + attributesSize + 4
    static let directoryHeaderSize = 32
    static let direntFixedSize = 18
    static let extentEntrySize = 8 + extentSize

    static func rootRuns(blockSize: Int) -> Int { (blockSize - BlockHeader.size - rootFieldsSize) / runSize }
    static func mapRuns(blockSize: Int) -> Int { (blockSize - BlockHeader.size - mapFieldsSize) / runSize }
    /// Entry bytes a section block holds.
    static func chunkCapacity(blockSize: Int) -> Int { blockSize - BlockHeader.size - prefixSize }
}

/// Packs one section's entries into blocks: an entry that fits the current block goes there,
/// one that fits an empty block starts the next, one larger than a block starts where the
/// last ended and runs on, each block it spills into saying how many of its bytes continue
/// it (the prefix).
struct SectionPacker {
    let blockSize: Int
    private(set) var blocks: [[UInt8]] = []
    private(set) var payloadLengths: [Int] = []
    private(set) var entries = 0
    private var current: ByteWriter

    init(blockSize: Int) {
        self.blockSize = blockSize
        current = Self.fresh(blockSize: blockSize, continuing: 0)
    }

    private static func fresh(blockSize: Int, continuing: Int) -> ByteWriter {
        var w = ByteWriter(capacity: blockSize)
        w.zeros(BlockHeader.size)
        w.u32(UInt32(continuing))
        return w
    }

    private var isEmpty: Bool { current.count == BlockHeader.size + SnapshotLayout.prefixSize }

    private mutating func close(continuing: Int) {
        payloadLengths.append(current.count - BlockHeader.size)
        current.zeros(blockSize - current.count)
        blocks.append(current.take())
        current = Self.fresh(blockSize: blockSize, continuing: continuing)
    }

    /// Adds one entry of `size` bytes, which `write` appends. `counted` is false for the parts
    /// of an entry that are packed apart (a directory's names, after its header).
    mutating func add(size: Int, counted: Bool = true, _ write: (inout ByteWriter) -> Void) {
        if counted { entries += 1 }
        if current.count + size <= blockSize {
            write(&current)
        } else if size <= SnapshotLayout.chunkCapacity(blockSize: blockSize) {
            close(continuing: 0)
            write(&current)
        } else {
            var scratch = ByteWriter(capacity: size)
            write(&scratch)
            spill(scratch.bytes)
        }
    }

    private mutating func spill(_ bytes: [UInt8]) {
        // A full block has no byte of this entry: it starts the next block, whose prefix is
        // then 0. Closing the full block with the entry's length as the next one's prefix
        // said the entry began before that block, and the reader (rightly) refused the
        // snapshot: the crash explorer found it with a 4,014-byte xattr after a block
        // filled exactly.
        if current.count == blockSize { close(continuing: 0) }
        var at = 0
        while at < bytes.count {
            let take = min(bytes.count - at, blockSize - current.count)
            current.raw(bytes[at..<at + take])
            at += take
            if at < bytes.count { close(continuing: min(bytes.count - at, SnapshotLayout.chunkCapacity(blockSize: blockSize))) }
        }
    }

    /// The blocks, the last one closed.
    mutating func finish() -> (blocks: [[UInt8]], payloadLengths: [Int]) {
        if !isEmpty { close(continuing: 0) }
        return (blocks, payloadLengths)
    }
}

/// A MetadataState encoded into section blocks, waiting for addresses.
public struct SnapshotImage: Sendable {
    public let blockSize: Int
    let sectionBlocks: [[[UInt8]]]
    let sectionPayloads: [[Int]]
    let entryCounts: [Int]
    let nextInode: UInt64
    let nextIntent: UInt64
    /// Map blocks, sized for the worst case (every block its own run), so that the count
    /// does not depend on which addresses the caller finds.
    let mapBlocks: Int

    /// Encodes `state`'s sections. The state must keep the invariants MetadataState.apply
    /// keeps (docs/FORMAT.md "What the snapshot reader checks"); one that does not encodes
    /// to a snapshot the reader refuses.
    public init(_ state: MetadataState, blockSize: Int) {
        precondition(blockSize >= VolumeGeometry.minimumBlockSize && blockSize & (blockSize - 1) == 0, "bad block size \(blockSize)")
        self.blockSize = blockSize
        var packers = SnapshotSection.allCases.map { _ in SectionPacker(blockSize: blockSize) }
        encodeSections(state, into: &packers)
        var blocks: [[[UInt8]]] = []
        var payloads: [[Int]] = []
        for i in packers.indices {
            let (b, p) = packers[i].finish()
            blocks.append(b)
            payloads.append(p)
        }
        sectionBlocks = blocks
        sectionPayloads = payloads
        entryCounts = packers.map(\.entries)
        nextInode = state.nextInode
        nextIntent = state.nextIntent
        mapBlocks = Self.mapBlocks(sectionBlocks: blocks.reduce(0) { $0 + $1.count }, blockSize: blockSize)
    }

    /// The least number of map blocks for which root and maps can list 1 + m + s runs.
    static func mapBlocks(sectionBlocks s: Int, blockSize: Int) -> Int {
        let root = SnapshotLayout.rootRuns(blockSize: blockSize)
        let map = SnapshotLayout.mapRuns(blockSize: blockSize)
        var m = 0
        while root + m * map < 1 + m + s { m += 1 }
        return m
    }

    /// Blocks the snapshot takes: root, map blocks, section blocks.
    public var blockCount: Int { 1 + mapBlocks + sectionBlocks.reduce(0) { $0 + $1.count } }
}

extension SnapshotImage {
    /// The snapshot's blocks for `addresses` (`blockCount` of them, distinct; the first is
    /// the root), sealed with `uuid` and `sequence`. Block i is to be written at addresses[i].
    public func blocks(sequence: UInt64, addresses: [Int], uuid: VolumeUUID) -> [[UInt8]] {
        precondition(addresses.count == blockCount, "\(addresses.count) addresses for a snapshot of \(blockCount) blocks")
        let root = addresses[0]
        let runs = Self.runs(of: addresses)
        var out = listBlocks(runs: runs)
        for s in SnapshotSection.allCases {
            for (b, length) in zip(sectionBlocks[s.rawValue], sectionPayloads[s.rawValue]) {
                out.append((s.kind, b, length))
            }
        }
        return out.enumerated().map { i, entry in
            var (kind, block, length) = entry
            BlockHeader(
                kind: kind, uuid: uuid, owner: UInt64(root), address: addresses[i], sequence: sequence, index: UInt32(i),
                payloadLength: length
            ).seal(&block)
            return block
        }
    }

    /// Consecutive addresses as (start, count) runs.
    static func runs(of addresses: [Int]) -> [(start: Int, count: Int)] {
        var runs: [(start: Int, count: Int)] = []
        for a in addresses {
            if let last = runs.last, last.start + last.count == a, last.count < Int(UInt32.max) {
                runs[runs.count - 1].count += 1
            } else {
                runs.append((a, 1))
            }
        }
        return runs
    }

    /// The root and the map blocks, unsealed.
    private func listBlocks(runs: [(start: Int, count: Int)]) -> [(BlockKind, [UInt8], Int)] {
        var w = ByteWriter(capacity: blockSize)
        w.zeros(BlockHeader.size)
        w.u64(nextInode)
        w.u64(nextIntent)
        w.u64(UInt64(blockCount))
        w.u64(UInt64(runs.count))
        w.u32(UInt32(mapBlocks))
        let inRoot = min(runs.count, SnapshotLayout.rootRuns(blockSize: blockSize))
        w.u32(UInt32(inRoot))
        for s in SnapshotSection.allCases {
            w.u64(UInt64(entryCounts[s.rawValue]))
            w.u64(UInt64(sectionBlocks[s.rawValue].count))
        }
        var out: [(BlockKind, [UInt8], Int)] = []
        var next = 0
        func putRuns(_ n: Int) {
            for r in runs[next..<next + n] {
                w.u64(UInt64(r.start))
                w.u32(UInt32(r.count))
            }
            next += n
        }
        func close(_ kind: BlockKind) {
            let length = w.count - BlockHeader.size
            w.zeros(blockSize - w.count)
            out.append((kind, w.take(), length))
        }
        putRuns(inRoot)
        close(.snapshotRoot)
        for _ in 0..<mapBlocks {
            let n = min(runs.count - next, SnapshotLayout.mapRuns(blockSize: blockSize))
            w = ByteWriter(capacity: blockSize)
            w.zeros(BlockHeader.size)
            w.u32(UInt32(n))
            w.u32(0)
            putRuns(n)
            close(.snapshotMap)
        }
        return out
    }
}

/// Blocks `state` takes as a snapshot at `blockSize`.
public func snapshotBlockCount(of state: MetadataState, blockSize: Int) -> Int {
    SnapshotImage(state, blockSize: blockSize).blockCount
}

/// `state` as snapshot `sequence` at `addresses` (snapshotBlockCount of them; the first is
/// the root). Use SnapshotImage to encode once when the count is needed first.
public func encodeSnapshot(_ state: MetadataState, sequence: UInt64, addresses: [Int], uuid: VolumeUUID, blockSize: Int) -> [[UInt8]] {
    SnapshotImage(state, blockSize: blockSize).blocks(sequence: sequence, addresses: addresses, uuid: uuid)
}
