// Counterpart: xfs_map_blocks(), xfs_imap_valid(), xfs_discard_folio() and xfs_end_ioend()
// in fs/xfs/xfs_aops.c, with xfs_bmapi_convert_delalloc() (fs/xfs/libxfs/xfs_bmap.c) and
// xfs_iomap_write_unwritten() (fs/xfs/xfs_iomap.c).

import IOMapBase
import IOMap
import PageCache

extension ExtentFile: IOMapWritebackOperations {
    public func mapBlocks(_ inode: Inode, context: inout WritebackContext, offset: Int, length: Int) throws(Errno) -> IOMapping {
        if let cached = context.mapping, cached.range.contains(offset) {
            if iomapValid(inode, cached) { return cached }
            context.staleRemaps += 1
        }
        let g = geometry
        let block = g.blockIndex(of: offset)
        let m = try extents.withLock { (map: inout ExtentMap) throws(Errno) -> IOMapping in
            guard let r = map.next(atOrAfter: block), r.startBlock <= block else {
                let end = map.next(atOrAfter: block)?.startBlock ?? g.blocksCovering(maxFileSize)
                return holeMapping(from: block, to: end, sequence: map.sequence)
            }
            if r.state != .delalloc { return mappingFor(r, sequence: map.sequence) }
            // Delalloc becomes real blocks for the whole reservation, allocated unwritten: the
            // conversion can reach parts of a failed write's range that hold no data.
            let pieces = try fs.space.allocate(r.blockCount, near: nil, fromReservation: true)
            let converted = map.convertDelalloc(holding: block, to: pieces)
            fs.config.journal?.mappedUnwritten(self, fileBlock: converted.startBlock, pieces: pieces)
            return mappingFor(map.lookup(block)!, sequence: map.sequence)
        }
        context.mapping = m
        return m
    }

    public func writeFileRange(_ inode: Inode, mapping: IOMapping, fileOffset: Int, from buffer: UnsafeRawBufferPointer) throws(Errno) {
        if let faults = inode.environment.faults, faults.fails(.writebackIOError, offset: fileOffset, length: buffer.count) {
            throw .ioError
        }
        let g = geometry
        let address = mapping.diskAddress(of: fileOffset)
        try fs.device.write(block: g.blockIndex(of: address), count: buffer.count >> g.blockShift, from: buffer)
    }

    public func writeFileRanges(_ inode: Inode, mapping: IOMapping, fileOffset: Int, from buffers: [UnsafeRawBufferPointer]) -> [Errno?] {
        let g = geometry
        let base = mapping.diskAddress(of: fileOffset)
        var errors = [Errno?](repeating: nil, count: buffers.count)
        // Injected faults are asked for run by run, in order, as when each run was its own
        // request: a failing run fails alone, and the runs around it are written in groups.
        let faults = inode.environment.faults
        var groupStart = 0
        var offset = fileOffset
        func writeGroup(_ end: Int, at groupOffset: Int) {
            guard groupStart < end else { return }
            let group = Array(buffers[groupStart..<end])
            let blocks = group.reduce(0) { $0 + $1.count } >> g.blockShift
            do throws(Errno) {
                try fs.device.write(block: g.blockIndex(of: base + (groupOffset - fileOffset)), count: blocks, from: group)
            } catch {
                for i in groupStart..<end { errors[i] = error }
            }
        }
        var groupOffset = fileOffset
        for (i, buffer) in buffers.enumerated() {
            if let faults, faults.fails(.writebackIOError, offset: offset, length: buffer.count) {
                writeGroup(i, at: groupOffset)
                errors[i] = .ioError
                groupStart = i + 1
                groupOffset = offset + buffer.count
            }
            offset += buffer.count
        }
        writeGroup(buffers.count, at: groupOffset)
        return errors
    }

    public func completeIOEnd(_ inode: Inode, _ ioend: IOEnd) {
        guard ioend.error == nil else { return }
        let journal = fs.config.journal
        if ioend.kind == .unwritten {
            let g = geometry
            let from = g.blockIndex(of: ioend.range.start)
            let to = g.blocksCovering(ioend.range.end)
            extents.withLock {
                _ = $0.convertUnwritten(from: from, to: to)
                journal?.convertedToWritten(self, fromBlock: from, toBlock: to)
            }
        }
        journal?.dataWritten(self, upTo: min(ioend.range.end, inode.size))
    }

    public func discardFolio(_ inode: Inode, range: ByteRange) {
        punchDelalloc(offset: range.start, length: range.length)
    }
}
