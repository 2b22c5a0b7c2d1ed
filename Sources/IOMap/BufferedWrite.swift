// Counterpart: iomap_file_buffered_write(), iomap_write_iter(), iomap_write_begin(),
// __iomap_write_begin(), iomap_adjust_read_range(), iomap_block_needs_zeroing(),
// __iomap_write_end(), iomap_write_failed() and pagecache_isize_extended() in
// fs/iomap/buffered-io.c and mm/truncate.c, in their V4 (6.15 and later) shape.
//
// The contract a caller can rely on: bytes are counted only after the page cache has
// accepted them (their blocks uptodate and dirty, i_size raised), and an error is
// returned only when nothing was written. A short copy into a folio that is not uptodate
// is thrown away whole, because a block written in part would be neither uptodate nor safe
// to read; the loop retries with what did copy, halving its chunk each time.
//
// Folio memory holds anything until it is zeroed, read or written (FolioMemory.fill): the
// fill before a copy zeroes only what the write will not cover, so whatever a short copy
// leaves of the write's range is zeroed before the blocks can be read (zeroUncopied).

import IOMapBase
import PageCache
import Synchronization

/// Writes `source` at `pos` through the page cache (iomap_file_buffered_write). The caller
/// holds the inode I/O lock exclusive and has done the VFS checks. Returns the bytes
/// written; throws only when none were.
public func iomapFileBufferedWrite(
    _ inode: Inode, pos: Int, source: inout UserSource, ops: any IOMapOperations, flags: IterFlags = []
) throws(Errno) -> Int {
    var iter = IOMapIterator(inode: inode, pos: pos, length: source.remaining, flags: flags.union(.write))
    var failure: Errno?
    do {
        while try iter.next(ops) {
            iter.status = iomapWriteIter(inode, &iter, &source, ops: ops)
        }
    } catch {
        failure = error
    }
    if iter.pos == pos, let failure { throw failure }
    return iter.pos - pos
}

/// The copy loop over one mapping (iomap_write_iter). Returns nil when it made progress or
/// stopped for a stale mapping, otherwise the error that stopped it.
///
/// `inode` is `iter.inode`, passed as a parameter because class references bound to locals
/// from a struct cost a retain and a release each per call, as the ones read through a
/// parameter do not; the hot functions below follow the same rule (docs/DESIGN.md, "Speed").
func iomapWriteIter(
    _ inode: Inode, _ iter: inout IOMapIterator, _ source: inout UserSource, ops: any IOMapOperations
) -> Errno? {
    var chunk = inode.mapping.maxFolioSize
    var total = 0
    var status: Errno?
    inode.fire(.afterIomapBegin, iter.mapping!.range)
    outer: repeat {
        var bytes = source.remaining
        retry: while true {
            let offset = iter.pos & (chunk - 1)
            bytes = min(chunk - offset, bytes)
            bytes = min(bytes, iter.mappingLength)
            if source.faultInReadable(bytes) == bytes {
                status = .badAddress
                break outer
            }
            let folio: Folio
            var zeroed = ZeroedRuns()
            let lend = source.lender.map { (block: $0, at: source.next) }
            do {
                // nil: a stale mapping, which iomap_iter remaps from here.
                guard let f = try iomapWriteBegin(inode, &iter, ops: ops, bytes: &bytes, zeroed: &zeroed, lend: lend) else {
                    break outer
                }
                folio = f
            } catch {
                iomapWriteFailed(inode, pos: iter.pos, length: bytes)
                status = error
                break outer
            }
            let pos = iter.pos
            inode.fire(.beforeCopy, ByteRange(start: pos, length: bytes))
            let copied = copyIntoFolio(inode, folio, pos: pos, bytes: bytes, from: &source, zeroed: zeroed)
            let written = iomapWriteEnd(inode, folio: folio, pos: pos, length: bytes, copied: copied) ? copied : 0
            if copied < bytes { inode.stats.shortCopiesCounter.add(1, ordering: .relaxed) }
            if written == 0 && copied > 0 { discardRejectedCopy(folio, ByteRange(start: pos, length: copied)) }
            // i_size moves only after the bytes are in the cache, and before the folio is
            // unlocked (W1). The kernel's test here is `pos + written > i_size` alone, which
            // for a write starting past EOF raises i_size to `pos` even when the copy was
            // rejected; we raise it only over accepted bytes (docs/DIFFERENCES-FROM-LINUX.md).
            let oldSize = inode.size
            if written > 0 && pos + written > oldSize {
                inode.setSize(pos + written)
                iter.mapping!.flags.insert(.sizeChanged)
            }
            folio.unlock()
            if oldSize < pos { pagecacheIsizeExtended(inode, from: oldSize, to: pos) }
            inode.fire(.afterCopy, ByteRange(start: pos, length: bytes))
            if written == 0 {
                iomapWriteFailed(inode, pos: pos, length: bytes)
                source.revert(copied)
                if chunk > pageSize { chunk /= 2 }
                if copied > 0 {
                    bytes = copied
                    continue retry
                }
            } else {
                total += written
                do { try iter.advance(written) } catch { return error }
            }
            break retry
        }
    } while source.remaining > 0 && iter.mappingLength > 0
    return total > 0 ? nil : status
}

/// Copies `bytes` from the user buffer into the locked folio at `pos` (the copy step of
/// iomap_write_iter, copy_folio_from_iter_atomic), and zeroes what a short copy left of the
/// write's range in the runs the fill zeroed around it. Returns the bytes copied.
func copyIntoFolio(
    _ inode: Inode, _ folio: Folio, pos: Int, bytes: Int, from source: inout UserSource, zeroed: ZeroedRuns
) -> Int {
    let inFolio = folio.offsetInFolio(pos)
    let limit = inode.environment.faults?.copyLimit(offset: pos, length: bytes)
    let copied: Int
    // How many of the copied bytes reached the folio.
    let reached: Int
    if !folio.isUptodate && folio.hasDirtyBlocks(overlapping: inFolio..<(inFolio + bytes)) {
        // A short copy here will be rejected, and it must not leave its bytes in dirty
        // blocks, which hold data no retry is sure to rewrite: copy through a bounce buffer
        // and commit only a full copy. Rare: a partial overwrite of dirty data in a folio
        // that is not wholly uptodate.
        copied = copyThroughBounce(&source, to: folio.data + inFolio, count: bytes, limit: limit)
        reached = copied == bytes ? copied : 0
    } else {
        copied = source.copy(to: folio.data + inFolio, count: bytes, limit: limit)
        reached = copied
    }
    if reached < bytes && inode.writeEnd == .zeroTail {
        zeroUncopied(folio, ByteRange(pos + reached, pos + bytes), zeroed)
    }
    return copied
}

/// Gets and locks the folio for the next step, checks the mapping is still valid and fills
/// the blocks the write will not cover (iomap_write_begin). On success `bytes` is trimmed to
/// the folio; nil means the mapping went stale and nothing was touched. A thrown error, not
/// a Result: the folio taken out of a Result's payload cost a second retain and release.
/// `zeroed` gets the runs the fill zeroed around the write. `lend`: the receive block the
/// write's bytes lie in and the address of the first (adoptLentMemory).
func iomapWriteBegin(
    _ inode: Inode, _ iter: inout IOMapIterator, ops: any IOMapOperations, bytes: inout Int, zeroed: inout ZeroedRuns,
    lend: (block: ReceiveBlock, at: UnsafeRawPointer)? = nil
) throws(Errno) -> Folio? {
    let pos = iter.pos
    let len = min(iter.mappingLength, bytes)
    precondition(len > 0, "write_begin with nothing to do at \(pos)")
    // A new folio is sized for the bytes written, as the kernel sizes it; with a receive
    // block behind them, for the pages they touch: the kernel splits a 1 MiB direct write
    // from a buffer that does not start on a page into 1 MiB - x and x bytes (its request
    // holds at most max_pages pages), and only a folio as large as the block can take it.
    // The mapping's own end, not the write's: it covers the write's last block whole.
    let sizing = lend == nil ? len : min(iter.mapping!.end, roundUp(pos + len, pageSize)) - pos
    guard let folio = inode.mapping.getFolio(pos, length: sizing, nowait: iter.flags.contains(.nowait)) else {
        bytes = len
        throw .resourceTemporarilyUnavailable
    }
    // The validity check runs after the folio lock and before anything in the folio changes
    // (docs/KERNEL-MODEL.md §2.4): no block state, no zeroing, no read.
    inode.fire(.iomapValid, ByteRange(start: pos, length: len))
    let injectedStale =
        inode.environment.faults.map { faults in
            let first = pos == iter.startPos
            return faults.fails(first ? .staleBeforeFolioLock : .staleMidMapping, offset: pos, length: len)
        } ?? false
    if injectedStale || !ops.iomapValid(inode, iter.mapping!) {
        iter.markStale()
        inode.stats.staleCounter.add(1, ordering: .relaxed)
        folio.unlock()
        bytes = 0
        return nil
    }
    let trimmed = min(len, folio.end - pos)
    if let lend { adoptLentMemory(iter, folio, pos: pos, length: trimmed, lend.block, lend.at) }
    if let error = iomapWriteBeginFill(inode, iter, ops: ops, folio: folio, pos: pos, length: trimmed, zeroed: &zeroed) {
        folio.unlock()
        bytes = trimmed
        throw error
    }
    bytes = trimmed
    return folio
}

/// When the write starts a new folio whose size is the receive block's and its bytes start
/// at the block's first byte, the folio takes the block as its memory instead of a copy of it
/// (ReceiveBlock.swift); the copy that follows is then onto the bytes themselves. Before the
/// fill, so that the fill works on the memory the folio keeps; and only where the fill would
/// zero the block the write ends inside, since a read there would land over the write's
/// bytes. Blocks the write does not reach at all stay not uptodate, as in any new folio.
func adoptLentMemory(
    _ iter: IOMapIterator, _ folio: Folio, pos: Int, length: Int, _ block: ReceiveBlock, _ address: UnsafeRawPointer
) {
    let inode = iter.inode
    guard pos == folio.pos, folio.size == block.size, !iter.flags.contains(.unshare), folio.canAdoptMemory else { return }
    let end = pos + length
    let bs = inode.geometry.blockSize
    if end < folio.end && end & (bs - 1) != 0 && !blockNeedsZeroing(inode, iter.readMapping, at: end & ~(bs - 1)) { return }
    if block.lend(address, size: folio.size) { folio.adoptMemory(UnsafeMutableRawPointer(mutating: address)) }
}

/// The runs of blocks (folio offsets) that write-begin made uptodate by zeroing around the
/// write: at most two, the run holding the write's start and the run holding its end. Inside
/// them the write's own range holds whatever the memory held until the copy fills it; the
/// kernel's buffer heads call such blocks new (BH_New).
struct ZeroedRuns {
    var first: Range<Int>?
    var second: Range<Int>?

    mutating func append(_ run: Range<Int>) {
        precondition(second == nil, "write-begin zeroed a third run, at \(run)")
        if first == nil { first = run } else { second = run }
    }
}

/// Fills the parts of the blocks under `[pos, pos + length)` that the write does not cover,
/// by zeroing or by reading, and marks them uptodate (__iomap_write_begin). The runs it
/// zeroed go into `zeroed`.
func iomapWriteBeginFill(
    _ inode: Inode, _ iter: IOMapIterator, ops: any IOMapOperations, folio: Folio, pos: Int, length: Int,
    zeroed: inout ZeroedRuns
) -> Errno? {
    let geometry = inode.geometry
    let unshare = iter.flags.contains(.unshare)
    // A write covering the whole folio dirties all of it: no per-block state needed.
    if !unshare && pos <= folio.pos && pos + length >= folio.end { return nil }
    folio.attachBlockState()
    if iter.flags.contains(.nowait) && !folio.hasBlockState && folio.blockCount > 1 { return .resourceTemporarilyUnavailable }
    if folio.isUptodate { return nil }
    var blockStart = geometry.roundDownToBlock(pos)
    let blockEnd = geometry.roundUpToBlock(pos + length)
    let from = folio.offsetInFolio(pos)
    let to = from + length
    let source = iter.readMapping
    repeat {
        let (runStart, poff, plen) = iomapAdjustReadRange(inode, folio: folio, pos: blockStart, length: blockEnd - blockStart)
        blockStart = runStart
        if plen == 0 { break }
        let fromInside = from > poff && from < poff + plen
        let toInside = to > poff && to < poff + plen
        if unshare || fromInside || toInside {
            if blockNeedsZeroing(inode, source, at: blockStart) {
                if unshare { return .ioError }
                folio.zero(from: poff, to: from)
                folio.zero(from: to, to: poff + plen)
                zeroed.append(poff..<(poff + plen))
            } else {
                if iter.flags.contains(.nowait) { return .resourceTemporarilyUnavailable }
                if let faults = inode.environment.faults, faults.fails(.readIOError, offset: blockStart, length: plen) {
                    return .ioError
                }
                do {
                    try ops.readFileRange(
                        inode, mapping: source, fileOffset: blockStart,
                        into: UnsafeMutableRawBufferPointer(start: folio.data + poff, count: plen))
                } catch {
                    return error
                }
            }
            folio.setRangeUptodate(offset: poff, length: plen)
        }
        blockStart += plen
    } while blockStart < blockEnd
    return nil
}

/// The first run of not-uptodate blocks in `[pos, pos + length)` within the folio, split at
/// the block holding EOF so blocks wholly past EOF form their own run
/// (iomap_adjust_read_range). Returns the run's file offset, folio offset and length.
func iomapAdjustReadRange(_ inode: Inode, folio: Folio, pos: Int, length: Int) -> (Int, Int, Int) {
    let isize = inode.size
    let shift = inode.geometry.blockShift
    let bs = inode.geometry.blockSize
    var pos = pos
    let originalPos = pos
    var poff = folio.offsetInFolio(pos)
    var plen = min(folio.size - poff, length)
    let originalPlen = plen
    var first = poff >> shift
    var last = (poff + plen - 1) >> shift
    if folio.hasBlockState {
        var i = first
        while i <= last {
            if !folio.isBlockUptodate(i) { break }
            pos += bs
            poff += bs
            plen -= bs
            first += 1
            i += 1
        }
        i += 1
        while i <= last {
            if folio.isBlockUptodate(i) {
                plen -= (last - i + 1) * bs
                last = i - 1
                break
            }
            i += 1
        }
    }
    if originalPos <= isize && originalPos + originalPlen > isize {
        let eofBlock = folio.offsetInFolio(isize - 1) >> shift
        if first <= eofBlock && last > eofBlock { plen -= (last - eofBlock) * bs }
    }
    return (pos, poff, max(0, plen))
}

/// Whether a block must be zero-filled rather than read (iomap_block_needs_zeroing).
func blockNeedsZeroing(_ inode: Inode, _ source: IOMapping, at pos: Int) -> Bool {
    source.kind != .mapped || source.flags.contains(.new) || pos >= inode.size
}

/// Accepts the copied bytes into the folio, or rejects a short copy into a folio that is
/// not uptodate (__iomap_write_end). Accepting marks the written range uptodate, its copied
/// blocks dirty, and the folio dirty.
func iomapWriteEnd(_ inode: Inode, folio: Folio, pos: Int, length: Int, copied: Int) -> Bool {
    if copied < length && !folio.isUptodate { return false }
    // The kernel "accepts" a zero-byte copy into an uptodate folio: it dirties the folio
    // and, for a write starting past EOF, raises i_size to the write's position although
    // nothing was written. We reject it, so that i_size grows only over accepted bytes (W1).
    // See docs/DIFFERENCES-FROM-LINUX.md.
    if copied == 0 { return false }
    let offset = folio.offsetInFolio(pos)
    folio.setRangeUptodate(offset: offset, length: length)
    folio.setRangeDirtyBits(offset: offset, length: copied)
    inode.mapping.markDirty(folio)
    folio.verifyInvariants()
    return true
}

/// Zeroes the part `uncopied` of the write's range that the copy did not reach, inside the
/// runs write-begin zeroed around the write (folio_zero_new_buffers, which buffer heads'
/// block_write_end calls on a short copy). The fill marked those runs uptodate before the
/// copy, counting on it to fill the rest; left alone, what the memory held there would be
/// readable, in the cache and, once the block is written back, on disk. The kernel's iomap
/// leaves it (WriteEndPolicy.kernel; docs/DIFFERENCES-FROM-LINUX.md §4). Outside those runs
/// the range holds data read from the disk or already uptodate, which must stay.
func zeroUncopied(_ folio: Folio, _ uncopied: ByteRange, _ zeroed: ZeroedRuns) {
    let from = folio.offsetInFolio(uncopied.start)
    let to = from + uncopied.length
    for run in [zeroed.first, zeroed.second] {
        guard let run else { break }
        folio.zero(from: max(run.lowerBound, from), to: min(run.upperBound, to))
    }
}

/// Copies into a temporary buffer and moves the bytes into the folio only when all
/// `count` arrived, so that a copy the write end will reject never touches the folio.
func copyThroughBounce(_ source: inout UserSource, to destination: UnsafeMutableRawPointer, count: Int, limit: Int?) -> Int {
    let bounce = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 16)
    defer { bounce.deallocate() }
    let copied = source.copy(to: bounce, count: count, limit: limit)
    if copied == count { destination.copyMemory(from: bounce, byteCount: count) }
    return copied
}

/// Takes back the bytes of a rejected copy (W2). The fill before the copy marked whole
/// runs uptodate, including the blocks the copy was to overwrite, and the copy changed some
/// of their bytes; if the write then fails before its retry rewrites them, the kernel leaves
/// a failed write's bytes readable in clean "uptodate" blocks until the folio is evicted, and
/// a later fill can mark such bytes uptodate too. We zero every clean block the copy touched
/// and mark it not uptodate, so that the bytes of a block that is not uptodate are always
/// zero and the block is read or zeroed afresh when next needed. Dirty blocks are never
/// touched by a copy that can be rejected (see copyThroughBounce), so they are left alone
/// (docs/DIFFERENCES-FROM-LINUX.md).
///
/// A clean block of a folio under writeback may hold data that is on the disk but not yet
/// readable there: until I/O completion converts its unwritten extent, a fresh read would
/// zero-fill it. So a block is discarded only after the folio's writeback has completed;
/// completion never needs the folio lock, so waiting for it with the lock held is safe, as
/// truncation does.
func discardRejectedCopy(_ folio: Folio, _ copied: ByteRange) {
    folio.waitWriteback()
    guard folio.hasBlockState else {
        // One unit, and a rejection means it is neither uptodate nor dirty: none of its
        // bytes are data.
        folio.zero(from: copied.start - folio.pos, to: copied.end - folio.pos)
        return
    }
    let shift = folio.blockShift
    let first = (copied.start - folio.pos) >> shift
    let last = (copied.end - 1 - folio.pos) >> shift
    for b in first...last where !folio.isBlockDirty(b) {
        folio.zero(from: b << shift, to: (b + 1) << shift)
        if folio.isBlockUptodate(b) { folio.clearBlockUptodate(b) }
    }
}

/// Throws away page cache beyond EOF over the part of a write that failed, so that only
/// cache below EOF can protect delalloc when the release runs (iomap_write_failed).
func iomapWriteFailed(_ inode: Inode, pos: Int, length: Int) {
    let isize = inode.size
    if pos + length > isize {
        inode.mapping.truncatePages(ByteRange(max(pos, isize), pos + length))
    }
}

/// After i_size grew from `from` to `to`, write-protects the folio straddling the old EOF
/// so that the next store into the newly valid blocks faults and reserves space
/// (pagecache_isize_extended).
public func pagecacheIsizeExtended(_ inode: Inode, from: Int, to: Int) {
    let bs = inode.geometry.blockSize
    if from >= to || bs >= pageSize { return }
    let roundedFrom = roundUp(from, bs)
    if to <= roundedFrom || roundedFrom & (pageSize - 1) == 0 { return }
    guard let folio = inode.mapping.lockFolio(from) else { return }
    inode.mapping.clearWriteMapped(folio)
    folio.unlock()
}

/// Before i_size grows past `oldSize`: the folio holding the old EOF may carry bytes a
/// mapping stored past EOF, and dirty bits (set by page_mkwrite) on blocks wholly past
/// EOF that have no space behind them. Both are dropped so that the grown file reads
/// zeroes there and every dirty block below the new EOF has backing (D3). The kernel
/// leaves them until writeback; see docs/DIFFERENCES-FROM-LINUX.md.
public func pagecacheCleanPastEOF(_ inode: Inode, oldSize: Int) {
    let g = inode.geometry
    guard let folio = inode.mapping.lockFolio(oldSize) else { return }
    defer { folio.unlock() }
    folio.zero(from: max(oldSize, folio.pos) - folio.pos, to: folio.size)
    guard folio.isDirty else { return }
    let firstBlockPast = g.roundUpToBlock(oldSize)
    if folio.pos >= firstBlockPast {
        inode.mapping.cancelDirty(folio)
    } else if firstBlockPast < folio.end {
        // Write-protect it too, as pagecache_isize_extended does: the next store into the
        // blocks that EOF will now cover must fault and reserve space.
        inode.mapping.clearWriteMapped(folio)
        folio.attachBlockState()
        folio.clearDirtyBits(fromBlock: (firstBlockPast - folio.pos) >> g.blockShift)
    }
}
