// Counterpart: none in the kernel; what xfs_repair's phases 2 to 4 and the read verifiers of
// the inode, directory, bmap and attribute blocks check, applied to one snapshot read whole.
//
// The reader trusts nothing: every block is checked against the header it must have (kind,
// CRC, volume, address, the snapshot's sequence, the root as owner, its index in the list)
// and every entry against what the format can see of structure: counts that agree, entries
// in order and unique, references to inodes that exist and are of the right type, values
// the in-memory types can hold. Semantic checks (link counts, free space, reachability) are
// fsck's. Any failure names the block it was found in (docs/FORMAT.md "Snapshot").

import IOMapBase

/// Reads the snapshot whose root is block `root` and whose sequence is `sequence` (both from
/// the superblock), reading blocks through `read`.
public func decodeSnapshot(
    root: Int, sequence: UInt64, geometry: VolumeGeometry, read: (Int) throws(Errno) -> [UInt8]
) throws(FormatError) -> MetadataState {
    try decodeSnapshot(root: root, sequence: sequence, geometry: geometry, read: read, verifyCRC: true)
}

func decodeSnapshot(
    root: Int, sequence: UInt64, geometry: VolumeGeometry, read: (Int) throws(Errno) -> [UInt8], verifyCRC: Bool
) throws(FormatError) -> MetadataState {
    try withoutActuallyEscaping(read) { (read) throws(FormatError) -> MetadataState in
        var reader = SnapshotReader(root: root, sequence: sequence, geometry: geometry, read: read, verifyCRC: verifyCRC)
        return try reader.decode()
    }
}

/// The root's fields.
struct SnapshotRoot {
    var nextInode: UInt64
    var nextIntent: UInt64
    var totalBlocks: Int
    var totalRuns: Int
    var mapBlocks: Int
    var sectionEntries: [Int]
    var sectionBlocks: [Int]
}

struct SnapshotReader {
    let root: Int
    let sequence: UInt64
    let geometry: VolumeGeometry
    let read: (Int) throws(Errno) -> [UInt8]
    let verifyCRC: Bool
    /// The snapshot's blocks as runs, in list order.
    private(set) var runs: [(start: Int, count: Int)] = []
    private var listed = 0

    init(root: Int, sequence: UInt64, geometry: VolumeGeometry, read: @escaping (Int) throws(Errno) -> [UInt8], verifyCRC: Bool) {
        self.root = root
        self.sequence = sequence
        self.geometry = geometry
        self.read = read
        self.verifyCRC = verifyCRC
    }

    /// Reads block `index` of the snapshot, at `address`, as a block of `kind`.
    func block(_ kind: BlockKind, index: Int, at address: Int) throws(FormatError) -> (BlockHeader, [UInt8]) {
        let bytes: [UInt8]
        do { bytes = try read(address) } catch { throw FormatError(kind, address, .readFailed(error.symbolicName)) }
        let header = try BlockExpectation(
            kind: kind, address: address, blockSize: geometry.blockSize, uuid: geometry.uuid, owner: UInt64(root),
            sequence: .exactly(sequence), index: UInt32(truncatingIfNeeded: index), verifyCRC: verifyCRC
        ).check(bytes)
        guard index <= Int(UInt32.max) else { throw FormatError(kind, address, .malformed("index \(index) out of range")) }
        return (header, bytes)
    }

    /// The address of list entry `index`, from the runs read so far, or nil.
    func address(of index: Int) -> Int? {
        var i = index
        for r in runs {
            if i < r.count { return r.start + i }
            i -= r.count
        }
        return nil
    }

    /// Calls `body` with the address of each of `count` list entries from `first`, walking
    /// the runs once and stopping at the first error: a list that claims more blocks than it
    /// has costs no more than the blocks that are really there.
    func forEachAddress(from first: Int, count: Int, _ body: (Int) throws(FormatError) -> Void) throws(FormatError) {
        var skip = first
        var left = count
        for r in runs where left > 0 {
            if skip >= r.count {
                skip -= r.count
                continue
            }
            var a = r.start + skip
            while a < r.start + r.count && left > 0 {
                try body(a)
                a += 1
                left -= 1
            }
            skip = 0
        }
    }

    mutating func decode() throws(FormatError) -> MetadataState {
        guard geometry.isDataBlock(root) else {
            throw FormatError(.snapshotRoot, root, .malformed("the root is not a data block of the volume"))
        }
        let (_, rootBytes) = try block(.snapshotRoot, index: 0, at: root)
        let fields = try readRoot(rootBytes)
        try readMaps(fields)
        var state = MetadataState()
        state.nextInode = fields.nextInode
        state.nextIntent = fields.nextIntent
        var index = 1 + fields.mapBlocks
        for s in SnapshotSection.allCases {
            let n = fields.sectionBlocks[s.rawValue]
            var stream = try sectionStream(s, firstIndex: index, count: n, entries: fields.sectionEntries[s.rawValue])
            try readSection(s, entries: fields.sectionEntries[s.rawValue], from: &stream, into: &state)
            index += n
        }
        try checkKindParts(state)
        return state
    }

    /// The root's fields and its runs.
    private mutating func readRoot(_ bytes: [UInt8]) throws(FormatError) -> SnapshotRoot {
        var r = FieldReader(ByteReader(bytes, from: BlockHeader.size), kind: .snapshotRoot, address: root)
        let nextInode = try r.u64()
        let nextIntent = try r.u64()
        let total = try r.u64()
        let totalRuns = try r.u64()
        let maps = Int(try r.u32())
        let inRoot = Int(try r.u32())
        var entries: [Int] = []
        var blocks: [Int] = []
        for _ in SnapshotSection.allCases {
            let e = try r.u64()
            let b = try r.u64()
            guard e <= maximumBlockNumber << 12, b <= maximumBlockNumber else { throw r.malformed("a section count is out of range") }
            entries.append(Int(e))
            blocks.append(Int(b))
        }
        let dataBlocks = UInt64(geometry.blockCount)
        guard total <= dataBlocks, totalRuns <= total, totalRuns >= 1 else {
            throw r.malformed("\(total) blocks in \(totalRuns) runs on a volume of \(dataBlocks) blocks")
        }
        guard Int(total) == 1 + maps + blocks.reduce(0, +) else {
            throw r.malformed("\(total) blocks, but 1 root, \(maps) map blocks and \(blocks.reduce(0, +)) section blocks")
        }
        guard inRoot <= SnapshotLayout.rootRuns(blockSize: geometry.blockSize), inRoot <= Int(totalRuns), inRoot >= 1 else {
            throw r.malformed("\(inRoot) runs in the root")
        }
        try readRuns(&r, count: inRoot, totalBlocks: Int(total))
        let fields = SnapshotRoot(
            nextInode: nextInode, nextIntent: nextIntent, totalBlocks: Int(total), totalRuns: Int(totalRuns), mapBlocks: maps,
            sectionEntries: entries, sectionBlocks: blocks)
        guard runs.first?.start == root else { throw r.malformed("the block list does not start with the root") }
        return fields
    }

    /// Appends `count` runs, checking each lies in the data area and the list stays within
    /// `totalBlocks`.
    private mutating func readRuns(_ r: inout FieldReader, count: Int, totalBlocks: Int) throws(FormatError) {
        for _ in 0..<count {
            let at = r.offset
            let start = try r.u64()
            let n = Int(try r.u32())
            guard start <= maximumBlockNumber, n >= 1, listed + n <= totalBlocks else {
                throw r.malformed("run (\(start), \(n)) is empty or runs past the \(totalBlocks) listed blocks", at: at)
            }
            let s = Int(start)
            guard geometry.isDataRun(start: s, count: n) else {
                throw r.malformed("run (\(s), \(n)) is not all data blocks", at: at)
            }
            runs.append((s, n))
            listed += n
        }
    }

    /// Reads the map blocks, which are list entries 1 ... m, and checks the whole list.
    private mutating func readMaps(_ fields: SnapshotRoot) throws(FormatError) {
        for j in 0..<fields.mapBlocks {
            guard let address = address(of: 1 + j) else {
                throw FormatError(.snapshotRoot, root, .malformed("map block \(1 + j) is not in the runs listed before it"))
            }
            let (header, bytes) = try block(.snapshotMap, index: 1 + j, at: address)
            var r = FieldReader(ByteReader(bytes, from: BlockHeader.size), kind: .snapshotMap, address: address)
            let n = Int(try r.u32())
            try r.reserved(4)
            guard n <= SnapshotLayout.mapRuns(blockSize: geometry.blockSize), runs.count + n <= fields.totalRuns,
                Int(header.payloadLength) == SnapshotLayout.mapFieldsSize + n * SnapshotLayout.runSize
            else { throw r.malformed("\(n) runs in a map block") }
            try readRuns(&r, count: n, totalBlocks: fields.totalBlocks)
        }
        guard runs.count == fields.totalRuns, listed == fields.totalBlocks else {
            throw FormatError(
                .snapshotRoot, root,
                .malformed(
                    "the list has \(runs.count) runs of \(listed) blocks, the root says \(fields.totalRuns) of \(fields.totalBlocks)"))
        }
        let sorted = runs.sorted { $0.start < $1.start }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.start + a.count > b.start {
            throw FormatError(.snapshotRoot, root, .malformed("block \(b.start) is listed twice"))
        }
    }

    /// A section's blocks read, checked and their entry bytes put end to end.
    private func sectionStream(_ s: SnapshotSection, firstIndex: Int, count: Int, entries: Int) throws(FormatError) -> SectionStream {
        var addresses: [Int] = []
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(count, 1 << 16) * SnapshotLayout.chunkCapacity(blockSize: geometry.blockSize))
        var starts: [Int] = []
        var prefixes: [Int] = []
        try forEachAddress(from: firstIndex, count: count) { (address) throws(FormatError) in
            let (header, block) = try self.block(s.kind, index: firstIndex + addresses.count, at: address)
            let length = Int(header.payloadLength)
            let prefix = length >= SnapshotLayout.prefixSize ? Int(block.le(UInt32.self, at: BlockHeader.size)) : -1
            guard prefix >= 0, length > SnapshotLayout.prefixSize, prefix <= length - SnapshotLayout.prefixSize else {
                throw FormatError(s.kind, address, .malformed("payload of \(length) bytes with continuation prefix \(prefix)"))
            }
            addresses.append(address)
            starts.append(bytes.count)
            prefixes.append(prefix)
            bytes.append(contentsOf: block[(BlockHeader.size + SnapshotLayout.prefixSize)..<(BlockHeader.size + length)])
        }
        if count == 0 && entries > 0 {
            throw FormatError(.snapshotRoot, root, .malformed("\(entries) \(s) entries in no blocks"))
        }
        return SectionStream(bytes: bytes, starts: starts, prefixes: prefixes, kind: s.kind, addresses: addresses)
    }
}
