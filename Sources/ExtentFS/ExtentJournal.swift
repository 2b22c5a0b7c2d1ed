// Counterpart: the transactions XFS's data path commits (xfs_bmapi_convert_delalloc's
// allocation, xfs_iomap_write_unwritten's conversion, xfs_setfilesize at I/O completion,
// xfs_itruncate_extents' unmapping and the extent-free intents it queues) and the log force
// of xfs_file_fsync, seen from the file system as one protocol.
//
// ExtentFS keeps its metadata in memory. A persistent file system on top of it (the volume,
// docs/VOLUME.md) is told of every change to a file's allocated blocks and recorded size, in
// the order the changes happen, and takes over what makes them durable: it logs them, it
// decides when freed blocks may be reused (busy extents), and it makes fsync durable with a
// log force instead of a bare device flush. Without a journal nothing changes.

import IOMapBase

/// What a file system that persists ExtentFS's metadata is told. The calls marked "under
/// ILOCK" come with the file's extent-map lock held: they must only record, never wait.
public protocol ExtentJournal: AnyObject, Sendable {
    /// Under ILOCK: device blocks `pieces` now back file blocks from `fileBlock` on,
    /// unwritten (writeback's allocation of delalloc, fallocate).
    func mappedUnwritten(_ file: ExtentFile, fileBlock: Int, pieces: [BlockExtent])
    /// Under ILOCK: file blocks `[from, to)` hold written data now (an I/O completion).
    func convertedToWritten(_ file: ExtentFile, fromBlock: Int, toBlock: Int)
    /// Data up to byte `end` reached the device (an I/O completion): the recorded size may
    /// grow to it (xfs_setfilesize).
    func dataWritten(_ file: ExtentFile, upTo end: Int)
    /// The file no longer maps the allocated blocks of `records`. The journal owns their
    /// blocks from here: it gives them back to the space manager when it is safe to.
    func unmapped(_ file: ExtentFile, records: [ExtentRecord])
    /// truncate or a size-changing fallocate set the size to `size`.
    func sizeSet(_ file: ExtentFile, to size: Int)
    /// fsync's last step, after the file's dirty data was written back: makes the file's
    /// data and metadata durable (xfs_file_fsync's log force). `wroteData` says whether the
    /// writeback wrote anything.
    func commit(_ file: ExtentFile, wroteData: Bool) throws(Errno)
    /// Blocks the journal holds outside every file's extent map: its metadata region and
    /// snapshot, and freed blocks not yet given back (busy). The space check (D4) counts them.
    var blocksHeld: Int { get }
}
