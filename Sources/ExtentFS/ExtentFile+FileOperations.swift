// Counterpart: the system-call entry points of fs/xfs/xfs_file.c (xfs_file_buffered_write,
// xfs_file_write_checks, xfs_file_read_iter, xfs_file_fsync, xfs_file_llseek,
// xfs_file_fallocate), xfs_setattr_size() in fs/xfs/xfs_iops.c, and
// xfs_free_file_space() / xfs_alloc_file_space() in fs/xfs/xfs_bmap_util.c, with the VFS
// checks in front of them (rw_verify_area, generic_write_checks, vfs_fallocate).
//
// Bad input is rejected before anything changes, with the errno the kernel gives:
// EINVAL for negative offsets or lengths and for ranges that overflow, EFBIG for offsets
// at or past the maximum file size, ENXIO for seeks outside the file.

import IOMapBase
import IOMap
import PageCache

extension ExtentFile {
    // MARK: write and read

    /// pwrite: writes `bytes` at `offset`. Bytes at or after `faultOffset` in `bytes` are
    /// unreadable, as if that part of the user buffer were unmapped. Returns the bytes
    /// written, which may be fewer than asked; throws only when none were. `protection` lets
    /// another thread make the buffer unreadable while the write runs. `lender`: the receive
    /// block `bytes` lie in, which a new folio of its size may take instead of a copy.
    @discardableResult
    public func write(
        _ bytes: UnsafeRawBufferPointer, at offset: Int, faultOffset: Int? = nil, protection: SourceProtection? = nil,
        lender: ReceiveBlock? = nil
    ) throws(Errno) -> Int {
        if offset < 0 { throw .invalidArgument }
        if offset.addingReportingOverflow(bytes.count).overflow { throw .invalidArgument }
        if bytes.isEmpty { return 0 }
        if offset >= maxFileSize { throw .fileTooLarge }
        // generic_write_check_limits: a write straddling the limit is cut short at it.
        let count = min(bytes.count, maxFileSize - offset)
        var source = UserSource(
            UnsafeRawBufferPointer(rebasing: bytes[0..<count]), faultOffset: faultOffset, protection: protection, lender: lender)
        inode.lockIOExclusive()
        defer { inode.unlockIOExclusive() }
        if offset + count > inode.size { pagecacheCleanPastEOF(inode, oldSize: inode.size) }
        try writeZeroEOF(upTo: offset)
        return try iomapFileBufferedWrite(inode, pos: offset, source: &source, ops: self)
    }

    /// Convenience for `[UInt8]`.
    @discardableResult
    public func write(
        _ bytes: [UInt8], at offset: Int, faultOffset: Int? = nil, protection: SourceProtection? = nil
    ) throws(Errno) -> Int {
        try bytes.withUnsafeBytes { p in
            Result { () throws(Errno) -> Int in try write(p, at: offset, faultOffset: faultOffset, protection: protection) }
        }.get()
    }

    /// Zeroes the gap between EOF and a write starting past it (xfs_file_write_zero_eof),
    /// under the invalidate lock.
    func writeZeroEOF(upTo offset: Int) throws(Errno) {
        let isize = inode.size
        guard offset > isize else { return }
        let lock = inode.mapping.invalidateLock
        lock.lockExclusive()
        defer { lock.unlockExclusive() }
        try iomapZeroRange(inode, pos: isize, length: offset - isize, ops: self)
    }

    /// pread: reads up to `buffer.count` bytes at `offset`, stopping at EOF.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(Errno) -> Int {
        if offset < 0 { throw .invalidArgument }
        if offset.addingReportingOverflow(buffer.count).overflow { throw .invalidArgument }
        if buffer.isEmpty { return 0 }
        inode.lockIOShared()
        defer { inode.unlockIOShared() }
        return try iomapBufferedRead(inode, pos: offset, into: buffer, ops: self)
    }

    /// Convenience: reads `count` bytes at `offset` into a new array (shorter at EOF).
    public func read(count: Int, at offset: Int) throws(Errno) -> [UInt8] {
        if count < 0 { throw .invalidArgument }
        var out = [UInt8](repeating: 0, count: count)
        let n = try out.withUnsafeMutableBytes { p in
            Result { () throws(Errno) -> Int in try read(into: p, at: offset) }
        }.get()
        out.removeLast(count - n)
        return out
    }

    /// copy_file_range within this file, as the kernel does it without reflink (the checks of
    /// generic_copy_file_checks, then a splice through the page cache: a read and a buffered
    /// write). The length is clipped at EOF; a source at or past EOF copies nothing;
    /// overlapping source and destination ranges are EINVAL. Returns the bytes copied.
    @discardableResult
    public func copyFileRange(from source: Int, length: Int, to destination: Int) throws(Errno) -> Int {
        if source < 0 || destination < 0 || length < 0 { throw .invalidArgument }
        if source.addingReportingOverflow(length).overflow || destination.addingReportingOverflow(length).overflow {
            throw .invalidArgument
        }
        let size = inode.size
        let count = source >= size ? 0 : min(length, size - source)
        if destination + count > source && destination < source + count { throw .invalidArgument }
        if count == 0 { return 0 }
        if destination + count > maxFileSize { throw .fileTooLarge }
        let bytes = try read(count: count, at: source)
        if bytes.isEmpty { return 0 }
        return try write(bytes, at: destination)
    }

    // MARK: size changes

    /// ftruncate: sets the file size (xfs_setattr_size). Growing zeroes from the old EOF;
    /// shrinking zeroes the partial block at the new EOF, drops the cache past it and frees
    /// the blocks past it.
    public func truncate(to newSize: Int) throws(Errno) {
        if newSize < 0 { throw .invalidArgument }
        if newSize > maxFileSize { throw .fileTooLarge }
        try withSpaceChangeLocks { () throws(Errno) in try setSizeLocked(newSize) }
    }

    /// The body of a size change; the caller holds the I/O and invalidate locks exclusive.
    func setSizeLocked(_ newSize: Int) throws(Errno) {
        let oldSize = inode.size
        if newSize > oldSize {
            pagecacheCleanPastEOF(inode, oldSize: oldSize)
            try iomapZeroRange(inode, pos: oldSize, length: newSize - oldSize, ops: self)
            inode.setSize(newSize)
            fs.config.journal?.sizeSet(self, to: newSize)
            pagecacheIsizeExtended(inode, from: oldSize, to: newSize)
        } else if newSize < oldSize {
            if !fs.config.canarySkipEOFZeroing { try iomapTruncatePage(inode, pos: newSize, ops: self) }
            inode.setSize(newSize)
            fs.config.journal?.sizeSet(self, to: newSize)
            inode.mapping.truncatePages(ByteRange(newSize, maxFileSize))
            freeBlocks(fromBlock: geometry.blocksCovering(newSize), toBlock: geometry.blocksCovering(maxFileSize))
        }
    }

    /// Removes every extent in file blocks `[from, to)`, returning their space
    /// (xfs_itruncate_extents / xfs_unmap_extent).
    func freeBlocks(fromBlock from: Int, toBlock to: Int) {
        guard from < to else { return }
        returnSpace(of: extents.withLock { $0.remove(from: from, to: to) })
    }

    // MARK: fallocate

    /// The checks vfs_fallocate makes before any mode runs.
    func checkFallocateRange(offset: Int, length: Int) throws(Errno) {
        if offset < 0 || length <= 0 { throw .invalidArgument }
        let (end, overflow) = offset.addingReportingOverflow(length)
        if overflow || end > maxFileSize { throw .fileTooLarge }
    }

    /// fallocate(PUNCH_HOLE | KEEP_SIZE) (xfs_free_file_space): writes back and drops the
    /// page cache over the page-rounded range, unmaps the whole blocks inside it, and zeroes
    /// the partial blocks at its edges below EOF.
    public func punchHole(offset: Int, length: Int) throws(Errno) {
        try checkFallocateRange(offset: offset, length: length)
        try withSpaceChangeLocks { () throws(Errno) in try freeFileSpaceLocked(offset: offset, length: length) }
    }

    func freeFileSpaceLocked(offset: Int, length: Int) throws(Errno) {
        let g = geometry
        try flushUnmapRange(ByteRange(start: offset, length: length))
        let startBlock = g.blocksCovering(offset)
        let endBlock = g.blockIndex(of: offset + length)
        if endBlock > startBlock { freeBlocks(fromBlock: startBlock, toBlock: endBlock) }
        let isize = inode.size
        if offset >= isize { return }
        try iomapZeroRange(inode, pos: offset, length: min(length, isize - offset), ops: self)
    }

    /// xfs_flush_unmap_range: write back, then truncate the page cache over `range` rounded
    /// out to pages.
    func flushUnmapRange(_ range: ByteRange) throws(Errno) {
        let rounding = max(geometry.blockSize, pageSize)
        let start = roundDown(range.start, rounding)
        let end = min(roundUp(range.end, rounding), maxFileSize)
        let result = iomapWritepages(inode, range: ByteRange(start, end), ops: self)
        if let error = result.error { throw error }
        inode.mapping.truncatePages(ByteRange(start, end))
    }

    /// fallocate(ZERO_RANGE [| KEEP_SIZE]) (xfs_falloc_zero_range): frees the range, then
    /// allocates unwritten blocks over it; grows the file unless `keepSize`.
    public func zeroRange(offset: Int, length: Int, keepSize: Bool) throws(Errno) {
        try checkFallocateRange(offset: offset, length: length)
        try withSpaceChangeLocks { () throws(Errno) in
            try freeFileSpaceLocked(offset: offset, length: length)
            try allocateLocked(offset: offset, length: length, keepSize: keepSize)
        }
    }

    /// fallocate(0 | KEEP_SIZE) (xfs_alloc_file_space): allocates unwritten blocks over the
    /// holes of the range; grows the file unless `keepSize`. All or nothing: ENOSPC changes
    /// nothing.
    public func allocate(offset: Int, length: Int, keepSize: Bool) throws(Errno) {
        try checkFallocateRange(offset: offset, length: length)
        try withSpaceChangeLocks { () throws(Errno) in try allocateLocked(offset: offset, length: length, keepSize: keepSize) }
    }

    func allocateLocked(offset: Int, length: Int, keepSize: Bool) throws(Errno) {
        let g = geometry
        try allocateUnwritten(fromBlock: g.blockIndex(of: offset), toBlock: g.blocksCovering(offset + length))
        if !keepSize && offset + length > inode.size { try setSizeLocked(offset + length) }
    }

    /// Runs `body` with the inode I/O lock and the invalidate lock held exclusive, as
    /// truncate and every fallocate mode hold them.
    func withSpaceChangeLocks(_ body: () throws(Errno) -> Void) throws(Errno) {
        inode.lockIOExclusive()
        defer { inode.unlockIOExclusive() }
        let lock = inode.mapping.invalidateLock
        lock.lockExclusive()
        defer { lock.unlockExclusive() }
        try body()
    }

    /// Allocates unwritten extents over the holes in `[from, to)`; delalloc and allocated
    /// blocks are left as they are.
    func allocateUnwritten(fromBlock from: Int, toBlock to: Int) throws(Errno) {
        try extents.withLock { (map: inout ExtentMap) throws(Errno) in
            var holes: [(Int, Int)] = []
            var b = from
            for r in map.records(from: from, to: to) {
                if r.startBlock > b { holes.append((b, r.startBlock)) }
                b = r.endBlock
            }
            if b < to { holes.append((b, to)) }
            let needed = holes.reduce(0) { $0 + $1.1 - $1.0 }
            if needed > fs.space.availableBlocks { throw .noSpace }
            for (s, e) in holes {
                var fileBlock = s
                let pieces = try fs.space.allocate(e - s, near: nil, fromReservation: false)
                for piece in pieces {
                    map.insert(ExtentRecord(startBlock: fileBlock, blockCount: piece.count, state: .unwritten, diskBlock: piece.start))
                    fileBlock += piece.count
                }
                fs.config.journal?.mappedUnwritten(self, fileBlock: s, pieces: pieces)
            }
        }
    }

    // MARK: sync and seek

    /// fsync through the file's default handle: writes back every dirty folio, flushes the
    /// device and reports a writeback error once to this handle.
    public func fsync() throws(Errno) {
        try fsync(cursor: fsyncCursor)
    }

    /// Opens another handle on the file; each handle is told of a writeback error once.
    public func open() -> ExtentFileHandle { ExtentFileHandle(file: self) }

    /// fsync of `range` (vfs_fsync_range): writes back the dirty folios overlapping it, then
    /// commits as fsync does, and reports a writeback error once to `cursor`'s handle.
    func fsync(cursor: OrderedMutex<Int>, range: ByteRange = ByteRange(0, maxFileSize)) throws(Errno) {
        inode.lockIOExclusive()
        defer { inode.unlockIOExclusive() }
        let written = iomapWritepages(inode, range: range, ops: self)
        if let journal = fs.config.journal {
            try journal.commit(self, wroteData: written.bytesWritten > 0)
        } else {
            try fs.device.flush()
        }
        var seen = cursor.withLock { $0 }
        let error = inode.mapping.checkAndAdvanceError(&seen)
        cursor.withLock { $0 = seen }
        if let error { throw error }
    }

    /// Writes back the dirty folios overlapping `range`, as the flusher or sync_file_range
    /// would; errors are latched for fsync.
    @discardableResult
    public func writeback(_ range: ByteRange = ByteRange(0, maxFileSize)) -> WritebackResult {
        iomapWritepages(inode, range: range, ops: self)
    }

    /// lseek(SEEK_DATA).
    public func seekData(from offset: Int) throws(Errno) -> Int {
        // No I/O lock, as xfs_file_llseek takes none: each mapping is looked up under the
        // extent-map lock, and the page cache is searched under its own locks.
        try iomapSeekData(inode, pos: offset, ops: self)
    }

    /// lseek(SEEK_HOLE).
    public func seekHole(from offset: Int) throws(Errno) -> Int {
        // No I/O lock (see seekData).
        try iomapSeekHole(inode, pos: offset, ops: self)
    }

    // MARK: cache control

    /// Evicts clean folios until the file's cache holds at most `targetBytes`.
    @discardableResult
    public func reclaim(targetBytes: Int = 0) -> Int { inode.mapping.reclaim(targetBytes: targetBytes) }

    /// Evicts every clean folio (echo 1 > drop_caches for this file).
    @discardableResult
    public func dropCaches() -> Int { inode.mapping.dropCaches() }
}

/// An open file (struct file): what it adds to the file is its own record of which
/// writeback errors it has been told of (f_wb_err), so that every handle's fsync reports an
/// error that happened since it opened exactly once.
public final class ExtentFileHandle: Sendable {
    public let file: ExtentFile
    let cursor: OrderedMutex<Int>

    init(file: ExtentFile) {
        self.file = file
        self.cursor = OrderedMutex(.leaf, "fsync cursor", file.mapping.errorSequence)
    }

    /// fsync through this handle.
    public func fsync() throws(Errno) { try file.fsync(cursor: cursor) }

    /// fsync of the bytes in `range` alone through this handle (vfs_fsync_range, which
    /// msync(MS_SYNC) calls): only that range is written back; the commit is fsync's.
    public func fsync(range: ByteRange) throws(Errno) { try file.fsync(cursor: cursor, range: range) }
}
