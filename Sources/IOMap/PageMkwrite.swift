// Counterpart: iomap_page_mkwrite() and iomap_folio_mkwrite_iter() in
// fs/iomap/buffered-io.c, with folio_mkwrite_check_truncate() and iomap_dirty_folio().
//
// The first store through a shared mapping into a folio that is not mapped writable
// faults here. The fault reserves delalloc for holes under the part of the folio below
// EOF, then dirties the whole folio. It is not a buffered write: it never punches, because
// the folio stays locked and uptodate throughout and nothing it reserves can be left
// without dirty data over it.

import IOMapBase
import PageCache

/// Makes a locked, uptodate folio writable through a mapping. The caller holds the
/// invalidate lock shared and not the inode I/O lock. Throws EFAULT (SIGBUS) when the folio
/// was truncated or lies wholly past EOF, and the file system's error (ENOSPC) when it
/// cannot reserve space.
public func iomapPageMkwrite(_ inode: Inode, folio: Folio, ops: any IOMapOperations) throws(Errno) {
    folio.assertLocked("for page_mkwrite")
    let isize = inode.size
    if folio.isRemoved || folio.pos >= isize { throw .badAddress }
    let length = min(folio.size, isize - folio.pos)
    var iter = IOMapIterator(inode: inode, pos: folio.pos, length: length, flags: [.write, .fault])
    while try iter.next(ops) {
        precondition(folio.isUptodate, "page_mkwrite on a folio that is not uptodate: \(folio.debugState)")
        // Dirty the blocks this mapping covers now, so that a reservation failure in a
        // later mapping leaves no dirty block without backing.
        folio.attachBlockState()
        folio.setRangeDirtyBits(offset: iter.pos - folio.pos, length: iter.mappingLength)
        inode.mapping.markDirty(folio)
        try iter.advance(iter.mappingLength)
    }
    // Success: the whole folio is dirty, past-EOF blocks included (iomap_dirty_folio);
    // writeback clears those.
    folio.setAllDirtyBits()
    inode.mapping.markDirty(folio)
    inode.mapping.setWriteMapped(folio)
}
