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
        let (rig, old) = try Kit.makeCleanRig(blockSize: 1024, size: 8192, seed: 1)
        let new = Kit.pattern(100, seed: 2)

        try Kit.write(rig, new, at: 1500, returns: 100, size: 8192)

        try Kit.expectReads(rig, ofFileBlocks: [1..<2])
        let folio = try Kit.cachedFolio(rig, at: 1500, spanning: ByteRange(0, 4096))
        #expect(rig.file.mapping.folioCount == 1)
        Kit.expectBlockBits(folio, uptodate: [false, true, false, false], dirty: [false, true, false, false])
        #expect(!folio.isUptodate && folio.isDirty)
        let expected = Kit.overlay(old, new, at: 1500)
        try Kit.expectRemountedContent(rig, expected, cachedIn: folio, over: 1024..<2048)
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

        try Kit.write(rig, new, at: 1500, returns: 100, size: 8192)

        #expect(rig.hooks.ranges(.afterIomapBegin) == [ByteRange(1024, 2048)])
        #expect(rig.file.extentRecords == [ExtentRecord(startBlock: 1, blockCount: 1, state: .delalloc)])
        #expect(rig.device.reads == [])
        #expect(rig.device.writeCount == writesBefore)
        let folio = try Kit.cachedFolio(rig, at: 1500, spanning: ByteRange(0, 4096))
        Kit.expectBlockBits(folio, uptodate: [false, true, false, false], dirty: [false, true, false, false])
        #expect(Kit.bytes(of: folio, 1024..<1500) == [UInt8](repeating: 0, count: 476))
        #expect(Kit.bytes(of: folio, 1500..<1600) == new)
        #expect(Kit.bytes(of: folio, 1600..<2048) == [UInt8](repeating: 0, count: 448))
        try Kit.expectRemountedContent(rig, Kit.overlay([UInt8](repeating: 0, count: 8192), new, at: 1500))
    }

    @Test("W3: write [500, 3500) into a partly uptodate folio reads run [0, 1K) and run [2K, 4K) whole")
    func w3ReadRunsAroundUptodateBlock() throws {
        // Goal: write_begin reads each not-uptodate run the write only partly covers, as a whole run, and skips the uptodate block.
        let (rig, old) = try Kit.makeCleanRig(blockSize: 1024, size: 8192, seed: 3)
        rig.file._installFolio(pos: 0, size: 4096, uptodate: [false, true, false, false], dirty: [false, false, false, false], fill: 0xEE)
        let new = Kit.pattern(3000, seed: 4)

        try Kit.write(rig, new, at: 500, returns: 3000, size: 8192)

        try Kit.expectReads(rig, ofFileBlocks: [0..<1, 2..<4])
        let folio = try Kit.cachedFolio(rig, at: 0, spanning: ByteRange(0, 4096))
        #expect(folio.isUptodate && folio.isDirty)
        Kit.expectBlockBits(folio, uptodate: [true, true, true, true], dirty: [true, true, true, true])
        let expected = Kit.overlay(old, new, at: 500)
        try Kit.expectRemountedContent(rig, expected, cachedIn: folio, over: 0..<4096)
    }

    @Test("W4: write [4100, 4200) with i_size 5000 reads only the EOF block and leaves blocks past EOF unfilled")
    func w4EOFStraddle() throws {
        // Goal: the run holding EOF is read (it is inside EOF), the blocks wholly past EOF are not filled, and i_size does not move.
        let (rig, old) = try Kit.makeCleanRig(blockSize: 1024, size: 5000, seed: 5)
        #expect(rig.file.size == 5000)
        let new = Kit.pattern(100, seed: 6)

        try Kit.write(rig, new, at: 4100, returns: 100, size: 5000)

        try Kit.expectReads(rig, ofFileBlocks: [4..<5])
        let folio = try Kit.cachedFolio(rig, at: 4100, spanning: ByteRange(4096, 8192))
        Kit.expectBlockBits(folio, uptodate: [true, false, false, false], dirty: [true, false, false, false])
        let expected = Kit.overlay(old, new, at: 4100)
        try Kit.expectRemountedContent(rig, expected, cachedIn: folio, over: 4096..<5000)
    }

    @Test("W5: a 1000-byte copy into new folio 2 is rejected, retried as 1000 bytes, then EFAULT; write returns 9192")
    func w5ShortCopyIntoNewFolio() throws {
        // Goal: a short copy into a folio the write fully covers (not uptodate) is thrown away, retried with the copied length, and the next fault ends the write at 9192 with no punch.
        let rig = try writeWithShortCopyAt8192(
            Kit.pattern(12288, seed: 7),
            copiesAt8192: [
                Kit.CopyAttempt(offset: 8192, length: 4096, limit: 1000),
                Kit.CopyAttempt(offset: 8192, length: 1000, limit: nil),
            ],
            zeroedFrom: 1000)
        #expect(rig.inode.stats.cleanups == 0)
    }

    @Test("W5b: write [0, 10000) with the copy at 8192 returning 1000 of 1808 accepts it at once; write returns 9192")
    func w5bShortCopyIntoFilledFolio() throws {
        // Goal: when write_begin's fill has made the folio uptodate, a short copy is accepted as is, with no rejection and no retry.
        try writeWithShortCopyAt8192(
            Kit.pattern(10000, seed: 8), copiesAt8192: [Kit.CopyAttempt(offset: 8192, length: 1808, limit: 1000)],
            zeroedFrom: 1808)
    }

    /// W5 and W5b: writes `data` at 0 on a 4K-block rig whose first copy at 8192 delivers
    /// 1000 bytes and whose user memory faults at 9192. Folios 0 and 1 are copied whole, then
    /// come `copiesAt8192`; the write ends with one short copy, iomap_end told 9192 bytes, no
    /// punch, three delalloc blocks, folio 2 uptodate and dirty with the 1000 copied bytes and
    /// zeroes from `zeroedFrom` to its end, and `[0, 9192)` of `data` after a remount.
    @discardableResult
    private func writeWithShortCopyAt8192(
        _ data: [UInt8], copiesAt8192: [Kit.CopyAttempt], zeroedFrom: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Kit.Rig {
        let rig = Kit.makeRig(blockSize: 4096)
        rig.copies.setRule { offset, _, earlier in offset == 8192 && earlier == 0 ? 1000 : nil }
        rig.file.recordPunches()
        let ops = Kit.RecordingOps(rig.file)

        let result = Kit.directWrite(rig.file, data, at: 0, ops: ops, faultOffset: 9192)

        #expect(result == .success(9192), sourceLocation: sourceLocation)
        #expect(rig.file.size == 9192, sourceLocation: sourceLocation)
        let wholeFolios = [
            Kit.CopyAttempt(offset: 0, length: 4096, limit: nil), Kit.CopyAttempt(offset: 4096, length: 4096, limit: nil),
        ]
        #expect(rig.copies.attempts.all == wholeFolios + copiesAt8192, sourceLocation: sourceLocation)
        #expect(rig.inode.stats.shortCopies == 1, sourceLocation: sourceLocation)
        #expect(ops.ends.all.first == Kit.EndCall(pos: 0, length: data.count, written: 9192), sourceLocation: sourceLocation)
        #expect(rig.file.recordedPunches == [], sourceLocation: sourceLocation)
        #expect(rig.file.delallocBlockIndices() == [0, 1, 2], sourceLocation: sourceLocation)
        let folio = try Kit.cachedFolio(rig, at: 8192, spanning: ByteRange(8192, 12288), sourceLocation: sourceLocation)
        #expect(folio.isUptodate && folio.isDirty, sourceLocation: sourceLocation)
        Kit.expectFolioBytes(folio, equal: data, over: 8192..<9192, sourceLocation: sourceLocation)
        #expect(
            Kit.bytes(of: folio, zeroedFrom..<4096) == [UInt8](repeating: 0, count: 4096 - zeroedFrom), sourceLocation: sourceLocation)
        #expect(
            try Kit.contentAfterRemount(rig.file, sourceLocation: sourceLocation) == Array(data[0..<9192]), sourceLocation: sourceLocation)
        Kit.expectQuiet(rig, sourceLocation: sourceLocation)
        return rig
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
        try Kit.expectRemountedContent(rig, Array(data[0..<69632]))
    }

    @Test("W7: a short copy of 300 of 1000 bytes into an uptodate folio is accepted and dirties only its own block")
    func w7ShortCopyIntoUptodateFolio() throws {
        // Goal: a short copy into an uptodate folio is accepted as the bytes copied, and only the blocks of those bytes become dirty.
        let (rig, old) = try Kit.makeCleanRig(blockSize: 1024, size: 8192, seed: 10)
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
        Kit.expectBlockBits(folio, uptodate: [true, true, true, true], dirty: [false, true, false, false])
        let expected = Kit.overlay(old, Array(new[0..<300]), at: 1100)
        try Kit.expectRemountedContent(rig, expected, cachedIn: folio, over: 0..<4096)
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
