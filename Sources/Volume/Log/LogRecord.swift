// Counterpart: the log items of XFS (fs/xfs/libxfs/xfs_log_format.h: the inode log format,
// the extent-free intent and done items, the directory and attribute buffers), recast as
// logical records: each says what changed, not which bytes of which block.
//
// A transaction is a list of records that commit together; a checkpoint of the log holds
// whole transactions only (docs/VOLUME.md "The log"). Applying a record to MetadataState is
// MetadataState.apply (MetadataState+Apply.swift), the one function both the running volume
// and recovery use.

/// One logical change to the metadata.
public enum LogRecord: Equatable, Sendable {
    /// A new inode with these attributes and no name yet (the entry naming it follows in the
    /// same transaction). A directory starts empty with `parent` as its "..", a symlink with
    /// its target.
    case createInode(InodeNumber, InodeAttributes, parent: InodeNumber?, symlinkTarget: [UInt8]?)
    /// The inode is gone: no name, no extents, no longer open.
    case freeInode(InodeNumber)
    /// The inode's attributes become these (chmod, chown, utimes, link counts, ...). The
    /// size field is the recorded size: setSize changes it alone.
    case setAttributes(InodeNumber, InodeAttributes)
    /// The recorded size (xfs_setfilesize at I/O completion, truncate).
    case setSize(InodeNumber, Int64)
    /// `name` in `directory` names `target`, with this cookie.
    case addEntry(directory: InodeNumber, name: FileName, target: InodeNumber, type: FileType, cookie: UInt64)
    /// `name` in `directory` is gone.
    case removeEntry(directory: InodeNumber, name: FileName)
    /// One rename, whole: the entry `from` in `fromDirectory` moves to `to` in `toDirectory`
    /// (with a new cookie there, `cookie`). With `exchange` the two entries swap targets
    /// (RENAME_EXCHANGE); otherwise an entry already at `to` is replaced (its inode's link
    /// count is a setAttributes of the same transaction).
    case rename(fromDirectory: InodeNumber, from: FileName, toDirectory: InodeNumber, to: FileName, exchange: Bool, cookie: UInt64)
    /// Blocks newly mapped into a regular file, unwritten (writeback's allocation of
    /// delalloc, fallocate).
    case allocateUnwritten(InodeNumber, DiskExtent)
    /// File blocks `[from, to)` of the inode are written: their data reached the device.
    case convertToWritten(InodeNumber, fromBlock: Int64, toBlock: Int64)
    /// File blocks `[from, to)` are unmapped and their device blocks put in free intent `id`
    /// (truncate, punch, the last close of an unlinked file).
    case unmapAndIntendFree(InodeNumber, fromBlock: Int64, toBlock: Int64, intent: UInt64)
    /// Free intent `id` is done: its blocks are free.
    case freeDone(intent: UInt64)
    case setXattr(InodeNumber, name: [UInt8], value: [UInt8])
    case removeXattr(InodeNumber, name: [UInt8])
    /// The inode has lost its last name but is open: free it at last close or next mount.
    case addOrphan(InodeNumber)
    case removeOrphan(InodeNumber)

    /// The inode the record is about (the first one, for directory changes), for the log's
    /// per-inode sequence (what fsync waits for).
    public var inode: InodeNumber? {
        switch self {
        case .createInode(let i, _, _, _), .freeInode(let i), .setAttributes(let i, _), .setSize(let i, _),
            .allocateUnwritten(let i, _), .convertToWritten(let i, _, _), .unmapAndIntendFree(let i, _, _, _),
            .setXattr(let i, _, _), .removeXattr(let i, _), .addOrphan(let i), .removeOrphan(let i):
            return i
        case .addEntry(let d, _, _, _, _), .removeEntry(let d, _), .rename(let d, _, _, _, _, _): return d
        case .freeDone: return nil
        }
    }
}
