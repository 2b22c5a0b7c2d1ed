// Counterpart: the log record framing of fs/xfs/libxfs/xfs_log_format.h (struct
// xlog_rec_header with its h_lsn, h_len, h_num_logops and h_crc; the cycle number stamped
// in every sector) and the torn-write detection of fs/xfs/xfs_log_recover.c
// (xlog_find_tail, xlog_do_recovery_pass).
//
// One checkpoint is a whole number of consecutive log blocks, wrapping at the log's end.
// Each block has the common header (owner: the head block's address, sequence: the
// checkpoint's, index: its place); the head adds the block count, the record count and a
// CRC32C of the records, which run on across the blocks. Each block carries the sequence
// and its own CRC; the head's count says how many blocks must follow. As XFS stamps its
// cycle number in every sector, every 512-byte sector of a log block after the first starts
// with the checkpoint's sequence (the first holds it in the header): a block that fails its
// CRC while every sector says it was written by the checkpoint expected there was written
// whole and damaged after (a flipped bit), not torn by a crash, which leaves older sectors.
// docs/FORMAT.md "The log".

/// What a checkpoint's head says.
public struct CheckpointHead: Hashable, Sendable {
    public var sequence: UInt64
    /// Blocks in the checkpoint, the head included.
    public var blockCount: Int
    public var recordCount: Int
    /// Bytes of encoded records.
    public var payloadLength: Int
    var payloadCRC: UInt32
}

/// A decoded checkpoint.
public struct Checkpoint: Equatable, Sendable {
    public var sequence: UInt64
    public var records: [LogRecord]
    public var blockCount: Int
}

/// Head fields after the block header: block count, record count, payload length, payload
/// CRC, reserved.
let checkpointHeadFieldsSize = 24

/// A checkpoint's records, encoded once: the runtime asks how many blocks they take (to see
/// whether they fit before the log's tail) and then frames them at the position it chose.
public struct CheckpointImage: Sendable {
    public let payload: [UInt8]
    public let recordCount: Int

    public init(records: [LogRecord]) {
        var w = ByteWriter(capacity: records.count * 64)
        for r in records { r.encode(into: &w) }
        payload = w.take()
        recordCount = records.count
    }

    /// Raw record bytes (tests: a checkpoint whose blocks are sound and whose records are not).
    init(payload: [UInt8], recordCount: Int) {
        self.payload = payload
        self.recordCount = recordCount
    }

    /// The blocks the checkpoint takes at `blockSize`.
    public func blockCount(blockSize: Int) -> Int { CheckpointHeadGeometry(blockSize: blockSize).blocks(for: payload.count) }

    /// The checkpoint's blocks, for log offsets `offset`, `offset + 1`, ... (wrapping at the
    /// log's end: block i goes to `geometry.log.address(ofOffset: offset + i)`).
    public func blocks(sequence: UInt64, at offset: Int, geometry: VolumeGeometry) -> [[UInt8]] {
        let n = blockCount(blockSize: geometry.blockSize)
        precondition(n <= geometry.log.length, "a checkpoint of \(n) blocks does not fit the \(geometry.log.length)-block log")
        precondition(offset >= 0 && offset < geometry.log.length, "log offset \(offset) outside the log")
        let headAddress = geometry.log.address(ofOffset: offset)
        var out: [[UInt8]] = []
        out.reserveCapacity(n)
        var at = 0
        for i in 0..<n {
            var w = ByteWriter(capacity: geometry.blockSize)
            w.zeros(BlockHeader.size)
            if i == 0 {
                w.u32(UInt32(n))
                w.u32(UInt32(recordCount))
                w.u64(UInt64(payload.count))
                w.u32(CRC32C.checksum(payload))
                w.u32(0)
            }
            let fields = w.count - BlockHeader.size
            w.zeros(geometry.blockSize - w.count)
            var block = w.take()
            let start = at
            for slot in logPayloadSlots(blockSize: geometry.blockSize, from: BlockHeader.size + fields) where at < payload.count {
                let take = min(payload.count - at, slot.count)
                block.replaceSubrange(slot.lowerBound..<slot.lowerBound + take, with: payload[at..<at + take])
                at += take
            }
            stampSectors(&block, sequence: sequence)
            let payloadLength = fields + at - start
            BlockHeader(
                kind: .log, uuid: geometry.uuid, owner: UInt64(headAddress), address: geometry.log.address(ofOffset: offset + i),
                sequence: sequence, index: UInt32(i), payloadLength: payloadLength
            ).seal(&block)
            out.append(block)
        }
        return out
    }
}

/// The blocks `records` take as one checkpoint.
public func checkpointBlockCount(_ records: [LogRecord], blockSize: Int) -> Int {
    CheckpointImage(records: records).blockCount(blockSize: blockSize)
}

/// The blocks of checkpoint `sequence` holding `records`, starting at log offset `offset`.
public func encodeCheckpoint(sequence: UInt64, records: [LogRecord], at offset: Int, geometry: VolumeGeometry) -> [[UInt8]] {
    CheckpointImage(records: records).blocks(sequence: sequence, at: offset, geometry: geometry)
}

/// Reads the block at log offset `offset` as a checkpoint's head. A block that is not the
/// head of a checkpoint of this volume at this place, of sequence `sequenceAtLeast` or later,
/// throws with category `.notACheckpoint` (the end of the log, or a torn head: see
/// docs/FORMAT.md "Telling a torn tail from corruption"); a checksummed head whose fields
/// are impossible throws `.corrupt`.
public func decodeCheckpointHead(
    _ block: [UInt8], at offset: Int, geometry: VolumeGeometry, sequenceAtLeast: UInt64?
) throws(FormatError) -> CheckpointHead {
    try decodeCheckpointHead(block, at: offset, geometry: geometry, sequenceAtLeast: sequenceAtLeast, verifyCRC: true)
}

func decodeCheckpointHead(
    _ block: [UInt8], at offset: Int, geometry: VolumeGeometry, sequenceAtLeast: UInt64?, verifyCRC: Bool
) throws(FormatError) -> CheckpointHead {
    guard offset >= 0 && offset < geometry.log.length else {
        throw FormatError(.log, geometry.log.start, .malformed("log offset \(offset) outside the \(geometry.log.length)-block log"))
    }
    let address = geometry.log.address(ofOffset: offset)
    let expect = BlockExpectation(
        kind: .log, address: address, blockSize: geometry.blockSize, uuid: geometry.uuid, owner: UInt64(address),
        sequence: sequenceAtLeast.map { .atLeast($0) } ?? .any, index: 0, verifyCRC: verifyCRC)
    let header: BlockHeader
    do { header = try expect.check(block) } catch { throw error.classed(.notACheckpoint) }
    var r = FieldReader(ByteReader(block, from: BlockHeader.size), kind: .log, address: address)
    let n = Int(try r.u32())
    let records = Int(try r.u32())
    let length = try r.u64()
    let crc = try r.u32()
    try r.reserved(4)
    let image = CheckpointHeadGeometry(blockSize: geometry.blockSize)
    guard n >= 1, n <= geometry.log.length else { throw r.malformed("checkpoint of \(n) blocks in a \(geometry.log.length)-block log") }
    guard length <= UInt64(image.capacity(blocks: n)), n == image.blocks(for: Int(length)) else {
        throw r.malformed("\(length) bytes of records do not take \(n) blocks")
    }
    let headBytes = min(Int(length), image.head)
    guard Int(header.payloadLength) == checkpointHeadFieldsSize + headBytes else {
        throw FormatError(.log, address, .badPayloadLength(header.payloadLength, limit: checkpointHeadFieldsSize + headBytes))
    }
    return CheckpointHead(sequence: header.sequence, blockCount: n, recordCount: records, payloadLength: Int(length), payloadCRC: crc)
}

/// How records spread over a checkpoint's blocks.
struct CheckpointHeadGeometry {
    /// Record bytes in the head block and in each later block.
    let head: Int
    let rest: Int

    init(blockSize: Int) {
        let stamps = (blockSize / logSectorSize - 1) * logStampSize
        head = blockSize - BlockHeader.size - checkpointHeadFieldsSize - stamps
        rest = blockSize - BlockHeader.size - stamps
    }

    func capacity(blocks n: Int) -> Int { head + (n - 1) * rest }
    func blocks(for length: Int) -> Int { 1 + max(0, length - head + rest - 1) / rest }
    /// The block holding byte `offset` of the records.
    func block(holding offset: Int) -> Int { offset < head ? 0 : 1 + (offset - head) / rest }
}

/// Decodes a whole checkpoint from its blocks, read from log offsets `offset`, `offset + 1`,
/// ... (wrapping). Throws `.notACheckpoint` as decodeCheckpointHead does; `.tornCheckpoint`
/// when the head is valid but a later block is missing, not of this checkpoint (an older
/// lap's, another write's) or damaged, or the records' CRC does not match; `.corrupt` when
/// every block checks out and the records still cannot be read.
public func decodeCheckpoint(
    _ blocks: [[UInt8]], at offset: Int, geometry: VolumeGeometry, sequenceAtLeast: UInt64?
) throws(FormatError) -> Checkpoint {
    try decodeCheckpoint(blocks, at: offset, geometry: geometry, sequenceAtLeast: sequenceAtLeast, verifyCRC: true)
}

func decodeCheckpoint(
    _ blocks: [[UInt8]], at offset: Int, geometry: VolumeGeometry, sequenceAtLeast: UInt64?, verifyCRC: Bool
) throws(FormatError) -> Checkpoint {
    let headAddress = geometry.log.address(ofOffset: min(max(0, offset), geometry.log.length - 1))
    guard let first = blocks.first else {
        throw FormatError(.log, headAddress, .truncated(bytes: 0, expected: geometry.blockSize), category: .notACheckpoint)
    }
    let head = try decodeCheckpointHead(first, at: offset, geometry: geometry, sequenceAtLeast: sequenceAtLeast, verifyCRC: verifyCRC)
    let n = head.blockCount
    guard blocks.count <= n else {
        throw FormatError(.log, headAddress, .malformed("\(blocks.count) blocks given for a checkpoint of \(n)"))
    }
    let shape = CheckpointHeadGeometry(blockSize: geometry.blockSize)
    var payload = ByteWriter(capacity: min(head.payloadLength, blocks.count * geometry.blockSize))
    gatherPayload(first, from: BlockHeader.size + checkpointHeadFieldsSize, count: min(head.payloadLength, shape.head), into: &payload)
    for i in 1..<max(1, n) {
        // Said only when the block is refused: made for every block, the words cost more
        // than checking the block.
        func context() -> String { "checkpoint \(head.sequence) torn at block \(i) of \(n)" }
        let address = geometry.log.address(ofOffset: max(0, offset) + i)
        guard i < blocks.count else {
            throw FormatError(
                .log, address, .truncated(bytes: 0, expected: geometry.blockSize), category: .tornCheckpoint, context: context())
        }
        let expect = BlockExpectation(
            kind: .log, address: address, blockSize: geometry.blockSize, uuid: geometry.uuid, owner: UInt64(headAddress),
            sequence: .exactly(head.sequence), index: UInt32(i), verifyCRC: verifyCRC)
        let header: BlockHeader
        do { header = try expect.check(blocks[i]) } catch { throw error.classed(.tornCheckpoint, context: context()) }
        let want = min(shape.rest, head.payloadLength - payload.count)
        guard Int(header.payloadLength) == want else {
            throw FormatError(
                .log, address, .badPayloadLength(header.payloadLength, limit: want), category: .tornCheckpoint, context: context())
        }
        gatherPayload(blocks[i], from: BlockHeader.size, count: want, into: &payload)
    }
    let bytes = payload.take()
    guard !verifyCRC || CRC32C.checksum(bytes) == head.payloadCRC else {
        throw FormatError(
            .log, headAddress, .malformed("the records' CRC does not match"), category: .tornCheckpoint,
            context: "checkpoint \(head.sequence): blocks of different writes")
    }
    let records = try decodeRecords(bytes, head: head, offset: offset, geometry: geometry, shape: shape)
    return Checkpoint(sequence: head.sequence, records: records, blockCount: n)
}

/// Log blocks are stamped in 512-byte sectors, whatever the block size.
let logSectorSize = 512
/// The sequence at the start of every sector after the first.
let logStampSize = 8

/// The byte ranges of a log block that hold records, from byte `start` on: the rest of the
/// first sector, then each later sector after its stamp.
func logPayloadSlots(blockSize: Int, from start: Int) -> [Range<Int>] {
    var slots = [start..<min(logSectorSize, blockSize)]
    for s in stride(from: logSectorSize, to: blockSize, by: logSectorSize) { slots.append(s + logStampSize..<s + logSectorSize) }
    return slots
}

/// Writes `sequence` at the start of every sector of `block` after the first.
func stampSectors(_ block: inout [UInt8], sequence: UInt64) {
    block.withUnsafeMutableBytes { b in
        for s in stride(from: logSectorSize, to: b.count, by: logSectorSize) {
            b.storeBytes(of: sequence.littleEndian, toByteOffset: s, as: UInt64.self)
        }
    }
}

/// Appends `count` record bytes of `block` from byte `start` on, skipping the stamps.
func gatherPayload(_ block: [UInt8], from start: Int, count: Int, into w: inout ByteWriter) {
    var left = count
    for slot in logPayloadSlots(blockSize: block.count, from: start) where left > 0 {
        let take = min(left, slot.count)
        w.raw(block[slot.lowerBound..<slot.lowerBound + take])
        left -= take
    }
}

/// Whether `block`, which fails its checks, was nevertheless written whole by checkpoint
/// `sequence`, the one expected at its place, and damaged after: its CRC is wrong while the
/// header's sequence and every sector's stamp are `sequence`. A crash cannot do that: the
/// sectors it leaves unwritten hold an older write's stamp (sequences only grow, and none is
/// written twice at one place), or none, or garbage. Damage after the write can: a flipped
/// bit anywhere but in a stamp or the header's sequence (a flip there looks like a torn
/// write's other sector). Blocks of one sector have no stamps and are never called so.
public func wholeButDamagedLogBlock(_ block: [UInt8], sequence: UInt64) -> Bool {
    guard block.count > logSectorSize, block.count >= BlockHeader.size, block.le(UInt64.self, at: 40) == sequence else {
        return false
    }
    for s in stride(from: logSectorSize, to: block.count, by: logSectorSize) where block.le(UInt64.self, at: s) != sequence {
        return false
    }
    let crc = block.withUnsafeBytes { CRC32C.blockChecksum($0, fieldOffset: BlockHeader.crcOffset) }
    return crc != block.le(UInt32.self, at: BlockHeader.crcOffset)
}

private func decodeRecords(
    _ bytes: [UInt8], head: CheckpointHead, offset: Int, geometry: VolumeGeometry, shape: CheckpointHeadGeometry
) throws(FormatError) -> [LogRecord] {
    var r = FieldReader(ByteReader(bytes)) { at in (.log, geometry.log.address(ofOffset: max(0, offset) + shape.block(holding: at))) }
    var records: [LogRecord] = []
    records.reserveCapacity(min(head.recordCount, bytes.count / recordHeaderSize))
    while !r.isAtEnd {
        guard records.count < head.recordCount else { throw r.malformed("more records than the \(head.recordCount) the head counts") }
        records.append(try LogRecord.decode(from: &r))
    }
    guard records.count == head.recordCount else {
        throw r.malformed("\(records.count) records where the head counts \(head.recordCount)", at: 0)
    }
    return records
}
