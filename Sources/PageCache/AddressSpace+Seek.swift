// Counterpart: mapping_seek_hole_data() and folio_seek_hole_data() in mm/filemap.c.
//
// Byte-granular SEEK_DATA/SEEK_HOLE over the page cache alone: "data" means uptodate, not
// dirty. Inside a folio that is only partly uptodate the walk goes block by block under the
// folio lock, so the answers are block-aligned except for an unaligned `start` or `end`.
// All arithmetic is 64-bit; the kernel's 32-bit mask here once looped forever (c13094b894de).

import IOMapBase

public enum SeekWhence: Sendable {
    case data
    case hole
}

extension AddressSpace {
    /// Finds the first cached data (or hole) in `[start, end)`; there is an implicit hole at
    /// `end`. Returns nil for ENXIO: `end <= start`, or no data for `.data`. Never returns a
    /// value past `end`.
    public func seekHoleData(start startIn: Int, end: Int, whence: SeekWhence) -> Int? {
        guard end > startIn else { return nil }
        var start = startIn
        let seekData = whence == .data
        var page = pageIndex(of: start)
        let maxPage = pageIndex(of: end - 1)
        while page <= maxPage {
            guard let folio = firstFolio(atOrAfterPage: page, maxPage: maxPage) else { break }
            let pos = max(folio.pos, pageOffset(ofIndex: page))
            if start < pos {
                if !seekData { return min(start, end) }
                start = pos
            }
            let fend = folio.end
            start = folioSeek(folio, start: start, fend: fend, seekData: seekData)
            if start < fend { return min(start, end) }
            if start >= end { break }
            page = pageIndex(of: fend)
        }
        if seekData { return nil }
        return min(start, end)
    }

    /// The folio covering `page`, or the first one starting after it and at or before
    /// `maxPage`.
    func firstFolio(atOrAfterPage page: Int, maxPage: Int) -> Folio? {
        index.withLock { idx -> Folio? in
            if let (_, f) = idx.floor(page), f.end > pageOffset(ofIndex: page) { return f }
            guard let (key, f) = idx.ceiling(page), key <= maxPage else { return nil }
            return f
        }
    }

    /// Where data (or a hole) starts inside `folio` at or after `start`, or `fend` when there
    /// is none in this folio.
    func folioSeek(_ folio: Folio, start: Int, fend: Int, seekData: Bool) -> Int {
        if folio.isUptodate { return seekData ? start : fend }
        folio.lock()
        defer { folio.unlock() }
        if folio.isRemoved { return start }
        let bs = geometry.blockSize
        var start = start
        var offset = roundDown(folio.offsetInFolio(start), bs)
        repeat {
            if folio.isPartiallyUptodate(offset: offset, count: bs) == seekData { break }
            start = roundDown(start + bs, bs)
            offset += bs
        } while offset < folio.size
        return start
    }
}
