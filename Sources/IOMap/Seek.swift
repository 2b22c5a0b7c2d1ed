// Counterpart: iomap_seek_hole(), iomap_seek_data() and their iterators in fs/iomap/seek.c.
//
// SEEK_HOLE and SEEK_DATA over the file: holes are holes, delalloc and written extents are
// data, and unwritten extents are data only where the page cache holds uptodate data over
// them. There is an implicit hole at EOF.

import IOMapBase
import PageCache

/// The first hole at or after `pos` (lseek SEEK_HOLE); EOF when there is none before it.
/// Throws ENXIO when `pos` is negative or at or past EOF.
///
/// Generic and inlinable, as the iterator is: the file system's own seek gets a copy
/// specialized to it, with the answer closure inlined into the loop.
@inlinable
public func iomapSeekHole<Ops: IOMapOperations>(_ inode: Inode, pos: Int, ops: Ops) throws(Errno) -> Int {
    let found = try iomapSeek(inode, pos: pos, ops: ops) { kind, start, length in
        switch kind {
        case .hole: return start
        case .unwritten:
            // Unwritten blocks are a hole except where the cache holds data over them.
            let hole = inode.mapping.seekHoleData(start: start, end: start + length, whence: .hole)
            return hole == start + length ? nil : hole
        default: return nil
        }
    }
    return found ?? inode.size
}

/// The first data at or after `pos` (lseek SEEK_DATA). Throws ENXIO when `pos` is negative,
/// at or past EOF, or when no data lies before EOF.
@inlinable
public func iomapSeekData<Ops: IOMapOperations>(_ inode: Inode, pos: Int, ops: Ops) throws(Errno) -> Int {
    let found = try iomapSeek(inode, pos: pos, ops: ops) { kind, start, length in
        switch kind {
        case .hole: return nil
        case .unwritten: return inode.mapping.seekHoleData(start: start, end: start + length, whence: .data)
        default: return start
        }
    }
    guard let found else { throw .noSuchAddressOrDevice }
    return found
}

/// Walks the mappings from `pos` to EOF and returns the first answer `answer` gives for a
/// mapping (its kind, start and length), or nil when none does (iomap_seek_hole_iter and
/// iomap_seek_data_iter under iomap_iter). Throws ENXIO when `pos` is negative or at or
/// past EOF.
@inlinable @inline(__always)
func iomapSeek<Ops: IOMapOperations>(
    _ inode: Inode, pos: Int, ops: Ops, _ answer: (IOMapping.Kind, Int, Int) -> Int?
) throws(Errno) -> Int? {
    let size = inode.size
    if pos < 0 || pos >= size { throw .noSuchAddressOrDevice }
    var iter = IOMapIterator(inode: inode, pos: pos, length: size - pos, flags: [.report])
    var found: Int?
    while try iter.next(ops) {
        let length = iter.mappingLength
        if let at = answer(iter.mapping!.kind, iter.pos, length) {
            found = at
        } else {
            try iter.advance(length)
        }
    }
    return found
}
