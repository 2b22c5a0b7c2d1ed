// Counterpart: the buffer and log I/O of XFS on its block device: xlog_bwrite/xlog_bread of
// fs/xfs/xfs_log_recover.c, the iclog writes of xfs_log.c, xfs_sync_sb's superblock write,
// and mkfs.xfs's layout (zeroed log, superblock copies).
//
// DeviceLogStore is the journal's store on a block device, in the layout of docs/FORMAT.md:
// superblock copies at blocks 0 and 1 (both written by every update, one after the other),
// the log region after them, snapshots in blocks the journal allocates. It holds the
// geometry the superblock gave, which copy it was read from, and what the other copy was.

import ExtentFS
import IOMapBase
import Synchronization

public final class DeviceLogStore: LogStore {
    public let device: any BlockDevice
    public let geometry: VolumeGeometry
    /// The superblock last written or read, the copy it was read from, and what the other
    /// copy held then (`.sameGeneration` once both copies are this superblock).
    let superblock: Mutex<(current: Superblock, copy: Int, other: SuperblockChoice.OtherCopy)>

    init(device: any BlockDevice, superblock: Superblock, copy: Int, other: SuperblockChoice.OtherCopy) {
        self.device = device
        self.geometry = superblock.geometry
        self.superblock = Mutex((superblock, copy, other))
    }

    public var logBlocks: Int { geometry.log.length }
    public var metadataBlocks: Int { geometry.log.end }
    public var blockSize: Int { geometry.blockSize }

    /// The store of the volume on `device`: its superblocks read and the newest valid one
    /// taken. Errors name the copy and the check.
    public static func open(_ device: any BlockDevice) throws(VolumeError) -> DeviceLogStore {
        guard device.blockCount >= 2 else { throw .invalid("the device has \(device.blockCount) blocks: too small for a volume") }
        let copies: [[UInt8]]
        do throws(Errno) {
            copies = [try device.readBlocks(0, count: 1), try device.readBlocks(1, count: 1)]
        } catch {
            throw .io(error, "reading the superblocks")
        }
        let choice: SuperblockChoice
        do throws(FormatError) {
            choice = try chooseSuperblock(copy0: copies[0], copy1: copies[1])
        } catch {
            throw error.category == .unsupported ? .unsupported(error.description) : .corrupt(error.description)
        }
        let g = choice.superblock.geometry
        if g.blockCount != device.blockCount || g.blockSize != device.blockSize {
            throw .corrupt(
                "superblock \(choice.copy): the volume is \(g.blockCount) blocks of \(g.blockSize) bytes, "
                    + "the device \(device.blockCount) of \(device.blockSize)")
        }
        return DeviceLogStore(device: device, superblock: choice.superblock, copy: choice.copy, other: choice.other)
    }

    public var damagedSuperblock: FormatError? {
        if case .rejected(let error) = superblock.withLock({ $0.other }) { return error }
        return nil
    }

    /// Makes the other copy the superblock read, when it is older (an update cut between
    /// its two writes) or damaged, and flushes it: until then the other copy may name a
    /// snapshot and a log tail whose blocks this superblock lets the volume reuse, and it
    /// would be no fallback if this copy were damaged next. The copy rewritten, or nil.
    func rewriteOtherCopy() throws(Errno) -> Int? {
        let (sb, copy, other) = superblock.withLock { ($0.current, $0.copy, $0.other) }
        if case .sameGeneration = other { return nil }
        try device.writeBlocks(1 - copy, sb.encode(copy: 1 - copy))
        try device.flush()
        superblock.withLock { $0.other = .sameGeneration }
        return 1 - copy
    }

    public func writeCheckpoint(_ image: CheckpointImage, sequence: UInt64, at offset: Int) throws(Errno) {
        let blocks = image.blocks(sequence: sequence, at: offset, geometry: geometry)
        // Consecutive log blocks up to the region's end go in one write; the rest wraps.
        let first = min(blocks.count, logBlocks - offset)
        try device.writeBlocks(geometry.log.start + offset, Array(blocks[0..<first].joined()))
        if first < blocks.count { try device.writeBlocks(geometry.log.start, Array(blocks[first...].joined())) }
    }

    public func readCheckpoint(sequence: UInt64, at offset: Int) -> CheckpointRead {
        let head: CheckpointHead
        var first: [UInt8] = []
        do {
            first = try device.readBlocks(geometry.log.address(ofOffset: offset), count: 1)
            head = try decodeCheckpointHead(first, at: offset, geometry: geometry, sequenceAtLeast: sequence)
        } catch let error as FormatError {
            if let d = damage(in: [first], at: offset, sequenceAtLeast: sequence, error) { return d }
            // A head whose header names the checkpoint expected here but that fails its other
            // checks was being written when the volume went down: a torn checkpoint, which is
            // what recovery reports, rather than the log's end.
            if first.count >= BlockHeader.size && first.le(UInt64.self, at: 40) == sequence
                && first.le(UInt32.self, at: 0) == BlockKind.log.magic
            {
                return .torn(reason: "\(error) (a torn head of checkpoint \(sequence))")
            }
            return Self.verdict(error)
        } catch let error as Errno {
            return .failed(error, reason: "\(logBlockName(offset)): read failed")
        } catch {
            return .failed(.ioError, reason: "\(logBlockName(offset)): \(error)")
        }
        guard head.sequence == sequence else {
            return .end(reason: "\(logBlockName(offset)): checkpoint \(head.sequence) where \(sequence) was expected")
        }
        // The blocks after the head in one read up to the log's end and one from its start:
        // a mount reads every checkpoint of the log, and a read per block was a system call
        // for each of them.
        var blocks: [[UInt8]] = []
        blocks.reserveCapacity(head.blockCount)
        var i = 0
        while i < head.blockCount {
            let at = (offset + i) % logBlocks
            let n = min(head.blockCount - i, logBlocks - at)
            let bytes: [UInt8]
            do throws(Errno) {
                bytes = try device.readBlocks(geometry.log.start + at, count: n)
            } catch {
                return .failed(error, reason: "\(logBlockName(offset + i)) and the \(n - 1) after it: read failed")
            }
            for k in 0..<n { blocks.append(Array(bytes[k * blockSize..<(k + 1) * blockSize])) }
            i += n
        }
        do throws(FormatError) {
            let c = try decodeCheckpoint(blocks, at: offset, geometry: geometry, sequenceAtLeast: sequence)
            return .checkpoint(records: c.records, blocks: c.blockCount)
        } catch {
            return damage(in: blocks, at: offset, sequenceAtLeast: sequence, error) ?? Self.verdict(error)
        }
    }

    /// A block of a checkpoint that failed to read that was written whole by the checkpoint
    /// expected there and damaged after (wholeButDamagedLogBlock): not a torn tail, which
    /// recovery may stop at quietly, but damage it must refuse, as it refuses damage with
    /// newer checkpoints behind it (docs/FORMAT.md "Telling a torn tail from corruption").
    ///
    /// And a block of this volume that is whole and valid but of another kind: only log blocks
    /// are ever written to the log region, so another structure's block there came by a
    /// misdirected write, which no crash does.
    func damage(in blocks: [[UInt8]], at offset: Int, sequenceAtLeast sequence: UInt64, _ error: FormatError) -> CheckpointRead? {
        for (i, b) in blocks.enumerated() {
            if wholeButDamagedLogBlock(b, sequence: sequence) {
                return .damaged(
                    reason:
                        "\(logBlockName(offset + i)): bad CRC, though every sector of it was written by checkpoint \(sequence): damaged after it was written, not torn (\(error))"
                )
            }
            if let kind = foreignBlockKind(b) {
                return .damaged(
                    reason:
                        "\(logBlockName(offset + i)): holds a whole \(kind) of this volume, which is never written to the log: a misdirected write (\(error))"
                )
            }
        }
        return nil
    }

    /// The kind of `block` when it is a valid block of this volume (its magic, CRC and UUID
    /// check out) of a kind other than the log's.
    func foreignBlockKind(_ block: [UInt8]) -> BlockKind? {
        guard block.count == blockSize, block.count >= BlockHeader.size else { return nil }
        let magic = block.le(UInt32.self, at: 0)
        guard let kind = BlockKind.allCases.first(where: { $0.magic == magic }), kind != .log else { return nil }
        let crc = block.withUnsafeBytes { CRC32C.blockChecksum($0, fieldOffset: BlockHeader.crcOffset) }
        guard crc == block.le(UInt32.self, at: BlockHeader.crcOffset), VolumeUUID(block, at: 8) == geometry.uuid else { return nil }
        return kind
    }

    public func logBlockName(_ offset: Int) -> String { BlockKind.log.name(geometry.log.address(ofOffset: offset)) }

    public func findCheckpoint(sequenceAtLeast sequence: UInt64, from start: Int, count: Int) throws(Errno)
        -> (offset: Int, sequence: UInt64)?
    {
        // 64 KiB at a time into one buffer, never across the log's end. Recovery scans the
        // rest of the log on every mount (checkedEnd), the whole log after a snapshot: a
        // fresh zeroed buffer of the whole scan each time (page faults, a memset, the copy)
        // was an eighth of a crash explorer's states.
        let chunk = max(1, (64 << 10) / blockSize)
        let total = min(max(0, count), logBlocks)
        guard total > 0 else { return nil }
        var bytes = [UInt8](repeating: 0, count: min(chunk, total) * blockSize)
        var done = 0
        while done < total {
            let offset = (start + done) % logBlocks
            let n = min(chunk, total - done, logBlocks - offset)
            let read = bytes.withUnsafeMutableBytes { buffer in
                Result { () throws(Errno) in
                    try device.read(
                        block: geometry.log.start + offset, count: n,
                        into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n * blockSize]))
                }
            }
            try read.get()
            for i in 0..<n {
                // The header's magic and sequence first: most blocks a scan passes are older
                // checkpoints', which their sequence rejects without a copy or a checksum;
                // a block that passes is checked in full.
                let base = i * blockSize
                guard bytes.le(UInt32.self, at: base) == BlockKind.log.magic, bytes.le(UInt64.self, at: base + 40) >= sequence else {
                    continue
                }
                let block = Array(bytes[base..<base + blockSize])
                if let head = try? decodeCheckpointHead(block, at: offset + i, geometry: geometry, sequenceAtLeast: sequence) {
                    return (offset + i, head.sequence)
                }
            }
            done += n
        }
        return nil
    }

    /// What a decoding error says of the log (docs/FORMAT.md "Reading a checkpoint: three
    /// verdicts"): no checkpoint here, a torn one, or a damaged one.
    static func verdict(_ error: FormatError) -> CheckpointRead {
        switch error.category {
        case .notACheckpoint: return .end(reason: error.description)
        case .tornCheckpoint: return .torn(reason: error.description)
        case .corrupt, .unsupported: return .damaged(reason: error.description)
        }
    }

    public func writeSnapshot(_ image: SnapshotImage, sequence: UInt64, at blocks: [Int]) throws(Errno) {
        let encoded = image.blocks(sequence: sequence, addresses: blocks, uuid: geometry.uuid)
        // Runs of consecutive addresses go in one write each.
        var i = 0
        while i < blocks.count {
            var j = i + 1
            while j < blocks.count && blocks[j] == blocks[j - 1] + 1 { j += 1 }
            // One buffer appended block by block: a joined() slice copies byte by byte.
            var run: [UInt8] = []
            run.reserveCapacity((j - i) * geometry.blockSize)
            for b in encoded[i..<j] { run.append(contentsOf: b) }
            try device.writeBlocks(blocks[i], run)
            i = j
        }
    }

    public func writeSuperblocks(_ anchor: LogAnchor, between flush: () throws(Errno) -> Void) throws(Errno) {
        let sb = superblock.withLock { s -> Superblock in
            var sb = s.current
            sb.generation += 1
            sb.snapshot = anchor.snapshot
            sb.replayStart = anchor.tail
            sb.cleanUnmount = anchor.clean
            s.current = sb
            return sb
        }
        try device.writeBlocks(0, sb.encode(copy: 0))
        try flush()
        try device.writeBlocks(1, sb.encode(copy: 1))
        superblock.withLock {
            $0.copy = 0
            $0.other = .sameGeneration
        }
    }

    public func flush() throws(Errno) { try device.flush() }

    public func readSnapshot(_ location: SnapshotLocation) throws(VolumeError) -> (state: MetadataState, blocks: [BlockExtent]) {
        // The decoder reads every block of the snapshot once: the addresses it reads are the
        // snapshot's blocks.
        var addresses: [Int] = []
        let state: MetadataState
        do throws(FormatError) {
            state = try decodeSnapshot(root: location.root, sequence: location.sequence, geometry: geometry) {
                (a: Int) throws(Errno) -> [UInt8] in
                addresses.append(a)
                return try device.readBlocks(a, count: 1)
            }
        } catch {
            throw .corrupt(error.description)
        }
        return (state, Self.runs(of: addresses))
    }

    /// `addresses` as sorted runs of consecutive blocks.
    static func runs(of addresses: [Int]) -> [BlockExtent] {
        var runs: [BlockExtent] = []
        for a in Set(addresses).sorted() {
            if let last = runs.last, last.end == a { runs[runs.count - 1].count += 1 } else { runs.append(BlockExtent(start: a, count: 1)) }
        }
        return runs
    }

    public func readAnchor() throws(VolumeError) -> LogAnchor {
        let sb = superblock.withLock { $0.current }
        return LogAnchor(snapshot: sb.snapshot, tail: sb.replayStart, clean: sb.cleanUnmount)
    }
}
