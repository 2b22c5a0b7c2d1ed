// Counterpart: xfs_buffered_write_iomap_begin(), xfs_buffered_write_iomap_end(),
// xfs_read_iomap_begin(), xfs_seek_iomap_begin(), xfs_iomap_valid() and
// xfs_buffered_write_delalloc_punch() in fs/xfs/xfs_iomap.c, and
// xfs_bmap_punch_delalloc_range() in fs/xfs/xfs_bmap_util.c.

import IOMapBase
import IOMap
import PageCache
import Synchronization

extension ExtentFile: IOMapOperations {
    /// The largest hole a single write mapping reserves, in bytes (XFS caps it at 1024 pages
    /// to keep a mapping's work comparable to writeback's).
    public static let maxReservationBytes = 1024 * pageSize

    public func iomapBegin(_ inode: Inode, pos: Int, length: Int, flags: IterFlags) throws(Errno) -> (IOMapping, IOMapping?) {
        let g = geometry
        let offsetBlock = g.blockIndex(of: pos)
        var endBlock = min(g.blocksCovering(pos + length), g.blocksCovering(maxFileSize))
        let reserving = flags.contains(.write) && !flags.contains(.zero) && !flags.contains(.unshare)
        return try extents.withLock { (map: inout ExtentMap) throws(Errno) -> (IOMapping, IOMapping?) in
            var cursor = extentCursor.load(ordering: .relaxed)
            let found = map.next(atOrAfter: offsetBlock, cursor: &cursor)
            extentCursor.store(cursor, ordering: .relaxed)
            if let r = found, r.startBlock <= offsetBlock {
                return (mappingFor(r, sequence: map.sequence), nil)
            }
            // A hole from offsetBlock to the next record (or the end of the request).
            let holeEnd = found?.startBlock ?? Int.max
            if !reserving {
                let end = min(holeEnd, max(endBlock, offsetBlock + 1))
                return (holeMapping(from: offsetBlock, to: end, sequence: map.sequence), nil)
            }
            endBlock = min(endBlock, g.blocksCovering(pos + min(length, Self.maxReservationBytes)), holeEnd)
            let count = endBlock - offsetBlock
            if let faults = inode.environment.faults, faults.fails(.reserveENOSPC, offset: pos, length: length) {
                throw .noSpace
            }
            try fs.reserveSpace(count)
            let record = ExtentRecord(startBlock: offsetBlock, blockCount: count, state: .delalloc)
            map.insert(record)
            // The mapping returned is the new reservation only, even when it merged with a
            // neighbouring delalloc record: only this part is the write's to punch.
            let m = IOMapping(
                offset: g.offset(ofBlock: offsetBlock), length: g.offset(ofBlock: count), kind: .delalloc,
                flags: .new, validityCookie: map.sequence)
            return (m, nil)
        }
    }

    /// The mapping at `pos` for a report (seek), and the one after it, from one lookup under
    /// the extent-map lock: after a record, the record that touches it or the hole up to the
    /// next; after a hole, the record that ends it (xfs_seek_iomap_begin, which XFS asks
    /// once per mapping).
    public func iomapBeginReport(_ inode: Inode, pos: Int, length: Int, flags: IterFlags) throws(Errno) -> (IOMapping, next: IOMapping?) {
        let g = geometry
        let offsetBlock = g.blockIndex(of: pos)
        let endBlock = max(min(g.blocksCovering(pos + length), g.blocksCovering(maxFileSize)), offsetBlock + 1)
        return extents.withLock { (map: inout ExtentMap) -> (IOMapping, next: IOMapping?) in
            var cursor = extentCursor.load(ordering: .relaxed)
            defer { extentCursor.store(cursor, ordering: .relaxed) }
            let sequence = map.sequence
            let found = map.next(atOrAfter: offsetBlock, cursor: &cursor)
            if let r = found, r.startBlock <= offsetBlock {
                guard r.endBlock < endBlock else { return (mappingFor(r, sequence: sequence), nil) }
                let after = map.next(atOrAfter: r.endBlock, cursor: &cursor)
                if let a = after, a.startBlock == r.endBlock {
                    return (mappingFor(r, sequence: sequence), mappingFor(a, sequence: sequence))
                }
                let hole = holeMapping(from: r.endBlock, to: min(after?.startBlock ?? Int.max, endBlock), sequence: sequence)
                return (mappingFor(r, sequence: sequence), hole)
            }
            let holeEnd = min(found?.startBlock ?? Int.max, endBlock)
            let next = found.flatMap { $0.startBlock == holeEnd ? mappingFor($0, sequence: sequence) : nil }
            return (holeMapping(from: offsetBlock, to: holeEnd, sequence: sequence), next)
        }
    }

    /// The hole over file blocks `[from, to)`, as every lookup that lands in one returns it.
    func holeMapping(from: Int, to: Int, sequence: UInt64) -> IOMapping {
        let g = geometry
        return IOMapping(
            offset: g.offset(ofBlock: from), length: g.offset(ofBlock: to - from), kind: .hole, validityCookie: sequence)
    }

    func mappingFor(_ r: ExtentRecord, sequence: UInt64) -> IOMapping {
        let g = geometry
        let kind: IOMapping.Kind
        switch r.state {
        case .delalloc: kind = .delalloc
        case .unwritten: kind = .unwritten
        case .written: kind = .mapped
        }
        return IOMapping(
            offset: g.offset(ofBlock: r.startBlock), length: g.offset(ofBlock: r.blockCount), kind: kind,
            diskAddress: r.diskBlock.map { g.offset(ofBlock: $0) }, validityCookie: sequence)
    }

    /// Only writes can have reserved anything to release (xfs_read_iomap_ops and
    /// xfs_seek_iomap_ops have no ->iomap_end).
    public func hasIomapEnd(_ flags: IterFlags) -> Bool { flags.contains(.write) }

    public func iomapEnd(_ inode: Inode, pos: Int, length: Int, written: Int, flags: IterFlags, mapping: IOMapping) throws(Errno) {
        // Only what this call reserved may be released; page faults never release.
        guard mapping.kind == .delalloc, mapping.flags.contains(.new), !flags.contains(.fault) else { return }
        let g = geometry
        // A block this write partly filled is kept: the start rounds up past it. With nothing
        // written the first block is a candidate too; the scan keeps it if it is dirty.
        let startByte = written == 0 ? g.roundDownToBlock(pos) : g.roundUpToBlock(pos + written)
        let endByte = g.roundUpToBlock(pos + length)
        if startByte >= endByte { return }
        let lock = inode.mapping.invalidateLock
        let callerHoldsLock = flags.contains(.zero) || flags.contains(.unshare)
        if callerHoldsLock {
            precondition(lock.isHeldExclusiveByCurrentThread, "zero/unshare must hold the invalidate lock")
        } else {
            lock.lockExclusive()
        }
        defer { if !callerHoldsLock { lock.unlockExclusive() } }
        switch inode.cleanupPolicy {
        case .preserveDirty:
            iomapWriteDelallocRelease(inode, startByte: startByte, endByte: endByte) { self.punchDelalloc(offset: $0, length: $1) }
        case .truncatePageCache:
            iomapWriteDelallocTruncate(inode, startByte: startByte, endByte: endByte) { self.punchDelalloc(offset: $0, length: $1) }
        }
    }

    /// Removes delalloc, and nothing else, from the blocks touching `[offset, offset + length)`
    /// (xfs_bmap_punch_delalloc_range: the start rounds down, the end up). Never locks a folio.
    public func punchDelalloc(offset: Int, length: Int) {
        punchLog.withLock { $0?.append(ByteRange(start: offset, length: length)) }
        let g = geometry
        let from = g.blockIndex(of: offset)
        let to = g.blocksCovering(offset + length)
        let removed = extents.withLock { $0.remove(from: from, to: to) { $0.state == .delalloc } }
        let blocks = removed.reduce(0) { $0 + $1.blockCount }
        if blocks > 0 { fs.space.unreserve(blocks) }
    }

    public func iomapValid(_ inode: Inode, _ mapping: IOMapping) -> Bool {
        // Without the check (a canary configuration) this is a file system with no
        // ->iomap_valid, which trusts every mapping.
        guard fs.config.validityCheck else { return true }
        return extentSequenceCell.current == mapping.validityCookie
    }

    public func readFileRange(_ inode: Inode, mapping: IOMapping, fileOffset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno)
    {
        let g = geometry
        precondition(g.isBlockAligned(fileOffset) && g.isBlockAligned(buffer.count), "device reads are whole blocks")
        let address = mapping.diskAddress(of: fileOffset)
        try fs.device.read(block: g.blockIndex(of: address), count: buffer.count >> g.blockShift, into: buffer)
    }
}
