// Counterpart: struct iomap, the IOMAP_* types and flags, and the iomap_ops /
// iomap_write_ops / iomap_writeback_ops contracts in include/linux/iomap.h.
//
// A mapping record says how a file range is backed: nothing (hole), a delayed-allocation
// reservation, disk blocks that hold data (mapped), or disk blocks allocated but not yet
// written (unwritten). The validity cookie lets the write path notice, after it locks a
// folio, that the file system changed the extent map since the record was made.

import IOMapBase

/// One mapping record (struct iomap).
public struct IOMapping: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case hole, delalloc, mapped, unwritten, inline
    }

    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The file system created this reservation or allocation for this request.
        @inlinable @inline(__always) public static var new: Flags { Flags(rawValue: 1 << 0) }
        @inlinable @inline(__always) public static var dirty: Flags { Flags(rawValue: 1 << 1) }
        /// Copy-on-write fork (reserved for reflink support).
        @inlinable @inline(__always) public static var shared: Flags { Flags(rawValue: 1 << 2) }
        /// Set by the core when the cookie no longer matches: remap from the current position.
        @inlinable @inline(__always) public static var stale: Flags { Flags(rawValue: 1 << 3) }
        /// Set by the core when the write raised i_size.
        @inlinable @inline(__always) public static var sizeChanged: Flags { Flags(rawValue: 1 << 4) }
    }

    /// File byte offset of the first byte the record covers.
    public var offset: Int
    /// Length in bytes; the record covers `[offset, offset + length)`.
    public var length: Int
    public var kind: Kind
    public var flags: Flags
    /// Device byte address of `offset`, or nil (IOMAP_NULL_ADDR) for holes and delalloc.
    public var diskAddress: Int?
    /// The file system's sequence sample, checked by `iomapValid`.
    public var validityCookie: UInt64

    public init(
        offset: Int, length: Int, kind: Kind, flags: Flags = [], diskAddress: Int? = nil, validityCookie: UInt64 = 0
    ) {
        precondition(length > 0, "a mapping must have a positive length, got \(length) at \(offset)")
        self.offset = offset
        self.length = length
        self.kind = kind
        self.flags = flags
        self.diskAddress = diskAddress
        self.validityCookie = validityCookie
    }

    public var end: Int { offset + length }
    public var range: ByteRange { ByteRange(offset, end) }

    /// The device address of file byte `fileOffset`, which must lie inside the record.
    public func diskAddress(of fileOffset: Int) -> Int {
        guard let diskAddress else { preconditionFailure("\(kind) mapping \(range) has no disk address") }
        precondition(range.contains(fileOffset), "\(fileOffset) is outside mapping \(range)")
        return diskAddress + (fileOffset - offset)
    }

    public var description: String {
        var s = "\(kind) \(range)"
        if flags.contains(.new) { s += " NEW" }
        if flags.contains(.stale) { s += " STALE" }
        if let diskAddress { s += " @\(diskAddress)" }
        return s
    }
}

/// What an iteration is for (IOMAP_WRITE, IOMAP_ZERO, ...).
public struct IterFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable @inline(__always) public static var write: IterFlags { IterFlags(rawValue: 1 << 0) }
    @inlinable @inline(__always) public static var zero: IterFlags { IterFlags(rawValue: 1 << 1) }
    @inlinable @inline(__always) public static var report: IterFlags { IterFlags(rawValue: 1 << 2) }
    @inlinable @inline(__always) public static var fault: IterFlags { IterFlags(rawValue: 1 << 3) }
    @inlinable @inline(__always) public static var unshare: IterFlags { IterFlags(rawValue: 1 << 4) }
    @inlinable @inline(__always) public static var nowait: IterFlags { IterFlags(rawValue: 1 << 5) }
}

/// The file system's half of the mapping protocol (iomap_ops plus iomap_write_ops).
public protocol IOMapOperations: AnyObject, Sendable {
    /// Maps `[pos, pos + length)` starting at `pos` (->iomap_begin). The record returned must
    /// contain `pos`; it may start earlier and end before or after `pos + length`. The second
    /// record is the source for copy-on-write (nil when unused).
    func iomapBegin(_ inode: Inode, pos: Int, length: Int, flags: IterFlags) throws(Errno) -> (IOMapping, IOMapping?)

    /// Releases a mapping (->iomap_end): `length` is the part of the request the record
    /// covered, `written` how many bytes of it were done. This is where a write that did less
    /// than it reserved cleans up.
    func iomapEnd(_ inode: Inode, pos: Int, length: Int, written: Int, flags: IterFlags, mapping: IOMapping) throws(Errno)

    /// Whether `iomapEnd` has anything to do for an operation with `flags`. XFS gives reads
    /// and seeks an operations table without ->iomap_end; answering false here lets the
    /// iterator skip the call the same way.
    func hasIomapEnd(_ flags: IterFlags) -> Bool

    /// Whether a record's validity cookie still matches the extent map (->iomap_valid).
    func iomapValid(_ inode: Inode, _ mapping: IOMapping) -> Bool

    /// For an operation that only reports (IterFlags.report: SEEK_DATA, SEEK_HOLE): the
    /// mapping at `pos`, as iomapBegin gives it, and the one after it when the file system has
    /// it at hand. The iterator moves on to the second without another call as long as its
    /// validity cookie still holds, so a seek from a hole to the data after it costs one
    /// lookup, not two. The default asks iomapBegin and offers nothing ahead.
    func iomapBeginReport(_ inode: Inode, pos: Int, length: Int, flags: IterFlags) throws(Errno) -> (IOMapping, next: IOMapping?)

    /// Reads `buffer.count` bytes of file data at `fileOffset` from the disk blocks of a
    /// MAPPED record (->read_folio_range).
    func readFileRange(_ inode: Inode, mapping: IOMapping, fileOffset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno)
}

/// One completed piece of writeback I/O: a file range written through one mapping.
public struct IOEnd: Sendable, CustomStringConvertible {
    public var range: ByteRange
    public var kind: IOMapping.Kind
    public var error: Errno?

    public init(range: ByteRange, kind: IOMapping.Kind, error: Errno? = nil) {
        self.range = range
        self.kind = kind
        self.error = error
    }

    public var description: String { "ioend \(kind) \(range)\(error.map { " \($0.symbolicName)" } ?? "")" }
}

/// The writeback context (struct iomap_writepage_ctx): the cached mapping reused while it
/// stays valid.
public struct WritebackContext: Sendable {
    public var mapping: IOMapping?
    /// How many times a cached mapping was found stale and looked up again.
    public var staleRemaps = 0
    public init() {}
}

/// The file system's half of writeback (iomap_writeback_ops plus the I/O completion).
public protocol IOMapWritebackOperations: AnyObject, Sendable {
    /// Maps the block at `offset` for writeback, converting delalloc into allocated
    /// unwritten extents (xfs_map_blocks). Reuses `context.mapping` while it is valid.
    func mapBlocks(_ inode: Inode, context: inout WritebackContext, offset: Int, length: Int) throws(Errno) -> IOMapping

    /// Writes file bytes to the disk blocks of `mapping` (bio submission).
    func writeFileRange(_ inode: Inode, mapping: IOMapping, fileOffset: Int, from buffer: UnsafeRawBufferPointer) throws(Errno)

    /// Writes runs that lie back to back in the file, starting at `fileOffset`, and on the
    /// disk, starting at `mapping`'s address for `fileOffset`, as one request (a bio of
    /// several folios). Returns, per run, the error it met or nil.
    func writeFileRanges(_ inode: Inode, mapping: IOMapping, fileOffset: Int, from buffers: [UnsafeRawBufferPointer]) -> [Errno?]

    /// Completes one ioend before its folios leave writeback (xfs_end_ioend): converts the
    /// unwritten extents it wrote to written.
    func completeIOEnd(_ inode: Inode, _ ioend: IOEnd)

    /// Cleans up after a mapping error on a folio (xfs_discard_folio).
    func discardFolio(_ inode: Inode, range: ByteRange)
}

extension IOMapWritebackOperations {
    /// Writes each run on its own, for file systems with nothing better to do.
    public func writeFileRanges(_ inode: Inode, mapping: IOMapping, fileOffset: Int, from buffers: [UnsafeRawBufferPointer]) -> [Errno?] {
        let base = mapping.diskAddress(of: fileOffset)
        var offset = fileOffset
        return buffers.map { buffer in
            defer { offset += buffer.count }
            // Later runs may lie past `mapping`: each gets a mapping of its own at its address.
            let run = IOMapping(
                offset: offset, length: buffer.count, kind: mapping.kind, diskAddress: base + (offset - fileOffset),
                validityCookie: mapping.validityCookie)
            do throws(Errno) {
                try writeFileRange(inode, mapping: run, fileOffset: offset, from: buffer)
                return nil
            } catch {
                return error
            }
        }
    }
}

extension IOMapOperations {
    /// Every operation calls iomapEnd, unless a file system says otherwise.
    public func hasIomapEnd(_ flags: IterFlags) -> Bool { true }

    public func iomapBeginReport(_ inode: Inode, pos: Int, length: Int, flags: IterFlags) throws(Errno) -> (IOMapping, next: IOMapping?) {
        (try iomapBegin(inode, pos: pos, length: length, flags: flags).0, nil)
    }
}
