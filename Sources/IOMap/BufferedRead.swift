// Counterpart: filemap_read() in mm/filemap.c with iomap_read_folio() and
// iomap_readpage_iter() in fs/iomap/buffered-io.c.
//
// Reads copy from uptodate folios, creating and filling them as needed. Filling zeroes
// every block that has nothing on disk to read (holes, delalloc, unwritten, anything at or
// past EOF) and reads mapped blocks from the device; blocks that are already uptodate are
// never read again, so a partly written folio keeps its newer data.

import IOMapBase
import PageCache

/// Reads up to `buffer.count` bytes at `pos`, clamped at EOF. The caller holds the inode
/// I/O lock shared. Returns the bytes read; throws only when none were.
public func iomapBufferedRead(
    _ inode: Inode, pos: Int, into buffer: UnsafeMutableRawBufferPointer, ops: any IOMapOperations
) throws(Errno) -> Int {
    var done = 0
    var p = pos
    while done < buffer.count {
        let isize = inode.size
        if p >= isize { break }
        let want = min(buffer.count - done, isize - p)
        // An uptodate folio is copied from without its lock, as filemap_read copies under
        // a reference only: with the I/O lock shared no write, truncate or hole punch can
        // change its bytes, and reclaim removes only clean folios, whose memory the
        // reference keeps. The lock is for folios that still need filling.
        if let folio = inode.mapping.lookup(p), folio.isUptodate {
            let n = min(want, folio.end - p)
            (buffer.baseAddress! + done).copyMemory(from: folio.data + folio.offsetInFolio(p), byteCount: n)
            done += n
            p += n
            continue
        }
        let folio: Folio
        do {
            folio = try readFolioForAccess(inode, at: p, length: want, ops: ops)
        } catch {
            if done > 0 { break }
            throw error
        }
        let n = min(want, folio.end - p, max(0, inode.size - p))
        if n > 0 {
            (buffer.baseAddress! + done).copyMemory(from: folio.data + folio.offsetInFolio(p), byteCount: n)
        }
        folio.unlock()
        if n <= 0 { break }
        done += n
        p += n
    }
    return done
}

/// Returns the folio covering `offset`, locked, with the bytes of `[offset, offset + length)`
/// inside it uptodate, creating and filling it under the invalidate lock if needed
/// (filemap_get_pages / filemap_fault).
public func readFolioForAccess(_ inode: Inode, at offset: Int, length: Int, ops: any IOMapOperations) throws(Errno) -> Folio {
    if let folio = inode.mapping.lockFolio(offset) {
        let inFolio = folio.offsetInFolio(offset)
        let count = min(length, folio.end - offset)
        if folio.isUptodate || folio.isPartiallyUptodate(offset: inFolio, count: count) { return folio }
        folio.unlock()
    }
    let mapping = inode.mapping
    mapping.invalidateLock.lockShared()
    defer { mapping.invalidateLock.unlockShared() }
    // Never create a folio past the page holding EOF, as readahead does not.
    let limit = max(pageSize, roundUp(inode.size, pageSize) - roundDown(offset, pageSize))
    return try filemapReadFolio(inode, mapping.getFolio(offset, length: min(max(length, 1), limit)), ops: ops)
}

/// Returns `folio`, locked, read whole from the file system unless it is uptodate already; on
/// a read error it is unlocked before the error is thrown (filemap_read_folio).
public func filemapReadFolio(_ inode: Inode, _ folio: Folio, ops: any IOMapOperations) throws(Errno) -> Folio {
    if folio.isUptodate { return folio }
    do {
        try iomapReadFolio(inode, folio: folio, ops: ops)
    } catch {
        folio.unlock()
        throw error
    }
    return folio
}

/// Fills every block of a locked folio that is not uptodate (iomap_read_folio).
public func iomapReadFolio(_ inode: Inode, folio: Folio, ops: any IOMapOperations) throws(Errno) {
    folio.assertLocked("to read it")
    var iter = IOMapIterator(inode: inode, pos: folio.pos, length: folio.size, flags: [])
    while try iter.next(ops) {
        let source = iter.readMapping
        // Per-block state first: blocks past EOF are zeroed and the folio may be mapped.
        folio.attachBlockState()
        let (runStart, poff, plen) = iomapAdjustReadRange(inode, folio: folio, pos: iter.pos, length: iter.mappingLength)
        if plen > 0 {
            if blockNeedsZeroing(inode, source, at: runStart) {
                folio.zero(from: poff, to: poff + plen)
            } else {
                if let faults = inode.environment.faults, faults.fails(.readIOError, offset: runStart, length: plen) {
                    throw .ioError
                }
                try ops.readFileRange(
                    inode, mapping: source, fileOffset: runStart,
                    into: UnsafeMutableRawBufferPointer(start: folio.data + poff, count: plen))
            }
            folio.setRangeUptodate(offset: poff, length: plen)
        }
        try iter.advance(runStart - iter.pos + plen)
    }
}
