// The page cache's address space and its folios: the folio size chosen for a write
// (__filemap_get_folio with fgf_set_order), lookups, dirty and writeback flags with their
// index tags, eviction and reclaim, the memory limit, truncation, per-block state, the folio
// lock across threads, and canaries showing that the invariant checks trap.

import Foundation
import IOMapBase
import Synchronization
import Testing

@testable import PageCache

private let kib = 1 << 10
private let mib = 1 << 20

private func makeSpace(maxFolioSize: Int = 2 * mib, blockSize: Int = 1024) -> AddressSpace {
    AddressSpace(geometry: BlockGeometry(blockSize: blockSize), maxFolioSize: maxFolioSize)
}

/// Creates (or finds) the folio for a `length`-byte write at `offset` and returns it unlocked.
@discardableResult
private func cached(_ space: AddressSpace, _ offset: Int, length: Int = 4096) -> Folio {
    let f = space.getFolio(offset, length: length)
    f.unlock()
    return f
}

/// Makes an unlocked folio uptodate and dirty, as a completed write leaves it.
private func dirty(_ space: AddressSpace, _ folio: Folio) {
    folio.lock()
    space.markUptodate(folio)
    space.markDirty(folio)
    folio.unlock()
}

/// One row of the folio-size table.
struct FolioSizeCase: Sendable, CustomTestStringConvertible {
    let offset: Int
    let length: Int
    let maxFolioSize: Int
    /// The bytes the new folio must span.
    let expected: ByteRange

    var testDescription: String {
        "\(length) bytes at \(offset), max \(maxFolioSize) → \(expected.length)-byte folio at \(expected.start)"
    }
}

private let folioSizeCases: [FolioSizeCase] = [
    // Aligned: the largest power of two not above the length.
    FolioSizeCase(offset: 0, length: 64 * kib, maxFolioSize: 2 * mib, expected: ByteRange(start: 0, length: 64 * kib)),
    // Page index 1 is aligned only to order 0.
    FolioSizeCase(offset: 4 * kib, length: 64 * kib, maxFolioSize: 2 * mib, expected: ByteRange(start: 4 * kib, length: 4 * kib)),
    // An unaligned byte offset inside page 1: the folio starts at the page.
    FolioSizeCase(offset: 4 * kib + 100, length: 64 * kib, maxFolioSize: 2 * mib, expected: ByteRange(start: 4 * kib, length: 4 * kib)),
    // Below a page, and exactly zero: a page.
    FolioSizeCase(offset: 0, length: 100, maxFolioSize: 2 * mib, expected: ByteRange(start: 0, length: 4 * kib)),
    FolioSizeCase(offset: 0, length: 0, maxFolioSize: 2 * mib, expected: ByteRange(start: 0, length: 4 * kib)),
    // floor(log2(8K - 1)) is 12: still one page.
    FolioSizeCase(offset: 0, length: 8 * kib - 1, maxFolioSize: 2 * mib, expected: ByteRange(start: 0, length: 4 * kib)),
    // Capped by the mapping's maximum.
    FolioSizeCase(offset: 0, length: 3 * mib, maxFolioSize: 2 * mib, expected: ByteRange(start: 0, length: 2 * mib)),
    FolioSizeCase(offset: 32 * kib, length: 64 * kib, maxFolioSize: 16 * kib, expected: ByteRange(start: 32 * kib, length: 16 * kib)),
    FolioSizeCase(offset: 0, length: 64 * kib, maxFolioSize: 4 * kib, expected: ByteRange(start: 0, length: 4 * kib)),
    // 12K at page 2: order 1 from the length, and index 2 is aligned to order 1.
    FolioSizeCase(offset: 8 * kib, length: 12 * kib, maxFolioSize: 2 * mib, expected: ByteRange(start: 8 * kib, length: 8 * kib)),
    // Reduced to __ffs(index): page 6 → order 1, page 256 → order 8, page 513 → order 0.
    FolioSizeCase(offset: 24 * kib, length: 64 * kib, maxFolioSize: 2 * mib, expected: ByteRange(start: 24 * kib, length: 8 * kib)),
    FolioSizeCase(offset: 1 * mib, length: 2 * mib, maxFolioSize: 2 * mib, expected: ByteRange(start: 1 * mib, length: 1 * mib)),
    FolioSizeCase(
        offset: 2 * mib + 4 * kib, length: 2 * mib, maxFolioSize: 2 * mib, expected: ByteRange(start: 2 * mib + 4 * kib, length: 4 * kib)),
    // Aligned index, unaligned byte offset: the folio may reach past the write.
    FolioSizeCase(offset: 64 * kib + 10, length: 64 * kib, maxFolioSize: 2 * mib, expected: ByteRange(start: 64 * kib, length: 64 * kib)),
]

/// A folio already cached, a write, and the folio the write must get.
struct OverlapCase: Sendable, CustomTestStringConvertible {
    /// The bytes the cached folio spans.
    let existing: ByteRange
    let offset: Int
    let length: Int
    /// The bytes the write's folio must span.
    let expected: ByteRange

    var testDescription: String {
        "\(existing.length)-byte folio at \(existing.start); \(length) bytes at \(offset) → \(expected.length) at \(expected.start)"
    }
}

private let overlapCases: [OverlapCase] = [
    // 64K, 32K and 16K at 0 would all cover page 2: falls back to 8K.
    OverlapCase(
        existing: ByteRange(start: 8 * kib, length: 4 * kib), offset: 0, length: 64 * kib, expected: ByteRange(start: 0, length: 8 * kib)),
    // A folio at page 1: only a single page fits at 0.
    OverlapCase(
        existing: ByteRange(start: 4 * kib, length: 4 * kib), offset: 0, length: 64 * kib, expected: ByteRange(start: 0, length: 4 * kib)),
    // A folio at 40K leaves room for 32K at 0.
    OverlapCase(
        existing: ByteRange(start: 40 * kib, length: 4 * kib), offset: 0, length: 64 * kib, expected: ByteRange(start: 0, length: 32 * kib)),
    // A 16K folio at 16K: 16K at 0.
    OverlapCase(
        existing: ByteRange(start: 16 * kib, length: 16 * kib), offset: 0, length: 64 * kib, expected: ByteRange(start: 0, length: 16 * kib)
    ),
    // The existing folio ends before the write: no fallback needed.
    OverlapCase(
        existing: ByteRange(start: 0, length: 16 * kib), offset: 64 * kib, length: 64 * kib,
        expected: ByteRange(start: 64 * kib, length: 64 * kib)),
]

/// Flags shared with a helper thread.
private final class ThreadFlags: Sendable {
    let sawWaiter = Atomic<Bool>(false)
    let releasedByOther = Atomic<Bool>(false)
}

@Suite("AddressSpace")
struct AddressSpaceTests {
    // MARK: Folio size selection

    @Test("a new folio's size follows fgf_set_order, the maximum and the index alignment", arguments: folioSizeCases)
    func folioSize(_ c: FolioSizeCase) {
        // Goal: the folio created for a write has the kernel's order and position.
        let space = makeSpace(maxFolioSize: c.maxFolioSize)
        #expect(space.preferredFolioSize(offset: c.offset, length: c.length) == c.expected.length)
        let f = space.getFolio(c.offset, length: c.length)
        #expect(f.isLocked)
        #expect(f.pos == c.expected.start)
        #expect(f.size == c.expected.length)
        #expect(f.range.contains(c.offset))
        #expect(space.folioCount == 1)
        #expect(space.cachedBytes == c.expected.length)
        f.unlock()
        space.checkInvariants()
    }

    @Test("a new folio falls back to smaller sizes where a larger one would overlap a cached folio", arguments: overlapCases)
    func folioSizeOverlapFallback(_ c: OverlapCase) {
        // Goal: like filemap_add_folio's -EEXIST retry, creation halves the order until the folio fits.
        let space = makeSpace()
        let existing = cached(space, c.existing.start, length: c.existing.length)
        #expect(existing.pos == c.existing.start && existing.size == c.existing.length)
        let f = space.getFolio(c.offset, length: c.length)
        defer { f.unlock() }
        #expect(f !== existing)
        #expect(f.pos == c.expected.start)
        #expect(f.size == c.expected.length)
        #expect(space.folioCount == 2)
        #expect(space.cachedBytes == c.existing.length + c.expected.length)
        space.checkInvariants()
    }

    @Test("getFolio returns the cached folio covering the offset, whatever the length asks for")
    func getFolioFindsExisting() {
        // Goal: a cached folio is found, not replaced or resized.
        let space = makeSpace()
        let small = cached(space, 8 * kib, length: 4 * kib)
        let again = space.getFolio(8 * kib + 123, length: 2 * mib)
        #expect(again === small)
        #expect(again.isLocked)
        again.unlock()
        #expect(space.folioCount == 1)
    }

    @Test("getFolio with nowait gives nil for a locked folio but still creates a missing one")
    func getFolioNowait() {
        // Goal: FGP_NOWAIT never waits for a folio lock (EAGAIN) yet allocates new folios.
        let space = makeSpace()
        let f = space.getFolio(0, length: 4 * kib)  // locked by us
        #expect(space.getFolio(100, length: 4 * kib, nowait: true) == nil)
        f.unlock()
        let fresh = space.getFolio(8 * kib, length: 4 * kib, nowait: true)
        #expect(fresh != nil)
        #expect(fresh?.isLocked == true)
        fresh?.unlock()
        let unlocked = space.getFolio(100, length: 4 * kib, nowait: true)
        #expect(unlocked === f)
        unlocked?.unlock()
        #expect(space.folioCount == 2)
    }

    // MARK: Lookup

    @Test("lookup and lockFolio find the folio covering any byte of it, and nothing outside")
    func lookupCoversFolio() {
        // Goal: the index maps every byte of a large folio to it, and its neighbours' bytes to nothing.
        let space = makeSpace()
        let f = cached(space, 16 * kib, length: 16 * kib)
        #expect(f.pos == 16 * kib && f.size == 16 * kib)
        for offset in stride(from: 16 * kib, to: 32 * kib, by: 512) {
            #expect(space.lookup(offset) === f, "offset \(offset)")
        }
        #expect(space.lookup(32 * kib - 1) === f)
        #expect(space.lookup(16 * kib - 1) == nil)
        #expect(space.lookup(32 * kib) == nil)
        #expect(space.lookup(0) == nil)

        let locked = space.lockFolio(32 * kib - 1)
        #expect(locked === f)
        #expect(f.isLocked)
        #expect(space.lockFolio(32 * kib) == nil)
        space.remove(f)
        f.unlock()
        #expect(f.isRemoved)
        #expect(space.lookup(20 * kib) == nil)
        #expect(space.lockFolio(20 * kib) == nil)
        #expect(space.folioCount == 0 && space.cachedBytes == 0)
        space.checkInvariants()
    }

    // MARK: Dirty and writeback tags

    @Test("markDirty sets the flag and the dirty tag; clearDirtyForIO clears both and write-protects")
    func dirtyTag() {
        // Goal: the dirty tag tracks the flag, nextTagged finds dirty folios, and clearing for I/O write-protects.
        let space = makeSpace()
        let a = cached(space, 16 * kib, length: 16 * kib)
        let b = cached(space, 64 * kib, length: 4 * kib)
        #expect(!space.hasTagged(.dirty))
        #expect(space.nextTagged(.dirty, from: 0, before: maxFileSize) == nil)
        dirty(space, a)
        dirty(space, b)
        #expect(a.isDirty && b.isDirty)
        #expect(space.hasTagged(.dirty))
        #expect(space.nextTagged(.dirty, from: 0, before: maxFileSize) === a)
        #expect(space.nextTagged(.dirty, from: 20 * kib, before: maxFileSize) === a)  // from inside it
        #expect(space.nextTagged(.dirty, from: 32 * kib, before: maxFileSize) === b)
        #expect(space.nextTagged(.dirty, from: 32 * kib, before: 64 * kib) == nil)  // b starts at the end
        #expect(space.nextTagged(.dirty, from: 32 * kib, before: 64 * kib + 1) === b)
        #expect(space.nextTagged(.dirty, from: 0, before: 16 * kib) == nil)
        #expect(space.nextTagged(.writeback, from: 0, before: maxFileSize) == nil)
        space.checkInvariants()

        a.lock()
        space.setWriteMapped(a)
        #expect(a.isWriteMapped)
        #expect(space.clearDirtyForIO(a))
        #expect(!a.isDirty)
        #expect(!a.isWriteMapped)
        #expect(!space.clearDirtyForIO(a))  // already clean
        a.unlock()
        #expect(space.nextTagged(.dirty, from: 0, before: maxFileSize) === b)
        #expect(space.hasTagged(.dirty))
        space.checkInvariants()

        b.lock()
        #expect(space.clearDirtyForIO(b))
        b.unlock()
        #expect(!space.hasTagged(.dirty))
        #expect(space.nextTagged(.dirty, from: 0, before: maxFileSize) == nil)
        space.checkInvariants()
    }

    @Test("cancelDirty clears the flag, the tag and every per-block dirty bit")
    func cancelDirty() {
        // Goal: a cancelled folio is clean at both levels and untagged.
        let space = makeSpace()
        let f = space.getFolio(0, length: 16 * kib)
        f.attachBlockState()
        space.markUptodate(f)
        f.setRangeDirtyBits(offset: 2 * kib, length: 3 * kib)
        space.markDirty(f)
        space.setWriteMapped(f)
        #expect(f.hasDirtyBlocks)
        space.cancelDirty(f)
        #expect(!f.isDirty && !f.hasDirtyBlocks && !f.isWriteMapped)
        #expect(f.isUptodate)
        f.unlock()
        #expect(!space.hasTagged(.dirty))
        space.checkInvariants()
    }

    @Test("startWriteback sets the flag and tag; endWriteback clears both")
    func writebackTag() {
        // Goal: the writeback tag is set while I/O is in flight and found by nextTagged.
        let space = makeSpace()
        let f = cached(space, 8 * kib, length: 8 * kib)
        dirty(space, f)
        f.lock()
        space.clearDirtyForIO(f)
        space.startWriteback(f)
        f.unlock()
        #expect(f.isWriteback)
        #expect(space.hasTagged(.writeback))
        #expect(!space.hasTagged(.dirty))
        #expect(space.nextTagged(.writeback, from: 0, before: maxFileSize) === f)
        #expect(space.nextTagged(.writeback, from: 16 * kib, before: maxFileSize) == nil)
        space.checkInvariants()
        space.endWriteback(f)  // no lock needed
        #expect(!f.isWriteback)
        #expect(!space.hasTagged(.writeback))
        #expect(space.nextTagged(.writeback, from: 0, before: maxFileSize) == nil)
        space.checkInvariants()
    }

    // MARK: Eviction and reclaim

    @Test("tryEvict refuses dirty, locked and writeback folios and evicts clean ones")
    func tryEvict() {
        // Goal: reclaim never drops a folio someone uses or whose data the disk lacks.
        let space = makeSpace()
        let clean = cached(space, 0)
        let dirtyFolio = cached(space, 4 * kib)
        let locked = cached(space, 8 * kib)
        let inFlight = cached(space, 12 * kib)
        dirty(space, dirtyFolio)
        inFlight.lock()
        space.markUptodate(inFlight)
        space.startWriteback(inFlight)
        inFlight.unlock()
        #expect(locked.tryLock())

        #expect(!space.tryEvict(dirtyFolio))
        #expect(!space.tryEvict(locked))
        #expect(!space.tryEvict(inFlight))
        #expect(space.evictionCount == 0)
        #expect(space.folioCount == 4)
        #expect(space.tryEvict(clean))
        #expect(clean.isRemoved)
        #expect(!clean.isLocked)
        #expect(space.lookup(0) == nil)
        #expect(space.evictionCount == 1)
        #expect(space.folioCount == 3 && space.cachedBytes == 12 * kib)
        #expect(!space.tryEvict(clean))  // already gone
        #expect(!dirtyFolio.isRemoved && !locked.isRemoved && !inFlight.isRemoved)
        space.checkInvariants()

        // Once the obstacle is gone, each becomes evictable.
        locked.unlock()
        #expect(space.tryEvict(locked))
        space.endWriteback(inFlight)
        #expect(space.tryEvict(inFlight))
        dirtyFolio.lock()
        space.clearDirtyForIO(dirtyFolio)
        dirtyFolio.unlock()
        #expect(space.tryEvict(dirtyFolio))
        #expect(space.folioCount == 0 && space.cachedBytes == 0 && space.evictionCount == 4)
        space.checkInvariants()
    }

    @Test("reclaim(targetBytes:) stops as soon as the cache is at or below the target")
    func reclaimStopsAtTarget() {
        // Goal: reclaim evicts no more than needed, and skips what it cannot evict.
        let space = makeSpace()
        var folios: [Folio] = []
        for i in 0..<4 { folios.append(cached(space, i * 16 * kib, length: 16 * kib)) }
        #expect(space.cachedBytes == 64 * kib)
        // 64K → 48K → 32K: two evictions reach a 40K target; a third would overshoot.
        #expect(space.reclaim(targetBytes: 40 * kib) == 2)
        #expect(space.cachedBytes == 32 * kib)
        #expect(space.folioCount == 2)
        #expect(space.reclaim(targetBytes: 40 * kib) == 0)
        #expect(space.folioCount == 2)
        space.checkInvariants()

        // Dirty folios survive a reclaim to zero; the clean ones go.
        for i in 4..<8 { folios.append(cached(space, i * 16 * kib, length: 16 * kib)) }
        let survivors = folios.filter { !$0.isRemoved }
        #expect(survivors.count == 6)
        dirty(space, survivors[0])
        dirty(space, survivors[3])
        #expect(space.reclaim(targetBytes: 0) == 4)
        #expect(space.cachedBytes == 32 * kib)
        #expect(!survivors[0].isRemoved && !survivors[3].isRemoved)
        #expect(space.evictionCount == 6)
        space.checkInvariants()
    }

    @Test("dropCaches and invalidateClean evict only clean folios, invalidateClean only in its range")
    func dropCachesAndInvalidate() {
        // Goal: drop_caches and range invalidation leave dirty folios and folios outside the range.
        let space = makeSpace()
        let a = cached(space, 0)
        let b = cached(space, 4 * kib)
        let c = cached(space, 8 * kib)
        let d = cached(space, 64 * kib)
        dirty(space, b)
        #expect(space.invalidateClean(ByteRange(0, 12 * kib)) == 2)
        #expect(a.isRemoved && !b.isRemoved && c.isRemoved && !d.isRemoved)
        #expect(space.dropCaches() == 1)
        #expect(d.isRemoved && !b.isRemoved)
        #expect(space.folioCount == 1)
        space.checkInvariants()
    }

    @Test("a memory limit makes folio creation evict clean folios only")
    func memoryLimit() {
        // Goal: creating past the limit reclaims clean folios; dirty, locked and new ones stay, so dirty data may exceed it.
        let space = makeSpace(maxFolioSize: 4 * kib)
        space.memoryLimit = 16 * kib
        #expect(space.memoryLimit == 16 * kib)
        var folios: [Folio] = []
        for i in 0..<4 { folios.append(cached(space, i * 4 * kib)) }
        dirty(space, folios[0])
        dirty(space, folios[2])
        #expect(space.cachedBytes == 16 * kib)  // at the limit, not past it
        #expect(space.evictionCount == 0)

        let fifth = space.getFolio(16 * kib, length: 4 * kib)
        #expect(!fifth.isRemoved)
        fifth.unlock()
        #expect(space.evictionCount == 1)
        #expect(space.cachedBytes == 16 * kib)
        #expect(!folios[0].isRemoved && !folios[2].isRemoved)
        #expect(folios[1].isRemoved != folios[3].isRemoved)  // exactly one clean folio went
        space.checkInvariants()

        // Make everything dirty: nothing can be evicted and the cache exceeds its limit.
        for f in [folios[1], folios[3], fifth] where !f.isRemoved { dirty(space, f) }
        let sixth = space.getFolio(20 * kib, length: 4 * kib)
        sixth.unlock()
        #expect(!sixth.isRemoved)
        #expect(space.evictionCount == 1)
        #expect(space.cachedBytes == 20 * kib)
        #expect(space.folioCount == 5)
        space.checkInvariants()
    }

    // MARK: Truncation

    @Test("truncatePages removes covered folios, zeroes and keeps a partly covered dirty one, drops a partly covered clean one")
    func truncatePages() {
        // Goal: truncate_inode_pages_range semantics, with our documented never-split choice for clean large folios.
        let space = makeSpace()
        let head = cached(space, 0, length: 4 * kib)
        let partDirty = space.getFolio(16 * kib, length: 16 * kib)
        partDirty.data.initializeMemory(as: UInt8.self, repeating: 0xAB, count: partDirty.size)
        space.markUptodate(partDirty)
        space.markDirty(partDirty)
        partDirty.unlock()
        let wholeDirty = cached(space, 32 * kib, length: 16 * kib)
        dirty(space, wholeDirty)
        let partClean = space.getFolio(48 * kib, length: 16 * kib)
        partClean.data.initializeMemory(as: UInt8.self, repeating: 0xCD, count: partClean.size)
        space.markUptodate(partClean)
        partClean.unlock()
        let tail = cached(space, 64 * kib, length: 4 * kib)
        let sizes = [partDirty.size, wholeDirty.size, partClean.size]
        #expect(sizes == [16 * kib, 16 * kib, 16 * kib])

        space.truncatePages(ByteRange(16 * kib, 16 * kib))  // empty: nothing happens
        #expect(space.folioCount == 5)

        let start = 20 * kib + 100
        space.truncatePages(ByteRange(start, 56 * kib))
        #expect(!head.isRemoved && !tail.isRemoved)
        #expect(wholeDirty.isRemoved)  // wholly covered: removed even though dirty
        #expect(partClean.isRemoved)  // partly covered and clean: dropped whole
        #expect(!partDirty.isRemoved)  // partly covered and dirty: kept, zeroed over the range
        #expect(partDirty.isDirty)
        let bytes = UnsafeRawBufferPointer(start: partDirty.data, count: partDirty.size)
        let keep = start - partDirty.pos
        #expect(bytes[..<keep].allSatisfy { $0 == 0xAB })
        #expect(bytes[keep...].allSatisfy { $0 == 0 })
        #expect(space.folioCount == 3)
        #expect(space.cachedBytes == 24 * kib)
        #expect(space.nextTagged(.dirty, from: 0, before: maxFileSize) === partDirty)
        space.checkInvariants()
    }

    // MARK: Per-block state

    @Test("setRangeUptodate marks the folio uptodate only once every block is")
    func setRangeUptodate() {
        // Goal: iomap_set_range_uptodate: per-block bits, and the folio flag exactly when all are set.
        let space = makeSpace()
        let f = space.getFolio(0, length: 16 * kib)
        defer { f.unlock() }
        #expect(f.blockCount == 16)
        #expect(!f.hasBlockState)
        f.attachBlockState()
        #expect(f.hasBlockState)
        f.setRangeUptodate(offset: 0, length: 1500)  // blocks 0 and 1 (partly covered counts)
        #expect(f.isBlockUptodate(0) && f.isBlockUptodate(1) && !f.isBlockUptodate(2))
        #expect(!f.isUptodate)
        f.setRangeUptodate(offset: 2 * kib, length: 0)  // nothing
        #expect(!f.isBlockUptodate(2))
        f.setRangeUptodate(offset: 2 * kib, length: 13 * kib)  // blocks 2...14
        #expect(!f.isUptodate)
        #expect(!f.isBlockUptodate(15))
        f.checkInvariants()
        f.setRangeUptodate(offset: 15 * kib, length: 1 * kib)
        #expect(f.isUptodate)
        #expect((0..<16).allSatisfy { f.isBlockUptodate($0) })
        f.checkInvariants()
        space.checkInvariants()
    }

    @Test("without block state the folio-level flags speak for the folio")
    func noBlockState() {
        // Goal: a one-block folio never carries block state; any uptodate range makes it all uptodate.
        let space = makeSpace(blockSize: 4096)
        let f = space.getFolio(0, length: 4 * kib)
        defer { f.unlock() }
        f.attachBlockState()
        #expect(!f.hasBlockState)
        #expect(!f.isPartiallyUptodate(offset: 0, count: 4 * kib))
        f.setRangeUptodate(offset: 100, length: 1)
        #expect(f.isUptodate && f.isBlockUptodate(0))
        space.markDirty(f)
        #expect(f.isBlockDirty(0))
        #expect(f.nextDirtyRun(from: 100, limit: 3000) == 100..<3000)
        #expect(f.nextDirtyRun(from: 3000, limit: 3000) == nil)
        space.checkInvariants()
    }

    @Test("attaching block state to an uptodate, dirty folio sets every bit")
    func attachToUptodateDirty() {
        // Goal: ifs_alloc starts from the folio-level flags.
        let space = makeSpace()
        let f = space.getFolio(0, length: 8 * kib)
        defer { f.unlock() }
        space.markUptodate(f)
        space.markDirty(f)
        f.attachBlockState()
        #expect(f.hasBlockState)
        #expect((0..<8).allSatisfy { f.isBlockUptodate($0) && f.isBlockDirty($0) })
        #expect(f.nextDirtyRun(from: 0, limit: f.size) == 0..<f.size)
        f.checkInvariants()
        space.checkInvariants()
    }

    @Test("isPartiallyUptodate checks exactly the blocks the range touches, clipped to the folio")
    func partiallyUptodate() {
        // Goal: iomap_is_partially_uptodate block arithmetic at block edges.
        let space = makeSpace()
        let f = space.getFolio(0, length: 16 * kib)
        defer { f.unlock() }
        f.attachBlockState()
        #expect(!f.isPartiallyUptodate(offset: 0, count: 1))
        f.setRangeUptodate(offset: 0, length: 2 * kib)  // blocks 0, 1
        f.setRangeUptodate(offset: 15 * kib, length: 1 * kib)  // block 15
        #expect(f.isPartiallyUptodate(offset: 0, count: 2 * kib))
        #expect(!f.isPartiallyUptodate(offset: 0, count: 2 * kib + 1))
        #expect(f.isPartiallyUptodate(offset: 1 * kib + 1000, count: 24))
        #expect(!f.isPartiallyUptodate(offset: 2 * kib, count: 1))
        #expect(!f.isPartiallyUptodate(offset: 2 * kib - 1, count: 2))
        #expect(f.isPartiallyUptodate(offset: 15 * kib, count: 1 * mib))  // clipped to the folio
        #expect(!f.isPartiallyUptodate(offset: 0, count: 0))
    }

    @Test("nextDirtyRun finds runs of dirty blocks in order, clipped to the range")
    func nextDirtyRun() {
        // Goal: iomap_find_dirty_range over the per-block dirty bitmap.
        let space = makeSpace()
        let f = space.getFolio(0, length: 16 * kib)
        defer { f.unlock() }
        f.attachBlockState()
        space.markUptodate(f)
        #expect(f.nextDirtyRun(from: 0, limit: f.size) == nil)
        f.setRangeDirtyBits(offset: 1 * kib, length: 2 * kib)  // blocks 1, 2
        f.setRangeDirtyBits(offset: 5 * kib, length: 1)  // block 5
        f.setRangeDirtyBits(offset: 15 * kib, length: 1 * kib)  // block 15
        #expect(f.nextDirtyRun(from: 0, limit: f.size) == 1 * kib..<3 * kib)
        #expect(f.nextDirtyRun(from: 3 * kib, limit: f.size) == 5 * kib..<6 * kib)
        #expect(f.nextDirtyRun(from: 6 * kib, limit: f.size) == 15 * kib..<16 * kib)
        #expect(f.nextDirtyRun(from: 6 * kib, limit: 15 * kib) == nil)
        #expect(f.nextDirtyRun(from: 16 * kib, limit: f.size) == nil)
        #expect(f.nextDirtyRun(from: 1 * kib + 500, limit: f.size) == 1 * kib + 500..<3 * kib)
        #expect(f.nextDirtyRun(from: 0, limit: 2 * kib) == 1 * kib..<2 * kib)
        #expect(f.hasDirtyBlocks(overlapping: 3 * kib..<5 * kib) == false)
        #expect(f.hasDirtyBlocks(overlapping: 3 * kib..<5 * kib + 1))
        f.checkInvariants()
    }

    @Test("setRangeDirtyBits with zero length marks the block at an unaligned offset, nothing at an aligned one")
    func zeroLengthDirtyQuirk() {
        // Goal: reproduce ifs_set_range_dirty's last_blk = (off + len - 1) >> blkbits quirk (docs/KERNEL-MODEL.md §2.6).
        let space = makeSpace()
        let f = space.getFolio(0, length: 16 * kib)
        defer { f.unlock() }
        f.attachBlockState()
        space.markUptodate(f)
        f.setRangeDirtyBits(offset: 2 * kib, length: 0)  // aligned: nothing
        #expect(!f.hasDirtyBlocks)
        f.setRangeDirtyBits(offset: 0, length: 0)  // aligned at 0: nothing
        #expect(!f.hasDirtyBlocks)
        f.setRangeDirtyBits(offset: 3 * kib + 500, length: 0)  // unaligned: block 3
        #expect(f.isBlockDirty(3))
        #expect((0..<16).filter { f.isBlockDirty($0) } == [3])
        #expect(f.nextDirtyRun(from: 0, limit: f.size) == 3 * kib..<4 * kib)
        f.checkInvariants()
    }

    // MARK: The folio lock across threads

    @Test("lock() blocks while another thread holds the folio lock and returns once it unlocks")
    func lockAcrossThreads() {
        // Goal: the folio lock excludes across threads and a sleeping waiter is woken by unlock.
        let folio = Folio(pos: 0, size: 4 * kib, blockShift: 12)
        let flags = ThreadFlags()
        let lockedByOther = DispatchSemaphore(value: 0)
        let otherDone = DispatchSemaphore(value: 0)
        let other = Thread {
            folio.lock()
            lockedByOther.signal()
            // Wait, bounded, until the test thread sleeps in lock(): it sets the waiters bit.
            let deadline = Date().addingTimeInterval(10)
            while folio.flags.load(ordering: .acquiring) & Folio.waitersBit == 0 && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.0005)
            }
            flags.sawWaiter.store(folio.flags.load(ordering: .acquiring) & Folio.waitersBit != 0, ordering: .sequentiallyConsistent)
            flags.releasedByOther.store(true, ordering: .sequentiallyConsistent)
            folio.unlock()
            otherDone.signal()
        }
        other.start()
        guard lockedByOther.wait(timeout: .now() + 10) == .success else {
            Issue.record("the helper thread never took the folio lock")
            return
        }
        #expect(folio.isLocked)
        #expect(!folio.tryLock())
        folio.lock()  // sleeps until the helper unlocks
        let released = flags.releasedByOther.load(ordering: .sequentiallyConsistent)
        let slept = flags.sawWaiter.load(ordering: .sequentiallyConsistent)
        #expect(released, "lock() returned while the other thread held the lock")
        #expect(slept, "the test thread never slept in lock()")
        #expect(folio.isLocked)
        folio.unlock()
        #expect(otherDone.wait(timeout: .now() + 10) == .success)
        #expect(!folio.isLocked)
        #expect(folio.flags.load(ordering: .acquiring) & Folio.waitersBit == 0)
    }

    // MARK: Invariant canaries

    @Test("Folio.checkInvariants traps on a dirty block that is not uptodate (canary)")
    func folioK1Canary() async {
        // Goal: K1 per block is really checked.
        let control = Folio(pos: 0, size: 16 * kib, blockShift: 10)
        control.lock()
        control.attachBlockState()
        control.setRangeUptodate(offset: 3 * kib, length: 1 * kib)
        control.setRangeDirtyBits(offset: 3 * kib, length: 1 * kib)
        control.checkInvariants()  // dirty and uptodate: fine
        control.unlock()
        await #expect(processExitsWith: .failure) {
            let f = Folio(pos: 0, size: 16 * kib, blockShift: 10)
            f.lock()
            f.attachBlockState()
            f.setRangeDirtyBits(offset: 3 * kib, length: 1 * kib)
            f.checkInvariants()
        }
    }

    @Test("Folio.checkInvariants traps when the uptodate flag disagrees with the block bitmap (canary)")
    func folioUptodateCanary() async {
        // Goal: the folio flag and the per-block bitmap are cross-checked.
        let control = Folio(pos: 0, size: 16 * kib, blockShift: 10)
        control.lock()
        control.attachBlockState()
        control.setRangeUptodate(offset: 0, length: 16 * kib)
        control.checkInvariants()
        control.unlock()
        await #expect(processExitsWith: .failure) {
            let f = Folio(pos: 0, size: 16 * kib, blockShift: 10)
            f.lock()
            f.attachBlockState()
            f.setRangeUptodate(offset: 0, length: 1 * kib)
            f.setFlag(Folio.uptodateBit)  // only block 0 is uptodate
            f.checkInvariants()
        }
    }

    @Test("AddressSpace.checkInvariants traps on a dirty flag without its tag (canary)")
    func dirtyTagCanary() async {
        // Goal: tags and flags are cross-checked.
        await #expect(processExitsWith: .failure) {
            let space = AddressSpace(geometry: BlockGeometry(blockSize: 1024), maxFolioSize: 2 << 20)
            let f = space.getFolio(0, length: 4096)
            space.markUptodate(f)
            f.setFlag(Folio.dirtyBit)  // behind the index's back
            f.unlock()
            space.checkInvariants()
        }
    }

    @Test("AddressSpace.checkInvariants traps on a dirty folio that is not uptodate (canary)")
    func folioLevelK1Canary() async {
        // Goal: K1 at folio level, for folios without block state.
        await #expect(processExitsWith: .failure) {
            let space = AddressSpace(geometry: BlockGeometry(blockSize: 4096), maxFolioSize: 2 << 20)
            let f = space.getFolio(0, length: 4096)
            space.markDirty(f)
            f.unlock()
            space.checkInvariants()
        }
    }

    @Test("AddressSpace.checkInvariants traps when the byte count disagrees with the folios (canary)")
    func cachedBytesCanary() async {
        // Goal: the cache's memory accounting is cross-checked.
        await #expect(processExitsWith: .failure) {
            let space = AddressSpace(geometry: BlockGeometry(blockSize: 1024), maxFolioSize: 2 << 20)
            let f = space.getFolio(0, length: 4096)
            f.unlock()
            space.cachedBytesCounter.add(4096, ordering: .relaxed)
            space.checkInvariants()
        }
    }
}
