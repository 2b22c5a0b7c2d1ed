// Counterpart: struct xfs_mount (fs/xfs/xfs_mount.h): one file system on one block device,
// with its free-space accounting and its files.
//
// The file system is deliberately small: one allocation group, no directories, no on-disk
// metadata yet (a later issue adds a persistent volume). What it does have is exactly what
// the buffered write path needs from XFS: per-file extent maps with sequence numbers,
// delayed allocation with exact reservation accounting, and an allocator used by writeback.

import IOMapBase
import IOMap
import PageCache

/// How a file system is set up.
public struct ExtentFSConfig: Sendable, DeliberateBugsCarrier {
    /// File-system block size: 512, 1024, 2048 or 4096 bytes.
    public var blockSize: Int = 4096
    /// Largest folio the page cache creates: 4 KiB to 2 MiB.
    public var maxFolioSize: Int = 2 << 20
    /// The bugs the file system runs with on purpose, to show a tool catches them; empty
    /// for the file system as it should be. The switches are views of it (DeliberateBugsCarrier).
    public var bugs: DeliberateBugs = []
    /// Page-cache memory limit per file in bytes (0: none).
    public var memoryLimit: Int = 0

    public var environment: IOMapEnvironment = .live
    /// The persistent file system told of every metadata change (docs/VOLUME.md); nil: the
    /// metadata lives in memory only.
    public var journal: (any ExtentJournal)? = nil

    public init(
        blockSize: Int = 4096, maxFolioSize: Int = 2 << 20, cleanupPolicy: CleanupPolicy = .preserveDirty,
        eofRounding: EOFRounding = .blockEnd, memoryLimit: Int = 0, canarySkipEOFZeroing: Bool = false,
        validityCheck: Bool = true, writeEnd: WriteEndPolicy = .zeroTail, bugs: DeliberateBugs = [],
        environment: IOMapEnvironment = .live
    ) {
        self.bugs = bugs.union(
            DeliberateBugs(
                policy: cleanupPolicy, eofRounding: eofRounding, writeEnd: writeEnd, skipEOFZeroing: canarySkipEOFZeroing,
                validityCheck: validityCheck))
        self.blockSize = blockSize
        self.maxFolioSize = maxFolioSize
        self.memoryLimit = memoryLimit
        self.environment = environment
    }
}

public final class ExtentFS: Sendable {
    public let device: any BlockDevice
    public let space: SpaceManager

    /// Reserves `count` blocks for delalloc (the space manager's reserve). Files call this,
    /// not `fs.space.reserve`: a method reached through two references is bracketed by a
    /// retain and a release of the object it is called on, one reached through one is not.
    func reserveSpace(_ count: Int) throws(Errno) { try space.reserve(count) }
    public let config: ExtentFSConfig
    public let geometry: BlockGeometry
    /// The extent maps of the live files, for space accounting. Not the files themselves: a
    /// file keeps its file system alive, not the reverse, and a weak reference would put
    /// every file's reference count on the slow side-table path, which the write path pays
    /// on each retain. A file removes its entry when it goes away.
    let files = OrderedMutex<(nextID: Int, extents: [Int: OrderedMutex<ExtentMap>])>(.leaf, "file table", (1, [:]))

    /// Makes a file system on `device`, whose block size must equal the configured one.
    /// The blocks of `allocated` are in use already (a volume's metadata and its files' extents).
    public init(device: any BlockDevice, config: ExtentFSConfig = ExtentFSConfig(), allocated: [BlockExtent] = []) {
        precondition(
            device.blockSize == config.blockSize,
            "device block size \(device.blockSize) differs from the file system's \(config.blockSize)")
        self.device = device
        self.config = config
        self.geometry = BlockGeometry(blockSize: config.blockSize)
        self.space = SpaceManager(totalBlocks: device.blockCount)
        for e in allocated { precondition(space.markAllocated(e), "\(e) is allocated twice or lies outside the device") }
    }

    /// A file system on a new sparse in-memory device of `bytes` bytes.
    public convenience init(memoryBytes bytes: Int, config: ExtentFSConfig = ExtentFSConfig()) {
        self.init(device: MemoryBlockDevice(blockSize: config.blockSize, blockCount: bytes / config.blockSize), config: config)
    }

    /// Creates an empty file.
    public func createFile() -> ExtentFile {
        let id = files.withLock { t in
            defer { t.nextID += 1 }
            return t.nextID
        }
        let file = ExtentFile(fs: self, id: id)
        files.withLock { $0.extents[id] = file.extents }
        return file
    }

    /// Makes the file `id` as a volume recorded it: `size` bytes over the written and
    /// unwritten `records`, whose blocks the space manager already counts as allocated. The
    /// id must not be in use.
    public func openFile(id: Int, size: Int, records: [ExtentRecord]) -> ExtentFile {
        let file = ExtentFile(fs: self, id: id)
        file.extents.withLock { map in
            for r in records {
                precondition(r.state != .delalloc, "a recorded extent cannot be delalloc")
                map.insert(r)
            }
        }
        file.inode.setSize(size)
        files.withLock { t in
            precondition(t.extents[id] == nil, "file \(id) is open already")
            t.extents[id] = file.extents
            t.nextID = max(t.nextID, id + 1)
        }
        return file
    }

    /// Called by a file going away.
    func forget(fileID: Int) { _ = files.withLock { $0.extents.removeValue(forKey: fileID) } }

    /// The number of live files.
    public var fileCount: Int { files.withLock { $0.extents.count } }

    /// D4: the space counters balance with the files' extent maps. Reserved blocks equal the
    /// delalloc blocks of all files, and free plus allocated blocks equal the device size.
    /// Call it when no operation is running.
    public func checkSpaceAccounting() -> String? { spaceAccountingFinding()?.description }

    /// The first way reservations and free space fail to balance (D4), or nil.
    public func spaceAccountingFinding() -> InvariantFinding? {
        space.checkInvariants()
        var delalloc = 0
        var allocated = 0
        for map in files.withLock({ Array($0.extents.values) }) {
            let (d, a) = map.withLock { ($0.delallocBlocks, $0.allocatedBlocks) }
            delalloc += d
            allocated += a
        }
        if space.reservedBlocks != delalloc {
            return InvariantFinding(.d4, "\(space.reservedBlocks) blocks reserved but files hold \(delalloc) delalloc blocks")
        }
        let held = config.journal?.blocksHeld ?? 0
        if space.freeBlocks + allocated + held != space.totalBlocks {
            return InvariantFinding(
                .d4, "\(space.freeBlocks) free + \(allocated) allocated + \(held) held by the journal != \(space.totalBlocks) total blocks")
        }
        return nil
    }
}
