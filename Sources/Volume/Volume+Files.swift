// Counterpart: struct file and the file operations XFS gives regular files
// (fs/xfs/xfs_file.c: xfs_file_open, xfs_file_read_iter, xfs_file_write_iter,
// xfs_file_fsync, xfs_file_fallocate, xfs_file_llseek, xfs_file_release), with the VFS's
// file_update_time and file_remove_privs in front of writes.
//
// A FileHandle is an open regular file of a volume. Its data calls are the engine's data
// path on the inode's ExtentFile, unchanged; what the handle adds is what a file system adds
// around it: timestamps, clearing setuid/setgid on a write by an unprivileged caller,
// fsync and fdatasync as log forces, and the last close of an unlinked file freeing it.

import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Synchronization

public final class FileHandle: Sendable {
    public let volume: Volume
    public let inode: InodeNumber
    /// The engine's file: what the harnesses (race, fsx, explore, bench) drive.
    public let file: ExtentFile
    let handle: ExtentFileHandle
    /// Who opened the file: a write or truncate by an unprivileged caller clears setuid and
    /// setgid as Linux's file_remove_privs does (the namespace's planClearSetID).
    let caller: Caller
    let closed = Atomic<Bool>(false)
    /// The clock reading (in ns) this handle last stamped the inode's times with: a write by
    /// a privileged caller in the same tick has nothing to log and skips the metadata lock.
    let lastStamp = Atomic<Int64>(Int64.min)

    init(volume: Volume, inode: InodeNumber, file: ExtentFile, caller: Caller) {
        self.volume = volume
        self.inode = inode
        self.file = file
        self.handle = file.open()
        self.caller = caller
    }

    deinit { if !closed.load(ordering: .relaxed) { volume.release(inode) } }

    // MARK: Data

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(Errno) -> Int {
        try file.read(into: buffer, at: offset)
    }

    public func read(count: Int, at offset: Int) throws(Errno) -> [UInt8] { try file.read(count: count, at: offset) }

    /// pwrite: the engine's buffered write, then the timestamps and the setuid/setgid bits.
    /// `lender`: the receive block `bytes` lie in (ReceiveBlock.swift), or nil.
    @discardableResult
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int, lender: ReceiveBlock? = nil) throws(Errno) -> Int {
        let n = try file.write(bytes, at: offset, lender: lender)
        stamp(clearingSetID: true)
        return n
    }

    @discardableResult
    public func write(_ bytes: [UInt8], at offset: Int) throws(Errno) -> Int {
        try bytes.withUnsafeBytes { p in Result { () throws(Errno) -> Int in try write(p, at: offset) } }.get()
    }

    /// pwrite from a user buffer that is unreadable from byte `faultOffset` on (the pages
    /// after it unmapped): a short count, or EFAULT when not a byte could be copied, as Linux
    /// gives; the failed part's reservation is cleaned up as the engine's failure path does
    /// (the seed's iomap_write_delalloc_release). The times change when anything was written.
    @discardableResult
    public func write(_ bytes: [UInt8], at offset: Int, faultOffset: Int) throws(Errno) -> Int {
        let n = try file.write(bytes, at: offset, faultOffset: faultOffset)
        stamp(clearingSetID: true)
        return n
    }

    /// ftruncate.
    public func truncate(to size: Int) throws(Errno) {
        try file.truncate(to: size)
        stamp(clearingSetID: true)
    }

    // fallocate in every mode changes the file as a write does, so it clears set-user-id
    // (and group-executable set-group-id) for an unprivileged caller as a write does: XFS's
    // and tmpfs's fallocate call file_modified, which removes those bits.

    /// fallocate(0 or KEEP_SIZE).
    public func allocate(offset: Int, length: Int, keepSize: Bool = false) throws(Errno) {
        try file.allocate(offset: offset, length: length, keepSize: keepSize)
        stamp(clearingSetID: true)
    }

    /// fallocate(PUNCH_HOLE | KEEP_SIZE).
    public func punchHole(offset: Int, length: Int) throws(Errno) {
        try file.punchHole(offset: offset, length: length)
        stamp(clearingSetID: true)
    }

    /// fallocate(ZERO_RANGE [| KEEP_SIZE]).
    public func zeroRange(offset: Int, length: Int, keepSize: Bool = false) throws(Errno) {
        try file.zeroRange(offset: offset, length: length, keepSize: keepSize)
        stamp(clearingSetID: true)
    }

    public func seekData(from offset: Int) throws(Errno) -> Int { try file.seekData(from: offset) }
    public func seekHole(from offset: Int) throws(Errno) -> Int { try file.seekHole(from: offset) }

    /// A store through a shared writable mapping (page_mkwrite updates the times as a write does).
    public func mappedStore(_ bytes: [UInt8], at offset: Int) throws(Errno) {
        try file.mappedStore(bytes, at: offset)
        stamp(clearingSetID: false)
    }

    public func mappedLoad(count: Int, at offset: Int) throws(Errno) -> [UInt8] { try file.mappedLoad(count: count, at: offset) }

    /// The live size (i_size).
    public var size: Int { file.size }

    /// The times (and set-id bits) after a change of data, through the volume; skipped when
    /// this handle stamped the inode in the same clock tick and nothing is to clear.
    @inline(__always)
    func stamp(clearingSetID: Bool) {
        let now = volume.now
        let ns = now.seconds &* 1_000_000_000 &+ Int64(now.nanoseconds)
        if (!clearingSetID || caller.privileged) && lastStamp.load(ordering: .relaxed) == ns { return }
        volume.modified(inode, now: now, clearingSetIDFor: clearingSetID ? caller : nil)
        lastStamp.store(ns, ordering: .relaxed)
    }

    // MARK: Durability

    /// fsync: writes back this file's dirty data (only this file's: ordering rule 4), then
    /// forces the log to the inode's last change, with the flushes the rules ask for.
    public func fsync() throws(Errno) {
        if volume.options.bugs.contains(.fsyncWritesEverything) { for f in volume.filesInMemory where f !== file { f.writeback() } }
        try handle.fsync()
    }

    /// fdatasync: as fsync, but a change of timestamps alone is not forced.
    public func fdatasync() throws(Errno) {
        let result = file.writeback()
        try volume.journal.commit(inode, wroteData: result.bytesWritten > 0, dataOnly: true)
        if let error = result.error { throw error }
    }

    /// msync(MS_SYNC) of `[offset, offset + length)` of a shared writable mapping of this
    /// file: the dirty pages of that range (mapped stores or writes) are written back, then
    /// the log is forced as fsync forces it, and a writeback error is reported once to this
    /// handle, as fsync reports one. Linux's msync calls vfs_fsync_range on the range, and
    /// that is what a program that stores through a mapping relies on for durability; it
    /// passes datasync, which XFS's fsync honours by skipping a change of timestamps alone:
    /// we force the inode's timestamps too, a stronger promise, so that a mapped store's
    /// times (logged as a write's) are durable with its bytes. As msync checks its address:
    /// EINVAL for an offset that is not a multiple of the page size or a negative length;
    /// ENOMEM for a range that wraps; the length is rounded up to whole pages, and a length
    /// of 0 does nothing. The mapping is taken to cover the range (msync's ENOMEM for
    /// unmapped addresses has no counterpart: a handle maps the whole file), and a range past
    /// the largest file writes nothing back there but still forces.
    public func msync(offset: Int, length: Int) throws(Errno) {
        if offset < 0 || length < 0 || offset % pageSize != 0 { throw .invalidArgument }
        let pages = roundUp(length, pageSize)
        let (end, overflow) = offset.addingReportingOverflow(pages)
        if pages < length || overflow { throw .noMemory }
        guard end > offset else { return }
        try handle.fsync(range: ByteRange(min(offset, maxFileSize), min(end, maxFileSize)))
    }

    /// close(2). Closing twice is EBADF.
    public func close() throws(Errno) {
        if closed.exchange(true, ordering: .acquiringAndReleasing) { throw .badFileDescriptor }
        volume.release(inode)
    }
}

extension Volume {
    /// Opens regular inode `ino` for `caller`, whose writes clear setuid/setgid unless it is
    /// privileged.
    public func open(_ ino: InodeNumber, caller: Caller = .root()) throws(Errno) -> FileHandle {
        try namespace.withShared { () throws(Errno) -> FileHandle in
            guard let type = journal.read({ $0[ino]?.attributes.type }) else { throw .noSuchFileOrDirectory }
            if type == .directory { throw .isDirectory }
            guard type == .regular else { throw .noSuchAddressOrDevice }
            return FileHandle(volume: self, inode: ino, file: try file(ino, opening: true), caller: caller)
        }
    }

    /// A handle went away: on the last one of an inode that lost its last name, the inode
    /// is freed (its orphan record goes with it).
    func release(_ ino: InodeNumber) {
        let last = inodes.withLock { t -> Bool in
            guard var e = t[ino] else { return false }
            e.opens -= 1
            t[ino] = e
            return e.opens == 0
        }
        guard last, journal.read({ $0.orphans.contains(ino) }) else { return }
        namespace.withExclusive { try? freeUnreferenced(ino) }
    }

    /// After a change to a file's data: mtime and ctime to now if the clock moved (most
    /// writes within one coarse tick log nothing), and, for a write or truncate by
    /// `clearingSetIDFor`, setuid and setgid cleared as planClearSetID says.
    func modified(_ ino: InodeNumber, now: Timestamp, clearingSetIDFor caller: Caller?) {
        try? journal.transact(timestampsOnly: caller?.privileged ?? true) {
            (s: borrowing MetadataState) throws(Errno) -> ([LogRecord], Void) in
            guard var a = s[ino]?.attributes else { return ([], ()) }
            let old = a
            if let caller, case .setAttributes(_, let cleared)? = try? s.planClearSetID(ino, caller: caller).records.first {
                a = cleared
            }
            if a.mtime != now || a.ctime != now {
                a.mtime = now
                a.ctime = now
            }
            return (a == old ? [] : [.setAttributes(ino, a)], ())
        }
    }
}
