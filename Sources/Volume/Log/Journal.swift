// Counterpart: XFS's delayed logging (fs/xfs/xfs_log_cil.c: the CIL, xlog_cil_push_work,
// xlog_cil_force_seq), its busy extents (fs/xfs/xfs_extent_busy.c), the log force of
// xfs_file_fsync (fs/xfs/xfs_file.c) and the periodic log worker (xfs_log_worker).
//
// The journal holds the metadata state and the current checkpoint (the CIL) under one
// lock, the metadata lock: a transaction plans against the state, applies its records and
// appends them in one step, so the log is exactly the state's history. A log force seals
// the checkpoint and writes it under the log-force lock, with the flushes the ordering rules
// of docs/VOLUME.md ask for; a force that finds its sequence already durable costs nothing
// (group commit). When a checkpoint would not fit in the log, the force writes a snapshot
// instead and moves the log's tail.

import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Synchronization

/// How many times the journal wrote, flushed and forced: the figures the flush-count rows
/// of `iomap bench` and the ordering tests read.
public struct JournalStats: Sendable, Equatable {
    public var transactions = 0
    public var records = 0
    public var checkpoints = 0
    public var checkpointBlocks = 0
    public var checkpointBytes = 0  // the records' encoded bytes, unrounded: what `iomap bench` divides per operation
    public var snapshots = 0
    public var flushes = 0
    /// Forces that found their sequence durable already and wrote nothing.
    public var sharedForces = 0
    public init() {}
}

public final class Journal: Sendable {
    /// The metadata lock's contents.
    struct Open {
        var state: MetadataState
        /// The open checkpoint: records, and whether it holds a change that exposes data
        /// (a conversion or a size raise, rule 1).
        var records: [LogRecord] = []
        var exposesData = false
        /// The blocks whose bytes past an old recorded size the open checkpoint's size raises
        /// expose (rule 1: written back before the checkpoint).
        var exposedTails: [ExposedTail] = []
        /// Blocks freed by the open checkpoint's transactions, by free intent (rule 2).
        var busy: [(intent: UInt64, extents: [BlockExtent])] = []
        /// The sequence the open checkpoint will be written with.
        var sequence: UInt64
        /// Per inode, the sequence of the last checkpoint with a change to it, and of the
        /// last with a change other than timestamps (fdatasync's): one table, so that a
        /// transaction updates each inode it touches with one lookup.
        var inodeSequences: [InodeNumber: PendingSequences] = [:]
        var stats = JournalStats()
    }

    /// What a force must reach for one inode's changes to be durable.
    struct PendingSequences {
        var any: UInt64
        /// Nil while the inode's only changes were timestamps.
        var data: UInt64?
    }

    /// The log-force lock's contents: where the log is.
    struct Log {
        var head: Int
        var tail: LogPosition
        /// Blocks in use from the tail to the head, counting blocks skipped at a wrap.
        var used: Int
        var snapshot: SnapshotLocation
        /// The blocks of the current snapshot, freed when the next one is named.
        var snapshotBlocks: [BlockExtent]
        /// Set by the first failed log write or flush: the log is shut down (as XFS's is on a
        /// log I/O error), and every later force fails, because what reached the disk is no
        /// longer known and writing on could put a newer checkpoint after a lost one.
        var shutDown: Errno?
    }

    /// A block of `file` that a size raise exposes past the recorded size it was raised
    /// from. The file is held until the force that writes the block back (or the volume's
    /// deinit, which breaks the cycle through the file's ExtentFS and its journal).
    struct ExposedTail {
        let file: ExtentFile
        let range: ByteRange
    }

    let open: OrderedMutex<Open>
    let log: OrderedMutex<Log>
    let store: any LogStore
    let bugs: DeliberateBugs
    /// The allocator of the volume's device, for snapshots and for freed blocks; set once
    /// the file system is made (it is made with this journal).
    let spaceBox = Mutex<SpaceManager?>(nil)
    /// Flush tickets: how many flushes started, and the number of the last that finished.
    let flushesStarted = Atomic<UInt64>(0)
    let flushesDone = Atomic<UInt64>(0)
    /// The sequence of the last durable checkpoint or snapshot, stored under the log-force
    /// lock after its flush and read without it: a force that finds itself covered returns
    /// without waiting for the lock (group commit).
    let durable: Atomic<UInt64>
    /// Where forces wait for the one writing (group commit).
    let gate = ForceGate()
    /// Called after each transaction (VolumeOptions.transactionBoundary).
    let boundary: (@Sendable (Journal) -> Void)?

    /// A journal over `state`, recovered (or new) with the log as `anchor` says and the head
    /// at `head`, the next checkpoint getting `sequence`.
    public init(
        state: MetadataState, anchor: LogAnchor, snapshotBlocks: [BlockExtent], head: Int, used: Int, sequence: UInt64,
        store: any LogStore, bugs: DeliberateBugs, boundary: (@Sendable (Journal) -> Void)? = nil
    ) {
        open = OrderedMutex(.metadata, "metadata lock", Open(state: state, sequence: sequence))
        log = OrderedMutex(
            .logForce, "log-force lock",
            Log(
                head: head, tail: anchor.tail, used: used, snapshot: anchor.snapshot,
                snapshotBlocks: snapshotBlocks, shutDown: nil))
        self.store = store
        self.bugs = bugs
        self.boundary = boundary
        durable = Atomic(sequence - 1)
    }

    func attach(_ space: SpaceManager) { spaceBox.withLock { $0 = space } }
    var space: SpaceManager { spaceBox.withLock { $0! } }

    // MARK: Transactions

    /// Runs a transaction: `plan` sees the state and returns the records to commit and a
    /// result; the records are applied and appended to the open checkpoint at once. A plan
    /// that throws changes nothing. `timestampsOnly` says the change is one fdatasync may
    /// leave behind. Then, with the metadata lock dropped, the boundary hook runs, if any.
    public func transact<R>(
        timestampsOnly: Bool = false, _ plan: (borrowing MetadataState) throws(Errno) -> (records: [LogRecord], result: R)
    ) throws(Errno) -> R {
        let result = try open.withLock { (o: inout Open) throws(Errno) -> R in
            let (records, result) = try plan(o.state)
            Self.append(records, to: &o, timestampsOnly: timestampsOnly)
            return result
        }
        boundary?(self)
        return result
    }

    /// Applies and appends `records`; they were planned against `o.state`, so a record that
    /// does not apply is a bug in its plan.
    static func append(_ records: [LogRecord], to o: inout Open, timestampsOnly: Bool = false) {
        guard !records.isEmpty else { return }
        // A transaction's records mostly name the same inode one after another (an entry,
        // then its directory's times): each run costs one lookup of the sequence table.
        var last: InodeNumber?
        for r in records {
            do throws(ApplyError) {
                try o.state.apply(r)
            } catch {
                preconditionFailure("a planned record does not apply: \(error)")
            }
            if let i = r.inode, i != last {
                last = i
                let sequence = o.sequence
                if timestampsOnly {
                    o.inodeSequences[i, default: PendingSequences(any: sequence, data: nil)].any = sequence
                } else {
                    o.inodeSequences[i] = PendingSequences(any: sequence, data: sequence)
                }
            }
            switch r {
            case .convertToWritten, .setSize: o.exposesData = true
            default: break
            }
        }
        o.records.append(contentsOf: records)
        o.stats.transactions += 1
        o.stats.records += records.count
    }

    /// A snapshot of the state (cheap: copy on write), for a caller that keeps it: tests,
    /// fsck, tools. The volume's own queries use `read`.
    public var state: MetadataState { open.withLock { $0.state } }

    /// Runs query `body` on the state as it is now, under the metadata lock. A query that
    /// copies the state out instead reads shared copy-on-write storage after the lock is
    /// dropped, which is correct only by the runtime's reference counts, and Thread Sanitizer
    /// (which does not see them) reports it as a race against the next transaction; it also
    /// retains and releases every table of the state per call.
    func read<T, E: Error>(_ body: (borrowing MetadataState) throws(E) -> T) throws(E) -> T {
        try open.withLock { (o: inout Open) throws(E) -> T in try body(o.state) }
    }

    public var stats: JournalStats { open.withLock { $0.stats } }

    /// The sequence a force must reach for `inode`'s changes (data-only for fdatasync) to be
    /// durable, or nil when none is pending.
    func sequence(of inode: InodeNumber, dataOnly: Bool) -> UInt64? {
        open.withLock { o in o.inodeSequences[inode].flatMap { dataOnly ? $0.data : $0.any } }
    }

    // MARK: Forces

    /// The current flush ticket: a flush started after this call covers every write that
    /// completed before it.
    func flushTicket() -> UInt64 { flushesStarted.load(ordering: .acquiring) }

    func flush() throws(Errno) {
        let ticket = flushesStarted.add(1, ordering: .acquiringAndReleasing).newValue
        try store.flush()
        flushesDone.store(ticket, ordering: .releasing)
        open.withLock { $0.stats.flushes += 1 }
    }

    /// Makes every checkpoint up to `sequence` durable and, with `dataTicket`, the data
    /// written before that ticket was taken. A force that finds both done already returns at
    /// once (group commit: the force that did the work covered it).
    public func force(upTo sequence: UInt64?, dataTicket: UInt64? = nil) throws(Errno) {
        let alone = bugs.contains(.forceAlone)
        while true {
            if !alone && covered(sequence, dataTicket) {
                open.withLock { $0.stats.sharedForces += 1 }
                return
            }
            guard gate.enter() else { continue }
            defer { gate.leave() }
            try log.withLock { (l: inout Log) throws(Errno) in
                if let e = l.shutDown { throw e }
                do throws(Errno) { try forceLocked(&l, upTo: sequence, dataTicket: dataTicket) } catch {
                    l.shutDown = error
                    throw error
                }
            }
            return
        }
    }

    /// Whether checkpoint `sequence` and the data written before `dataTicket` are durable.
    func covered(_ sequence: UInt64?, _ dataTicket: UInt64?) -> Bool {
        (sequence.map { durable.load(ordering: .acquiring) >= $0 } ?? true)
            && (dataTicket.map { flushesDone.load(ordering: .acquiring) > $0 } ?? true)
    }

    /// Whether the log was shut down by an I/O error (the volume takes no new metadata then).
    public var isShutDown: Bool { log.withLock { $0.shutDown != nil } }

    func forceLocked(_ l: inout Log, upTo sequence: UInt64?, dataTicket: UInt64?) throws(Errno) {
        let alone = bugs.contains(.forceAlone)
        let dataDone = dataTicket.map { flushesDone.load(ordering: .acquiring) > $0 } ?? true
        if covered(sequence, dataTicket) && !alone {
            open.withLock { $0.stats.sharedForces += 1 }
            return
        }
        if try !writeOpenCheckpoint(&l) {
            // Nothing to log: the data alone needs its flush.
            if !dataDone || alone { try flush() }
        }
    }

    /// Forces everything logged so far (sync, unmount).
    public func forceAll() throws(Errno) {
        let last = open.withLock { $0.records.isEmpty ? $0.sequence - 1 : $0.sequence }
        try force(upTo: last, dataTicket: flushTicket())
    }

    /// Forces the open checkpoint if it holds anything, with no data flush of its own: the
    /// background force's work, and what a test hook at a transaction boundary does.
    public func forceLogged() throws(Errno) {
        try force(upTo: openSequenceIfAny)
    }

    /// What a force takes out of the open checkpoint.
    struct Sealed {
        var records: [LogRecord]
        var exposesData: Bool
        var exposedTails: [ExposedTail]
        var busy: [(UInt64, [BlockExtent])]
        var sequence: UInt64
        /// The state as of this checkpoint, taken only for a snapshot.
        var state: MetadataState?
    }

    /// Seals the open checkpoint and makes it durable: a flush first when it exposes data
    /// (rule 1), the checkpoint, a flush. When it does not fit before the log's tail (or is
    /// more than half the log), everything logged so far goes into a snapshot instead. Then
    /// the blocks it freed go back to the allocator (rule 2). False when it was empty.
    func writeOpenCheckpoint(_ l: inout Log) throws(Errno) -> Bool {
        guard let sealed = open.withLock({ o in seal(&o, snapshot: false) }) else { return false }
        let image = CheckpointImage(records: sealed.records)
        let n = image.blockCount(blockSize: store.blockSize)
        guard n <= store.logBlocks / 2, l.used + n <= store.logBlocks else {
            // The records are in the state: a snapshot of it as of now holds them and
            // whatever came since.
            try writeSnapshotLocked(&l, clean: false, sealed: sealed)
            return true
        }
        writeBack(sealed.exposedTails)
        if sealed.exposesData && !bugs.contains(.commitBeforeData) { try flush() }
        try store.writeCheckpoint(image, sequence: sealed.sequence, at: l.head)
        l.used += n
        l.head = (l.head + n) % store.logBlocks
        try flush()
        open.withLock {
            $0.stats.checkpoints += 1
            $0.stats.checkpointBlocks += n
            $0.stats.checkpointBytes += image.payload.count
        }
        durable.store(sealed.sequence, ordering: .releasing)
        release(sealed.busy)
        return true
    }

    /// Takes the open checkpoint out (nil when it is empty, unless for a snapshot, which also
    /// copies the state: a snapshot must be the state as of its sequence exactly, so it is
    /// taken here, before another transaction changes it).
    func seal(_ o: inout Open, snapshot: Bool) -> Sealed? {
        guard !o.records.isEmpty || snapshot else { return nil }
        let sealed = Sealed(
            records: o.records, exposesData: o.exposesData, exposedTails: o.exposedTails, busy: o.busy, sequence: o.sequence,
            state: snapshot ? o.state : nil)
        // The next checkpoint is likely as long: room for it now, rather than growing the
        // array from nothing by doubling (each doubling moves every record) under the
        // metadata lock of the transactions that fill it.
        o.records = []
        o.records.reserveCapacity(sealed.records.count)
        o.exposesData = false
        o.exposedTails = []
        o.busy = []
        o.sequence += 1
        return sealed
    }

    /// Writes back the blocks sealed size raises expose, and waits for any writeback of them
    /// already in flight, so that the flush before the checkpoint (or the superblock) makes
    /// their zeroes durable with it: a size raise exposes the rest of the block the old
    /// recorded size ends in, whose zeroes (a truncate's, or an extension's zeroing of the
    /// gap) may be only in the page cache while the disk holds older bytes. Whatever raised
    /// the size (a truncate or fallocate, or an I/O completion after a ranged writeback,
    /// punch or zero range wrote only blocks past that one), the block is written here, at
    /// the force: the raise itself may be logged from a completion, inside a writeback pass
    /// that holds a folio locked, where writing back could wait for that very folio. The
    /// force holds no engine lock (folio locks rank below the log-force lock). A write error
    /// is latched for the file's fsync, as any writeback's is; the force goes on.
    func writeBack(_ tails: [ExposedTail]) {
        for t in tails {
            t.file.writeback(t.range)
            for f in t.file.mapping.folios(overlapping: t.range) { f.waitWriteback() }
        }
    }

    /// Lets go of the files the open checkpoint's exposed tails hold (a volume going away),
    /// outside the metadata lock: the last reference to a file runs its deinit, which takes
    /// the file's extent-map lock.
    func dropExposedTails() {
        let held = open.withLock { o in
            defer { o.exposedTails = [] }
            return o.exposedTails
        }
        withExtendedLifetime(held) {}
    }

    /// Gives the blocks of committed frees back to the allocator and logs that they are
    /// done (the done records ride in a later checkpoint: a crash before it only means
    /// recovery finishes the intent again).
    func release(_ busy: [(UInt64, [BlockExtent])]) {
        guard !busy.isEmpty else { return }
        let space = self.space
        for (_, extents) in busy { for e in extents { space.free(e) } }
        open.withLock { o in Self.append(busy.map { .freeDone(intent: $0.0) }, to: &o) }
    }

    // MARK: Snapshots

    /// Writes everything logged so far as a snapshot: it seals the open checkpoint with the
    /// state (after `earlier`, a checkpoint already sealed whose records the state holds),
    /// writes the snapshot to new blocks, flushes it and the data before the superblock that
    /// names it (rules 1 and 3), then both superblock copies with the log's tail moved to the
    /// head, a flush after each, and frees the previous snapshot's blocks.
    func writeSnapshotLocked(_ l: inout Log, clean: Bool, sealed earlier: Sealed? = nil) throws(Errno) {
        let sealed = open.withLock { o in seal(&o, snapshot: true)! }
        // No flush first for data a conversion exposes (rule 1): nothing names the snapshot
        // until the superblock does, and the flush before that write makes the data durable
        // with the snapshot. Then both superblock copies, a flush after each, so that either
        // copy alone, damaged or not, names a snapshot and log that are intact; the old ones'
        // blocks are reused only after that. So a snapshot costs three flushes.
        let image = SnapshotImage(sealed.state!, blockSize: store.blockSize)
        let pieces = try space.allocate(image.blockCount, near: nil, fromReservation: false)
        let blocks = pieces.flatMap { $0.start..<$0.end }
        do throws(Errno) {
            try store.writeSnapshot(image, sequence: sealed.sequence, at: blocks)
            writeBack((earlier?.exposedTails ?? []) + sealed.exposedTails)
            if !bugs.contains(.superblockBeforeSnapshot) { try flush() }
            let location = SnapshotLocation(root: blocks[0], sequence: sealed.sequence)
            let tail = LogPosition(offset: l.head, sequence: sealed.sequence + 1)
            try store.writeSuperblocks(LogAnchor(snapshot: location, tail: tail, clean: clean)) { () throws(Errno) in try flush() }
            try flush()
            for e in l.snapshotBlocks { space.free(e) }
            l.snapshot = location
            l.snapshotBlocks = pieces
            l.tail = tail
            l.used = 0
        } catch {
            for p in pieces { space.free(p) }
            throw error
        }
        open.withLock { $0.stats.snapshots += 1 }
        durable.store(sealed.sequence, ordering: .releasing)
        release((earlier?.busy ?? []) + sealed.busy)
    }

    /// Writes a snapshot of everything now, whether or not the log has room (unmount with
    /// `clean`, and mount after a replay, which must not write over a torn tail).
    public func writeSnapshotNow(clean: Bool) throws(Errno) {
        try log.withLock { (l: inout Log) throws(Errno) in
            if let e = l.shutDown { throw e }
            do throws(Errno) { try writeSnapshotLocked(&l, clean: clean) } catch {
                l.shutDown = error
                throw error
            }
        }
    }

    /// Where the log is: for tests and the tools.
    public var anchor: LogAnchor { log.withLock { LogAnchor(snapshot: $0.snapshot, tail: $0.tail, clean: false) } }
}

/// Group commit's gate, xlog_cil_force_seq's wait on the CIL's commit wait queue: one force
/// writes at a time and the others sleep on a condition variable until it ends, all woken at
/// once to see whether it covered them. Sleeping on the log-force lock instead, they woke one
/// at a time, each after the one before had taken and dropped the lock: a chain of wake-ups
/// per batch that took longer than the batch's own writes and flush (docs/VOLUME.md, "Speed").
/// The gate is no lock of the hierarchy: nothing is taken while its mutex is held, and a
/// force waits in it exactly where it would wait for the log-force lock.
final class ForceGate: @unchecked Sendable {
    // Guarded by: slot.
    private let slot = WaitSlot()
    private var busy = false
    private var generation: UInt64 = 0

    /// True when the caller is now the force that writes; false after waiting for the one
    /// that was: the caller looks again at whether it covered it.
    func enter() -> Bool {
        slot.lock()
        defer { slot.unlock() }
        if !busy {
            busy = true
            return true
        }
        let seen = generation
        while busy && generation == seen { slot.wait() }
        return false
    }

    func leave() {
        slot.lock()
        busy = false
        generation &+= 1
        slot.broadcast()
        slot.unlock()
    }
}
