// Counterpart: iomap_writepages(), iomap_writepage_map(), iomap_writeback_handle_eof(),
// iomap_find_dirty_range() and iomap_finish_ioends() in fs/iomap/buffered-io.c and
// fs/iomap/ioend.c, with the I/O completion ordering of xfs_end_ioend().
//
// Writeback visits only folios tagged dirty. Per folio: lock it, clear its dirty flag and
// write-protect it, zero its bytes past EOF, start writeback, map each run of dirty blocks
// (the file system turns delalloc into allocated-unwritten extents for the whole
// reservation), write those blocks, clear every dirty bit and unlock. Completion converts
// the unwritten extents it wrote to written BEFORE the folio leaves writeback: a folio can
// only be evicted after that, so a writer that finds no folio and creates a new one is sure
// to see the conversion in the sequence number (KERNEL-SPEC §5.2).

import IOMapBase
import PageCache

/// What one writeback pass did.
public struct WritebackResult: Sendable {
    public var folios = 0
    public var bytesWritten = 0
    public var staleRemaps = 0
    /// The first error: a mapping failure or a device write error (also latched for fsync).
    public var error: Errno?
    public init() {}
}

/// Writes back the dirty folios overlapping `range` (iomap_writepages with WB_SYNC_ALL).
@discardableResult
public func iomapWritepages(_ inode: Inode, range: ByteRange, ops: any IOMapWritebackOperations) -> WritebackResult {
    let mapping = inode.mapping
    var context = WritebackContext()
    var result = WritebackResult()
    var pos = range.start
    while let folio = mapping.nextTagged(.dirty, from: pos, before: range.end) {
        pos = folio.end
        folio.lock()
        if folio.isRemoved || !folio.isDirty {
            folio.unlock()
            continue
        }
        folio.waitWriteback()
        mapping.clearDirtyForIO(folio)
        let ioends = iomapWritepageMap(inode, folio: folio, context: &context, ops: ops, result: &result)
        if let ioends { iomapFinishIOEnds(inode, folio: folio, ioends, ops: ops, result: &result) }
    }
    result.staleRemaps = context.staleRemaps
    return result
}

/// Writes one locked folio's dirty blocks and unlocks it. Returns the ioends to complete,
/// or nil when the folio was skipped (wholly past EOF) and is not under writeback.
func iomapWritepageMap(
    _ inode: Inode, folio: Folio, context: inout WritebackContext, ops: any IOMapWritebackOperations,
    result: inout WritebackResult
) -> [IOEnd]? {
    let mapping = inode.mapping
    let isize = inode.size
    var endPos = folio.end
    if endPos > isize {
        // Wholly past EOF: truncate is about to remove it; write nothing.
        if folio.pos >= isize {
            folio.clearAllDirtyBits()
            folio.unlock()
            return nil
        }
        // Straddling EOF: the tail may hold bytes a mapping stored past EOF; they never reach
        // the disk.
        folio.zero(from: isize - folio.pos, to: folio.size)
        endPos = isize
    }
    if folio.blockCount > 1 && !folio.hasBlockState {
        folio.attachBlockState()
        folio.setRangeDirtyBits(offset: 0, length: endPos - folio.pos)
    }
    mapping.startWriteback(folio)
    result.folios += 1
    let endAligned = inode.geometry.roundUpToBlock(endPos)
    var ioends: [IOEnd] = []
    var offset = 0
    mapLoop: while let run = folio.nextDirtyRun(from: offset, limit: endAligned - folio.pos) {
        var p = folio.pos + run.lowerBound
        let runEnd = folio.pos + run.upperBound
        while p < runEnd {
            inode.fire(.writebackBeforeMapBlocks, ByteRange(p, runEnd))
            let m: IOMapping
            do {
                m = try ops.mapBlocks(inode, context: &context, offset: p, length: runEnd - p)
            } catch {
                ops.discardFolio(inode, range: ByteRange(p, folio.end))
                result.error = result.error ?? error
                mapping.setError(error)
                break mapLoop
            }
            let n = min(m.end, runEnd) - p
            precondition(n > 0, "mapBlocks returned \(m) not covering \(p)")
            switch m.kind {
            case .mapped, .unwritten:
                var ioend = IOEnd(range: ByteRange(start: p, length: n), kind: m.kind)
                do {
                    try ops.writeFileRange(
                        inode, mapping: m, fileOffset: p,
                        from: UnsafeRawBufferPointer(start: folio.data + (p - folio.pos), count: n))
                    result.bytesWritten += n
                } catch {
                    ioend.error = error
                }
                if let last = ioends.last, last.range.end == p, last.kind == ioend.kind, last.error == nil, ioend.error == nil {
                    ioends[ioends.count - 1].range = ByteRange(last.range.start, p + n)
                } else {
                    ioends.append(ioend)
                }
            case .hole:
                // Nothing backs this dirty block: the data is dropped, as the kernel does. D3
                // says this never happens; the checkers look for it.
                warnOnce(true, "writeback found a hole under dirty data at \(p) in file \(inode.id)")
            case .delalloc, .inline:
                warnOnce(true, "writeback mapping of kind \(m.kind) at \(p)")
            }
            p += n
        }
        offset = run.upperBound
    }
    // Dirty bits past EOF (set by page_mkwrite on the EOF folio) are cleared with the rest.
    folio.clearAllDirtyBits()
    folio.verifyInvariants()
    folio.unlock()
    return ioends
}

/// Completes a folio's ioends and ends its writeback (iomap_finish_ioends after
/// xfs_end_ioend): extent conversion first, then the folio leaves writeback.
func iomapFinishIOEnds(
    _ inode: Inode, folio: Folio, _ ioends: [IOEnd], ops: any IOMapWritebackOperations, result: inout WritebackResult
) {
    inode.fire(.completionBeforeConversion, folio.range)
    for ioend in ioends {
        if let error = ioend.error {
            inode.mapping.setError(error)
            result.error = result.error ?? error
        }
        ops.completeIOEnd(inode, ioend)
    }
    inode.fire(.completionBeforeEndWriteback, folio.range)
    inode.mapping.endWriteback(folio)
}
