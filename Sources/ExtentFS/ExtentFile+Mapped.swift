// Counterpart: a shared writable mapping of the file: filemap_fault() in mm/filemap.c for
// loads and xfs_filemap_page_mkwrite() in fs/xfs/xfs_file.c for the first store into a
// folio, with the SIGBUS rule for accesses wholly past EOF.
//
// Stores and loads are bytes copied to and from the cached folio. Whether a store faults
// is tracked per folio: page_mkwrite makes the folio writable, writeback (page_mkclean) and
// a size extension (pagecache_isize_extended) write-protect it again. The kernel tracks this
// per page table entry; a folio-wide flag gives the same answers because page_mkwrite works
// on the whole folio.

import IOMapBase
import IOMap
import PageCache

extension ExtentFile {
    /// Stores `bytes` at `offset` through a shared mapping. Throws EFAULT (the SIGBUS a store
    /// wholly past EOF gets) when any byte lies past the page holding EOF, with nothing
    /// stored; ENOSPC when a fault cannot reserve space (bytes before that folio stay stored).
    public func mappedStore(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(Errno) {
        try forEachMappedFolio(offset: offset, count: bytes.count, write: true) { folio, p, done, n in
            (folio.data + (p - folio.pos)).copyMemory(from: bytes.baseAddress! + done, byteCount: n)
        }
    }

    /// Convenience for `[UInt8]`.
    public func mappedStore(_ bytes: [UInt8], at offset: Int) throws(Errno) {
        try bytes.withUnsafeBytes { p in Result { () throws(Errno) in try mappedStore(p, at: offset) } }.get()
    }

    /// Loads `buffer.count` bytes at `offset` through a shared mapping; bytes of the EOF page
    /// past EOF read as the folio holds them. Throws EFAULT when any byte lies past the page
    /// holding EOF.
    public func mappedLoad(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(Errno) {
        try forEachMappedFolio(offset: offset, count: buffer.count, write: false) { folio, p, done, n in
            (buffer.baseAddress! + done).copyMemory(from: folio.data + (p - folio.pos), byteCount: n)
        }
    }

    /// Walks `[offset, offset + count)` folio by folio as a sequence of page faults would:
    /// each folio is faulted in under the invalidate lock held shared, made writable through
    /// page_mkwrite when `write` and it is not, and handed to `access` locked with the file
    /// offset, the bytes already done and the bytes to do in it.
    func forEachMappedFolio(
        offset: Int, count: Int, write: Bool, _ access: (Folio, Int, Int, Int) -> Void
    ) throws(Errno) {
        if offset < 0 || offset.addingReportingOverflow(count).overflow { throw .invalidArgument }
        var done = 0
        while done < count {
            let p = offset + done
            let lock = inode.mapping.invalidateLock
            lock.lockShared()
            defer { lock.unlockShared() }
            if offset + count > roundUp(inode.size, pageSize) { throw .badAddress }
            let folio = try faultFolio(at: p)
            defer { folio.unlock() }
            if write && !folio.isWriteMapped {
                try iomapPageMkwrite(inode, folio: folio, ops: self)
            }
            let n = min(count - done, folio.end - p)
            access(folio, p, done, n)
            done += n
        }
    }

    /// Convenience: loads `count` bytes at `offset`.
    public func mappedLoad(count: Int, at offset: Int) throws(Errno) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { p in Result { () throws(Errno) in try mappedLoad(into: p, at: offset) } }.get()
        return out
    }

    /// The folio holding `offset`, locked and wholly uptodate (filemap_fault). The caller
    /// holds the invalidate lock shared.
    func faultFolio(at offset: Int) throws(Errno) -> Folio {
        try filemapReadFolio(inode, inode.mapping.getFolio(offset, length: pageSize), ops: self)
    }
}
