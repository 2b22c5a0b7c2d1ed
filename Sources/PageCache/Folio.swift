// Counterpart: struct folio (include/linux/mm_types.h), its flag helpers
// (include/linux/page-flags.h), folio_lock()/folio_unlock() and the writeback bit waits of
// mm/filemap.c, and struct iomap_folio_state with its ifs_* helpers in
// fs/iomap/buffered-io.c.
//
// A folio is a naturally aligned, power-of-two run of pages (4 KiB to 2 MiB) whose bytes are
// one contiguous buffer. Its lock is a bit in an atomic flag word, so an uncontended lock is
// one compare-and-swap; contended waiters sleep in the shared WaitTable, as the kernel's do
// in folio_wait_table. When a folio holds more than one file-system block it carries per-block
// uptodate and dirty bitmaps (the kernel's "ifs"); otherwise the folio-level flags speak for
// its single block.
//
// Guarded by: the folio lock guards the bytes being changed, the per-block state and the
// uptodate/dirty transitions. The writeback bit is set with the lock held and cleared at I/O
// completion without it, as in the kernel. Flag reads are atomic and may be done unlocked.

import IOMapBase
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

public final class Folio: @unchecked Sendable {
    /// Flag bits of `flags`.
    @inlinable @inline(__always) static var lockedBit: UInt32 { 1 << 0 }
    @inlinable @inline(__always) static var waitersBit: UInt32 { 1 << 1 }
    @inlinable @inline(__always) static var uptodateBit: UInt32 { 1 << 2 }
    @inlinable @inline(__always) static var dirtyBit: UInt32 { 1 << 3 }
    @inlinable @inline(__always) static var writebackBit: UInt32 { 1 << 4 }
    /// The folio is mapped writable in some address space: stores do not fault. Cleared by
    /// writeback (page_mkclean) and by pagecache_isize_extended, so the next store faults.
    @inlinable @inline(__always) static var writeMappedBit: UInt32 { 1 << 5 }
    /// The folio was removed from its mapping (folio->mapping == NULL).
    @inlinable @inline(__always) static var removedBit: UInt32 { 1 << 6 }

    /// Byte offset in the file of the first byte; a multiple of `size`.
    public let pos: Int
    /// log2 of the folio size in bytes.
    public let sizeShift: Int
    /// log2 of the file system's block size.
    public let blockShift: Int
    /// The folio's bytes: `size` contiguous bytes, holding what `FolioMemory.fill` says when
    /// the folio is created: nothing a reader may see before it is zeroed, read or written.
    /// Changes only in `adoptMemory`, under the folio lock, while no byte of it is data.
    /// No dynamic exclusivity checks, as for `state`.
    public var data: UnsafeMutableRawPointer { dataStorage }
    // A getter and private storage rather than `public private(set) var`: other modules
    // reaching the stored property directly ignore @exclusivity(unchecked) and call the
    // runtime's exclusivity check on every access.
    @exclusivity(unchecked) private var dataStorage: UnsafeMutableRawPointer
    @usableFromInline let flags: Atomic<UInt32>
    // Guarded by: the folio lock. Uptodate bits in words [0, w), dirty bits in [w, 2w). No
    // dynamic exclusivity checks: the lock already serialises every access, and the write
    // path reads this several times per copy.
    @exclusivity(unchecked) @usableFromInline var state: UnsafeMutablePointer<UInt64>?

    /// Creates a clean, not-uptodate folio of `size` bytes at `pos`, unlocked or, with
    /// `locked`, already locked by the caller.
    ///
    /// A new folio that is to enter the cache is locked before anything else can see it, so
    /// its lock bit is set with a plain store, as `__folio_set_locked` sets it in
    /// `filemap_add_folio`: one atomic read-modify-write fewer per new folio. (It did not
    /// make appends measurably faster: the store-buffer stall that locked instruction paid
    /// moved to the next one, the index lock; docs/DESIGN.md.)
    public init(pos: Int, size: Int, blockShift: Int, locked: Bool = false) {
        precondition(size >= pageSize && size & (size - 1) == 0, "folio size must be a power of two >= a page, got \(size)")
        precondition(pos >= 0 && pos & (size - 1) == 0, "folio at \(pos) is not aligned to its size \(size)")
        self.pos = pos
        self.sizeShift = size.trailingZeroBitCount
        self.blockShift = blockShift
        self.flags = Atomic(locked ? Folio.lockedBit : 0)
        self.dataStorage = FolioMemory.allocate(shift: size.trailingZeroBitCount)
        if locked { LockDep.didTryAcquire(.folio, "folio lock") }
    }

    deinit {
        FolioMemory.free(data, shift: sizeShift)
        state?.deallocate()
    }

    /// Whether the folio may trade its memory for other memory: locked, and none of its
    /// bytes is data or seen by anything else (not uptodate in any block, clean, not under
    /// writeback, not mapped).
    public var canAdoptMemory: Bool {
        guard isLocked, !isUptodate, !isDirty, !isWriteback, !isWriteMapped, !isRemoved else { return false }
        guard let state else { return true }
        for w in 0..<stateWords where state[w] != 0 { return false }
        return true
    }

    /// Takes `memory` (a block of the folio's size, aligned to it, that the caller owned and
    /// now gives up: a ReceiveBlock's piece) as the folio's memory, and frees its own
    /// (ReceiveBlock.swift). Only while `canAdoptMemory`.
    public func adoptMemory(_ memory: UnsafeMutableRawPointer) {
        precondition(canAdoptMemory, "folio at \(pos) cannot trade its memory")
        precondition(UInt(bitPattern: memory) & UInt(size - 1) == 0, "memory for a folio of \(size) bytes is not aligned to it")
        FolioMemory.free(data, shift: sizeShift)
        dataStorage = memory
    }

    @inlinable @inline(__always) public var size: Int { 1 &<< sizeShift }
    /// One past the last byte (`folio_next_pos`).
    @inlinable @inline(__always) public var end: Int { pos &+ size }
    @inlinable @inline(__always) public var range: ByteRange { ByteRange(pos, end) }
    /// The first page index the folio covers.
    @inlinable @inline(__always) public var index: Int { pos &>> pageShift }
    /// Blocks per folio (`i_blocks_per_folio`).
    @inlinable @inline(__always) public var blockCount: Int { 1 &<< (sizeShift &- blockShift) }
    /// `offset_in_folio`: the offset of file byte `offset` inside a folio of this size.
    @inlinable @inline(__always) public func offsetInFolio(_ offset: Int) -> Int { offset & (size &- 1) }

    // MARK: Flags

    @inlinable @inline(__always) public var isLocked: Bool { flags.load(ordering: .acquiring) & Folio.lockedBit != 0 }
    @inlinable @inline(__always) public var isUptodate: Bool { flags.load(ordering: .acquiring) & Folio.uptodateBit != 0 }
    @inlinable @inline(__always) public var isDirty: Bool { flags.load(ordering: .acquiring) & Folio.dirtyBit != 0 }
    @inlinable @inline(__always) public var isWriteback: Bool { flags.load(ordering: .acquiring) & Folio.writebackBit != 0 }
    @inlinable @inline(__always) public var isWriteMapped: Bool { flags.load(ordering: .acquiring) & Folio.writeMappedBit != 0 }
    /// True once the folio has been removed from the page cache (truncated or evicted).
    @inlinable @inline(__always) public var isRemoved: Bool { flags.load(ordering: .acquiring) & Folio.removedBit != 0 }
    /// True when the folio carries per-block state (more than one block per folio).
    // Not inlinable: inlined into another module, the read of `state` pays the runtime's
    // exclusivity check (see `data`).
    public var hasBlockState: Bool { state != nil }

    @inlinable @inline(__always) func setFlag(_ bit: UInt32) { flags.bitwiseOr(bit, ordering: .acquiringAndReleasing) }
    @inlinable @inline(__always) func clearFlag(_ bit: UInt32) { flags.bitwiseAnd(~bit, ordering: .acquiringAndReleasing) }

    // MARK: The folio lock

    /// Takes the folio lock, sleeping while another task holds it (folio_lock).
    public func lock() {
        LockDep.willAcquire(.folio, "folio lock")
        if let b = Interleaving.current {
            Interleaving.acquire(b, self, "folio lock", offset: pos) { tryAcquireLockBit() }
            return
        }
        acquireLockBit()
    }

    /// Takes the folio lock if it is free (folio_trylock); never sleeps.
    public func tryLock() -> Bool {
        guard tryAcquireLockBit() else { return false }
        LockDep.didTryAcquire(.folio, "folio lock")
        return true
    }

    @inline(__always)
    private func tryAcquireLockBit() -> Bool {
        var old = flags.load(ordering: .relaxed)
        while old & Folio.lockedBit == 0 {
            let (done, seen) = flags.weakCompareExchange(
                expected: old, desired: old | Folio.lockedBit,
                successOrdering: .acquiring, failureOrdering: .relaxed)
            if done { return true }
            old = seen
        }
        return false
    }

    @inline(__always)
    private func acquireLockBit() {
        while true {
            let old = flags.load(ordering: .relaxed)
            if old & Folio.lockedBit == 0 {
                if flags.weakCompareExchange(
                    expected: old, desired: old | Folio.lockedBit,
                    successOrdering: .acquiring, failureOrdering: .relaxed
                ).exchanged {
                    return
                }
                continue
            }
            sleep(untilClear: Folio.lockedBit)
        }
    }

    /// Releases the folio lock and wakes its waiters (folio_unlock).
    public func unlock() {
        let old = flags.bitwiseAnd(~Folio.lockedBit, ordering: .releasing).oldValue
        precondition(old & Folio.lockedBit != 0, "unlocking a folio at \(pos) that is not locked")
        LockDep.released(.folio)
        if old & Folio.waitersBit != 0 { wakeWaiters() }
        if let b = Interleaving.current { Interleaving.released(b, self, "folio lock", offset: pos) }
    }

    /// Sleeps until `bit` is observed clear. Sets the waiters bit under the wait slot's mutex
    /// so that a waker which clears `bit` either sees it and broadcasts, or the waiter sees
    /// the bit already clear.
    private func sleep(untilClear bit: UInt32) {
        let slot = WaitTable.slot(for: self)
        slot.lock()
        while true {
            let old = flags.load(ordering: .acquiring)
            if old & bit == 0 { break }
            if old & Folio.waitersBit == 0 {
                if !flags.weakCompareExchange(
                    expected: old, desired: old | Folio.waitersBit,
                    successOrdering: .acquiringAndReleasing, failureOrdering: .relaxed
                ).exchanged {
                    continue
                }
            }
            slot.wait()
        }
        slot.unlock()
    }

    private func wakeWaiters() {
        let slot = WaitTable.slot(for: self)
        slot.lock()
        flags.bitwiseAnd(~Folio.waitersBit, ordering: .relaxed)
        slot.broadcast()
        slot.unlock()
    }

    @inlinable @inline(__always) public func assertLocked(_ what: @autoclosure () -> String = "") {
        precondition(isLocked, "folio at \(pos) must be locked \(what())")
    }

    // MARK: Writeback bit

    /// Marks the folio under writeback (folio_start_writeback). The caller holds the lock.
    public func startWriteback() {
        assertLocked("to start writeback")
        let old = flags.bitwiseOr(Folio.writebackBit, ordering: .acquiringAndReleasing).oldValue
        precondition(old & Folio.writebackBit == 0, "folio at \(pos) is already under writeback")
    }

    /// Ends writeback and wakes waiters (folio_end_writeback); no lock needed.
    public func endWritebackBit() {
        let old = flags.bitwiseAnd(~Folio.writebackBit, ordering: .acquiringAndReleasing).oldValue
        precondition(old & Folio.writebackBit != 0, "ending writeback on folio at \(pos) that is not under writeback")
        if old & Folio.waitersBit != 0 { wakeWaiters() }
        Interleaving.signal(self)
    }

    /// Sleeps until the folio is not under writeback (folio_wait_writeback).
    public func waitWriteback() {
        guard isWriteback else { return }
        if let b = Interleaving.current {
            Interleaving.wait(b, self, "writeback of folio", offset: pos) { !isWriteback }
            return
        }
        sleep(untilClear: Folio.writebackBit)
    }

    // MARK: Per-block state (iomap_folio_state)

    @inlinable @inline(__always) var stateWords: Int { (blockCount + 63) >> 6 }

    /// Attaches per-block state if the folio has more than one block and none is attached
    /// (ifs_alloc): a folio already uptodate or dirty starts with every bit set.
    public func attachBlockState() {
        assertLocked("to attach block state")
        guard state == nil, blockCount > 1 else { return }
        let w = stateWords
        let p = UnsafeMutablePointer<UInt64>.allocate(capacity: 2 * w)
        p.initialize(repeating: 0, count: 2 * w)
        state = p
        if isUptodate { setBits(0, 0, blockCount) }
        if isDirty { setBits(w, 0, blockCount) }
    }

    @inline(__always) func bit(_ base: Int, _ block: Int) -> Bool {
        state![base + (block >> 6)] & (1 << UInt64(block & 63)) != 0
    }

    @usableFromInline func setBits(_ base: Int, _ first: Int, _ count: Int) {
        guard let state, count > 0 else { return }
        let lo = first & 63
        if lo + count <= 64 {
            // The common case, a write's few blocks inside one word: one mask.
            let mask: UInt64 = count == 64 ? ~0 : ((1 &<< UInt64(count)) &- 1) &<< UInt64(lo)
            state[base + (first &>> 6)] |= mask
            return
        }
        var b = first
        let end = first + count
        while b < end {
            let word = b >> 6
            let lo = b & 63
            let n = min(64 - lo, end - b)
            let mask: UInt64 = n == 64 ? ~0 : ((1 << UInt64(n)) - 1) << UInt64(lo)
            state[base + word] |= mask
            b += n
        }
    }

    func clearBits(_ base: Int, _ first: Int, _ count: Int) {
        guard let state, count > 0 else { return }
        for b in first..<(first + count) { state[base + (b >> 6)] &= ~(1 << UInt64(b & 63)) }
    }

    func allBitsSet(_ base: Int) -> Bool {
        guard let state else { return false }
        let n = blockCount
        for w in 0..<stateWords {
            let bitsHere = min(64, n - w * 64)
            let mask: UInt64 = bitsHere == 64 ? ~0 : (1 << UInt64(bitsHere)) - 1
            if state[base + w] & mask != mask { return false }
        }
        return true
    }

    /// Whether block `block` (index within the folio) is uptodate.
    public func isBlockUptodate(_ block: Int) -> Bool {
        guard state != nil else { return isUptodate }
        return bit(0, block)
    }

    /// Whether block `block` (index within the folio) is dirty.
    public func isBlockDirty(_ block: Int) -> Bool {
        guard state != nil else { return isDirty }
        return bit(stateWords, block)
    }

    /// Marks the blocks overlapping `[offset, offset + length)` (offsets inside the folio)
    /// uptodate, and the folio uptodate once every block is (iomap_set_range_uptodate).
    /// Without per-block state the whole folio becomes uptodate.
    public func setRangeUptodate(offset: Int, length: Int) {
        assertLocked("to mark blocks uptodate")
        if isUptodate { return }
        if state != nil {
            guard length > 0 else { return }
            let first = offset >> blockShift
            let last = (offset + length - 1) >> blockShift
            setBits(0, first, last - first + 1)
            if !allBitsSet(0) { return }
        }
        setFlag(Folio.uptodateBit)
    }

    /// Marks one block not uptodate. Only for a block that is not dirty, in a folio that is
    /// not uptodate as a whole (a rejected copy's blocks).
    public func clearBlockUptodate(_ block: Int) {
        assertLocked("to clear a block's uptodate bit")
        precondition(state != nil && !isUptodate && !bit(stateWords, block), "clearing uptodate on a dirty block or an uptodate folio")
        clearBits(0, block, 1)
    }

    /// Marks the blocks of `[offset, offset + length)` dirty in the per-block state
    /// (ifs_set_range_dirty). Like the kernel, a zero length at an unaligned offset still
    /// marks the block holding `offset` (docs/KERNEL-MODEL.md §2.6, the zero-byte-copy quirk).
    public func setRangeDirtyBits(offset: Int, length: Int) {
        assertLocked("to mark blocks dirty")
        guard state != nil else { return }
        let first = offset >> blockShift
        let last = (offset + length - 1) >> blockShift
        if last >= first { setBits(stateWords, first, last - first + 1) }
    }

    /// Clears every per-block dirty bit (iomap_clear_range_dirty over the whole folio).
    public func clearAllDirtyBits() {
        guard let state else { return }
        let w = stateWords
        for i in 0..<w { state[w + i] = 0 }
    }

    /// Clears the per-block dirty bits of blocks `fromBlock` onwards.
    public func clearDirtyBits(fromBlock: Int) {
        assertLocked("to clear dirty bits")
        guard state != nil, fromBlock < blockCount else { return }
        clearBits(stateWords, fromBlock, blockCount - fromBlock)
    }

    /// Sets every per-block dirty bit (iomap_dirty_folio after ifs_alloc).
    public func setAllDirtyBits() {
        assertLocked("to mark all blocks dirty")
        setBits(stateWords, 0, blockCount)
    }

    /// True when every block overlapping `[offset, min(offset + count, size))` is uptodate
    /// (iomap_is_partially_uptodate); false without per-block state.
    public func isPartiallyUptodate(offset: Int, count: Int) -> Bool {
        guard state != nil else { return false }
        let n = min(size - offset, count)
        guard n > 0 else { return false }
        let first = offset >> blockShift
        let last = (offset + n - 1) >> blockShift
        for b in first...last where !bit(0, b) { return false }
        return true
    }

    /// The first run of dirty blocks at or after folio offset `from` and below `limit`, as
    /// folio offsets (iomap_find_dirty_range). Without per-block state the whole range is one
    /// run.
    public func nextDirtyRun(from: Int, limit: Int) -> Range<Int>? {
        guard from < limit else { return nil }
        guard state != nil else { return from..<limit }
        let bs = 1 << blockShift
        var b = from >> blockShift
        let lastBlock = (limit - 1) >> blockShift
        while b <= lastBlock && !bit(stateWords, b) { b += 1 }
        if b > lastBlock { return nil }
        var e = b
        while e <= lastBlock && bit(stateWords, e) { e += 1 }
        return max(from, b * bs)..<min(limit, e * bs)
    }

    /// Whether any block overlapping folio offsets `range` is dirty.
    public func hasDirtyBlocks(overlapping range: Range<Int>) -> Bool {
        guard !range.isEmpty else { return false }
        guard state != nil else { return isDirty }
        let first = range.lowerBound >> blockShift
        let last = (range.upperBound - 1) >> blockShift
        for b in first...last where bit(stateWords, b) { return true }
        return false
    }

    /// Whether any per-block dirty bit is set (true for a dirty folio without block state).
    public var hasDirtyBlocks: Bool {
        guard let state else { return isDirty }
        let w = stateWords
        for i in 0..<w where state[w + i] != 0 { return true }
        return false
    }

    /// Zeroes folio bytes `[from, to)` (offsets inside the folio).
    public func zero(from: Int, to: Int) {
        guard from < to else { return }
        precondition(from >= 0 && to <= size, "zeroing [\(from), \(to)) outside a \(size)-byte folio")
        (data + from).initializeMemory(as: UInt8.self, repeating: 0, count: to - from)
    }

}
