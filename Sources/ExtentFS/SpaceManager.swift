// Counterpart: XFS's free-space accounting (the free data block counter, m_fdblocks,
// adjusted by xfs_mod_fdblocks) and its extent allocator (xfs_alloc_vextent), much
// simplified: one allocation group, no per-CPU counters, no by-size index.
//
// Delayed allocation splits allocation in two. A buffered write only reserves blocks, so
// that it can fail with ENOSPC while the caller can still be told; writeback later turns
// the reservation into real blocks at a place of the allocator's choosing, and that step
// must not fail for lack of space. This type keeps both numbers: the free blocks (not
// allocated to any file) and the part of them promised to delalloc reservations. A new
// reservation, or an allocation that was not reserved, may take only what is free and
// not promised.
//
// The free space is a sorted array of disjoint, coalesced extents searched by binary
// search. Inserting and removing is O(number of free extents), which is fine at the
// sizes the tests and the tool use; XFS's pair of B+trees (by block and by size) would
// replace it if fragmentation ever grew large.

import IOMapBase

/// A run of `count` device blocks starting at block `start`.
public struct BlockExtent: Hashable, Sendable, CustomStringConvertible {
    public var start: Int
    public var count: Int

    public init(start: Int, count: Int) {
        self.start = start
        self.count = count
    }

    /// One past the last block.
    public var end: Int { start + count }

    public var description: String { "blocks [\(start), \(end))" }
}

/// Free-space counters, delalloc reservations and the block allocator of one device.
public final class SpaceManager: Sendable {
    private struct State {
        /// Free extents sorted by start, disjoint and never adjacent (always coalesced).
        var free: [BlockExtent]
        var freeBlocks: Int
        var reservedBlocks = 0

        /// The index of the first free extent whose end lies after `block`: the extent
        /// holding `block`, or else the first one after it (`free.count` when none).
        func firstIndex(endingAfter block: Int) -> Int {
            var lo = 0
            var hi = free.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if free[mid].end <= block { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }

        /// Removes `[start, start + count)`, which lies inside free extent `index`.
        mutating func take(index: Int, start: Int, count: Int) {
            let e = free[index]
            precondition(start >= e.start && start + count <= e.end)
            let left = BlockExtent(start: e.start, count: start - e.start)
            let right = BlockExtent(start: start + count, count: e.end - (start + count))
            switch (left.count > 0, right.count > 0) {
            case (true, true):
                free[index] = left
                free.insert(right, at: index + 1)
            case (true, false): free[index] = left
            case (false, true): free[index] = right
            case (false, false): free.remove(at: index)
            }
            freeBlocks -= count
        }
    }

    public let totalBlocks: Int
    private let state: OrderedMutex<State>

    /// A device of `totalBlocks` blocks, all free.
    public init(totalBlocks: Int) {
        precondition(totalBlocks >= 0, "total blocks must not be negative, got \(totalBlocks)")
        self.totalBlocks = totalBlocks
        let free = totalBlocks > 0 ? [BlockExtent(start: 0, count: totalBlocks)] : []
        state = OrderedMutex(.space, "space manager", State(free: free, freeBlocks: totalBlocks))
    }

    /// Blocks not allocated to anything. Reservations are not subtracted.
    public var freeBlocks: Int { state.withLock { $0.freeBlocks } }

    /// Blocks promised to outstanding delalloc reservations.
    public var reservedBlocks: Int { state.withLock { $0.reservedBlocks } }

    /// What a new reservation or an unreserved allocation may take.
    public var availableBlocks: Int { state.withLock { $0.freeBlocks - $0.reservedBlocks } }

    /// Reserves `count` blocks for delayed allocation; ENOSPC when fewer are available.
    public func reserve(_ count: Int) throws(Errno) {
        precondition(count >= 0, "cannot reserve \(count) blocks")
        try state.withLock { (s) throws(Errno) -> Void in
            if s.freeBlocks - s.reservedBlocks < count { throw .noSpace }
            s.reservedBlocks += count
        }
    }

    /// Returns `count` reserved blocks that will not be allocated after all.
    public func unreserve(_ count: Int) {
        precondition(count >= 0, "cannot unreserve \(count) blocks")
        state.withLock { s in
            precondition(
                count <= s.reservedBlocks, "unreserving \(count) blocks with only \(s.reservedBlocks) reserved")
            s.reservedBlocks -= count
        }
    }

    /// Allocates exactly `count` blocks and returns them in file order, in several extents
    /// when free space is fragmented.
    ///
    /// The search starts at `hint` (or block 0): first the free extent holding `hint` (from
    /// `hint` on) or the next one after it, then the following free extents in address
    /// order, wrapping to the start of the device. With `fromReservation` the blocks come
    /// out of an earlier reservation, which shrinks by `count` and cannot fail; otherwise
    /// `count` unreserved blocks must be available, else ENOSPC and nothing changes.
    public func allocate(_ count: Int, near hint: Int?, fromReservation: Bool) throws(Errno) -> [BlockExtent] {
        precondition(count >= 0, "cannot allocate \(count) blocks")
        let totalBlocks = self.totalBlocks
        return try state.withLock { (s) throws(Errno) -> [BlockExtent] in
            if fromReservation {
                precondition(
                    count <= s.reservedBlocks,
                    "allocating \(count) reserved blocks with only \(s.reservedBlocks) reserved")
            } else if s.freeBlocks - s.reservedBlocks < count {
                throw .noSpace
            }
            guard count > 0 else { return [] }
            // reserved <= free holds, so there are at least `count` free blocks.
            var cursor = min(max(hint ?? 0, 0), totalBlocks)
            var result: [BlockExtent] = []
            var remaining = count
            var wrapped = false
            while remaining > 0 {
                var index = s.firstIndex(endingAfter: cursor)
                if index == s.free.count {
                    precondition(!wrapped, "free space counter says \(s.freeBlocks) blocks but none found")
                    wrapped = true
                    cursor = 0
                    index = 0
                }
                let e = s.free[index]
                let start = max(e.start, cursor)
                let n = min(e.end - start, remaining)
                s.take(index: index, start: start, count: n)
                result.append(BlockExtent(start: start, count: n))
                remaining -= n
                cursor = start + n
            }
            if fromReservation { s.reservedBlocks -= count }
            return result
        }
    }

    /// Returns `extent` to free space, merging it with free neighbours. Freeing a block
    /// that is already free is a bug and traps.
    public func free(_ extent: BlockExtent) {
        precondition(extent.count >= 0, "freeing \(extent) with a negative count")
        guard extent.count > 0 else { return }
        precondition(
            extent.start >= 0 && extent.end <= totalBlocks,
            "freeing \(extent) outside the device of \(totalBlocks) blocks")
        state.withLock { s in
            let index = s.firstIndex(endingAfter: extent.start)
            if index < s.free.count, s.free[index].start < extent.end {
                fatalError("double free: \(extent) overlaps free \(s.free[index])")
            }
            let mergeLeft = index > 0 && s.free[index - 1].end == extent.start
            let mergeRight = index < s.free.count && s.free[index].start == extent.end
            switch (mergeLeft, mergeRight) {
            case (true, true):
                s.free[index - 1].count += extent.count + s.free[index].count
                s.free.remove(at: index)
            case (true, false):
                s.free[index - 1].count += extent.count
            case (false, true):
                s.free[index].start = extent.start
                s.free[index].count += extent.count
            case (false, false):
                s.free.insert(extent, at: index)
            }
            s.freeBlocks += extent.count
        }
    }

    /// Takes `extent`, which must be wholly free, out of free space without a reservation:
    /// a mount marking what the volume's metadata and files already use. False (and
    /// nothing changed) when some of it is not free or it lies outside the device.
    @discardableResult
    public func markAllocated(_ extent: BlockExtent) -> Bool {
        guard extent.count > 0, extent.start >= 0, extent.end <= totalBlocks else { return extent.count == 0 }
        return state.withLock { s in
            let index = s.firstIndex(endingAfter: extent.start)
            guard index < s.free.count, s.free[index].start <= extent.start, s.free[index].end >= extent.end else { return false }
            s.take(index: index, start: extent.start, count: extent.count)
            return true
        }
    }

    /// True when `block` is not allocated.
    public func isFree(_ block: Int) -> Bool {
        state.withLock { s in
            let index = s.firstIndex(endingAfter: block)
            return index < s.free.count && s.free[index].start <= block
        }
    }

    /// The free extents, sorted and coalesced.
    public func freeExtents() -> [BlockExtent] { state.withLock { $0.free } }

    /// Traps unless the free list is sorted, disjoint, coalesced, inside the device and
    /// sums to the free counter, and the reservation is within the free blocks.
    public func checkInvariants() {
        let totalBlocks = self.totalBlocks
        state.withLock { s in
            var sum = 0
            var previousEnd: Int?
            for e in s.free {
                if e.count <= 0 { fatalError("space: empty free extent \(e)") }
                if e.start < 0 || e.end > totalBlocks {
                    fatalError("space: free \(e) outside the device of \(totalBlocks) blocks")
                }
                if let p = previousEnd {
                    if e.start < p { fatalError("space: free \(e) overlaps or precedes a free extent ending at \(p)") }
                    if e.start == p { fatalError("space: free \(e) not coalesced with its left neighbour") }
                }
                previousEnd = e.end
                sum += e.count
            }
            if sum != s.freeBlocks {
                fatalError("space: free extents hold \(sum) blocks but the counter says \(s.freeBlocks)")
            }
            if s.reservedBlocks < 0 || s.reservedBlocks > s.freeBlocks {
                fatalError("space: \(s.reservedBlocks) blocks reserved with \(s.freeBlocks) free")
            }
        }
    }
}
