// Counterpart: none in the kernel; tests of the log record encodings and of checkpoint
// framing: round trips, and each way a checkpoint can fail to be one (xlog_find_tail's
// cases: never written, an older lap, a torn tail, damage).

import IOMapBase
import Testing

@testable import Volume

@Suite("Format: log records and checkpoints")
struct FormatLogTests {
    let t = Timestamp(seconds: -3, nanoseconds: 7)

    /// One record of every case, with edge values.
    var everyCase: [LogRecord] {
        let a = InodeAttributes(
            type: .symlink, permissions: 0o7777, uid: .max, gid: 0, nlink: .max, size: .min, rdev: .max, time: t, generation: .max)
        let name = FileName(unchecked: [UInt8](repeating: 0x61, count: 255))
        return [
            .createInode(InodeNumber(.max), a, parent: nil, symlinkTarget: [1, 2, 3]),
            .createInode(InodeNumber(5), InodeAttributes(type: .directory, permissions: 0o755), parent: InodeNumber(0), symlinkTarget: []),
            .freeInode(InodeNumber(9)),
            .setAttributes(
                InodeNumber(3), InodeAttributes(type: .fifo, permissions: 0, time: Timestamp(seconds: .min, nanoseconds: 999_999_999))),
            .setSize(InodeNumber(4), .max),
            .addEntry(directory: .root, name: name, target: InodeNumber(8), type: .socket, cookie: .max),
            .removeEntry(directory: .root, name: FileName(unchecked: [0xFF])),
            .rename(
                fromDirectory: .root, from: name, toDirectory: InodeNumber(2), to: FileName(unchecked: [0x2E, 0x2E, 0x2E]), exchange: true,
                cookie: 3),
            .rename(fromDirectory: .root, from: name, toDirectory: .root, to: name, exchange: false, cookie: 0),
            .allocateUnwritten(InodeNumber(6), DiskExtent(fileBlock: -1, diskBlock: .max, count: 0, unwritten: true)),
            .allocateUnwritten(InodeNumber(6), DiskExtent(fileBlock: 1, diskBlock: 2, count: 3, unwritten: false)),
            .convertToWritten(InodeNumber(6), fromBlock: .min, toBlock: .max),
            .unmapAndIntendFree(InodeNumber(6), fromBlock: 0, toBlock: 10, intent: .max),
            .freeDone(intent: 0),
            .setXattr(InodeNumber(7), name: [], value: [UInt8](repeating: 0xEE, count: 70000)),
            .removeXattr(InodeNumber(7), name: Array("user.x".utf8)),
            .addOrphan(InodeNumber(11)),
            .removeOrphan(InodeNumber(11)),
        ]
    }

    @Test("every record case round-trips exactly")
    func records() throws {
        #expect(Set(everyCase.map(\.type.rawValue)) == Set(RecordType.allCases.map(\.rawValue)), "every case is in the list")
        for r in everyCase {
            #expect(try decodeLogRecord(r.encoded) == r)
        }
        var g = RandomMetadata(seed: 11)
        g.run(3000)
        #expect(g.records.count > 1000)
        for r in g.records { #expect(try decodeLogRecord(r.encoded) == r) }
    }

    @Test("a record that does not parse is refused")
    func badRecords() {
        let r = LogRecord.setSize(InodeNumber(4), 12).encoded
        func error(_ bytes: [UInt8]) -> String? { formatError { () throws(FormatError) in try decodeLogRecord(bytes) }?.description }
        #expect(error([99] + r.dropFirst()) == "log block 0 (device block): unknown log record type 99")
        #expect(error(Array(r.dropLast())) == "log block 0 (device block): log record of 16 bytes overruns the checkpoint")
        var longer = r
        longer[1] = 17
        #expect(error(longer + [0]) == "log block 0 (device block): setSize record has 1 bytes left over")
        #expect(error(r + [0]) == "log block 0 (device block): 1 bytes after the record")
        var badName = LogRecord.removeEntry(directory: .root, name: FileName(unchecked: [0x61, 0x62])).encoded
        badName[5 + 8 + 1] = 0x2F
        #expect(error(badName) == "log block 0 (device block): bad name: the name contains \"/\"")
        var badFlag = LogRecord.createInode(
            InodeNumber(2), InodeAttributes(type: .regular, permissions: 0), parent: nil, symlinkTarget: nil
        ).encoded
        badFlag[badFlag.count - 2] = 2
        #expect(error(badFlag)?.hasSuffix("a presence byte is 2, not 0 or 1") == true)
    }

    func records(seed: UInt64, count: Int) -> [LogRecord] {
        var g = RandomMetadata(seed: seed)
        g.bigValues = false
        g.run(count * 3)
        return Array(g.records.prefix(count))
    }

    @Test("checkpoints round-trip at any offset, wrapping at the log's end", arguments: [512, 4096])
    func checkpoints(blockSize: Int) throws {
        let g = formatGeometry(blockSize: blockSize, logLength: 1000)
        for (seed, count) in [(1, 0), (2, 1), (3, 40), (4, 700), (0, -1)] as [(UInt64, Int)] {
            let rs = count < 0 ? everyCase : records(seed: seed, count: count)
            for offset in [0, 17, 999] {
                let blocks = encodeCheckpoint(sequence: 77, records: rs, at: offset, geometry: g)
                #expect(blocks.count == checkpointBlockCount(rs, blockSize: blockSize))
                #expect(blocks.allSatisfy { $0.count == blockSize })
                let head = try decodeCheckpointHead(blocks[0], at: offset, geometry: g, sequenceAtLeast: 77)
                #expect(head.sequence == 77 && head.blockCount == blocks.count && head.recordCount == rs.count)
                let c = try decodeCheckpoint(blocks, at: offset, geometry: g, sequenceAtLeast: 70)
                #expect(c.records == rs && c.sequence == 77 && c.blockCount == blocks.count)
                for (i, b) in blocks.enumerated() {
                    let h = BlockHeader(reading: b)
                    #expect(h.address == UInt64(g.log.address(ofOffset: offset + i)) && h.index == UInt32(i))
                    #expect(h.owner == UInt64(g.log.start + offset) && h.sequence == 77)
                }
            }
        }
        #expect(checkpointBlockCount([], blockSize: blockSize) == 1)
    }

    /// A checkpoint of several blocks, at offset 10 of a 64-block log.
    func sample(sequence: UInt64 = 9, seed: UInt64 = 5, geometry g: VolumeGeometry = formatGeometry(blockSize: 512)) -> [[UInt8]] {
        encodeCheckpoint(sequence: sequence, records: records(seed: seed, count: 60), at: 10, geometry: g)
    }

    func failure(
        _ blocks: [[UInt8]], at offset: Int = 10, atLeast: UInt64? = 9, geometry g: VolumeGeometry = formatGeometry(blockSize: 512)
    )
        -> FormatError?
    {
        formatError { () throws(FormatError) in try decodeCheckpoint(blocks, at: offset, geometry: g, sequenceAtLeast: atLeast) }
    }

    @Test("no checkpoint here: never written, an older lap, another volume, a misdirected head")
    func notACheckpoint() {
        let blocks = sample()
        #expect(blocks.count > 4)
        let zero = failure([[UInt8](repeating: 0, count: 512)])
        #expect(
            zero?.category == .notACheckpoint && zero?.description == "log block 12 (device block): bad magic 0x00000000 (never written)")
        let older = failure(blocks, atLeast: 10)
        #expect(older?.category == .notACheckpoint && older?.description == "log block 12 (device block): sequence 9, expected 10 or later")
        let other = failure(blocks, geometry: formatGeometry(blockSize: 512, uuid: VolumeUUID(high: 5, low: 5)))
        #expect(other?.category == .notACheckpoint && other?.check == .otherVolume)
        let moved = failure(blocks, at: 11)
        #expect(moved?.category == .notACheckpoint && moved?.description == "log block 13 (device block): wrong self address (says 12)")
        let middle = failure(Array(blocks[1...]), at: 11)
        #expect(middle?.category == .notACheckpoint && middle?.check == .wrongOwner(12, expected: 13))
        #expect(failure([])?.category == .notACheckpoint)
    }

    @Test("a torn tail: a later block missing, from an older lap, never written, damaged, or of another write")
    func torn() throws {
        let blocks = sample()
        let n = blocks.count
        let missing = failure(Array(blocks.dropLast()))
        #expect(missing?.category == .tornCheckpoint)
        #expect(
            missing?.description
                == "log block \(12 + n - 1) (device block): truncated (0 of 512 bytes) (checkpoint 9 torn at block \(n - 1) of \(n))")
        var stale = blocks
        stale[2] = sample(sequence: 3, seed: 6)[2]
        let s = failure(stale)
        #expect(
            s?.category == .tornCheckpoint
                && s?.description == "log block 14 (device block): sequence 3, expected 9 (checkpoint 9 torn at block 2 of \(n))")
        var unwritten = blocks
        unwritten[3] = [UInt8](repeating: 0, count: 512)
        #expect(failure(unwritten)?.category == .tornCheckpoint)
        var damaged = blocks
        damaged[1] = damaged[1].flipping(200)
        #expect(failure(damaged)?.category == .tornCheckpoint && failure(damaged)?.check == .badCRC)
        // Two writes of the same sequence at the same place: every block's header is right,
        // only the records' CRC tells them apart.
        var rs = records(seed: 5, count: 60)
        let last = rs.lastIndex { if case .setAttributes = $0 { return true } else { return false } }
        guard let at = last, case .setAttributes(let ino, var a) = rs[at] else {
            Issue.record("no setAttributes record in the sample")
            return
        }
        a.uid &+= 1
        rs[at] = .setAttributes(ino, a)
        let rewrite = encodeCheckpoint(sequence: 9, records: rs, at: 10, geometry: formatGeometry(blockSize: 512))
        #expect(rewrite.count == n)
        let mixed = [blocks[0]] + rewrite[1...]
        #expect(mixed != blocks, "the changed record lies past the head block")
        let m = failure(mixed)
        #expect(m?.category == .tornCheckpoint && m?.check == .malformed("the records' CRC does not match"))
    }

    @Test("checksummed and still impossible: corrupt, not torn")
    func corrupt() {
        let g = formatGeometry(blockSize: 512)
        let garbage = CheckpointImage(payload: [200, 0, 0, 0, 0], recordCount: 1).blocks(sequence: 9, at: 10, geometry: g)
        let e = failure(garbage)
        #expect(e?.category == .corrupt && e?.description == "log block 12 (device block): unknown log record type 200")
        let miscounted = CheckpointImage(payload: LogRecord.freeDone(intent: 1).encoded, recordCount: 2).blocks(
            sequence: 9, at: 10, geometry: g)
        #expect(failure(miscounted)?.description == "log block 12 (device block): 1 records where the head counts 2")
    }

    @Test("a flip of any byte of the head or a later block is caught; with the CRC check off most are not (canary)")
    func flips() {
        let g = formatGeometry(blockSize: 512)
        let blocks = sample()
        for (index, category) in [(0, FormatError.Category.notACheckpoint), (2, .tornCheckpoint)] {
            var missed = 0
            let address = 12 + index
            for i in 0..<512 {
                var copy = blocks
                copy[index] = copy[index].flipping(i, mask: 0x01)
                let e = failure(copy)
                #expect(
                    e?.description.hasPrefix("log block \(address) (device block): ") == true,
                    "block \(index) byte \(i): \(String(describing: e))")
                #expect(e?.category == category, "block \(index) byte \(i)")
                let quiet = formatError { () throws(FormatError) in
                    try decodeCheckpoint(copy, at: 10, geometry: g, sequenceAtLeast: 9, verifyCRC: false)
                }
                if quiet == nil { missed += 1 }
            }
            #expect(missed > 100, "block \(index): the CRC is what catches the flips (\(missed) missed without it)")
        }
    }
}
