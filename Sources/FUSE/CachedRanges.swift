// Counterpart: the kernel's page cache of a FUSE inode (fuse_readahead, fuse_read_folio:
// the READs without FUSE_READ_LOCKOWNER), as far as the daemon can know it.
//
// Why: in direct-I/O mode the kernel caches a file's pages only where a mapping faulted them
// in, and a store through the mapping stays in those pages, unseen by the daemon, until it
// is written back; the kernel sends LSEEK without writing anything back first. Answering
// SEEK_DATA from the engine alone would then call bytes a process has stored a hole, which
// lseek(2) never allows (calling a hole data is allowed). A page can only be dirtied in the
// kernel's cache after the kernel has read it, and such reads come without a lock owner, so
// every range read that way is remembered and answered as data until the inode's last open
// is released: by then munmap and close have written every dirty page back (a mapping holds
// its file open, so RELEASE comes after the last munmap).

import IOMapBase
import Synchronization
import Volume

/// Per inode: the byte ranges the kernel may hold in its page cache, and the opens that keep
/// them alive.
final class KernelCachedRanges: Sendable {
    struct Entry {
        var opens = 0
        /// Sorted, disjoint, not touching.
        var ranges: [Range<Int>] = []
    }

    let table = Mutex<[InodeNumber: Entry]>([:])

    func opened(_ ino: InodeNumber) { table.withLock { $0[ino, default: Entry()].opens += 1 } }

    /// The last open of `ino` went: its pages have been written back, and the ranges go.
    func released(_ ino: InodeNumber) {
        table.withLock { t in
            guard var e = t[ino] else { return }
            e.opens -= 1
            t[ino] = e.opens <= 0 ? nil : e
        }
    }

    /// A page-cache read of `range`.
    func add(_ ino: InodeNumber, _ range: Range<Int>) {
        guard !range.isEmpty else { return }
        table.withLock { t in
            guard var e = t[ino] else { return }
            e.ranges = Self.merge(e.ranges, range)
            t[ino] = e
        }
    }

    /// Whether `ino` has an open (its ranges live).
    func isTracked(_ ino: InodeNumber) -> Bool { table.withLock { $0[ino] != nil } }

    func ranges(_ ino: InodeNumber) -> [Range<Int>] { table.withLock { $0[ino]?.ranges ?? [] } }

    /// `ranges` with `new` added, merged with every range it overlaps or touches.
    static func merge(_ ranges: [Range<Int>], _ new: Range<Int>) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var joined = new
        var placed = false
        for r in ranges {
            if r.upperBound < joined.lowerBound {
                out.append(r)
            } else if r.lowerBound > joined.upperBound {
                if !placed {
                    out.append(joined)
                    placed = true
                }
                out.append(r)
            } else {
                joined = min(r.lowerBound, joined.lowerBound)..<max(r.upperBound, joined.upperBound)
            }
        }
        if !placed { out.append(joined) }
        return out
    }

    /// SEEK_DATA from `offset`: the engine's answer (nil for ENXIO) or the first cached range
    /// at or after `offset`, whichever comes first, below `size`; nil: no data (ENXIO).
    static func seekData(engine: Int?, offset: Int, size: Int, cached: [Range<Int>]) -> Int? {
        let fromCache = cached.first { $0.upperBound > offset }.map { max($0.lowerBound, offset) }
        let found = [engine, fromCache].compactMap { $0 }.filter { $0 < size }.min()
        return found
    }

    /// SEEK_HOLE from `offset` (below `size`): the engine's holes, skipping those inside a
    /// cached range. `engineHole(from)` is the engine's SEEK_HOLE.
    static func seekHole(
        offset: Int, size: Int, cached: [Range<Int>], engineHole: (Int) throws(Errno) -> Int
    ) throws(Errno) -> Int {
        var at = offset
        while true {
            let hole = try engineHole(at)
            guard let r = cached.first(where: { $0.contains(hole) }) else { return hole }
            if r.upperBound >= size { return size }
            at = r.upperBound
        }
    }
}
