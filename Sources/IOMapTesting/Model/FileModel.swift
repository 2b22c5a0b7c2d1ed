// Counterpart: fsx's good_buf (ltp/fsx.c in fstests): the obviously correct answer.
//
// The model of one file is its bytes and its size, nothing else: no cache, no extents, no
// faults. Bytes at and past `size` are always zero, so growing the file exposes zeroes, as
// POSIX requires.

#if canImport(Glibc)
import Glibc
#endif

public struct FileModel: Sendable {
    public private(set) var bytes: [UInt8] = []
    public private(set) var size = 0

    public init() {}

    mutating func ensureCapacity(_ n: Int) {
        if bytes.count < n { bytes.append(contentsOf: repeatElement(0, count: n - bytes.count)) }
    }

    /// Stores `data` at `offset`, growing the file if it ends past EOF.
    public mutating func write(_ data: ArraySlice<UInt8>, at offset: Int) {
        guard !data.isEmpty else { return }
        ensureCapacity(offset + data.count)
        bytes.replaceSubrange(offset..<(offset + data.count), with: data)
        size = max(size, offset + data.count)
    }

    /// Stores `data` at `offset` without changing the size: bytes at or past EOF are dropped,
    /// as a store through a mapping into the EOF page never reaches the file.
    public mutating func store(_ data: ArraySlice<UInt8>, at offset: Int) {
        let end = min(offset + data.count, size)
        guard end > offset else { return }
        bytes.replaceSubrange(offset..<end, with: data.prefix(end - offset))
    }

    /// Sets the size; shrinking zeroes what lies past the new EOF.
    public mutating func truncate(to newSize: Int) {
        if newSize < size {
            for i in newSize..<min(size, bytes.count) { bytes[i] = 0 }
        }
        ensureCapacity(newSize)
        size = newSize
    }

    /// Zeroes `[offset, offset + length)` below EOF.
    public mutating func zero(offset: Int, length: Int) {
        let end = min(offset + length, size)
        guard end > offset else { return }
        for i in offset..<end { bytes[i] = 0 }
    }

    /// The bytes of `[offset, offset + count)` clipped at EOF, as read() returns them.
    public func read(offset: Int, count: Int) -> ArraySlice<UInt8> {
        let end = min(offset + count, size)
        guard end > offset else { return [] }
        return bytes[offset..<end]
    }
}

/// The seed the randomized tests start from: IOMAP_RANDOM_SEED when set to a number, else
/// a fixed one, so that a run is the same everywhere unless asked otherwise.
public func randomTestSeed(default fixed: UInt64 = 20_221_128) -> UInt64 {
    guard let raw = getenv("IOMAP_RANDOM_SEED"), let v = UInt64(String(cString: raw)) else { return fixed }
    return v
}
