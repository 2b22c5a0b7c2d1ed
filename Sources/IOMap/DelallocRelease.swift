// Counterpart: iomap_write_delalloc_release(), iomap_write_delalloc_scan(),
// iomap_write_delalloc_punch() and iomap_write_delalloc_ifs_punch() in
// fs/iomap/buffered-io.c (the seed commit f43dc4dc3eff in its V4 shape), and, for the
// truncatePageCache policy, the behaviour it replaced.
//
// When a write fails part-way it reserved delalloc it did not use. It does not own that
// range: a page fault may have dirtied a folio there (finding the write's reservation and
// adding none of its own), and writeback may have converted part of it. So the release
// walks the cached data with SEEK_DATA/SEEK_HOLE, locks each folio it finds, keeps the
// reservation under dirty folios (and under the dirty blocks of a partly dirty folio) and
// punches everything else. It never truncates the page cache.
//
// Lock order: the caller holds the invalidate lock exclusive; each folio is locked while
// the punch callback runs, so the callback must never lock a folio itself.

import IOMapBase
import PageCache
import Synchronization

/// The file system's punch callback: removes delalloc, and nothing else, over a byte range.
public typealias PunchDelalloc = (_ offset: Int, _ length: Int) -> Void

/// Releases the unused delalloc in `[startByte, endByte)` after a failed write, keeping it
/// under dirty cached data below EOF (iomap_write_delalloc_release). `startByte` and
/// `endByte` are block-aligned.
public func iomapWriteDelallocRelease(_ inode: Inode, startByte: Int, endByte: Int, punch: PunchDelalloc) {
    precondition(
        inode.mapping.invalidateLock.isHeldExclusiveByCurrentThread,
        "delalloc release needs the invalidate lock held exclusive")
    inode.stats.cleanupsCounter.add(1, ordering: .relaxed)
    withoutActuallyEscaping(punch) { punch in
        let counted: PunchDelalloc = { offset, length in
            inode.stats.punchesCounter.add(1, ordering: .relaxed)
            punch(offset, length)
        }
        delallocReleaseWalk(inode, startByte: startByte, endByte: endByte, punch: counted)
    }
}

func delallocReleaseWalk(_ inode: Inode, startByte: Int, endByte: Int, punch counted: PunchDelalloc) {
    var start = startByte
    var punchStart = startByte
    // SEEK_DATA knows nothing of EOF: only data below EOF may protect delalloc, since
    // writeback never writes blocks wholly past EOF. Where we stop is docs/DESIGN.md decision 5:
    // the kernel stops at i_size; we stop at the end of the block holding EOF, so that a
    // dirty EOF block keeps its reservation.
    let isize = inode.size
    let eof = inode.eofRounding == .kernel ? isize : inode.geometry.roundUpToBlock(isize)
    let scanEnd = min(eof, endByte)
    while start < scanEnd {
        guard let dataStart = inode.mapping.seekHoleData(start: start, end: scanEnd, whence: .data),
            dataStart != scanEnd
        else { break }
        inode.fire(.releaseBetweenSeeks, ByteRange(dataStart, scanEnd))
        guard let dataEnd = inode.mapping.seekHoleData(start: dataStart, end: scanEnd, whence: .hole) else {
            warnOnce(true, "SEEK_HOLE found nothing after data at \(dataStart)")
            return
        }
        // The cache changed between the seeks (a clean folio was evicted): look again.
        if dataEnd == dataStart {
            start = dataStart
            continue
        }
        iomapWriteDelallocScan(inode, punchStart: &punchStart, ByteRange(dataStart, dataEnd), punch: counted)
        start = dataEnd
    }
    if punchStart < endByte { counted(punchStart, endByte - punchStart) }
    // Every punch stayed inside the range the write reserved.
    verify(punchStart <= max(endByte, startByte), "release moved its punch start past the range end")
}

/// Walks the folios of one data run, punching before each dirty folio and inside it
/// (iomap_write_delalloc_scan).
func iomapWriteDelallocScan(_ inode: Inode, punchStart: inout Int, _ run: ByteRange, punch: PunchDelalloc) {
    var s = run.start
    while s < run.end {
        inode.fire(.releaseBeforeFolioLookup, ByteRange(s, run.end))
        guard let folio = inode.mapping.lockFolio(s) else {
            // Evicted since the seek: it was clean, so it protects nothing.
            s = roundDown(s, pageSize) + pageSize
            continue
        }
        iomapWriteDelallocPunch(inode, folio: folio, punchStart: &punchStart, ByteRange(s, run.end), punch: punch)
        s = folio.end
        folio.unlock()
    }
}

/// Keeps the delalloc under one dirty folio: punches what lies before it, then its clean
/// blocks (iomap_write_delalloc_punch).
func iomapWriteDelallocPunch(_ inode: Inode, folio: Folio, punchStart: inout Int, _ run: ByteRange, punch: PunchDelalloc) {
    // Clean data was either written back (no longer delalloc: the punch skips it) or read
    // from a hole (zeroes): either way it needs no reservation.
    guard folio.isDirty else { return }
    if run.start > punchStart { punch(punchStart, run.start - punchStart) }
    iomapWriteDelallocBlockPunch(inode, folio: folio, run, punch: punch)
    punchStart = min(run.end, folio.end)
}

/// Punches the clean blocks of a partly dirty folio inside `run`, one call per block
/// (iomap_write_delalloc_ifs_punch). Writeback writes only dirty blocks, so delalloc under a
/// clean block would never be converted.
func iomapWriteDelallocBlockPunch(_ inode: Inode, folio: Folio, _ run: ByteRange, punch: PunchDelalloc) {
    guard folio.hasBlockState else { return }
    let bs = inode.geometry.blockSize
    let shift = inode.geometry.blockShift
    let last = min(run.end - 1, folio.end - 1)
    let firstBlock = (run.start - folio.pos) >> shift
    let lastBlock = (last - folio.pos) >> shift
    for b in firstBlock...lastBlock where !folio.isBlockDirty(b) {
        punch(folio.pos + (b << shift), bs)
    }
}

/// The behaviour before the seed fix (docs/DESIGN.md decision 4, docs/KERNEL-MODEL.md §3.1): throw away
/// the page cache over the range, whoever dirtied it, then punch all delalloc in it.
public func iomapWriteDelallocTruncate(_ inode: Inode, startByte: Int, endByte: Int, punch: PunchDelalloc) {
    precondition(
        inode.mapping.invalidateLock.isHeldExclusiveByCurrentThread,
        "delalloc release needs the invalidate lock held exclusive")
    inode.stats.cleanupsCounter.add(1, ordering: .relaxed)
    inode.mapping.truncatePages(ByteRange(startByte, endByte))
    inode.stats.punchesCounter.add(1, ordering: .relaxed)
    punch(startByte, endByte - startByte)
}
