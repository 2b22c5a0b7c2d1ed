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
// to see the conversion in the sequence number (docs/KERNEL-MODEL.md §5.2).

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
    let pass = WritebackPass(inode, ops: ops)
    var context = WritebackContext()
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
        iomapWritepageMap(inode, folio: folio, context: &context, pass: pass)
    }
    pass.submit()
    pass.result.staleRemaps = context.staleRemaps
    return pass.result
}

/// One writeback pass: the bio being gathered and the folios under writeback waiting for
/// their runs to be written (iomap_writepage_ctx with its ioend and bio).
///
/// Runs that lie back to back in the file and on the disk go to the device as one request,
/// up to 16 MiB, as the kernel builds one bio from consecutive folios: one large request
/// lets the device work on many blocks at once, where a request per folio waits for each in
/// turn. A folio leaves writeback once every run of it has been written, folios in the
/// order they were mapped, each through the completion of its ioends (conversion first).
final class WritebackPass {
    let inode: Inode
    let ops: any IOMapWritebackOperations
    var result = WritebackResult()
    /// The bio being gathered.
    private var bio: Bio?
    /// Folios under writeback, in mapping order, not yet completed.
    private var waiting: [FolioWriteback] = []

    static let maxBioBytes = 16 << 20
    static let maxBioRuns = 256

    /// A folio under writeback and the ioends of its runs (one per run until completion).
    final class FolioWriteback {
        let folio: Folio
        var ioends: [IOEnd] = []
        /// Runs added to a bio that has not been written yet.
        var unwritten = 0
        /// Every run of the folio has been added.
        var mapped = false
        init(_ folio: Folio) { self.folio = folio }
    }

    struct Bio {
        let mapping: IOMapping
        let start: Int
        var end: Int
        var buffers: [UnsafeRawBufferPointer] = []
        /// Per run: its folio and the index of its ioend there.
        var owners: [(FolioWriteback, Int)] = []
    }

    init(_ inode: Inode, ops: any IOMapWritebackOperations) {
        self.inode = inode
        self.ops = ops
    }

    /// Starts tracking a folio that has just been put under writeback.
    func begin(_ folio: Folio) -> FolioWriteback {
        let fw = FolioWriteback(folio)
        waiting.append(fw)
        return fw
    }

    /// Adds the run `[p, p + n)` of `fw`'s folio, mapped by `m`, to the bio, first writing
    /// the bio out if the run does not continue it.
    func add(_ fw: FolioWriteback, mapping m: IOMapping, at p: Int, length n: Int) {
        if let b = bio {
            let continues =
                p == b.end && m.kind == b.mapping.kind
                && m.diskAddress(of: p) == b.mapping.diskAddress(of: b.start) + (p - b.start)
                && b.end - b.start + n <= Self.maxBioBytes && b.buffers.count < Self.maxBioRuns
            if !continues { submit() }
        }
        if bio == nil { bio = Bio(mapping: m, start: p, end: p) }
        fw.ioends.append(IOEnd(range: ByteRange(start: p, length: n), kind: m.kind))
        fw.unwritten += 1
        bio!.owners.append((fw, fw.ioends.count - 1))
        bio!.buffers.append(UnsafeRawBufferPointer(start: fw.folio.data + (p - fw.folio.pos), count: n))
        bio!.end = p + n
    }

    /// Marks `fw`'s folio as fully mapped; completes what is ready.
    func mapped(_ fw: FolioWriteback) {
        fw.mapped = true
        completeReady()
    }

    /// Writes the gathered bio, if any, and completes the folios that were waiting only for it.
    func submit() {
        guard let b = bio else { return }
        bio = nil
        let errors = ops.writeFileRanges(inode, mapping: b.mapping, fileOffset: b.start, from: b.buffers)
        for (i, (fw, index)) in b.owners.enumerated() {
            if let error = errors[i] {
                fw.ioends[index].error = error
            } else {
                result.bytesWritten += b.buffers[i].count
            }
            fw.unwritten -= 1
        }
        completeReady()
    }

    /// Completes, in order, the folios whose runs have all been written.
    private func completeReady() {
        var done = 0
        while done < waiting.count, waiting[done].mapped, waiting[done].unwritten == 0 {
            let fw = waiting[done]
            iomapFinishIOEnds(inode, folio: fw.folio, mergeIOEnds(fw.ioends), ops: ops, result: &result)
            done += 1
        }
        if done > 0 { waiting.removeFirst(done) }
    }
}

/// Joins ioends that continue each other with the same kind and no error, so that
/// completion converts each extent range once.
func mergeIOEnds(_ ioends: [IOEnd]) -> [IOEnd] {
    var merged: [IOEnd] = []
    for e in ioends {
        if let last = merged.last, last.range.end == e.range.start, last.kind == e.kind, last.error == nil, e.error == nil {
            merged[merged.count - 1].range = ByteRange(last.range.start, e.range.end)
        } else {
            merged.append(e)
        }
    }
    return merged
}

/// Maps one locked folio's dirty blocks, adds them to the pass's bio and unlocks the folio;
/// a folio wholly past EOF is skipped and never put under writeback.
func iomapWritepageMap(_ inode: Inode, folio: Folio, context: inout WritebackContext, pass: WritebackPass) {
    let mapping = inode.mapping
    let ops = pass.ops
    let isize = inode.size
    var endPos = folio.end
    if endPos > isize {
        // Wholly past EOF: truncate is about to remove it; write nothing.
        if folio.pos >= isize {
            folio.clearAllDirtyBits()
            folio.unlock()
            return
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
    pass.result.folios += 1
    let fw = pass.begin(folio)
    let endAligned = inode.geometry.roundUpToBlock(endPos)
    var offset = 0
    mapLoop: while let run = folio.nextDirtyRun(from: offset, limit: endAligned - folio.pos) {
        var p = folio.pos + run.lowerBound
        let runEnd = folio.pos + run.upperBound
        while p < runEnd {
            // A hook acts as another thread that may wait for writeback in flight; our I/O is
            // synchronous, so what is in flight is the bio still being gathered: write it first.
            if inode.hasHookClosure { pass.submit() }
            inode.fire(.writebackBeforeMapBlocks, ByteRange(p, runEnd))
            let m: IOMapping
            do {
                m = try ops.mapBlocks(inode, context: &context, offset: p, length: runEnd - p)
            } catch {
                ops.discardFolio(inode, range: ByteRange(p, folio.end))
                pass.result.error = pass.result.error ?? error
                mapping.setError(error)
                break mapLoop
            }
            let n = min(m.end, runEnd) - p
            precondition(n > 0, "mapBlocks returned \(m) not covering \(p)")
            switch m.kind {
            case .mapped, .unwritten:
                pass.add(fw, mapping: m, at: p, length: n)
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
    pass.mapped(fw)
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
