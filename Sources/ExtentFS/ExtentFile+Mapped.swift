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
        if offset < 0 || offset.addingReportingOverflow(bytes.count).overflow { throw .invalidArgument }
        guard !bytes.isEmpty else { return }
        var done = 0
        while done < bytes.count {
            let p = offset + done
            let lock = inode.mapping.invalidateLock
            lock.lockShared()
            defer { lock.unlockShared() }
            if offset + bytes.count > roundUp(inode.size, pageSize) { throw .badAddress }
            let folio = try faultFolio(at: p)
            defer { folio.unlock() }
            if !folio.isWriteMapped {
                try iomapPageMkwrite(inode, folio: folio, ops: self)
            }
            let n = min(bytes.count - done, folio.end - p)
            (folio.data + (p - folio.pos)).copyMemory(from: bytes.baseAddress! + done, byteCount: n)
            done += n
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
        if offset < 0 || offset.addingReportingOverflow(buffer.count).overflow { throw .invalidArgument }
        var done = 0
        while done < buffer.count {
            let p = offset + done
            let lock = inode.mapping.invalidateLock
            lock.lockShared()
            defer { lock.unlockShared() }
            if offset + buffer.count > roundUp(inode.size, pageSize) { throw .badAddress }
            let folio = try faultFolio(at: p)
            defer { folio.unlock() }
            let n = min(buffer.count - done, folio.end - p)
            (buffer.baseAddress! + done).copyMemory(from: folio.data + (p - folio.pos), byteCount: n)
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
        let folio = inode.mapping.getFolio(offset, length: pageSize)
        if folio.isUptodate { return folio }
        do {
            try iomapReadFolio(inode, folio: folio, ops: self)
        } catch {
            folio.unlock()
            throw error
        }
        return folio
    }
}
