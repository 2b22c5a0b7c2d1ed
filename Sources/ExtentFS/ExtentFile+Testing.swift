// Counterpart: none; white-box hooks for scenario tests: build an exact cache and extent state (as the
// kernel's scenario descriptions in docs/KERNEL-MODEL.md §10 give it) without going through the
// operations that would normally produce it. Underscored: not API, and never used by the
// engine itself.

import IOMapBase
import IOMap
import PageCache

extension ExtentFile {
    /// Inserts a folio of `size` bytes at `pos` with the given per-block uptodate and dirty
    /// bits (one entry per block; a single flag each when the folio holds one block), filled
    /// with `fill`. Dirty blocks must be uptodate.
    public func _installFolio(pos: Int, size: Int, uptodate: [Bool], dirty: [Bool], fill: UInt8 = 0) {
        let folio = mapping.getFolio(pos, length: size)
        precondition(folio.pos == pos && folio.size == size, "a folio already covers \(pos) with another shape")
        defer { folio.unlock() }
        precondition(uptodate.count == folio.blockCount && dirty.count == folio.blockCount, "one bit per block expected")
        folio.data.initializeMemory(as: UInt8.self, repeating: fill, count: size)
        let bs = geometry.blockSize
        if folio.blockCount > 1 { folio.attachBlockState() }
        for b in 0..<folio.blockCount where uptodate[b] { folio.setRangeUptodate(offset: b * bs, length: bs) }
        if dirty.contains(true) {
            for b in 0..<folio.blockCount where dirty[b] {
                precondition(uptodate[b], "dirty block \(b) must be uptodate")
                folio.setRangeDirtyBits(offset: b * bs, length: bs)
            }
            mapping.markDirty(folio)
        }
    }

    /// Reserves delalloc over file blocks `[from, to)`, which must be a hole.
    public func _reserveDelalloc(fromBlock from: Int, toBlock to: Int) throws(Errno) {
        try fs.space.reserve(to - from)
        extents.withLock { $0.insert(ExtentRecord(startBlock: from, blockCount: to - from, state: .delalloc)) }
    }

    /// Sets i_size directly.
    public func _setSize(_ size: Int) { inode.setSize(size) }

    /// A NEW delalloc mapping over file blocks `[from, to)` with the current cookie, as the
    /// write's iomapBegin would have returned it.
    public func _newDelallocMapping(fromBlock from: Int, toBlock to: Int) -> IOMapping {
        let g = geometry
        return IOMapping(
            offset: g.offset(ofBlock: from), length: g.offset(ofBlock: to - from), kind: .delalloc, flags: .new,
            validityCookie: extentSequence)
    }

    /// Runs the failure cleanup a write would run from iomapEnd: `pos`, `length` and
    /// `written` as iomap_iter passes them.
    public func _failWrite(pos: Int, length: Int, written: Int, mapping m: IOMapping) {
        do {
            try iomapEnd(inode, pos: pos, length: length, written: written, flags: [.write], mapping: m)
        } catch {
            preconditionFailure("iomapEnd failed: \(error)")
        }
    }

    /// The folio holding `offset`, if cached (for assertions).
    public func _folio(at offset: Int) -> Folio? { mapping.lookup(offset) }
}

extension ExtentFile {
    /// The file's size, extent records and cached folios, one per line (for failure reports).
    public func debugDump() -> String {
        var lines = ["size \(size), sequence \(extentSequence)"]
        lines += extentRecords.map { "  extent \($0)" }
        lines += mapping.folios(overlapping: ByteRange(0, maxFileSize)).map { "  \($0.debugState)" }
        return lines.joined(separator: "\n")
    }
}
