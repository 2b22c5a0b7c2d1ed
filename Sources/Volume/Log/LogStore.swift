// Counterpart: the log's I/O side in XFS (xlog_write and the iclogs of fs/xfs/xfs_log.c,
// xlog_find_tail and xlog_do_recovery_pass of xfs_log_recover.c) and the superblock writes
// of xfs_sync_sb, reduced to what the journal asks of the device.
//
// The journal (Journal.swift) decides what to write, when and in which order; a LogStore
// writes and reads the blocks. DeviceLogStore puts them on a block device in the layout of
// docs/FORMAT.md; a test can give the journal a store that only counts.

import ExtentFS
import IOMapBase

/// A place in the circular log: a block offset inside the log region and the checkpoint
/// sequence expected there.
public struct LogPosition: Hashable, Sendable, CustomStringConvertible {
    public var offset: Int
    public var sequence: UInt64

    public init(offset: Int, sequence: UInt64) {
        self.offset = offset
        self.sequence = sequence
    }

    public var description: String { "log block \(offset), sequence \(sequence)" }
}

/// Where a snapshot is: its root block and the sequence of the last checkpoint it contains.
public struct SnapshotLocation: Hashable, Sendable {
    public var root: Int
    public var sequence: UInt64
    /// Every block the snapshot occupies (the root among them), as runs.
    public var blocks: [BlockExtent]

    public init(root: Int, sequence: UInt64, blocks: [BlockExtent]) {
        self.root = root
        self.sequence = sequence
        self.blocks = blocks
    }
}

/// What the superblock says of the log and the snapshot.
public struct LogAnchor: Hashable, Sendable {
    public var snapshot: SnapshotLocation
    /// Where replay starts.
    public var tail: LogPosition
    /// Set by a clean unmount: the log holds nothing past the snapshot.
    public var clean: Bool

    public init(snapshot: SnapshotLocation, tail: LogPosition, clean: Bool) {
        self.snapshot = snapshot
        self.tail = tail
        self.clean = clean
    }
}

/// What reading a checkpoint at a log position found.
public enum CheckpointRead: Sendable {
    /// A whole, valid checkpoint of the expected sequence, `blocks` long.
    case checkpoint(records: [LogRecord], blocks: Int)
    /// No checkpoint of the expected sequence starts here: the end of the log (an older
    /// lap, never-written blocks, or a torn first block).
    case end(reason: String)
    /// A checkpoint of the expected sequence starts here but is not whole or not valid: a
    /// torn tail if it is the last thing in the log.
    case torn(reason: String)
}

/// The journal's device side.
public protocol LogStore: AnyObject, Sendable {
    /// The log region's length in blocks.
    var logBlocks: Int { get }
    /// Blocks a checkpoint of `records` occupies.
    func checkpointBlocks(for records: [LogRecord]) -> Int
    /// Writes checkpoint `sequence` at log offset `offset` (not flushed).
    func writeCheckpoint(sequence: UInt64, records: [LogRecord], at offset: Int) throws(Errno)
    /// Reads the checkpoint of `sequence` that would start at `offset`.
    func readCheckpoint(sequence: UInt64, at offset: Int) -> CheckpointRead
    /// Blocks a snapshot of `state` occupies.
    func snapshotBlocks(for state: MetadataState) -> Int
    /// Writes `state` as a snapshot of `sequence` to `blocks`, the first being the root (not
    /// flushed).
    func writeSnapshot(_ state: MetadataState, sequence: UInt64, at blocks: [Int]) throws(Errno)
    /// Writes the older superblock copy with `anchor` (not flushed).
    func writeSuperblock(_ anchor: LogAnchor) throws(Errno)
    /// A device cache flush: everything written before is durable after.
    func flush() throws(Errno)
    /// The blocks the superblocks and the log occupy, from block 0.
    var metadataBlocks: Int { get }
    /// Both superblock copies read and checked: the newest valid one's anchor.
    func readAnchor() throws(VolumeError) -> LogAnchor
    /// The snapshot `location` names, every block checked.
    func readSnapshot(_ location: SnapshotLocation) throws(VolumeError) -> MetadataState
}
