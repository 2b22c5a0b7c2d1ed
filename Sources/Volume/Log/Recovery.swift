// Counterpart: XFS log recovery (fs/xfs/xfs_log_recover.c: xlog_find_tail, xlog_do_recover,
// xlog_recover_process_intents, xlog_recover_process_iunlinks), on a logical log.
//
// Recovery rebuilds the metadata in memory and writes nothing: the newest valid superblock
// names a snapshot and the log position after it; the checkpoints from there are applied in
// sequence order, each only if whole and valid, and the first that is not ends the log.
// Finishing what the log left open (free intents, orphans) is the mount's job
// (Volume+Mount.swift), done with ordinary transactions, so that a crash in the middle of
// it is just another crash.

import ExtentFS
import IOMapBase

/// The metadata and the log as recovery found them.
public struct RecoveredLog: Sendable {
    public var anchor: LogAnchor
    public var state: MetadataState
    /// The blocks of the snapshot recovery started from.
    public var snapshotBlocks: [BlockExtent]
    /// Checkpoints applied after the snapshot.
    public var checkpoints = 0
    public var records = 0
    /// Where the next checkpoint goes, and the log blocks in use from the tail to there.
    public var head: Int
    public var used = 0
    /// The sequence the next checkpoint gets.
    public var nextSequence: UInt64
    /// Why the log ended where it did ("torn: ..." for a checkpoint that was being written).
    public var end = ""
}

/// Reads the superblocks, the snapshot and the log, and applies the log.
public func recoverLog(_ store: any LogStore) throws(VolumeError) -> RecoveredLog {
    let anchor = try store.readAnchor()
    let (state, blocks) = try store.readSnapshot(anchor.snapshot)
    var r = RecoveredLog(
        anchor: anchor, state: state, snapshotBlocks: blocks, head: anchor.tail.offset, nextSequence: anchor.tail.sequence)
    while true {
        let seq = r.nextSequence
        let at = r.head
        let found = store.readCheckpoint(sequence: seq, at: at)
        switch found {
        case .checkpoint(let records, let blocks):
            do throws(ApplyError) {
                try r.state.apply(records)
            } catch {
                throw .corrupt("log checkpoint \(seq) at \(store.logBlockName(at)): \(error)")
            }
            r.checkpoints += 1
            r.records += records.count
            r.used += blocks
            r.head = (at + blocks) % store.logBlocks
            r.nextSequence = seq + 1
        case .end(let reason):
            r.end = reason
            return try checkedEnd(r, store)
        case .torn(let reason):
            r.end = "torn: \(reason)"
            return try checkedEnd(r, store)
        case .damaged(let reason):
            throw .corrupt(reason)
        case .failed(let errno, let reason):
            throw .io(errno, reason)
        }
    }
}

/// The end recovery found, checked: the journal writes a checkpoint only after the one
/// before it is durable, so a valid checkpoint of a later sequence anywhere in the log means
/// the one at the end was damaged, not torn, and what follows it would be lost. Recovery
/// refuses such a log rather than mount a volume without its newer metadata.
func checkedEnd(_ r: RecoveredLog, _ store: any LogStore) throws(VolumeError) -> RecoveredLog {
    // The blocks from the tail to the end are the checkpoints just replayed, every block
    // checked as block i of a checkpoint older than the end's: none of them is the head of a
    // later one. So only the rest of the log is scanned, which for a full log is little.
    let later: (offset: Int, sequence: UInt64)?
    do throws(Errno) {
        later = try store.findCheckpoint(sequenceAtLeast: r.nextSequence + 1, from: r.head, count: store.logBlocks - r.used)
    } catch {
        throw .io(error, "scanning the log past its end at \(store.logBlockName(r.head))")
    }
    if let later {
        throw .corrupt(
            "\(store.logBlockName(r.head)): checkpoint \(r.nextSequence) is damaged (\(r.end)), but checkpoint \(later.sequence) "
                + "follows at \(store.logBlockName(later.offset)): the log is damaged in the middle, not torn at its end")
    }
    return r
}

/// Every block the metadata says is in use, checked: the superblocks and the log, the
/// snapshot, and each inode's extents, inside the device and owned once. Open free intents
/// are not in use (the mount finishes them).
public func usedBlocks(of state: MetadataState, snapshotBlocks: [BlockExtent], metadataBlocks: Int, deviceBlocks: Int) throws(VolumeError)
    -> [BlockExtent]
{
    // Who owns each extent, named only for an error: every mount runs this over every
    // extent, and naming them all up front was most of its cost.
    enum Owner {
        case metadata, snapshot
        case inode(InodeNumber, DiskExtent)
        var name: String {
            switch self {
            case .metadata: return "the superblocks and the log"
            case .snapshot: return "the snapshot"
            case .inode(let ino, let e): return "\(ino) (\(e))"
            }
        }
    }
    var owned: [(BlockExtent, Owner)] = [(BlockExtent(start: 0, count: metadataBlocks), .metadata)]
    for b in snapshotBlocks { owned.append((b, .snapshot)) }
    for (ino, rec) in state.inodes {
        for e in rec.extents {
            guard e.count > 0, e.diskBlock >= 0 else { throw .corrupt("\(ino): empty or negative extent \(e)") }
            owned.append((BlockExtent(start: Int(e.diskBlock), count: Int(e.count)), .inode(ino, e)))
        }
    }
    owned.sort { $0.0.start < $1.0.start }
    for (i, (e, who)) in owned.enumerated() {
        if e.end > deviceBlocks { throw .corrupt("\(who.name): \(e) lies past the device's \(deviceBlocks) blocks") }
        if i > 0, owned[i - 1].0.end > e.start {
            throw .corrupt("\(who.name): \(e) overlaps \(owned[i - 1].1.name)'s \(owned[i - 1].0): a block owned twice")
        }
    }
    return owned.map(\.0)
}
