// Counterpart: the data path's transactions in XFS: xfs_bmapi_convert_delalloc and
// xfs_alloc_file_space (allocate unwritten), xfs_iomap_write_unwritten (convert),
// xfs_setfilesize (the size at I/O completion), xfs_itruncate_extents with its extent-free
// intents (unmap), xfs_setattr_size (truncate), and xfs_file_fsync's log force.
//
// ExtentFS tells the journal of each change through ExtentJournal; each becomes a
// transaction of the volume. A file's id in ExtentFS is its inode number.

import ExtentFS
import IOMap
import IOMapBase

extension ExtentFile {
    /// The volume inode this file is.
    var inodeNumber: InodeNumber { InodeNumber(UInt64(inode.id)) }
}

extension Journal: ExtentJournal {
    public func mappedUnwritten(_ file: ExtentFile, fileBlock: Int, pieces: [BlockExtent]) {
        let ino = file.inodeNumber
        var block = Int64(fileBlock)
        var records: [LogRecord] = []
        for p in pieces {
            records.append(
                .allocateUnwritten(ino, DiskExtent(fileBlock: block, diskBlock: Int64(p.start), count: Int64(p.count), unwritten: true)))
            block += Int64(p.count)
        }
        open.withLock { Self.append(records, to: &$0) }
    }

    public func convertedToWritten(_ file: ExtentFile, fromBlock: Int, toBlock: Int) {
        let ino = file.inodeNumber
        open.withLock { o in
            // Only what the state maps unwritten: a conversion racing a punch may name blocks
            // that are gone already.
            guard Self.hasUnwritten(o.state[ino]?.extents ?? [], from: Int64(fromBlock), to: Int64(toBlock)) else { return }
            Self.append([.convertToWritten(ino, fromBlock: Int64(fromBlock), toBlock: Int64(toBlock))], to: &o)
        }
    }

    static func hasUnwritten(_ extents: [DiskExtent], from: Int64, to: Int64) -> Bool {
        extents.contains { $0.unwritten && $0.fileEnd > from && $0.fileBlock < to }
    }

    public func dataWritten(_ file: ExtentFile, upTo end: Int) {
        let ino = file.inodeNumber
        open.withLock { o in
            // The live size is read under the lock, so that a truncate that logged a smaller
            // size first is never undone by a completion computed before it.
            let size = Int64(min(end, file.inode.size))
            guard let recorded = o.state[ino]?.attributes.size, size > recorded else { return }
            Self.logSize(file, size, to: &o)
        }
    }

    public func unmapped(_ file: ExtentFile, records: [ExtentRecord]) {
        let ino = file.inodeNumber
        let freedNow = open.withLock { o -> [BlockExtent] in
            var freed: [BlockExtent] = []
            for r in records {
                let id = o.state.nextIntent
                Self.append([.unmapAndIntendFree(ino, fromBlock: Int64(r.startBlock), toBlock: Int64(r.endBlock), intent: id)], to: &o)
                let extents = (o.state.intents[id]?.extents ?? []).map { BlockExtent(start: Int($0.diskBlock), count: Int($0.count)) }
                if bugs.contains(.reuseBeforeCommit) {
                    freed += extents
                    Self.append([.freeDone(intent: id)], to: &o)
                } else {
                    o.busy.append((id, extents))
                }
            }
            return freed
        }
        for e in freedNow { space.free(e) }
    }

    public func sizeSet(_ file: ExtentFile, to size: Int) {
        open.withLock { Self.logSize(file, Int64(size), to: &$0) }
    }

    /// Logs `file`'s size as `size`, the one way every size change is logged. A raise past
    /// the recorded size exposes the rest of the block the recorded size ends in: the engine
    /// zeroed that tail in the page cache, but the disk may still hold older bytes there (a
    /// truncate's zeroing never written back, then lost in a crash). The block is noted for
    /// the force that commits the raise, which writes it back before its flush (rule 1), as
    /// xfs_setattr_size writes back from the on-disk size before it logs a new one; we do it
    /// for every raise, an I/O completion's too (docs/DIFFERENCES-FROM-LINUX.md). The crash
    /// soak found both: a truncate up, and a punch past the end whose writeback raised the
    /// size, each with another file's fsync and a crash, showed the old bytes.
    static func logSize(_ file: ExtentFile, _ size: Int64, to o: inout Open) {
        let ino = file.inodeNumber
        guard let recorded = o.state[ino]?.attributes.size, recorded != size else { return }
        let bs = Int64(file.geometry.blockSize)
        if size > recorded && recorded % bs != 0 {
            let start = Int(recorded / bs * bs)
            o.exposedTails.append(ExposedTail(file: file, range: ByteRange(start, start + Int(bs))))
        }
        append([.setSize(ino, size)], to: &o)
    }

    public var blocksHeld: Int {
        let busy = open.withLock { o in o.busy.reduce(0) { $0 + $1.extents.reduce(0) { $0 + $1.count } } }
        let snapshot = log.withLock { l in l.snapshotBlocks.reduce(0) { $0 + $1.count } }
        return store.metadataBlocks + snapshot + busy
    }

    public func commit(_ file: ExtentFile, wroteData: Bool) throws(Errno) {
        try commit(file.inodeNumber, wroteData: wroteData, dataOnly: false)
    }

    /// Makes `inode`'s logged changes durable (all of them, or with `dataOnly` those
    /// fdatasync needs) and, when its writeback wrote data, that data: the one force of
    /// fsync, fdatasync, msync and a directory's fsync, which `.fsyncSkipsForce` skips.
    public func commit(_ inode: InodeNumber, wroteData: Bool, dataOnly: Bool) throws(Errno) {
        if bugs.contains(.fsyncSkipsForce) { return }
        let ticket = wroteData ? flushTicket() : nil
        try force(upTo: sequence(of: inode, dataOnly: dataOnly), dataTicket: ticket)
    }
}
