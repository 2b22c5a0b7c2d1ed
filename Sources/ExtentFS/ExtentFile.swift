// Counterpart: struct xfs_inode (fs/xfs/xfs_inode.h): the generic inode plus the data
// fork's extent map and its lock (ILOCK).

import IOMapBase
import IOMap
import PageCache
import Synchronization

public final class ExtentFile: Sendable {
    /// The file system. A file keeps it alive; the file system keeps only the file's extent
    /// map, for space accounting, until the file goes away.
    public let fs: ExtentFS
    public let inode: Inode
    /// The data fork, guarded by the extent-map lock (ILOCK).
    let extents: OrderedMutex<ExtentMap>
    /// The data fork's sequence number, published for iomapValid's lock-free check.
    let extentSequenceCell: PublishedSequence
    /// Where the last mapping lookup landed in the extent records (the extent cursor); only a
    /// hint, checked before use.
    let extentCursor = Atomic<Int>(0)
    /// Punch calls issued by failure cleanup, recorded for tests (nil: not recording).
    let punchLog = OrderedMutex<[ByteRange]?>(.leaf, "punch log", nil)
    /// The sequence of writeback errors this file's default handle has seen (f_wb_err).
    let fsyncCursor: OrderedMutex<Int>

    init(fs: ExtentFS, id: Int) {
        self.fs = fs
        self.geometry = fs.geometry
        self.fsyncCursor = OrderedMutex(.leaf, "fsync cursor", 0)
        let cell = PublishedSequence()
        self.extentSequenceCell = cell
        self.extents = OrderedMutex(.extentMap, "extent-map lock", ExtentMap(publishing: cell))
        let c = fs.config
        self.inode = Inode(
            id: id, geometry: fs.geometry, maxFolioSize: c.maxFolioSize, environment: c.environment,
            bugs: c.bugs)
        inode.mapping.memoryLimit = c.memoryLimit
    }

    /// A file nobody references any more is deleted, as an unlinked inode is on its last
    /// close: its blocks and reservations go back to the space manager. With a journal the
    /// blocks stay: the volume owns the inode, which outlives this in-memory file, and frees
    /// its blocks through the journal when the inode goes.
    deinit {
        let records = extents.withLock { $0.records }
        if fs.config.journal == nil {
            returnSpace(of: records)
        } else {
            let reserved = records.reduce(0) { $0 + ($1.state == .delalloc ? $1.blockCount : 0) }
            if reserved > 0 { fs.space.unreserve(reserved) }
        }
        fs.forget(fileID: inode.id)
    }

    /// Gives the blocks of removed records back: allocated ones to free space, delalloc ones
    /// to the unreserved pool.
    func returnSpace(of removed: [ExtentRecord]) {
        var reserved = 0
        var allocated: [ExtentRecord] = []
        for r in removed {
            if r.diskBlock != nil { allocated.append(r) } else { reserved += r.blockCount }
        }
        if reserved > 0 { fs.space.unreserve(reserved) }
        if let journal = fs.config.journal {
            if !allocated.isEmpty { journal.unmapped(self, records: allocated) }
        } else {
            for r in allocated { fs.space.free(BlockExtent(start: r.diskBlock!, count: r.blockCount)) }
        }
    }

    /// The file system's block geometry, stored here so that the hot paths read it in one
    /// load rather than through the inode and its address space.
    public let geometry: BlockGeometry
    public var mapping: AddressSpace { inode.mapping }
    /// i_size.
    public var size: Int { inode.size }

    /// A snapshot of the extent records.
    public var extentRecords: [ExtentRecord] { extents.withLock { $0.records } }
    /// The extent map's sequence number (if_seq).
    public var extentSequence: UInt64 { extents.withLock { $0.sequence } }
    /// Delalloc blocks held by this file.
    public var delallocBlocks: Int { extents.withLock { $0.delallocBlocks } }

    /// The file blocks in `[from, to)` that are delalloc.
    public func delallocBlockIndices(from: Int = 0, to: Int = Int.max) -> [Int] {
        extents.withLock { map in
            map.records(from: from, to: to).filter { $0.state == .delalloc }.flatMap { $0.startBlock..<$0.endBlock }
        }
    }

    /// The state of file block `block`, or nil for a hole.
    public func blockState(_ block: Int) -> ExtentState? { extents.withLock { $0.lookup(block)?.state } }

    /// Starts (or stops) recording the punch calls of failure cleanup.
    public func recordPunches(_ on: Bool = true) { punchLog.withLock { $0 = on ? [] : nil } }
    /// The punch calls recorded since `recordPunches()`.
    public var recordedPunches: [ByteRange] { punchLog.withLock { $0 ?? [] } }
}
