// Counterpart: fsx's good_buf (ltp/fsx.c in fstests): the obviously correct answer.
//
// The model of one file is its bytes and its size, nothing else: no cache, no extents, no
// faults. Bytes at and past `size` are zero, so growing the file exposes zeroes, as POSIX
// requires. One thing fsx on a real disk never needs: a mask of bytes a writeback I/O error
// made indeterminate (the page cache keeps the new bytes until eviction, the disk the old
// ones), which a comparison skips until the next write, zeroing or truncate settles them.

#if canImport(Glibc)
    import Glibc
#endif

public struct FileModel: Sendable {
    public private(set) var bytes: [UInt8] = []
    /// Bytes whose value is indeterminate (either the old or the new one may read back).
    public private(set) var unknown: [Bool] = []
    public private(set) var size = 0

    public init() {}

    mutating func ensureCapacity(_ n: Int) {
        if bytes.count < n { bytes.append(contentsOf: repeatElement(0, count: n - bytes.count)) }
        if unknown.count < n { unknown.append(contentsOf: repeatElement(false, count: n - unknown.count)) }
    }

    /// Settles `[from, to)`: its bytes are what the model holds again.
    mutating func settle(_ from: Int, _ to: Int) {
        guard to > from else { return }
        for i in from..<to { unknown[i] = false }
    }

    /// Stores `data` at `offset`, growing the file if it ends past EOF.
    public mutating func write(_ data: ArraySlice<UInt8>, at offset: Int) {
        guard !data.isEmpty else { return }
        ensureCapacity(offset + data.count)
        // A write past EOF zeroes the gap first.
        if offset > size { settle(size, offset) }
        bytes.replaceSubrange(offset..<(offset + data.count), with: data)
        settle(offset, offset + data.count)
        size = max(size, offset + data.count)
    }

    /// Stores `data` at `offset` without changing the size: bytes at or past EOF are dropped,
    /// as a store through a mapping into the EOF page never reaches the file.
    public mutating func store(_ data: ArraySlice<UInt8>, at offset: Int) {
        let end = min(offset + data.count, size)
        guard end > offset else { return }
        write(data.prefix(end - offset), at: offset)
    }

    /// Sets the size; shrinking zeroes what lies past the new EOF, growing exposes zeroes.
    public mutating func truncate(to newSize: Int) {
        ensureCapacity(newSize)
        if newSize > size { settle(size, newSize) }
        if newSize < size {
            for i in newSize..<min(size, bytes.count) { bytes[i] = 0 }
            settle(newSize, min(size, bytes.count))
        }
        size = newSize
    }

    /// Zeroes `[offset, offset + length)` below EOF.
    public mutating func zero(offset: Int, length: Int) {
        let end = min(offset + length, size)
        guard end > offset else { return }
        for i in offset..<end { bytes[i] = 0 }
        settle(offset, end)
    }

    /// copy_file_range: the bytes and their indeterminacy move together.
    public mutating func copy(from src: Int, count: Int, to dst: Int) {
        let data = Array(read(offset: src, count: count))
        guard !data.isEmpty else { return }
        let flags = Array(unknown[src..<src + data.count])
        write(data[...], at: dst)
        for (i, u) in flags.enumerated() where u { unknown[dst + i] = true }
    }

    /// Marks bytes indeterminate, past EOF too: a failed writeback of the block holding EOF
    /// leaves the disk's stale bytes past EOF in place, and a later fault shows them in the
    /// EOF page, in Linux as here.
    public mutating func markUnknown(offset: Int, length: Int) {
        guard length > 0 else { return }
        ensureCapacity(offset + length)
        for i in offset..<offset + length { unknown[i] = true }
    }

    /// Whether the byte at `offset` is indeterminate.
    public func isUnknown(_ offset: Int) -> Bool { offset < unknown.count && unknown[offset] }

    /// The bytes of `[offset, offset + count)` clipped at EOF, as read() returns them.
    public func read(offset: Int, count: Int) -> ArraySlice<UInt8> {
        let end = min(offset + count, size)
        guard end > offset else { return [] }
        return bytes[offset..<end]
    }

    /// The bytes of `[offset, offset + got.count)` that differ from `got` (past EOF the
    /// model holds zeroes), skipping indeterminate ones; at most `limit`.
    public func badBytes(_ got: [UInt8], at offset: Int, limit: Int = 256) -> [FsxBadByte] {
        var out: [FsxBadByte] = []
        for (i, b) in got.enumerated() {
            let o = offset + i
            let want: UInt8 = o < size ? bytes[o] : 0
            if b != want && !isUnknown(o) {
                out.append(FsxBadByte(offset: o, good: want, bad: b))
                if out.count >= limit { break }
            }
        }
        return out
    }
}

/// The seed the randomized tests start from: IOMAP_RANDOM_SEED when set to a number, else
/// a fixed one, so that a run is the same everywhere unless asked otherwise.
public func randomTestSeed(default fixed: UInt64 = 20_221_128) -> UInt64 {
    guard let raw = getenv("IOMAP_RANDOM_SEED"), let v = UInt64(String(cString: raw)) else { return fixed }
    return v
}
