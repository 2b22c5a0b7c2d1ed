// Counterpart: loff_t, pgoff_t and the rounding helpers of include/linux/math.h and
// include/linux/pagemap.h.
//
// Byte offsets are 64-bit signed integers (Swift `Int` on the 64-bit platforms we
// support) and every range is half-open, `[start, end)`. Block and page indices are
// derived only through the named functions here, so that every rounding decision is
// visible at the call site and no 32-bit index arithmetic can creep in (the kernel had
// two such bugs in exactly this code: CVE-2023-54285 and c13094b894de).

/// The size of a page, the unit of the page-cache index, in bytes.
// Computed, not stored: a global let of another module is read through an addressor call,
// a computed one inlines to the constant.
@inlinable @inline(__always) public var pageSize: Int { 4096 }
/// log2(pageSize).
@inlinable @inline(__always) public var pageShift: Int { 12 }

/// The largest byte offset a file may reach (exclusive): `i_size` never exceeds it.
///
/// Linux allows files up to 2^63 - 1 bytes; we stop at 2^52 so that every block
/// count fits comfortably in the allocator's arithmetic. Writes that would reach past
/// it fail with EFBIG, as the kernel's `generic_write_check_limits` does at its limit.
@inlinable @inline(__always) public var maxFileSize: Int { 1 << 52 }

/// A half-open byte range `[start, end)`.
public struct ByteRange: Hashable, Sendable, CustomStringConvertible {
    public var start: Int
    public var end: Int

    @inlinable @inline(__always)
    public init(_ start: Int, _ end: Int) {
        precondition(start <= end, "ByteRange needs start <= end, got [\(start), \(end))")
        self.start = start
        self.end = end
    }

    @inlinable @inline(__always)
    public init(start: Int, length: Int) {
        self.init(start, start + length)
    }

    @inlinable @inline(__always) public var length: Int { end - start }
    @inlinable @inline(__always) public var isEmpty: Bool { start == end }

    @inlinable @inline(__always)
    public func contains(_ offset: Int) -> Bool { offset >= start && offset < end }

    @inlinable @inline(__always)
    public func overlaps(_ other: ByteRange) -> Bool { start < other.end && other.start < end }

    /// The intersection, or nil when the ranges do not overlap.
    @inlinable @inline(__always)
    public func clamped(to other: ByteRange) -> ByteRange? {
        let s = Swift.max(start, other.start)
        let e = Swift.min(end, other.end)
        return s < e ? ByteRange(s, e) : nil
    }

    public var description: String { "[\(start), \(end))" }
}

/// Rounds `value` down to a multiple of `alignment`, which must be a power of two.
@inlinable @inline(__always)
public func roundDown(_ value: Int, _ alignment: Int) -> Int {
    value & ~(alignment &- 1)
}

/// Rounds `value` up to a multiple of `alignment`, which must be a power of two.
@inlinable @inline(__always)
public func roundUp(_ value: Int, _ alignment: Int) -> Int {
    (value &+ alignment &- 1) & ~(alignment &- 1)
}

/// The page index holding byte `offset`.
@inlinable @inline(__always)
public func pageIndex(of offset: Int) -> Int { offset >> pageShift }

/// The byte offset of the first byte of page `index`.
@inlinable @inline(__always)
public func pageOffset(ofIndex index: Int) -> Int { index << pageShift }

/// File-system block geometry: a power-of-two block size from 512 bytes to one page.
public struct BlockGeometry: Hashable, Sendable, CustomStringConvertible {
    /// log2 of the block size (`i_blkbits`).
    public let blockShift: Int

    public init(blockSize: Int) {
        precondition(
            blockSize >= 512 && blockSize <= pageSize && blockSize & (blockSize - 1) == 0,
            "block size must be a power of two from 512 to \(pageSize), got \(blockSize)")
        self.blockShift = blockSize.trailingZeroBitCount
    }

    // The shifts mask their amount (&<<, &>>): blockShift is 9 to 12 by construction, and
    // Swift's checked shifts cost a comparison and a branch for every amount they rule out.
    @inlinable @inline(__always) public var blockSize: Int { 1 &<< blockShift }

    /// The block holding byte `offset` (`XFS_B_TO_FSBT`: rounds down).
    @inlinable @inline(__always) public func blockIndex(of offset: Int) -> Int { offset &>> blockShift }
    /// The number of blocks needed to hold `bytes` bytes from block 0 (`XFS_B_TO_FSB`: rounds up).
    @inlinable @inline(__always) public func blocksCovering(_ bytes: Int) -> Int { (bytes + (blockSize &- 1)) &>> blockShift }
    /// The byte offset of block `index`.
    @inlinable @inline(__always) public func offset(ofBlock index: Int) -> Int { index &<< blockShift }
    @inlinable @inline(__always) public func roundDownToBlock(_ offset: Int) -> Int { roundDown(offset, blockSize) }
    @inlinable @inline(__always) public func roundUpToBlock(_ offset: Int) -> Int { roundUp(offset, blockSize) }
    @inlinable @inline(__always) public func isBlockAligned(_ offset: Int) -> Bool { offset & (blockSize - 1) == 0 }

    public var description: String { "\(blockSize)-byte blocks" }
}
