// Counterpart: iomap_seek_hole(), iomap_seek_data() and their iterators in fs/iomap/seek.c.
//
// SEEK_HOLE and SEEK_DATA over the file: holes are holes, delalloc and written extents are
// data, and unwritten extents are data only where the page cache holds uptodate data over
// them. There is an implicit hole at EOF.

import IOMapBase
import PageCache

/// The first hole at or after `pos` (lseek SEEK_HOLE); EOF when there is none before it.
/// Throws ENXIO when `pos` is negative or at or past EOF.
public func iomapSeekHole(_ inode: Inode, pos: Int, ops: any IOMapOperations) throws(Errno) -> Int {
    let size = inode.size
    if pos < 0 || pos >= size { throw .noSuchAddressOrDevice }
    var iter = IOMapIterator(inode: inode, pos: pos, length: size - pos, flags: [.report])
    var found: Int?
    while try iter.next(ops) {
        let length = iter.mappingLength
        switch iter.mapping!.kind {
        case .unwritten:
            let hole = inode.mapping.seekHoleData(start: iter.pos, end: iter.pos + length, whence: .hole)
            if hole == iter.pos + length {
                try iter.advance(length)
            } else {
                found = hole
            }
        case .hole:
            found = iter.pos
        default:
            try iter.advance(length)
        }
    }
    return found ?? size
}

/// The first data at or after `pos` (lseek SEEK_DATA). Throws ENXIO when `pos` is negative,
/// at or past EOF, or when no data lies before EOF.
public func iomapSeekData(_ inode: Inode, pos: Int, ops: any IOMapOperations) throws(Errno) -> Int {
    let size = inode.size
    if pos < 0 || pos >= size { throw .noSuchAddressOrDevice }
    var iter = IOMapIterator(inode: inode, pos: pos, length: size - pos, flags: [.report])
    var found: Int?
    while try iter.next(ops) {
        let length = iter.mappingLength
        switch iter.mapping!.kind {
        case .hole:
            try iter.advance(length)
        case .unwritten:
            if let data = inode.mapping.seekHoleData(start: iter.pos, end: iter.pos + length, whence: .data) {
                found = data
            } else {
                try iter.advance(length)
            }
        default:
            found = iter.pos
        }
    }
    guard let found else { throw .noSuchAddressOrDevice }
    return found
}
