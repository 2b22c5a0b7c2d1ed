// Counterpart: the kernel's debug checks around delalloc (the WARN in
// iomap_write_delalloc_release, xfs_check_delalloc, the ASSERTs on i_delayed_blks), gathered
// into one check of docs/KERNEL-MODEL.md §8 that tests run at quiet points.
//
// Checked here, per file:
// - Write-mapped folios have every block below EOF dirty (stores into them do not fault).
// - K1: every dirty block is uptodate; a folio is uptodate exactly when all its blocks are.
// - D3: every dirty block below EOF has backing (a delalloc, unwritten or written extent),
//   so writeback never finds a hole under dirty data.
// - D1 (global form): every delalloc block lies below EOF under a dirty cached block, so a
//   failed write removed the reservation wherever nothing dirty protected it, and left it
//   wherever something did.
// - The page-cache index, its tags and the extent map are structurally sound, and no folio
//   is left under writeback.
// D4 (space accounting) spans files: ExtentFS.checkSpaceAccounting().

import IOMapBase
import IOMap
import PageCache

extension ExtentFile {
    /// Every violated invariant, described, for the harnesses' messages.
    public func invariantViolations() -> [String] { invariantFindings().map(\.description) }

    /// Returns every violated invariant; empty when all hold. Call it only when no operation
    /// is running on the file.
    public func invariantFindings() -> [InvariantFinding] {
        var problems: [InvariantFinding] = []
        let g = geometry
        let isize = inode.size
        mapping.checkInvariants()
        let map = extents.withLock { m -> ExtentMap in
            m.checkInvariants()
            return m
        }
        var protectedDelalloc = Set<Int>()
        for folio in mapping.folios(overlapping: ByteRange(0, maxFileSize)) {
            folio.lock()
            defer { folio.unlock() }
            folio.checkInvariants()
            if folio.isWriteback {
                problems.append(
                    InvariantFinding(.quietWriteback, at: folio.pos, "folio left under writeback at a quiet point: \(folio.debugState)"))
            }
            if folio.isWriteMapped {
                // Stores into a writable folio do not fault, so every block they can reach below
                // EOF must already be dirty (and so reserved): page_mkwrite dirtied them all, and
                // whatever cleans a block write-protects its folio first.
                let firstUnreachable = min(folio.end, g.roundUpToBlock(isize))
                for b in 0..<folio.blockCount where folio.pos + (b << g.blockShift) < firstUnreachable && !folio.isBlockDirty(b) {
                    problems.append(
                        InvariantFinding(
                            .writeMapped, at: folio.pos + (b << g.blockShift),
                            "write-mapped folio has a clean block \(b) below EOF: \(folio.debugState)"))
                    break
                }
            }
            guard folio.isDirty else { continue }
            for b in 0..<folio.blockCount where folio.isBlockDirty(b) {
                let start = folio.pos + (b << g.blockShift)
                if !folio.isBlockUptodate(b) {
                    problems.append(InvariantFinding(.k1, at: start, "dirty block at \(start) is not uptodate: \(folio.debugState)"))
                }
                guard start < isize else { continue }
                let fileBlock = g.blockIndex(of: start)
                guard let record = map.lookup(fileBlock) else {
                    problems.append(
                        InvariantFinding(.d3, at: start, "dirty block at \(start) below EOF \(isize) has no backing: \(folio.debugState)"))
                    continue
                }
                if record.state == .delalloc { protectedDelalloc.insert(fileBlock) }
            }
        }
        for r in map.records where r.state == .delalloc {
            for b in r.startBlock..<r.endBlock where !protectedDelalloc.contains(b) {
                problems.append(
                    InvariantFinding(
                        .d1, at: g.offset(ofBlock: b),
                        "delalloc block \(b) (bytes \(g.offset(ofBlock: b))) has no dirty cache over it below EOF \(isize)"))
                break
            }
        }
        return problems
    }
}
