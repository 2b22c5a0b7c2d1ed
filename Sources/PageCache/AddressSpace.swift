// Counterpart: struct address_space and mm/filemap.c: __filemap_get_folio(),
// filemap_lock_folio(), filemap_dirty_folio(), folio_clear_dirty_for_io(),
// mapping_seek_hole_data() with folio_seek_hole_data(), the writeback error latch
// (mapping_set_error with errseq_t), plus the parts of mm/truncate.c
// (truncate_inode_pages_range) and mm/vmscan.c (reclaim of clean folios) that the engine
// needs.
//
// The index is a radix tree keyed by page index with dirty and writeback tags, guarded by
// its own leaf lock as the xarray is by xa_lock. A folio is inserted locked and is removed
// only with its lock held; whoever looks a folio up and locks it re-checks `isRemoved`, as
// the kernel re-checks folio->mapping.

import IOMapBase
import Synchronization

public final class AddressSpace: Sendable {
    public let geometry: BlockGeometry
    /// The largest folio the cache creates (mapping_max_folio_size), 4 KiB to 2 MiB.
    public let maxFolioSize: Int
    /// mapping->invalidate_lock.
    public let invalidateLock = RWSleepLock(level: .invalidate, name: "invalidate lock")
    let index: OrderedMutex<CacheIndex<Folio>>
    let cachedBytesCounter = Atomic<Int>(0)
    let memoryLimitBytes = Atomic<Int>(0)
    let reclaimCursor = Atomic<Int>(0)
    let errorLatch = OrderedMutex<(sequence: Int, errno: Errno?)>(.leaf, "writeback error latch", (0, nil))
    let evictions = Atomic<Int>(0)

    public init(geometry: BlockGeometry, maxFolioSize: Int) {
        precondition(
            maxFolioSize >= pageSize && maxFolioSize <= 2 << 20 && maxFolioSize & (maxFolioSize - 1) == 0,
            "maximum folio size must be a power of two from 4 KiB to 2 MiB, got \(maxFolioSize)")
        self.geometry = geometry
        self.maxFolioSize = maxFolioSize
        self.index = OrderedMutex(.cacheIndex, "page-cache index", CacheIndex<Folio>())
    }

    // MARK: Accounting and limits

    /// Bytes held by cached folios.
    public var cachedBytes: Int { cachedBytesCounter.load(ordering: .relaxed) }
    /// Number of folios evicted by reclaim or drop-caches so far.
    public var evictionCount: Int { evictions.load(ordering: .relaxed) }
    /// The cache's memory limit in bytes (0: none). Creating a folio past it first reclaims
    /// clean folios; dirty, locked and writeback folios cannot be reclaimed, so the limit is
    /// a target that dirty data may exceed until it is written back.
    public var memoryLimit: Int {
        get { memoryLimitBytes.load(ordering: .relaxed) }
        set { memoryLimitBytes.store(newValue, ordering: .relaxed) }
    }

    /// Number of cached folios.
    public var folioCount: Int { index.withLock { $0.count } }

    // MARK: Lookup

    /// The folio covering byte `offset`, if cached (filemap_get_folio). Not locked.
    public func lookup(_ offset: Int) -> Folio? {
        let page = pageIndex(of: offset)
        return index.withLock { idx -> Folio? in
            guard let (_, f) = idx.floor(page), f.end > offset else { return nil }
            return f
        }
    }

    /// The folio covering byte `offset`, locked, or nil when none is cached
    /// (filemap_lock_folio).
    public func lockFolio(_ offset: Int) -> Folio? {
        while true {
            guard let f = lookup(offset) else { return nil }
            f.lock()
            if !f.isRemoved { return f }
            f.unlock()
        }
    }

    /// The folios overlapping `range`, in order, unlocked: a snapshot for walks that lock each
    /// folio in turn and re-check it.
    public func folios(overlapping range: ByteRange) -> [Folio] {
        guard !range.isEmpty else { return [] }
        let first = pageIndex(of: range.start)
        return index.withLock { idx -> [Folio] in
            var out: [Folio] = []
            var from = first
            if let (_, f) = idx.floor(first), f.end > range.start {
                out.append(f)
                from = pageIndex(of: f.end)
            }
            idx.forEach(from: from) { _, f in
                guard f.pos < range.end else { return false }
                out.append(f)
                return true
            }
            return out
        }
    }

    /// The first folio at or after byte `offset` carrying `tag` whose start is below `end`.
    public func nextTagged(_ tag: CacheTag, from offset: Int, before end: Int) -> Folio? {
        index.withLock { idx -> Folio? in
            var from = pageIndex(of: offset)
            // A folio starting before `offset` but covering it is looked at first.
            if let (_, f) = idx.floor(from), f.end > offset {
                if idx.isTagged(tag, f.index) { return f.pos < end ? f : nil }
                from = pageIndex(of: f.end)
            }
            guard let (_, f) = idx.nextTagged(tag, from: from), f.pos < end else { return nil }
            return f
        }
    }

    /// True when some folio carries `tag`.
    public func hasTagged(_ tag: CacheTag) -> Bool { index.withLock { $0.hasTagged(tag) } }

    // MARK: Creation

    /// The order of a new folio for a write of `length` bytes at `offset`, as
    /// __filemap_get_folio chooses it from fgf_set_order(len): the largest power of two not
    /// above the length, within the mapping's maximum, reduced to the alignment of the page
    /// index.
    public func preferredFolioSize(offset: Int, length: Int) -> Int {
        var shift = length > 0 ? (Int.bitWidth - 1 - length.leadingZeroBitCount) : pageShift
        shift = max(pageShift, min(shift, maxFolioSize.trailingZeroBitCount))
        let page = pageIndex(of: offset)
        let orderShift = shift - pageShift
        if page & ((1 << orderShift) - 1) != 0 {
            shift = pageShift + page.trailingZeroBitCount
        }
        return 1 << shift
    }

    /// Finds the folio covering `offset` or creates one sized for a `length`-byte access,
    /// and returns it locked (__filemap_get_folio with FGP_LOCK | FGP_CREAT). A new folio
    /// falls back to smaller sizes where a larger one would overlap a cached folio.
    public func getFolio(_ offset: Int, length: Int) -> Folio {
        getFolio(offset, length: length, nowait: false)!
    }

    /// As `getFolio`, but with `nowait` (FGP_NOWAIT) a cached folio whose lock is held by
    /// another task is not waited for: the result is nil, for EAGAIN. A missing folio is
    /// still created, as the kernel creates it with a non-blocking allocation.
    public func getFolio(_ offset: Int, length: Int, nowait: Bool) -> Folio? {
        if nowait {
            while let f = lookup(offset) {
                guard f.tryLock() else { return nil }
                if !f.isRemoved { return f }
                f.unlock()
            }
        } else if let f = lockFolio(offset) {
            return f
        }
        var size = preferredFolioSize(offset: offset, length: length)
        let page = pageIndex(of: offset)
        while true {
            let start = roundDown(offset, size)
            // A new folio is locked before it becomes visible, as filemap_add_folio requires.
            let candidate = Folio(pos: start, size: size, blockShift: geometry.blockShift, locked: true)
            enum Outcome { case inserted, existing(Folio), overlap }
            let outcome = index.withLock { idx -> Outcome in
                if let (_, f) = idx.floor(page), f.end > offset { return .existing(f) }
                let lastPage = pageIndex(of: start + size - 1)
                // For a one-page folio the floor just taken was at its last page already.
                if lastPage != page, let (_, f) = idx.floor(lastPage), f.end > start { return .overlap }
                idx.insert(candidate.index, candidate)
                return .inserted
            }
            switch outcome {
            case .inserted:
                cachedBytesCounter.add(size, ordering: .relaxed)
                if memoryLimit > 0 && cachedBytes > memoryLimit { reclaim(targetBytes: memoryLimit) }
                return candidate
            case .existing:
                candidate.unlock()
                if nowait {
                    guard let f = lookup(offset) else { continue }
                    guard f.tryLock() else { return nil }
                    if !f.isRemoved { return f }
                    f.unlock()
                } else if let f = lockFolio(offset) {
                    return f
                }
            case .overlap:
                candidate.unlock()
                precondition(size > pageSize, "a page-sized folio cannot overlap another")
                size >>= 1
            }
        }
    }

    // MARK: Dirty, writeback and removal

    /// Marks a locked folio dirty and tags it (filemap_dirty_folio).
    public func markDirty(_ folio: Folio) {
        folio.assertLocked("to mark it dirty")
        if folio.isDirty { return }
        folio.setFlag(Folio.dirtyBit)
        index.withLock { $0.setTag(.dirty, folio.index) }
    }

    /// Clears a locked folio's dirty flag and tag for writeback and write-protects it, so that
    /// the next store through a mapping faults again (folio_clear_dirty_for_io with
    /// page_mkclean). Returns whether it was dirty.
    @discardableResult
    public func clearDirtyForIO(_ folio: Folio) -> Bool {
        folio.assertLocked("to clear it for I/O")
        folio.clearFlag(Folio.writeMappedBit)
        guard folio.isDirty else { return false }
        folio.clearFlag(Folio.dirtyBit)
        index.withLock { $0.clearTag(.dirty, folio.index) }
        return true
    }

    /// Drops a locked folio's dirty state without writing it (folio_cancel_dirty).
    public func cancelDirty(_ folio: Folio) {
        folio.assertLocked("to cancel its dirty state")
        folio.clearFlag(Folio.writeMappedBit)
        folio.clearAllDirtyBits()
        guard folio.isDirty else { return }
        folio.clearFlag(Folio.dirtyBit)
        index.withLock { $0.clearTag(.dirty, folio.index) }
    }

    /// Starts writeback on a locked folio and tags it.
    public func startWriteback(_ folio: Folio) {
        folio.startWriteback()
        index.withLock { $0.setTag(.writeback, folio.index) }
    }

    /// Ends writeback on a folio, untags it and wakes waiters.
    public func endWriteback(_ folio: Folio) {
        if !folio.isRemoved { index.withLock { $0.clearTag(.writeback, folio.index) } }
        folio.endWritebackBit()
    }

    /// Marks a locked folio uptodate as a whole (folio_mark_uptodate).
    public func markUptodate(_ folio: Folio) {
        folio.assertLocked("to mark it uptodate")
        folio.setFlag(Folio.uptodateBit)
        if folio.hasBlockState { folio.setBits(0, 0, folio.blockCount) }
    }

    /// Records that the folio is mapped writable (after page_mkwrite).
    public func setWriteMapped(_ folio: Folio) {
        folio.assertLocked("to map it writable")
        folio.setFlag(Folio.writeMappedBit)
    }

    /// Write-protects a folio so the next store faults (folio_mkclean).
    public func clearWriteMapped(_ folio: Folio) { folio.clearFlag(Folio.writeMappedBit) }

    /// Removes a locked folio from the cache (filemap_remove_folio). Its dirty state is
    /// cancelled; the caller has waited for writeback to end.
    public func remove(_ folio: Folio) {
        folio.assertLocked("to remove it")
        precondition(!folio.isWriteback, "removing folio at \(folio.pos) while it is under writeback")
        guard !folio.isRemoved else { return }
        index.withLock { idx in
            let removed = idx.remove(folio.index)
            precondition(removed === folio, "the index held another folio at \(folio.pos)")
        }
        folio.clearFlag(Folio.dirtyBit | Folio.writeMappedBit)
        folio.setFlag(Folio.removedBit)
        cachedBytesCounter.subtract(folio.size, ordering: .relaxed)
    }

    // MARK: Reclaim

    /// Evicts `folio` if it is clean, unlocked and not under writeback; never sleeps.
    @discardableResult
    public func tryEvict(_ folio: Folio) -> Bool {
        guard !folio.isDirty, !folio.isWriteback, folio.tryLock() else { return false }
        defer { folio.unlock() }
        guard !folio.isRemoved, !folio.isDirty, !folio.isWriteback else { return false }
        remove(folio)
        evictions.add(1, ordering: .relaxed)
        return true
    }

    /// Evicts clean folios, round-robin from where the last reclaim stopped, until the cache
    /// holds at most `targetBytes` or a full pass found nothing more to evict. Returns the
    /// number of folios evicted.
    @discardableResult
    public func reclaim(targetBytes: Int) -> Int {
        var evicted = 0
        var cursor = reclaimCursor.load(ordering: .relaxed)
        var wrapped = false
        while cachedBytes > targetBytes {
            let batch = index.withLock { idx -> [Folio] in
                var out: [Folio] = []
                idx.forEach(from: cursor) { _, f in
                    out.append(f)
                    return out.count < 64
                }
                return out
            }
            if batch.isEmpty {
                if wrapped || cursor == 0 { break }
                wrapped = true
                cursor = 0
                continue
            }
            for f in batch {
                if cachedBytes <= targetBytes { break }
                if tryEvict(f) { evicted += 1 }
                cursor = pageIndex(of: f.end)
            }
        }
        reclaimCursor.store(cursor, ordering: .relaxed)
        return evicted
    }

    /// Evicts every clean, unlocked folio not under writeback (drop_caches /
    /// invalidate_mapping_pages). Returns the number evicted.
    @discardableResult
    public func dropCaches() -> Int {
        var evicted = 0
        for f in folios(overlapping: ByteRange(0, maxFileSize)) where tryEvict(f) { evicted += 1 }
        return evicted
    }

    /// Evicts the clean folios overlapping `range` (invalidate_inode_pages2_range's clean
    /// half, as direct-I/O completion and fadvise(DONTNEED) do).
    @discardableResult
    public func invalidateClean(_ range: ByteRange) -> Int {
        var evicted = 0
        for f in folios(overlapping: range) where tryEvict(f) { evicted += 1 }
        return evicted
    }

    // MARK: Truncation

    /// Removes the folios wholly inside `[start, end)` and zeroes the covered bytes of folios
    /// that straddle either edge, dropping them if clean and keeping them dirty otherwise
    /// (truncate_inode_pages_range; callers
    /// with the kernel's inclusive `lend` pass `lend + 1`). Dirty folios are removed too: this
    /// is the operation that destroyed other writers' data before the seed fix.
    public func truncatePages(_ range: ByteRange) {
        guard !range.isEmpty else { return }
        for f in folios(overlapping: range) {
            f.lock()
            defer { f.unlock() }
            if f.isRemoved { continue }
            f.waitWriteback()
            if range.start <= f.pos && range.end >= f.end {
                remove(f)
            } else {
                let from = max(range.start, f.pos) - f.pos
                let to = min(range.end, f.end) - f.pos
                f.zero(from: from, to: to)
                // The kernel splits a large folio here and drops the pages inside the range,
                // or drops the whole folio when it is clean and cannot split. We never split;
                // a clean folio holds nothing the disk does not, so dropping it whole gives the
                // same contents. A dirty one keeps its zeroed bytes, as in the kernel.
                if !f.isDirty { remove(f) }
            }
        }
    }

    // MARK: Writeback errors

    /// Latches a writeback error for fsync callers (mapping_set_error).
    public func setError(_ errno: Errno) {
        errorLatch.withLock { $0 = ($0.sequence + 1, errno) }
    }

    /// The latch's current sequence; an open file samples it (file->f_wb_err).
    public var errorSequence: Int { errorLatch.withLock { $0.sequence } }

    /// Reports a latched error once to the caller whose last seen sequence is `seen`
    /// (file_check_and_advance_wb_err).
    public func checkAndAdvanceError(_ seen: inout Int) -> Errno? {
        let (seq, err) = errorLatch.withLock { ($0.sequence, $0.errno) }
        guard seq != seen else { return nil }
        seen = seq
        return err
    }

    // MARK: Checks

    /// Checks every cached folio's state and the index's tags: tags match flags, folios do
    /// not overlap, and per-block state agrees with folio flags. O(n).
    public func checkInvariants() {
        index.withLock { idx in
            idx.checkInvariants()
            var lastEnd = 0
            var bytes = 0
            idx.forEach(from: 0) { key, f in
                if key != f.index { fatalError("index key \(key) holds folio at page \(f.index)") }
                if f.pos < lastEnd { fatalError("folio at \(f.pos) overlaps the previous one ending at \(lastEnd)") }
                if f.isRemoved { fatalError("removed folio at \(f.pos) is still indexed") }
                if idx.isTagged(.dirty, key) != f.isDirty { fatalError("dirty tag disagrees with flag: \(f.debugState)") }
                if idx.isTagged(.writeback, key) != f.isWriteback { fatalError("writeback tag disagrees: \(f.debugState)") }
                if f.isDirty && !f.isUptodate && !f.hasBlockState { fatalError("dirty folio not uptodate (K1): \(f.debugState)") }
                lastEnd = f.end
                bytes += f.size
                return true
            }
            if bytes != cachedBytes { fatalError("cached bytes \(cachedBytes) but folios hold \(bytes)") }
        }
    }
}
