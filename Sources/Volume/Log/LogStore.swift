// Counterpart: the log's I/O side in XFS (xlog_write and the iclogs of fs/xfs/xfs_log.c,
// xlog_find_tail and xlog_do_recovery_pass of xfs_log_recover.c) and the superblock writes
// of xfs_sync_sb, reduced to what the journal asks of the device.
//
// The journal (Journal.swift) decides what to write, when and in which order; a LogStore
// writes and reads the blocks. DeviceLogStore puts them on a block device in the layout of
// docs/FORMAT.md; a test can give the journal a store that only counts.

import ExtentFS
import IOMapBase

/// What the superblock says of the log and the snapshot.
public struct LogAnchor: Hashable, Sendable {
    public var snapshot: SnapshotLocation
    /// Where replay starts.
    public var tail: LogPosition
    /// Set by a clean unmount: the log holds nothing past the snapshot.
    public var clean: Bool
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
    /// A checkpoint of the expected sequence whose every block checks out but whose content
    /// is impossible: damage, not a torn write, which recovery must refuse.
    case damaged(reason: String)
    /// The device could not be read: recovery cannot tell where the log ends.
    case failed(Errno, reason: String)
}

/// The journal's device side.
public protocol LogStore: AnyObject, Sendable {
    /// The log region's length in blocks. A checkpoint is written at consecutive log
    /// offsets, wrapping from the region's end to its start.
    var logBlocks: Int { get }
    /// The blocks the superblocks and the log occupy, from block 0.
    var metadataBlocks: Int { get }
    var blockSize: Int { get }
    /// Writes checkpoint `sequence`, whose records `image` holds, from log offset `offset`
    /// (not flushed).
    func writeCheckpoint(_ image: CheckpointImage, sequence: UInt64, at offset: Int) throws(Errno)
    /// Reads the checkpoint of `sequence` that would start at log offset `offset`.
    func readCheckpoint(sequence: UInt64, at offset: Int) -> CheckpointRead
    /// How a message names the log block at `offset`: by its device block, as the format's
    /// errors do ("log block 812 (device block)").
    func logBlockName(_ offset: Int) -> String
    /// The first of the `count` log offsets from `start` on (wrapping at the log's end)
    /// holding the valid head of a checkpoint of sequence `sequence` or later, or nil (the
    /// check that the end recovery found is the log's real end).
    func findCheckpoint(sequenceAtLeast sequence: UInt64, from start: Int, count: Int) throws(Errno) -> (offset: Int, sequence: UInt64)?
    /// Writes a snapshot of `sequence`, encoded in `image`, to `blocks`, the first being the
    /// root (not flushed).
    func writeSnapshot(_ image: SnapshotImage, sequence: UInt64, at blocks: [Int]) throws(Errno)
    /// Writes both superblock copies with `anchor` under one new generation: copy 0, then
    /// `flush`, then copy 1 (not flushed). A torn write of either copy leaves the other whole
    /// and naming a place that is still intact, since the caller reuses the place the old
    /// superblock named only once both copies name the new one (durably: its flush after).
    func writeSuperblocks(_ anchor: LogAnchor, between flush: () throws(Errno) -> Void) throws(Errno)
    /// Why the copy not used was refused, when the other was (fsck's S check reports it).
    var damagedSuperblock: FormatError? { get }
    /// A device cache flush: everything written before is durable after.
    func flush() throws(Errno)
    /// Both superblock copies read and checked: the newest valid one's anchor.
    func readAnchor() throws(VolumeError) -> LogAnchor
    /// The snapshot `location` names, every block checked, and the blocks it occupies (its
    /// root among them) as runs.
    func readSnapshot(_ location: SnapshotLocation) throws(VolumeError) -> (state: MetadataState, blocks: [BlockExtent])
}
