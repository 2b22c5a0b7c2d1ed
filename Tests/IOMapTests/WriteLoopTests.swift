// Scenario tests for the buffered write loop: one test per row W1–W8 of docs/KERNEL-MODEL.md §10.1.
// Each test builds the row's exact setup (block size, what is on disk and clean, what is
// cached), runs the write, and asserts the row's outcome: bytes returned, i_size, the
// per-block uptodate and dirty bits, the device reads, the punch calls and the final data.
//
// The rigs, recorders and data helpers are WriteTestKit's (Support/WriteTestKit.swift).

import IOMap
import IOMapBase
import PageCache
import Synchronization
import Foundation
import Testing

@testable import ExtentFS

@Suite("Write loop (docs/KERNEL-MODEL.md §10.1)")
struct WriteLoopTests {
    typealias Kit = WriteTestKit

    @Test("W1: write 100 bytes at 1500 into a clean mapped file reads only block 1")
    func w1PartialBlockOverMapped() throws {
        // Goal: a sub-block write over MAPPED data inside EOF reads exactly the block it touches, nothing else.
        let rig = Kit.makeRig(blockSize: 1024)
        let old = Kit.pattern(8192, seed: 1)
        try Kit.makeCleanFile(rig, old)
        let new = Kit.pattern(100, seed: 2)

        let n = try rig.file.write(new, at: 1500)

        #expect(n == 100)
        #expect(rig.file.size == 8192)
        let disk1 = try #require(Kit.diskBlock(of: 1, in: rig.file))
        #expect(rig.device.reads == [Kit.DeviceIO(block: disk1, count: 1)])
        let folio = try #require(rig.file._folio(at: 1500))
        #expect(folio.range == ByteRange(0, 4096))
        #expect(rig.file.mapping.folioCount == 1)
        let bits = Kit.blockBits(folio)
        #expect(bits.uptodate == [false, true, false, false])
        #expect(bits.dirty == [false, true, false, false])
        #expect(!folio.isUptodate && folio.isDirty)
        let expected = Kit.overlay(old, new, at: 1500)
        #expect(Kit.bytes(of: folio, 1024..<2048) == Array(expected[1024..<2048]))
        #expect(try Kit.contentAfterRemount(rig.file) == expected)
        Kit.expectQuiet(rig)
    }

    @Test("W2: write 100 bytes at 1500 into a hole inside EOF reserves block 1 only and zero-fills it without I/O")
    func w2PartialBlockOverHole() throws {
        // Goal: over a hole inside EOF the write reserves NEW delalloc for its one block (no preallocation) and zero-fills it without reading.
        let rig = Kit.makeRig(blockSize: 1024)
        try rig.file.truncate(to: 8192)
        #expect(rig.file.extentRecords.isEmpty)
        rig.device.resetReads()
        rig.hooks.events.reset()
        let writesBefore = rig.device.writeCount
        let new = Kit.pattern(100, seed: 2)

        let n = try rig.file.write(new, at: 1500)

        #expect(n == 100)
        #expect(rig.file.size == 8192)
        #expect(rig.hooks.ranges(.afterIomapBegin) == [ByteRange(1024, 2048)])
        #expect(rig.file.extentRecords == [ExtentRecord(startBlock: 1, blockCount: 1, state: .delalloc)])
        #expect(rig.device.reads == [])
        #expect(rig.device.writeCount == writesBefore)
        let folio = try #require(rig.file._folio(at: 1500))
        #expect(folio.range == ByteRange(0, 4096))
        let bits = Kit.blockBits(folio)
        #expect(bits.uptodate == [false, true, false, false])
        #expect(bits.dirty == [false, true, false, false])
        #expect(Kit.bytes(of: folio, 1024..<1500) == [UInt8](repeating: 0, count: 476))
        #expect(Kit.bytes(of: folio, 1500..<1600) == new)
        #expect(Kit.bytes(of: folio, 1600..<2048) == [UInt8](repeating: 0, count: 448))
        #expect(try Kit.contentAfterRemount(rig.file) == Kit.overlay([UInt8](repeating: 0, count: 8192), new, at: 1500))
        Kit.expectQuiet(rig)
    }

    @Test("W3: write [500, 3500) into a partly uptodate folio reads run [0, 1K) and run [2K, 4K) whole")
    func w3ReadRunsAroundUptodateBlock() throws {
        // Goal: write_begin reads each not-uptodate run the write only partly covers, as a whole run, and skips the uptodate block.
        let rig = Kit.makeRig(blockSize: 1024)
        let old = Kit.pattern(8192, seed: 3)
        try Kit.makeCleanFile(rig, old)
        rig.file._installFolio(pos: 0, size: 4096, uptodate: [false, true, false, false], dirty: [false, false, false, false], fill: 0xEE)
        let new = Kit.pattern(3000, seed: 4)

        let n = try rig.file.write(new, at: 500)

        #expect(n == 3000)
        #expect(rig.file.size == 8192)
        let disk0 = try #require(Kit.diskBlock(of: 0, in: rig.file))
        let disk2 = try #require(Kit.diskBlock(of: 2, in: rig.file))
        #expect(Kit.diskBlock(of: 3, in: rig.file) == disk2 + 1)
        #expect(rig.device.reads == [Kit.DeviceIO(block: disk0, count: 1), Kit.DeviceIO(block: disk2, count: 2)])
        let folio = try #require(rig.file._folio(at: 0))
        #expect(folio.range == ByteRange(0, 4096))
        #expect(folio.isUptodate && folio.isDirty)
        let bits = Kit.blockBits(folio)
        #expect(bits.uptodate == [true, true, true, true])
        #expect(bits.dirty == [true, true, true, true])
        let expected = Kit.overlay(old, new, at: 500)
        #expect(Kit.bytes(of: folio, 0..<4096) == Array(expected[0..<4096]))
        #expect(try Kit.contentAfterRemount(rig.file) == expected)
        Kit.expectQuiet(rig)
    }

    @Test("W4: write [4100, 4200) with i_size 5000 reads only the EOF block and leaves blocks past EOF unfilled")
    func w4EOFStraddle() throws {
        // Goal: the run holding EOF is read (it is inside EOF), the blocks wholly past EOF are not filled, and i_size does not move.
        let rig = Kit.makeRig(blockSize: 1024)
        let old = Kit.pattern(5000, seed: 5)
        try Kit.makeCleanFile(rig, old)
        #expect(rig.file.size == 5000)
        let new = Kit.pattern(100, seed: 6)

        let n = try rig.file.write(new, at: 4100)

        #expect(n == 100)
        #expect(rig.file.size == 5000)
        let disk4 = try #require(Kit.diskBlock(of: 4, in: rig.file))
        #expect(rig.device.reads == [Kit.DeviceIO(block: disk4, count: 1)])
        let folio = try #require(rig.file._folio(at: 4100))
        #expect(folio.range == ByteRange(4096, 8192))
        let bits = Kit.blockBits(folio)
        #expect(bits.uptodate == [true, false, false, false])
        #expect(bits.dirty == [true, false, false, false])
        let expected = Kit.overlay(old, new, at: 4100)
        #expect(Kit.bytes(of: folio, 0..<904) == Array(expected[4096..<5000]))
        #expect(try Kit.contentAfterRemount(rig.file) == expected)
        Kit.expectQuiet(rig)
    }

    @Test("W5: a 1000-byte copy into new folio 2 is rejected, retried as 1000 bytes, then EFAULT; write returns 9192")
    func w5ShortCopyIntoNewFolio() throws {
        // Goal: a short copy into a folio the write fully covers (not uptodate) is thrown away, retried with the copied length, and the next fault ends the write at 9192 with no punch.
        let (rig, ops) = shortCopyAt8192Rig()
        let data = Kit.pattern(12288, seed: 7)

        let result = Kit.directWrite(rig.file, data, at: 0, ops: ops, faultOffset: 9192)

        #expect(result == .success(9192))
        #expect(rig.file.size == 9192)
        #expect(
            rig.copies.attempts.all == [
                Kit.CopyAttempt(offset: 0, length: 4096, limit: nil),
                Kit.CopyAttempt(offset: 4096, length: 4096, limit: nil),
                Kit.CopyAttempt(offset: 8192, length: 4096, limit: 1000),
                Kit.CopyAttempt(offset: 8192, length: 1000, limit: nil),
            ])
        #expect(rig.inode.stats.cleanups == 0)
        try expectWriteEndedAt9192(rig, ops, data, zeroedFrom: 1000)
    }

    @Test("W5b: write [0, 10000) with the copy at 8192 returning 1000 of 1808 accepts it at once; write returns 9192")
    func w5bShortCopyIntoFilledFolio() throws {
        // Goal: when write_begin's fill has made the folio uptodate, a short copy is accepted as is, with no rejection and no retry.
        let (rig, ops) = shortCopyAt8192Rig()
        let data = Kit.pattern(10000, seed: 8)

        let result = Kit.directWrite(rig.file, data, at: 0, ops: ops, faultOffset: 9192)

        #expect(result == .success(9192))
        #expect(rig.file.size == 9192)
        #expect(
            rig.copies.attempts.all == [
                Kit.CopyAttempt(offset: 0, length: 4096, limit: nil),
                Kit.CopyAttempt(offset: 4096, length: 4096, limit: nil),
                Kit.CopyAttempt(offset: 8192, length: 1808, limit: 1000),
            ])
        try expectWriteEndedAt9192(rig, ops, data, zeroedFrom: 1808)
    }

    /// W5 and W5b: a 4K-block rig whose first copy at 8192 delivers 1000 bytes, recording
    /// punches and iomap_end calls.
    private func shortCopyAt8192Rig() -> (Kit.Rig, Kit.RecordingOps) {
        let rig = Kit.makeRig(blockSize: 4096)
        rig.copies.setRule { offset, _, earlier in offset == 8192 && earlier == 0 ? 1000 : nil }
        rig.file.recordPunches()
        return (rig, Kit.RecordingOps(rig.file))
    }

    /// What W5 and W5b end with: one short copy, iomap_end told 9192 bytes, no punch, three
    /// delalloc blocks, folio 2 uptodate and dirty with the 1000 copied bytes and zeroes from
    /// `zeroedFrom` to its end, and `[0, 9192)` of `data` after a remount.
    private func expectWriteEndedAt9192(_ rig: Kit.Rig, _ ops: Kit.RecordingOps, _ data: [UInt8], zeroedFrom: Int) throws {
        #expect(rig.inode.stats.shortCopies == 1)
        #expect(ops.ends.all.first == Kit.EndCall(pos: 0, length: data.count, written: 9192))
        #expect(rig.file.recordedPunches == [])
        #expect(rig.file.delallocBlockIndices() == [0, 1, 2])
        let folio = try #require(rig.file._folio(at: 8192))
        #expect(folio.range == ByteRange(8192, 12288))
        #expect(folio.isUptodate && folio.isDirty)
        #expect(Kit.bytes(of: folio, 0..<1000) == Array(data[8192..<9192]))
        #expect(Kit.bytes(of: folio, zeroedFrom..<4096) == [UInt8](repeating: 0, count: 4096 - zeroedFrom))
        #expect(try Kit.contentAfterRemount(rig.file) == Array(data[0..<9192]))
        Kit.expectQuiet(rig)
    }

    @Test("W6: 0-byte copies into a new 64K folio are rejected, truncated and halve the chunk to a page; write returns the bytes done")
    func w6ZeroByteCopyHalvesChunk() throws {
        // Goal: with large folios each rejected 0-byte copy drops the attempted folio (beyond EOF) and halves the chunk 64K→32K→16K→8K→4K, never below a page; the write ends at the user-memory fault and returns what was written before it.
        let rig = Kit.makeRig(blockSize: 4096, maxFolioSize: 64 * 1024)
        rig.copies.setRule { offset, _, earlier in offset == 65536 && earlier < 5 ? 0 : nil }
        struct Attempt: Equatable {
            let folioSize: Int?
            let foliosPastEOF: Int
        }
        let seen = Kit.Recorder<Attempt>()
        let file = rig.file
        rig.hooks.on(.iomapValid) { event in
            guard event.range.start == 65536 else { return }
            seen.append(
                Attempt(
                    folioSize: file._folio(at: 65536)?.size,
                    foliosPastEOF: file.mapping.folios(overlapping: ByteRange(65536, 131072)).count))
        }
        let data = Kit.pattern(131072, seed: 9)

        let n = try rig.file.write(data, at: 0, faultOffset: 69632)

        #expect(n == 69632)
        #expect(rig.file.size == 69632)
        #expect(
            rig.copies.attempts.all == [
                Kit.CopyAttempt(offset: 0, length: 65536, limit: nil),
                Kit.CopyAttempt(offset: 65536, length: 65536, limit: 0),
                Kit.CopyAttempt(offset: 65536, length: 32768, limit: 0),
                Kit.CopyAttempt(offset: 65536, length: 16384, limit: 0),
                Kit.CopyAttempt(offset: 65536, length: 8192, limit: 0),
                Kit.CopyAttempt(offset: 65536, length: 4096, limit: 0),
                Kit.CopyAttempt(offset: 65536, length: 4096, limit: nil),
            ])
        // Each attempt found a fresh folio of the attempted size and nothing else past EOF:
        // the rejected folio of the attempt before was truncated away.
        #expect(
            seen.all == [65536, 32768, 16384, 8192, 4096, 4096].map { Attempt(folioSize: $0, foliosPastEOF: 1) })
        #expect(rig.inode.stats.shortCopies == 5)
        #expect(
            rig.file.mapping.folios(overlapping: ByteRange(0, maxFileSize)).map(\.range) == [
                ByteRange(0, 65536), ByteRange(65536, 69632),
            ])
        #expect(rig.file.delallocBlockIndices() == Array(0..<17))
        #expect(try Kit.contentAfterRemount(rig.file) == Array(data[0..<69632]))
        Kit.expectQuiet(rig)
    }

    @Test("W7: a short copy of 300 of 1000 bytes into an uptodate folio is accepted and dirties only its own block")
    func w7ShortCopyIntoUptodateFolio() throws {
        // Goal: a short copy into an uptodate folio is accepted as the bytes copied, and only the blocks of those bytes become dirty.
        let rig = Kit.makeRig(blockSize: 1024)
        let old = Kit.pattern(8192, seed: 10)
        try Kit.makeCleanFile(rig, old)
        #expect(try rig.file.read(count: 4096, at: 0) == Array(old[0..<4096]))
        let cached = try #require(rig.file._folio(at: 0))
        #expect(cached.range == ByteRange(0, 4096) && cached.isUptodate && !cached.isDirty)
        rig.copies.setRule { offset, _, earlier in offset == 1100 && earlier == 0 ? 300 : nil }
        let new = Kit.pattern(1000, seed: 11)

        let n = try rig.file.write(new, at: 1100, faultOffset: 300)

        #expect(n == 300)
        #expect(rig.file.size == 8192)
        #expect(rig.copies.attempts.all == [Kit.CopyAttempt(offset: 1100, length: 1000, limit: 300)])
        #expect(rig.inode.stats.shortCopies == 1)
        let folio = try #require(rig.file._folio(at: 0))
        #expect(folio === cached)
        let bits = Kit.blockBits(folio)
        #expect(bits.uptodate == [true, true, true, true])
        #expect(bits.dirty == [false, true, false, false])
        let expected = Kit.overlay(old, Array(new[0..<300]), at: 1100)
        #expect(Kit.bytes(of: folio, 0..<4096) == Array(expected[0..<4096]))
        #expect(try Kit.contentAfterRemount(rig.file) == expected)
        Kit.expectQuiet(rig)
    }

    @Test("W8: a NOWAIT write never waits: EAGAIN for a contended folio or a needed read, else the bytes already done")
    func w8Nowait() throws {
        // Goal: IOCB_NOWAIT gives EAGAIN (or the bytes done before) exactly where the write
        // would block: a folio locked by another task, or a partial block that must be read.
        // An uncached folio is no reason to wait: the kernel's __filemap_get_folio creates it
        // with GFP_NOWAIT, and so do we (docs/KERNEL-MODEL.md §10.1, W8).
        let rig = Kit.makeRig(blockSize: 1024)
        let old = Kit.pattern(8192, seed: 12)
        let new = Kit.pattern(8192, seed: 13)

        // Nothing cached, whole folios: created without blocking, all written.
        let cold = rig.file
        try Kit.makeCleanFile(rig, old, file: cold)
        #expect(Kit.directWrite(cold, new, at: 0, ops: cold, flags: [.nowait]) == .success(8192))
        #expect(try Kit.contentAfterRemount(cold) == new)

        // Folio 1 locked by another task: folio 0 is written, then the write stops short.
        let busy = rig.fs.createFile()
        try Kit.makeCleanFile(rig, old, file: busy)
        #expect(try busy.read(count: 8192, at: 0) == old)
        let folio1 = try #require(busy._folio(at: 4096))
        let busyResult = Kit.whileAnotherThreadHolds(folio1) {
            Kit.directWrite(busy, new, at: 0, ops: busy, flags: [.nowait])
        }
        #expect(busyResult == .success(4096))
        #expect(try Kit.contentAfterRemount(busy) == Kit.overlay(old, Array(new[0..<4096]), at: 0))

        // The first folio locked: nothing written, EAGAIN.
        let first = rig.fs.createFile()
        try Kit.makeCleanFile(rig, old, file: first)
        _ = try first.read(count: 4096, at: 0)
        let folio0 = try #require(first._folio(at: 0))
        let firstResult = Kit.whileAnotherThreadHolds(folio0) {
            Kit.directWrite(first, new, at: 0, ops: first, flags: [.nowait])
        }
        #expect(firstResult == .failure(.resourceTemporarilyUnavailable))
        #expect(try Kit.contentAfterRemount(first) == old)

        // A partial block over written data with nothing cached must be read: EAGAIN.
        let partial = rig.fs.createFile()
        try Kit.makeCleanFile(rig, old, file: partial)
        let partialResult = Kit.directWrite(partial, Array(new[0..<100]), at: 1500, ops: partial, flags: [.nowait])
        #expect(partialResult == .failure(.resourceTemporarilyUnavailable))
        #expect(try Kit.contentAfterRemount(partial) == old)
        Kit.expectQuiet(rig)
    }
}
