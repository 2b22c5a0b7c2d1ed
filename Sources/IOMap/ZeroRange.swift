// Counterpart: iomap_zero_range(), iomap_zero_iter() and iomap_truncate_page() in
// fs/iomap/buffered-io.c.
//
// Zeroing goes through the page cache like a write of zeroes, except over holes and
// unwritten extents, which already read as zeroes: there nothing is allocated, and only
// bytes already cached are zeroed in place. That second half covers what the kernel
// handles with its dirty-folio batches (6.19): dirty data cached over an unwritten extent,
// and bytes a mapping stored past EOF in the EOF folio. Zeroing never changes i_size.

import IOMapBase
import PageCache

/// Zeroes `[pos, pos + length)` of the file. The caller holds the I/O lock and the
/// invalidate lock exclusive.
public func iomapZeroRange(_ inode: Inode, pos: Int, length: Int, ops: any IOMapOperations) throws(Errno) {
    guard length > 0 else { return }
    var iter = IOMapIterator(inode: inode, pos: pos, length: length, flags: [.zero])
    while try iter.next(ops) {
        let source = iter.readMapping
        if source.kind == .hole || source.kind == .unwritten {
            zeroCachedBytes(inode, ByteRange(start: iter.pos, length: iter.mappingLength))
            try iter.advance(iter.mappingLength)
            continue
        }
        iter.status = iomapZeroIter(&iter, ops: ops)
    }
}

/// Zeroes the bytes of `range` in folios already cached, leaving their state alone.
public func zeroCachedBytes(_ inode: Inode, _ range: ByteRange) {
    for folio in inode.mapping.folios(overlapping: range) {
        folio.lock()
        if !folio.isRemoved {
            folio.zero(from: max(range.start, folio.pos) - folio.pos, to: min(range.end, folio.end) - folio.pos)
        }
        folio.unlock()
    }
}

/// Zeroes one delalloc or mapped stretch folio by folio through write_begin/write_end.
func iomapZeroIter(_ iter: inout IOMapIterator, ops: any IOMapOperations) -> Errno? {
    let inode = iter.inode
    repeat {
        var bytes = iter.mappingLength
        let folio: Folio
        var zeroed = ZeroedRuns()  // the whole range is zeroed below
        do {
            guard let f = try iomapWriteBegin(inode, &iter, ops: ops, bytes: &bytes, zeroed: &zeroed) else { return nil }
            folio = f
        } catch {
            return error
        }
        let offset = folio.offsetInFolio(iter.pos)
        folio.zero(from: offset, to: offset + bytes)
        let accepted = iomapWriteEnd(inode, folio: folio, pos: iter.pos, length: bytes, copied: bytes)
        folio.unlock()
        precondition(accepted, "a full-length zeroing copy cannot be rejected")
        do { try iter.advance(bytes) } catch { return error }
    } while iter.mappingLength > 0
    return nil
}

/// Zeroes from `pos` to the end of its block (iomap_truncate_page): truncate down uses it
/// for the partial block at the new EOF.
public func iomapTruncatePage(_ inode: Inode, pos: Int, ops: any IOMapOperations) throws(Errno) {
    let bs = inode.geometry.blockSize
    let within = pos & (bs - 1)
    if within == 0 { return }
    try iomapZeroRange(inode, pos: pos, length: bs - within, ops: ops)
}
