// Scenario tests for stale-mapping detection and retry: V-1…V-4 of docs/KERNEL-MODEL.md §10.3.
// The races are forced deterministically through the hook points of §9: H1 (after
// iomapBegin, before the first folio lock), H2 (in the validity check, folio locked) and
// H5 (writeback, before mapBlocks). A hook acts as another thread; it changes the extent
// map without the inode I/O lock, as writeback, I/O completion or a page fault would.

import Foundation
import IOMap
import IOMapBase
import PageCache
import Synchronization
import Testing

@testable import ExtentFS

@Suite("Stale mappings (docs/KERNEL-MODEL.md §10.3)")
struct StaleMappingTests {
    typealias Kit = WriteTestKit

    /// A file block far past anything the tests write, allocated to bump the extent sequence.
    static let farBlock = 1000

    /// Writes `data` at `pos` through the file's own (logged) operations, which must find
    /// exactly one stale mapping, after `staleAfter` bytes, and return all of `data`:
    /// iomap_begin maps the whole write and then its rest from `pos + staleAfter`, both times
    /// as `kind` (NEW when `isNew`); iomap_end is told `staleAfter` bytes written for the
    /// stale mapping and the rest for its replacement.
    static func writeRemappedOnce(
        _ rig: Kit.Rig, _ data: [UInt8], at pos: Int, kind: IOMapping.Kind, isNew: Bool, staleAfter: Int,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let ops = Kit.RecordingOps(rig.file)
        let result = Kit.directWrite(rig.file, data, at: pos, ops: ops)
        let rest = data.count - staleAfter
        #expect(result == .success(data.count), sourceLocation: sourceLocation)
        #expect(rig.inode.stats.staleMappings == 1, sourceLocation: sourceLocation)
        let begins = [
            Kit.BeginCall(pos: pos, length: data.count, kind: kind, isNew: isNew),
            Kit.BeginCall(pos: pos + staleAfter, length: rest, kind: kind, isNew: isNew),
        ]
        #expect(ops.begins.all == begins, sourceLocation: sourceLocation)
        let ends = [
            Kit.EndCall(pos: pos, length: data.count, written: staleAfter),
            Kit.EndCall(pos: pos + staleAfter, length: rest, written: rest),
        ]
        #expect(ops.ends.all == ends, sourceLocation: sourceLocation)
    }

    /// Changes the extent map away from the write (if_seq++): allocates one unwritten block
    /// at `block`, like a fallocate of a far range.
    static func bumpSequence(_ file: ExtentFile, block: Int = farBlock) {
        let before = file.extentSequence
        do {
            try file.allocateUnwritten(fromBlock: block, toBlock: block + 1)
        } catch {
            Issue.record("allocating far block \(block) failed: \(error)")
        }
        #expect(file.extentSequence != before)
    }

    /// A folio state a snapshot records.
    enum FolioFlag: Hashable, Sendable {
        case uptodate, dirty, blockState
    }

    /// What a folio looked like at some moment: the flags it had (nil when no folio was
    /// cached), and the device reads made so far.
    struct FolioSnapshot: Equatable, Sendable {
        let flags: Set<FolioFlag>?
        let deviceReads: Int
    }

    @Test("V-1: a mapping made stale before the first folio lock is remapped at the same position without touching the folio")
    func v1StaleBeforeFirstFolio() throws {
        // Goal: a stale MAPPED mapping makes write_begin back out before changing the folio, iomap_end gets written 0, and iomap_begin runs again at the same pos and length.
        let (rig, old) = try Kit.makeCleanRig(blockSize: 1024, size: 8192, seed: 21)
        let file = rig.file
        let device = rig.device
        let firings = Kit.Counter()
        let snapshots = Kit.Recorder<FolioSnapshot>()
        rig.hooks.on(.afterIomapBegin) { _ in
            if firings.next() == 1 {
                Self.bumpSequence(file)
            } else {
                snapshots.append(FolioSnapshot(of: file._folio(at: 0), deviceReads: device.reads.count))
            }
        }
        let new = Kit.pattern(100, seed: 22)

        Self.writeRemappedOnce(rig, new, at: 1500, kind: .mapped, isNew: false, staleAfter: 0)

        #expect(rig.hooks.ranges(.afterIomapBegin) == [ByteRange(0, 8192), ByteRange(0, 8192)])
        // Between the stale check and the remap the folio exists but is untouched: no block
        // state, nothing read, not uptodate, not dirty.
        #expect(
            snapshots.all == [
                FolioSnapshot(flags: [], deviceReads: 0)
            ])
        try Kit.expectReads(rig, ofFileBlocks: [1..<2])
        try Kit.expectRemountedContent(rig, Kit.overlay(old, new, at: 1500))
    }

    @Test("V-1: a stale NEW delalloc mapping is released with written 0 and reserved again at the same position")
    func v1StaleNewDelalloc() throws {
        // Goal: after a stale check with no progress, iomap_end punches the write's whole new reservation and the remap reserves it again.
        let rig = Kit.makeRig(blockSize: 4096)
        let file = rig.file
        rig.hooks.onFirst(.afterIomapBegin) { _ in Self.bumpSequence(file) }
        file.recordPunches()
        let data = Kit.pattern(4096, seed: 23)

        Self.writeRemappedOnce(rig, data, at: 0, kind: .delalloc, isNew: true, staleAfter: 0)

        #expect(file.recordedPunches == [ByteRange(0, 4096)])
        #expect(rig.inode.stats.cleanups == 1)
        #expect(file.delallocBlockIndices() == [0])
        try Kit.expectRemountedContent(rig, data)
    }

    @Test("V-1: a no-progress iteration without STALE ends the loop; with STALE it remaps once at the same position")
    func v1NoProgressDoesNotSpin() throws {
        // Goal: the iterator stops after a body that advanced nothing unless the mapping was marked stale, in which case it remaps at the same pos and length.
        let rig = Kit.makeRig(blockSize: 4096)
        let file = rig.file
        file.inode.ioLock.lockExclusive()
        defer { file.inode.ioLock.unlockExclusive() }

        let plain = Kit.RecordingOps(file)
        var iter = IOMapIterator(inode: file.inode, pos: 0, length: 8192, flags: [.write])
        var bodies = 0
        while try iter.next(plain) {
            bodies += 1
            if bodies > 3 { break }
        }
        #expect(bodies == 1)
        #expect(iter.pos == 0)
        #expect(plain.begins.all == [Kit.BeginCall(pos: 0, length: 8192, kind: .delalloc, isNew: true)])
        #expect(plain.ends.all == [Kit.EndCall(pos: 0, length: 8192, written: 0)])

        let stale = Kit.RecordingOps(file)
        var staleIter = IOMapIterator(inode: file.inode, pos: 0, length: 8192, flags: [.write])
        var staleBodies = 0
        while try staleIter.next(stale) {
            staleBodies += 1
            if staleBodies == 1 { staleIter.markStale() }
            if staleBodies > 3 { break }
        }
        #expect(staleBodies == 2)
        #expect(
            stale.begins.all == [
                Kit.BeginCall(pos: 0, length: 8192, kind: .delalloc, isNew: true),
                Kit.BeginCall(pos: 0, length: 8192, kind: .delalloc, isNew: true),
            ])
        #expect(stale.ends.all == [Kit.EndCall(pos: 0, length: 8192, written: 0), Kit.EndCall(pos: 0, length: 8192, written: 0)])
        #expect(file.delallocBlocks == 0)
    }

    @Test("V-2: a mapping made stale at the third folio is ended with written 8K and remapped at 8K")
    func v2StaleAfterTwoFolios() throws {
        // Goal: staleness found after k = 2 folios ends the mapping with written = k folio bytes, punches only the unused tail, and the next iomap_begin starts at pos + written.
        let rig = Kit.makeRig(blockSize: 4096)
        let file = rig.file
        rig.hooks.onFirst(.iomapValid, where: { $0.range.start == 8192 }) { _ in Self.bumpSequence(file) }
        file.recordPunches()
        let data = Kit.pattern(16384, seed: 24)

        Self.writeRemappedOnce(rig, data, at: 0, kind: .delalloc, isNew: true, staleAfter: 8192)

        #expect(rig.hooks.ranges(.iomapValid).map(\.start) == [0, 4096, 8192, 8192, 12288])
        #expect(file.recordedPunches == [ByteRange(8192, 16384)])
        #expect(file.delallocBlockIndices() == [0, 1, 2, 3])
        try Kit.expectRemountedContent(rig, data)
    }

    /// The xfs/925 setup: B = P = 4K, [0, 40K) fallocated unwritten, cache empty, then one
    /// byte 0x58 written at 40K - 1 (left dirty). The hook at H2 for the first folio of the
    /// next write writes back [36K, 40K) (converting block 9 to written) and evicts that folio.
    static func makeXFS925(_ rig: Kit.Rig) throws -> Kit.Recorder<String> {
        let file = rig.file
        try file.allocate(offset: 0, length: 40960, keepSize: false)
        try file.fsync()
        file.dropCaches()
        #expect(file.extentRecords.map(\.state) == [.unwritten])
        #expect(try file.write([0x58], at: 40959) == 1)
        let log = Kit.Recorder<String>()
        rig.hooks.onFirst(.iomapValid, where: { $0.range.start == 0 }) { _ in
            let wb = file.writeback(ByteRange(36864, 40960))
            log.append("writeback folios \(wb.folios) bytes \(wb.bytesWritten)")
            log.append("block 9 \(file.blockState(9).map(\.rawValue) ?? "hole")")
            log.append("evicted \(file.mapping.invalidateClean(ByteRange(36864, 40960)))")
        }
        return log
    }

    /// The race's side effects, as `makeXFS925`'s hook logs them.
    static let xfs925RaceLog = ["writeback folios 1 bytes 4096", "block 9 written", "evicted 1"]

    @Test("V-3: xfs/925 — writeback and eviction of the last block during a write keep 0x58 at 40K-1")
    func v3XFS925() throws {
        // Goal: the write notices that writeback converted block 9 behind its UNWRITTEN mapping, remaps, and reads that block instead of zeroing it.
        let rig = Kit.makeRig(blockSize: 4096)
        let log = try Self.makeXFS925(rig)
        let data = [UInt8](repeating: 0x57, count: 36864 + 1)

        let n = try rig.file.write(data, at: 0)

        #expect(n == 36865)
        #expect(log.all == Self.xfs925RaceLog)
        #expect(rig.inode.stats.staleMappings == 1)
        let expected = data + [UInt8](repeating: 0, count: 40959 - 36865) + [0x58]
        let content = try Kit.contentAfterRemount(rig.file)
        #expect(content.count == 40960)
        #expect(content == expected)
        #expect(content.last == 0x58)
        Kit.expectQuiet(rig)
    }

    @Test("V-3: without the validity check the same race zeroes the byte at 40K-1 (the check matters)")
    func v3XFS925WithoutValidation() throws {
        // Goal: show the check is what saves the data: a file system with no ->iomap_valid (always valid) zero-fills block 9 from the stale UNWRITTEN mapping.
        let rig = Kit.makeRig(blockSize: 4096)
        let log = try Self.makeXFS925(rig)
        let data = [UInt8](repeating: 0x57, count: 36864 + 1)
        let ops = Kit.RecordingOps(rig.file, validates: false)

        let result = Kit.directWrite(rig.file, data, at: 0, ops: ops)

        #expect(result == .success(36865))
        #expect(log.all == Self.xfs925RaceLog)
        #expect(rig.inode.stats.staleMappings == 0)
        #expect(ops.begins.all == [Kit.BeginCall(pos: 0, length: 36865, kind: .unwritten, isNew: false)])
        let corrupted = data + [UInt8](repeating: 0, count: 40960 - 36865)
        try Kit.expectRemountedContent(rig, corrupted)
    }

    /// A file of four 4K blocks written and clean, then folios 0 and 3 rewritten (dirty).
    static func makeTwoDirtyFolios(_ rig: Kit.Rig) throws -> (old: [UInt8], new: [UInt8]) {
        let old = Kit.pattern(16384, seed: 31)
        try Kit.makeCleanFile(rig, old)
        #expect(rig.file.extentRecords.map(\.state) == [.written])
        let new0 = Kit.pattern(4096, seed: 32)
        let new3 = Kit.pattern(4096, seed: 33)
        #expect(try rig.file.write(new0, at: 0) == 4096)
        #expect(try rig.file.write(new3, at: 12288) == 4096)
        rig.hooks.events.reset()
        return (old, Kit.overlay(Kit.overlay(old, new0, at: 0), new3, at: 12288))
    }

    @Test("V-4: writeback revalidates its cached mapping after an unrelated extent change and looks it up again")
    func v4WritebackRemapsAfterSequenceChange() throws {
        // Goal: a sequence change between two folios of one writeback makes mapBlocks drop its cached mapping and look up again; the data lands where it belongs.
        let rig = Kit.makeRig(blockSize: 4096)
        let (_, expected) = try Self.makeTwoDirtyFolios(rig)
        let file = rig.file
        rig.hooks.onFirst(.writebackBeforeMapBlocks, where: { $0.range.start == 12288 }) { _ in Self.bumpSequence(file) }
        let addresses = (0..<4).map { Kit.diskBlock(of: $0, in: file) }

        let result = file.writeback()

        #expect(result.error == nil)
        #expect(result.folios == 2)
        #expect(result.bytesWritten == 8192)
        #expect(result.staleRemaps == 1)
        #expect(rig.hooks.ranges(.writebackBeforeMapBlocks) == [ByteRange(0, 4096), ByteRange(12288, 16384)])
        #expect((0..<4).map { Kit.diskBlock(of: $0, in: file) } == addresses)
        try Kit.expectRemountedContent(rig, expected)
    }

    @Test("V-4: writeback writes a block moved behind its cached mapping to the new address, never the stale one")
    func v4WritebackNeverWritesStaleAddress() throws {
        // Goal: when file block 3 is moved to another disk block after writeback cached the mapping, the revalidation sends the data to the new block and leaves the old one untouched.
        let rig = Kit.makeRig(blockSize: 4096)
        let (old, expected) = try Self.makeTwoDirtyFolios(rig)
        let file = rig.file
        let staleAddress = try #require(Kit.diskBlock(of: 3, in: file))
        rig.hooks.onFirst(.writebackBeforeMapBlocks, where: { $0.range.start == 12288 }) { _ in
            // Free block 3's disk block, give it to a far file block, and allocate block 3
            // again elsewhere (as a remap of the block by another actor would).
            file.freeBlocks(fromBlock: 3, toBlock: 4)
            do {
                try file.allocateUnwritten(fromBlock: Self.farBlock, toBlock: Self.farBlock + 1)
                try file.allocateUnwritten(fromBlock: 3, toBlock: 4)
            } catch {
                Issue.record("reallocation failed: \(error)")
            }
        }

        let result = file.writeback()

        #expect(result.error == nil)
        #expect(result.folios == 2)
        #expect(result.staleRemaps == 1)
        #expect(Kit.diskBlock(of: Self.farBlock, in: file) == staleAddress)
        let newAddress = try #require(Kit.diskBlock(of: 3, in: file))
        #expect(newAddress != staleAddress)
        #expect(file.blockState(3) == .written)
        #expect(try rig.device.rawBlock(newAddress) == Array(expected[12288..<16384]))
        #expect(try rig.device.rawBlock(staleAddress) == Array(old[12288..<16384]))
        try Kit.expectRemountedContent(rig, expected)
    }

    @Test("a rejected copy into a folio whose writeback has not completed waits for it, so unconverted blocks are not zero-filled")
    func rejectedCopyWaitsForCompletion() throws {
        // Found by the threaded stress (`iomap stress`, 512-byte blocks): writeback wrote block
        // 0 but had not yet converted its unwritten extent when a write into the same folio had
        // its copy rejected. Discarding the rejected copy made block 0 not uptodate; the retry
        // refilled it from the still-unwritten mapping, with zeroes, over data that was only on
        // the disk. Here writeback runs on thread A and stops at H6a (before the conversion);
        // thread B's write runs there. With the fix, B waits for A's writeback to complete.
        let rig = Kit.makeRig(blockSize: 512, maxFolioSize: 4096)
        let file = rig.file
        let first = Kit.pattern(512, seed: 5)
        try file.write(first, at: 0)  // block 0 delalloc and dirty; blocks 1-7 not uptodate
        let second = Kit.pattern(256, seed: 6)
        // The first copy of the second write delivers 100 of its 256 bytes: rejected, since
        // the folio is not wholly uptodate.
        rig.copies.setRule { offset, _, earlier in offset == 256 && earlier == 0 ? 100 : nil }
        let bStarted = DispatchSemaphore(value: 0)
        let bDone = DispatchSemaphore(value: 0)
        let armed = Mutex(true)
        let result = Mutex<Result<Int, Errno>?>(nil)
        rig.hooks.on(.completionBeforeConversion) { _ in
            guard
                armed.withLock({
                    let a = $0; $0 = false; return a
                })
            else { return }
            Thread {
                bStarted.signal()
                let r = Result { () throws(Errno) -> Int in try file.write(second, at: 256) }
                result.withLock { $0 = r }
                bDone.signal()
            }.start()
            bStarted.wait()
            // Give B the chance to run inside the window; with the fix it blocks until this
            // writeback completes, so the wait times out.
            _ = bDone.wait(timeout: .now() + .milliseconds(300))
        }
        let a = Thread { file.writeback() }
        a.start()
        bDone.wait()
        bDone.signal()
        #expect(try result.withLock { try #require($0) }.get() == 256)
        try file.fsync()
        file.dropCaches()
        #expect(try file.read(count: 512, at: 0) == Kit.overlay(first, second, at: 256))
        #expect(file.invariantViolations().isEmpty)
    }
}

extension StaleMappingTests.FolioSnapshot {
    /// The snapshot of `folio` (nil when none is cached) after `deviceReads` device reads.
    init(of folio: Folio?, deviceReads: Int) {
        self.init(
            flags: folio.map { folio in
                var flags: Set<StaleMappingTests.FolioFlag> = []
                if folio.isUptodate { flags.insert(.uptodate) }
                if folio.isDirty { flags.insert(.dirty) }
                if folio.hasBlockState { flags.insert(.blockState) }
                return flags
            }, deviceReads: deviceReads)
    }
}
