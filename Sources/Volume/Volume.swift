// Counterpart: struct xfs_mount and the superblock operations of fs/xfs/xfs_super.c
// (xfs_fs_fill_super, xfs_fs_put_super, xfs_fs_statfs, xfs_fs_sync_fs), with the inode cache
// (xfs_iget) as a table of the inodes in memory.
//
// A Volume is one mounted file system: its device, its journal (the metadata state and the
// log), one ExtentFS spanning the device for the data of its regular files, and the table
// of regular inodes that have an in-memory file (an ExtentFile with its page cache).
// Directory operations are in Volume+Namespace.swift, open files in Volume+Files.swift,
// format, mount and unmount in Volume+Mount.swift.

import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// How a volume is mounted.
public struct VolumeOptions: Sendable, DeliberateBugsCarrier {
    /// Largest folio of a file's page cache: 4 KiB to 2 MiB.
    public var maxFolioSize = 2 << 20
    /// Page-cache limit per file in bytes (0: none).
    public var memoryLimit = 0
    /// Deliberate bugs, the engine's and the volume's ordering rules' (DeliberateBugs).
    public var bugs: DeliberateBugs = []
    public var environment: IOMapEnvironment = .live
    /// The clock timestamps come from: the coarse real-time clock, whose ticks (a few
    /// milliseconds) let most writes skip a timestamp transaction, as Linux's coarse inode
    /// times do.
    public var clock: @Sendable () -> Timestamp = { Timestamp.coarseNow() }
    /// The period of the background log force (XFS's log worker: 30 s); nil: none.
    public var backgroundForce: Duration? = .seconds(30)
    /// A test hook, called after every transaction of the volume's calls, once its records
    /// are in the open checkpoint and no journal lock is held (the namespace lock may be):
    /// a place where the background force could seal the checkpoint. A crash explorer
    /// forces the log there to put a checkpoint boundary between any two transactions of
    /// one call, which is how `.renameTwoRecords` is caught. Nil: none.
    public var transactionBoundary: (@Sendable (Journal) -> Void)? = nil

    public init() {}
}

/// Why a volume cannot be made, mounted or used. Corruption names the block and the check.
public enum VolumeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The image is damaged: which structure, where, and what check failed.
    case corrupt(String)
    /// The image uses something this version does not understand.
    case unsupported(String)
    /// The device failed.
    case io(Errno, String)
    /// A bad argument (a size too small, a block size not supported).
    case invalid(String)
    /// `mkfs` over an existing volume without `--force`.
    case exists(String)

    public var description: String {
        switch self {
        case .corrupt(let s), .unsupported(let s), .invalid(let s), .exists(let s): return s
        case .io(let e, let s): return "\(s): \(e.symbolicName)"
        }
    }
}

extension Timestamp {
    /// CLOCK_REALTIME_COARSE, the clock of Linux's inode timestamps.
    public static func coarseNow() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME_COARSE, &ts)
        return Timestamp(seconds: Int64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec))
    }
}

public final class Volume: Sendable {
    public let device: any BlockDevice
    /// The data side: one ExtentFS over the whole device, journalled by `journal`.
    public let fs: ExtentFS
    public let journal: Journal
    public let options: VolumeOptions
    /// The geometry the superblock gave.
    public let blockSize: Int
    /// Directory operations take it exclusive, lookups and opens shared: an unlink decides
    /// whether its inode is open with no open racing it.
    let namespace = RWSleepLock(level: .namespace, name: "namespace lock")
    /// The regular inodes in memory: their file and how many handles hold them open.
    let inodes = OrderedMutex<[InodeNumber: InMemoryInode]>(.inodeTable, "inode-table lock", [:])
    /// Stops the background force.
    let stopping = Atomic<Bool>(false)
    let forcer = Mutex<JoinableThread?>(nil)

    struct InMemoryInode {
        let file: ExtentFile
        var opens: Int
    }

    init(device: any BlockDevice, journal: Journal, fs: ExtentFS, options: VolumeOptions) {
        self.device = device
        self.journal = journal
        self.fs = fs
        self.options = options
        self.blockSize = device.blockSize
    }

    /// A volume dropped without unmount (after a crash, in tests and tools): its background
    /// force sees the weak reference gone and ends, and nobody will join it, so it is
    /// detached to free its resources. Not joined here: the last reference may be the
    /// force thread's own, and a thread cannot join itself. It also lets go of the files its
    /// journal holds for the next force: they hold the journal through their ExtentFS.
    deinit {
        stopping.store(true, ordering: .releasing)
        forcer.withLock { $0 }?.detach()
        journal.dropExposedTails()
    }

    /// The metadata as it is now (a copy-on-write value).
    public var state: MetadataState { journal.state }

    /// Now, by the volume's clock.
    var now: Timestamp { options.clock() }

    // MARK: In-memory inodes

    /// The in-memory file of regular inode `ino`, made from its recorded extents and size on
    /// first use. `opening` counts a new handle.
    func file(_ ino: InodeNumber, opening: Bool = false) throws(Errno) -> ExtentFile {
        try inodes.withLock { (t: inout [InodeNumber: InMemoryInode]) throws(Errno) -> ExtentFile in
            if var entry = t[ino] {
                if opening { entry.opens += 1 }
                t[ino] = entry
                return entry.file
            }
            // What the file needs, built under the metadata lock: nothing of the state's
            // storage is kept past it (see Journal.read).
            let found = journal.read { (s: borrowing MetadataState) -> (type: FileType, size: Int, records: [ExtentRecord])? in
                guard let rec = s[ino] else { return nil }
                let records = rec.extents.map {
                    ExtentRecord(
                        startBlock: Int($0.fileBlock), blockCount: Int($0.count), state: $0.unwritten ? .unwritten : .written,
                        diskBlock: Int($0.diskBlock))
                }
                return (rec.attributes.type, Int(rec.attributes.size), records)
            }
            guard let found else { throw .noSuchFileOrDirectory }
            guard found.type == .regular else { throw .isDirectory }
            let file = fs.openFile(id: Int(ino.rawValue), size: found.size, records: found.records)
            t[ino] = InMemoryInode(file: file, opens: opening ? 1 : 0)
            return file
        }
    }

    /// Whether a handle holds `ino` open.
    func isOpen(_ ino: InodeNumber) -> Bool { inodes.withLock { ($0[ino]?.opens ?? 0) > 0 } }

    /// The files in memory, for sync and unmount, by inode number: sync's writes then come in
    /// one order for one history, so that a crash test's seed replays the same crash states.
    var filesInMemory: [ExtentFile] { inodes.withLock { $0.sorted { $0.key < $1.key }.map(\.value.file) } }

    /// Frees `ino`, which has no name left and no open handle (the caller holds the
    /// namespace lock exclusive): a regular file's blocks first, unmapped through the journal
    /// (busy until that commits), then the inode and its orphan record in one transaction.
    func freeUnreferenced(_ ino: InodeNumber) throws(Errno) {
        if journal.read({ $0[ino]?.attributes.type }) == .regular {
            let f = try file(ino)
            try f.truncate(to: 0)
            // Truncating an empty file to 0 changes nothing, and leaves what fallocate with
            // KEEP_SIZE put past its end; those blocks must go too, or the free below is
            // EBUSY (the crash tests found it: fallocate KEEP_SIZE on an empty file, unlink).
            if !f.extentRecords.isEmpty { try f.punchHole(offset: 0, length: maxFileSize) }
            inodes.withLock { _ = $0.removeValue(forKey: ino) }
        }
        try journal.transact { (s: borrowing MetadataState) throws(Errno) -> ([LogRecord], Void) in
            guard s[ino] != nil else { return ([], ()) }
            let p = try s.planFreeInode(ino)
            return (p.records, ())
        }
    }

    // MARK: Whole-volume operations

    /// sync(2): writes back every file and forces the log.
    public func sync() throws(Errno) {
        var first: Errno?
        for f in filesInMemory {
            let r = f.writeback()
            if first == nil { first = r.error }
        }
        try journal.forceAll()
        if let first { throw first }
    }

    /// statfs(2)'s figures.
    public struct StatFS: Sendable, Equatable {
        public var blockSize: Int
        public var blocks: Int
        /// Free blocks, less those promised to delalloc reservations.
        public var freeBlocks: Int
        public var files: Int
        public var freeFiles: Int
        public var nameMax: Int
    }

    public func statfs() -> StatFS {
        let files = journal.read { $0.inodes.count }
        return StatFS(
            blockSize: blockSize, blocks: device.blockCount, freeBlocks: fs.space.availableBlocks, files: files,
            freeFiles: Int(UInt32.max) - files, nameMax: FileName.maxLength)
    }
}
