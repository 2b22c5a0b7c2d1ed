// Counterpart: fs/fuse/file.c as the daemon answers it: fuse_open/fuse_create_open (with
// FOPEN_DIRECT_IO and FOPEN_KEEP_CACHE), fuse_direct_io and fuse_send_write (READ and
// WRITE, the page-cache writeback's WRITEs with FUSE_WRITE_CACHE among them), fuse_release,
// fuse_flush, fuse_fsync, fuse_file_fallocate, fuse_lseek; fs/fuse/readdir.c's
// fuse_readdir_uncached for READDIR and READDIRPLUS.
//
// Data goes straight between the request buffer and the engine's page cache: a WRITE's
// payload is the engine's write source, a READ fills the reply buffer in place. An open
// answers FOPEN_DIRECT_IO (the engine is the cache for read(2) and write(2)) and
// FOPEN_KEEP_CACHE (an open must not throw away the pages other processes' shared mappings
// hold), docs/FUSE.md "Caching".

import CFUSE
import IOMapBase
import PageCache
import Synchronization
import Volume

#if canImport(Glibc)
    import Glibc
#endif

extension FUSEServer {
    /// The open flags every regular file is answered with.
    var fileOpenFlags: UInt32 {
        switch options.cache {
        case .direct: return OpenReplyFlags.directIO | OpenReplyFlags.keepCache
        case .writeback: return OpenReplyFlags.keepCache
        }
    }

    /// OPEN: a FileHandle for the sender; O_TRUNC truncates here (FUSE_ATOMIC_O_TRUNC).
    func open(_ ino: InodeNumber, _ flags: UInt32, _ c: Caller, _ reply: ReplyBuffer) throws(Errno) {
        let handle = try volume.open(ino, caller: c)
        if Int32(bitPattern: flags) & O_TRUNC != 0 {
            do throws(Errno) { try handle.truncate(to: 0) } catch {
                try? handle.close()
                throw error
            }
        }
        kernelCached.opened(ino)
        let fh = handles.insert(.file(OpenFile(inode: ino, caller: c, handle: handle)))
        reply.append(Encode.open(fh: fh, flags: fileOpenFlags))
    }

    /// RELEASE: the open's FileHandles closed; with the inode's last open, what the kernel's
    /// page cache held of it is known written back.
    func release(_ fh: UInt64) {
        guard case .file(let f)? = handles.remove(fh) else { return }
        f.close()
        kernelCached.released(f.inode)
        if !kernelCached.isTracked(f.inode) { merge.released(f.inode) }
    }

    /// CREATE: the name made (or found, without O_EXCL) and opened in one request; the reply
    /// is the entry, then the open.
    func create(_ dir: InodeNumber, _ name: [UInt8], _ flags: UInt32, _ mode: UInt32, _ c: Caller, _ reply: ReplyBuffer) throws(Errno) {
        let f = Int32(bitPattern: flags)
        let made = try volume.create(
            in: dir, name: name, permissions: UInt16(mode & 0o7777), exclusive: f & O_EXCL != 0, caller: c)
        let st = try volume.stat(made.inode)
        // The kernel creates only where it saw no entry; a symlink found there in between is
        // not followed here.
        if !made.created && st.attributes.type == .symlink { throw .fileExists }
        let handle = try volume.open(made.inode, caller: c)
        if !made.created && f & O_TRUNC != 0 {
            do throws(Errno) { try handle.truncate(to: 0) } catch {
                try? handle.close()
                throw error
            }
        }
        kernelCached.opened(made.inode)
        let fh = handles.insert(.file(OpenFile(inode: made.inode, caller: c, handle: handle)))
        try entry(made.inode, reply)
        reply.append(Encode.open(fh: fh, flags: fileOpenFlags))
    }

    /// READ. One without a lock owner fills the kernel's page cache (a fault or readahead of a
    /// mapping, or the writeback cache): its range is remembered for SEEK_DATA.
    func read(_ fh: UInt64, _ offset: UInt64, _ size: UInt32, _ flags: UInt32, _ reply: ReplyBuffer) throws(Errno) {
        let f = try handles.file(fh)
        guard let at = Int(exactly: offset), at <= maxFileSize else { throw .invalidArgument }
        let pageCache = flags & ProtocolFlags.readLockOwner == 0
        if pageCache { kernelCached.add(f.inode, at..<at + Int(size)) }
        let buffer = reply.reserve(Int(size))
        let n =
            try pageCache && options.cache == .direct
            ? merge.pageCacheRead(f.inode, at..<at + Int(size)) { () throws(Errno) -> Int in try f.primary.read(into: buffer, at: at) }
            : f.primary.read(into: buffer, at: at)
        reply.commit(n)
        stats.bytesRead.add(n, ordering: .relaxed)
    }

    /// WRITE. A write of dirty page-cache pages (FUSE_WRITE_CACHE: mmap writeback, or the
    /// writeback cache) is the kernel's, not a process's: it clears no set-id bit, as a
    /// store through a mapping does not; it still moves mtime and ctime, which the kernel
    /// leaves to the daemon. Any other write is its sender's.
    func write(
        _ fh: UInt64, _ offset: UInt64, _ data: UnsafeRawBufferPointer, _ flags: UInt32, _ lender: ReceiveBlock?, _ c: Caller,
        _ reply: ReplyBuffer
    ) throws(Errno) {
        let f = try handles.file(fh)
        guard let at = Int(exactly: offset) else { throw .invalidArgument }
        options.recorder?.record(inode: f.inode, offset: offset, flags: flags, payload: data)
        let fromCache = flags & ProtocolFlags.writeCache != 0
        let handle = try f.handle(for: fromCache ? Caller.root() : c, volume: volume)
        let n: Int
        switch (options.cache, fromCache) {
        case (.writeback, _): n = try handle.write(data, at: at, lender: lender)
        case (.direct, true): n = try mergedWriteback(f, handle, at, data, lender)
        case (.direct, false): n = try directWrite(f, handle, at, data, lender)
        }
        var out = fuse_write_out()
        out.size = UInt32(n)
        reply.append(out)
        stats.bytesWritten.add(n, ordering: .relaxed)
    }

    /// A direct write in cache=direct mode: the pages the kernel may hold get their bases
    /// first (WritebackMerge.swift).
    func directWrite(_ f: OpenFile, _ handle: FileHandle, _ at: Int, _ data: UnsafeRawBufferPointer, _ lender: ReceiveBlock?)
        throws(Errno) -> Int
    {
        try merge.directWrite(
            f.inode, at..<at + data.count, cached: kernelCached.ranges(f.inode),
            readPage: { (page: Int) throws(Errno) -> [UInt8] in
                var bytes = [UInt8](repeating: 0, count: merge.pageSize)
                let got = try bytes.withUnsafeMutableBytes { p in
                    Result { () throws(Errno) -> Int in try f.primary.read(into: p, at: page) }
                }
                .get()
                return Array(bytes.prefix(got))
            }
        ) { () throws(Errno) -> Int in try handle.write(data, at: at, lender: lender) }
    }

    /// COPY_FILE_RANGE(_64): the engine reads the source and writes the destination, in
    /// chunks of 1 MiB, as the caller (the write clears set-id bits as theirs would); short at
    /// the source's end. Answering it spares the kernel its fallback (a READ and a WRITE round
    /// trip per chunk) and the ENOSYS that would count against the daemon. Flags must be 0,
    /// as copy_file_range(2) has none yet; the old opcode's reply counts in 32 bits.
    func copyFileRange(
        _ fhIn: UInt64, _ offIn: UInt64, _ fhOut: UInt64, _ offOut: UInt64, _ length: UInt64, _ flags: UInt64, wide: Bool, _ c: Caller,
        _ reply: ReplyBuffer
    ) throws(Errno) {
        guard flags == 0 else { throw .invalidArgument }
        let source = try handles.file(fhIn)
        let target = try handles.file(fhOut)
        guard let from = Int(exactly: offIn), let to = Int(exactly: offOut), from <= maxFileSize, to <= maxFileSize else {
            throw .invalidArgument
        }
        let limit = wide ? Int(min(length, UInt64(maxFileSize))) : Int(min(length, UInt64(UInt32.max & ~0xFFF)))
        let handle = try target.handle(for: c, volume: volume)
        var chunk = [UInt8](repeating: 0, count: min(limit, 1 << 20))
        var done = 0
        while done < limit {
            let want = min(chunk.count, limit - done)
            let got = try chunk.withUnsafeMutableBytes { p in
                Result { () throws(Errno) -> Int in
                    try source.primary.read(into: UnsafeMutableRawBufferPointer(rebasing: p[0..<want]), at: from + done)
                }
            }.get()
            if got == 0 { break }
            let wrote = try chunk.withUnsafeBytes { p in
                Result { () throws(Errno) -> Int in
                    let bytes = UnsafeRawBufferPointer(rebasing: p[0..<got])
                    return options.cache == .direct
                        ? try directWrite(target, handle, to + done, bytes, nil) : try handle.write(bytes, at: to + done)
                }
            }.get()
            done += wrote
            if wrote < got { break }
        }
        stats.bytesWritten.add(done, ordering: .relaxed)
        if wide {
            reply.append(UInt64(done))
        } else {
            var out = fuse_write_out()
            out.size = UInt32(done)
            reply.append(out)
        }
    }

    /// A writeback of the kernel's pages in cache=direct mode, merged three ways
    /// (WritebackMerge.swift): only the bytes a store changed are written. The count is the
    /// whole WRITE's, as every byte of it is now where the kernel asked (or newer there).
    func mergedWriteback(
        _ f: OpenFile, _ handle: FileHandle, _ at: Int, _ data: UnsafeRawBufferPointer, _ lender: ReceiveBlock?
    ) throws(Errno) -> Int {
        let (n, stale) = try merge.bases(f.inode).gate.withLock { (b: inout [Int: [UInt8]]) throws(Errno) -> (Int, Bool) in
            let runs = merge.writebackRuns(&b, offset: at, data)
            for run in runs {
                let wrote = try handle.write(UnsafeRawBufferPointer(rebasing: data[run.bytes]), at: run.at, lender: lender)
                if wrote < run.bytes.count { return (run.bytes.lowerBound + wrote, true) }
            }
            return (data.count, runs.reduce(0) { $0 + $1.bytes.count } < data.count)
        }
        // Bytes left out are stale in the kernel's (now clean) copy: have it dropped, so that a
        // load through the mapping reads the daemon's bytes.
        if stale {
            let pages = merge.pages(at..<at + data.count)
            invalidator.enqueue(f.inode.rawValue, offset: pages.lowerBound * merge.pageSize, length: pages.count * merge.pageSize)
        }
        return n
    }

    /// FSYNC: the volume's fsync or fdatasync, never ENOSYS (the kernel would stop sending
    /// them, and every later fsync would succeed without reaching the volume).
    func fsync(_ fh: UInt64, _ datasync: Bool) throws(Errno) {
        let f = try handles.file(fh)
        stats.engineFsyncs.add(1, ordering: .relaxed)
        if datasync { try f.primary.fdatasync() } else { try f.primary.fsync() }
    }

    /// FALLOCATE: the four modes FUSE forwards (0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE,
    /// ZERO_RANGE[|KEEP_SIZE]); anything else EOPNOTSUPP, as a file system that lacks it.
    func fallocate(_ fh: UInt64, _ offset: UInt64, _ length: UInt64, _ mode: UInt32) throws(Errno) {
        let f = try handles.file(fh)
        guard let off = Int(exactly: offset), let len = Int(exactly: length) else { throw .fileTooLarge }
        let keep = mode & LinuxABI.fallocKeepSize != 0
        switch mode & ~LinuxABI.fallocKeepSize {
        case 0: try f.primary.allocate(offset: off, length: len, keepSize: keep)
        case LinuxABI.fallocPunchHole where keep: try f.primary.punchHole(offset: off, length: len)
        case LinuxABI.fallocZeroRange: try f.primary.zeroRange(offset: off, length: len, keepSize: keep)
        default: throw .notSupported
        }
    }

    /// LSEEK: SEEK_DATA and SEEK_HOLE from the engine (the kernel answers the others), with
    /// the ranges the kernel's page cache may hold counted as data (CachedRanges.swift).
    func lseek(_ fh: UInt64, _ offset: UInt64, _ whence: UInt32, _ reply: ReplyBuffer) throws(Errno) {
        let f = try handles.file(fh)
        guard let at = Int(exactly: offset) else { throw .noSuchAddressOrDevice }
        let h = f.primary
        let cached = kernelCached.ranges(f.inode)
        let found: Int
        switch whence {
        case LinuxABI.seekData where cached.isEmpty: found = try h.seekData(from: at)
        case LinuxABI.seekData:
            let size = h.size
            guard at < size else { throw .noSuchAddressOrDevice }
            var engine: Int?
            do throws(Errno) { engine = try h.seekData(from: at) } catch  where error == .noSuchAddressOrDevice { engine = nil }
            guard let d = KernelCachedRanges.seekData(engine: engine, offset: at, size: size, cached: cached) else {
                throw .noSuchAddressOrDevice
            }
            found = d
        case LinuxABI.seekHole:
            found = try KernelCachedRanges.seekHole(offset: at, size: h.size, cached: cached) { (from: Int) throws(Errno) -> Int in
                try h.seekHole(from: from)
            }
        default: throw .invalidArgument
        }
        var out = fuse_lseek_out()
        out.offset = UInt64(found)
        reply.append(out)
    }
}
