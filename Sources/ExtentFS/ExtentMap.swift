// Counterpart: the in-core extent list of an XFS inode fork (fs/xfs/libxfs/xfs_iext_tree.c)
// with its sequence counter if_seq, and the record edits of fs/xfs/libxfs/xfs_bmap.c
// (xfs_bmap_add_extent_hole_delay, xfs_bmap_del_extent_delay, the unwritten conversions).
//
// A file's extent map: sorted, disjoint records of delalloc reservations, allocated but
// unwritten blocks, and written blocks; anything not covered is a hole. Neighbouring
// records of the same state merge (for allocated ones only when their disk blocks are
// contiguous), as XFS merges them. `sequence` is bumped on every change that alters a
// record, and only then, so that a mapping's validity cookie goes stale exactly when the
// map it was taken from has changed.
//
// Guarded by: the owning file's extent-map lock (ILOCK).

import IOMapBase
import Synchronization

public enum ExtentState: String, Sendable {
    case delalloc, unwritten, written
}

/// One record: file blocks `[startBlock, startBlock + blockCount)` in `state`, backed by disk
/// blocks from `diskBlock` (nil for delalloc).
public struct ExtentRecord: Sendable, Equatable, CustomStringConvertible {
    public var startBlock: Int
    public var blockCount: Int
    public var state: ExtentState
    public var diskBlock: Int?

    public init(startBlock: Int, blockCount: Int, state: ExtentState, diskBlock: Int? = nil) {
        precondition(blockCount > 0, "an extent record needs at least one block")
        precondition(startBlock >= 0, "an extent record cannot start at block \(startBlock)")
        precondition((state == .delalloc) == (diskBlock == nil), "only delalloc records lack a disk block")
        self.startBlock = startBlock
        self.blockCount = blockCount
        self.state = state
        self.diskBlock = diskBlock
    }

    public var endBlock: Int { startBlock + blockCount }

    /// The part of this record inside `[from, to)`, or nil.
    func slice(_ from: Int, _ to: Int) -> ExtentRecord? {
        let s = max(from, startBlock)
        let e = min(to, endBlock)
        guard s < e else { return nil }
        return ExtentRecord(startBlock: s, blockCount: e - s, state: state, diskBlock: diskBlock.map { $0 + (s - startBlock) })
    }

    func canMerge(with next: ExtentRecord) -> Bool {
        guard endBlock == next.startBlock, state == next.state else { return false }
        guard let a = diskBlock, let b = next.diskBlock else { return true }
        return a + blockCount == b
    }

    public var description: String {
        "\(state) [\(startBlock), \(endBlock))" + (diskBlock.map { " @\($0)" } ?? "")
    }
}

/// Where a file's extent map publishes its sequence number, so that a mapping's validity is
/// checked with one atomic load and no lock, as xfs_iomap_valid reads if_seq with
/// READ_ONCE. The map stores into it at every bump, before the records change.
public final class PublishedSequence: Sendable {
    let value = Atomic<UInt64>(0)
    public init() {}

    /// The sequence as last published.
    @inline(__always)
    public var current: UInt64 { value.load(ordering: .acquiring) }
}

public struct ExtentMap: Sendable {
    public private(set) var records: [ExtentRecord] = []
    /// if_seq: bumped on every change.
    public private(set) var sequence: UInt64 = 0
    /// Blocks held by delalloc records (i_delayed_blks).
    public private(set) var delallocBlocks = 0
    /// Where the sequence is published (the owning file's), or nil.
    let published: PublishedSequence?

    public init() { published = nil }

    /// A map that publishes every sequence bump in `published`.
    public init(publishing published: PublishedSequence) { self.published = published }

    /// Bumps the sequence (xfs_iext_inc_seq), before the change it stands for, so that a
    /// reader of the published value without the lock never sees the change with the old
    /// sequence.
    @inline(__always)
    mutating func bumpSequence() {
        sequence &+= 1
        published?.value.store(sequence, ordering: .releasing)
    }

    /// The index of the first record ending after `block` (the one holding it, or the next).
    func firstIndex(endingAfter block: Int) -> Int {
        // Every lookup of the write, read and seek paths lands here; searched without bounds
        // checks, which the loop's own bounds make redundant.
        records.withUnsafeBufferPointer { r in
            var lo = 0
            var hi = r.count
            while lo < hi {
                let mid = (lo + hi) >> 1
                if r[mid].startBlock + r[mid].blockCount <= block { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
    }

    /// The first record ending after `block`, trying `cursor` and the record after it before
    /// searching (xfs_iext_lookup_extent with a cursor: sequential lookups, a write's next
    /// mapping or a seek's next extent, land on the record after the last one). Any cursor
    /// is safe: it is used only when it is the answer. Updates `cursor` to the answer.
    func firstIndex(endingAfter block: Int, cursor: inout Int) -> Int {
        let found = records.withUnsafeBufferPointer { r -> Int? in
            @inline(__always) func answers(_ i: Int) -> Bool {
                i >= 0 && i < r.count && r[i].startBlock + r[i].blockCount > block
                    && (i == 0 || r[i - 1].startBlock + r[i - 1].blockCount <= block)
            }
            if answers(cursor) { return cursor }
            if answers(cursor + 1) { return cursor + 1 }
            return nil
        }
        let i = found ?? firstIndex(endingAfter: block)
        cursor = i
        return i
    }

    /// The first record ending after `block`, with a cursor (see above).
    public func next(atOrAfter block: Int, cursor: inout Int) -> ExtentRecord? {
        let i = firstIndex(endingAfter: block, cursor: &cursor)
        return i < records.count ? records[i] : nil
    }

    /// The record holding `block`, if any.
    public func lookup(_ block: Int) -> ExtentRecord? {
        let i = firstIndex(endingAfter: block)
        guard i < records.count, records[i].startBlock <= block else { return nil }
        return records[i]
    }

    /// The record holding `block`, or else the first one after it.
    public func next(atOrAfter block: Int) -> ExtentRecord? {
        let i = firstIndex(endingAfter: block)
        return i < records.count ? records[i] : nil
    }

    /// The records overlapping `[from, to)`, clipped to it.
    public func records(from: Int, to: Int) -> [ExtentRecord] {
        var out: [ExtentRecord] = []
        var i = firstIndex(endingAfter: from)
        while i < records.count, records[i].startBlock < to {
            if let s = records[i].slice(from, to) { out.append(s) }
            i += 1
        }
        return out
    }

    /// Removes everything in `[from, to)`, splitting records at the edges; returns what was
    /// removed. Bumps the sequence when anything was.
    @discardableResult
    public mutating func remove(from: Int, to: Int) -> [ExtentRecord] {
        remove(from: from, to: to) { _ in true }
    }

    /// Removes the parts of records in `[from, to)` that satisfy `predicate`.
    mutating func remove(from: Int, to: Int, where predicate: (ExtentRecord) -> Bool) -> [ExtentRecord] {
        guard from < to else { return [] }
        var removed: [ExtentRecord] = []
        var i = firstIndex(endingAfter: from)
        var replacement: [ExtentRecord] = []
        let firstTouched = i
        while i < records.count, records[i].startBlock < to {
            let r = records[i]
            if predicate(r), let mid = r.slice(from, to) {
                if let left = r.slice(r.startBlock, from) { replacement.append(left) }
                removed.append(mid)
                if let right = r.slice(to, r.endBlock) { replacement.append(right) }
            } else {
                replacement.append(r)
            }
            i += 1
        }
        guard !removed.isEmpty else { return [] }
        bumpSequence()
        reserveRoom(replacement.count - (i - firstTouched))
        records.replaceSubrange(firstTouched..<i, with: replacement)
        for r in removed where r.state == .delalloc { delallocBlocks -= r.blockCount }
        verifyInvariants()
        return removed
    }

    /// Inserts a record into a hole, merging with neighbours of the same kind.
    public mutating func insert(_ record: ExtentRecord) {
        let i = firstIndex(endingAfter: record.startBlock)
        precondition(
            i == records.count || records[i].startBlock >= record.endBlock,
            "inserting \(record) over existing \(records[i])")
        bumpSequence()
        // Merges grow a neighbour in place: an append extends the last record with no
        // array traffic at all.
        let mergesNext = i < records.count && record.canMerge(with: records[i])
        if i > 0, records[i - 1].canMerge(with: record) {
            records[i - 1].blockCount += record.blockCount
            if mergesNext {
                records[i - 1].blockCount += records[i].blockCount
                records.remove(at: i)
            }
        } else if mergesNext {
            records[i].startBlock = record.startBlock
            records[i].blockCount += record.blockCount
            records[i].diskBlock = record.diskBlock
        } else {
            reserveRoom(1)
            records.insert(record, at: i)
        }
        if record.state == .delalloc { delallocBlocks += record.blockCount }
        verifyInvariants()
    }

    /// Makes room for `extra` more records. The array doubles, as Array would grow it, but
    /// into memory advised huge pages before anything touches it (HugePages.swift): a file
    /// of 10^6 extents holds 40 MB of records, and a lookup in 4 KiB pages of that misses
    /// the TLB on most probes of its binary search, which the kernel's extent tree, in its
    /// direct map, never does.
    mutating func reserveRoom(_ extra: Int) {
        let needed = records.count + extra
        guard needed > records.capacity else { return }
        let old = records
        records = Array(unsafeUninitializedCapacity: max(needed, 2 * old.capacity, 16)) { buffer, initialized in
            HugePages.advise(UnsafeMutableRawBufferPointer(buffer))
            old.withUnsafeBufferPointer { from in
                if let source = from.baseAddress { buffer.baseAddress!.initialize(from: source, count: from.count) }
            }
            initialized = old.count
        }
    }

    /// Runs `checkInvariants` after every change in a verify build.
    @inline(__always)
    func verifyInvariants() {
        #if IOMAP_VERIFY
            checkInvariants()
        #endif
    }

    /// Replaces the delalloc record holding `block` with allocated unwritten records over
    /// `pieces` (in file order, summing to its length). Returns the record replaced.
    public mutating func convertDelalloc(holding block: Int, to pieces: [BlockExtent]) -> ExtentRecord {
        guard let r = lookup(block), r.state == .delalloc else { preconditionFailure("no delalloc record holds block \(block)") }
        precondition(pieces.reduce(0) { $0 + $1.count } == r.blockCount, "allocation does not match \(r)")
        _ = remove(from: r.startBlock, to: r.endBlock)
        var fileBlock = r.startBlock
        for p in pieces {
            insert(ExtentRecord(startBlock: fileBlock, blockCount: p.count, state: .unwritten, diskBlock: p.start))
            fileBlock += p.count
        }
        return r
    }

    /// Converts the unwritten parts of `[from, to)` to written (xfs_iomap_write_unwritten).
    /// Returns whether anything changed.
    @discardableResult
    public mutating func convertUnwritten(from: Int, to: Int) -> Bool {
        let pieces = remove(from: from, to: to) { $0.state == .unwritten }
        for p in pieces {
            insert(ExtentRecord(startBlock: p.startBlock, blockCount: p.blockCount, state: .written, diskBlock: p.diskBlock))
        }
        return !pieces.isEmpty
    }

    /// Total blocks allocated on disk (unwritten and written records).
    public var allocatedBlocks: Int {
        records.reduce(0) { $0 + ($1.state == .delalloc ? 0 : $1.blockCount) }
    }

    /// Structural check: sorted, disjoint, merged, counters exact.
    public func checkInvariants() {
        var delalloc = 0
        for (i, r) in records.enumerated() {
            if r.blockCount <= 0 || r.startBlock < 0 { fatalError("bad extent record \(r)") }
            if i > 0 {
                let p = records[i - 1]
                if p.endBlock > r.startBlock { fatalError("extent records overlap: \(p) and \(r)") }
                if p.canMerge(with: r) { fatalError("extent records not merged: \(p) and \(r)") }
            }
            if r.state == .delalloc { delalloc += r.blockCount }
        }
        if delalloc != delallocBlocks { fatalError("delalloc counter \(delallocBlocks) but records hold \(delalloc)") }
    }
}
