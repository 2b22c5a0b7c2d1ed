// Counterpart: none in the kernel as such; the get_unaligned_le*/put_unaligned_le* helpers
// (include/linux/unaligned.h) that XFS's on-disk structures are read and written through,
// here with the bounds checks a user-space decoder of untrusted bytes must make itself.
//
// Every multi-byte integer of the format is little-endian (docs/FORMAT.md). The writer
// appends to a growing array (the encoders reserve what they need up front); the reader
// never traps: a read past the end throws, so a decoder fed any bytes at all can only
// return a value or an error.

/// Appends little-endian fields to a byte array.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// A writer that goes on appending to `bytes`.
    public init(appendingTo bytes: [UInt8]) { self.bytes = bytes }

    public var count: Int { bytes.count }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { append(v.littleEndian) }
    public mutating func u32(_ v: UInt32) { append(v.littleEndian) }
    public mutating func u64(_ v: UInt64) { append(v.littleEndian) }
    public mutating func i64(_ v: Int64) { append(v.littleEndian) }
    public mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }

    /// Raw bytes, with no length (the caller has written it, or the size is fixed).
    public mutating func raw(_ v: [UInt8]) { bytes.append(contentsOf: v) }
    public mutating func raw(_ v: ArraySlice<UInt8>) { bytes.append(contentsOf: v) }

    /// `n` zero bytes (padding, reserved fields).
    public mutating func zeros(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }

    /// Overwrites 4 bytes at `offset` (a field whose value is known only later: a CRC, a count).
    public mutating func patchU32(_ v: UInt32, at offset: Int) {
        withUnsafeBytes(of: v.littleEndian) { src in
            bytes.withUnsafeMutableBytes { dst in dst.baseAddress!.advanced(by: offset).copyMemory(from: src.baseAddress!, byteCount: 4) }
        }
    }

    /// Overwrites 8 bytes at `offset`.
    public mutating func patchU64(_ v: UInt64, at offset: Int) {
        withUnsafeBytes(of: v.littleEndian) { src in
            bytes.withUnsafeMutableBytes { dst in dst.baseAddress!.advanced(by: offset).copyMemory(from: src.baseAddress!, byteCount: 8) }
        }
    }

    /// Hands the bytes over, leaving the writer empty (no copy).
    public mutating func take() -> [UInt8] {
        defer { bytes = [] }
        return bytes
    }

    @inline(__always)
    private mutating func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v) { bytes.append(contentsOf: $0) }
    }
}

/// A read that went past the end of the bytes: what was wanted, where, and how much there was.
public struct DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    public let offset: Int
    public let wanted: Int
    public let available: Int
    public var description: String { "\(wanted) bytes wanted at offset \(offset), \(available) left" }
}

/// Reads little-endian fields from bytes, throwing (never trapping) past their end.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    /// The first byte not yet read; `end` is one past the last byte this reader may read.
    public private(set) var offset: Int
    public let end: Int

    public init(_ bytes: [UInt8], from offset: Int = 0, to end: Int? = nil) {
        self.bytes = bytes
        let e = min(max(end ?? bytes.count, 0), bytes.count)
        self.end = e
        self.offset = min(max(offset, 0), e)
    }

    public var remaining: Int { end - offset }
    public var isAtEnd: Bool { offset == end }

    public mutating func u8() throws(DecodeError) -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16() throws(DecodeError) -> UInt16 { UInt16(littleEndian: try load()) }
    public mutating func u32() throws(DecodeError) -> UInt32 { UInt32(littleEndian: try load()) }
    public mutating func u64() throws(DecodeError) -> UInt64 { UInt64(littleEndian: try load()) }
    public mutating func i64() throws(DecodeError) -> Int64 { Int64(littleEndian: try load()) }

    /// `n` raw bytes; a negative or oversized `n` throws (a corrupt length field).
    public mutating func raw(_ n: Int) throws(DecodeError) -> [UInt8] {
        try need(n)
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    /// Skips `n` bytes.
    public mutating func skip(_ n: Int) throws(DecodeError) {
        try need(n)
        offset += n
    }

    @inline(__always)
    private func need(_ n: Int) throws(DecodeError) {
        if n < 0 || n > end - offset { throw DecodeError(offset: offset, wanted: n, available: end - offset) }
    }

    @inline(__always)
    private mutating func load<T: FixedWidthInteger>() throws(DecodeError) -> T {
        let n = MemoryLayout<T>.size
        try need(n)
        let at = offset
        offset += n
        return bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: T.self) }
    }
}

extension [UInt8] {
    /// The little-endian integer at `offset`, which the caller has bounds-checked.
    @inline(__always)
    func le<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        T(littleEndian: withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) })
    }
}

/// A ByteReader whose failures are format errors naming a block: what the decoders read
/// their fields through, so that each of them throws one error type, and says which block
/// held the bytes it could not make sense of.
struct FieldReader {
    var base: ByteReader
    /// The block that holds byte `offset` of what is being read (a stream may span blocks).
    let blame: (Int) -> (kind: BlockKind, address: Int)

    init(_ base: ByteReader, blame: @escaping (Int) -> (kind: BlockKind, address: Int)) {
        self.base = base
        self.blame = blame
    }

    /// A reader of one block's bytes.
    init(_ base: ByteReader, kind: BlockKind, address: Int) {
        self.init(base) { _ in (kind, address) }
    }

    var offset: Int { base.offset }
    var remaining: Int { base.remaining }
    var isAtEnd: Bool { base.isAtEnd }

    /// The error for bytes at `offset` (by default the next unread one) that make no sense.
    func malformed(_ why: String, at offset: Int? = nil) -> FormatError {
        let (kind, address) = blame(offset ?? base.offset)
        return FormatError(kind, address, .malformed(why))
    }

    private func short(_ e: DecodeError) -> FormatError { malformed("truncated entry: \(e)", at: e.offset) }

    mutating func u8() throws(FormatError) -> UInt8 {
        do { return try base.u8() } catch { throw short(error) }
    }
    mutating func u16() throws(FormatError) -> UInt16 {
        do { return try base.u16() } catch { throw short(error) }
    }
    mutating func u32() throws(FormatError) -> UInt32 {
        do { return try base.u32() } catch { throw short(error) }
    }
    mutating func u64() throws(FormatError) -> UInt64 {
        do { return try base.u64() } catch { throw short(error) }
    }
    mutating func i64() throws(FormatError) -> Int64 {
        do { return try base.i64() } catch { throw short(error) }
    }
    mutating func raw(_ n: Int) throws(FormatError) -> [UInt8] {
        do { return try base.raw(n) } catch { throw short(error) }
    }
    mutating func skip(_ n: Int) throws(FormatError) {
        do { try base.skip(n) } catch { throw short(error) }
    }

    /// Moves past `n` bytes, returning where they start: a fixed-size structure, checked
    /// for length once and then read in place.
    mutating func fixed(_ n: Int) throws(FormatError) -> Int {
        let at = offset
        try skip(n)
        return at
    }

    /// A byte that must be 0 or 1.
    mutating func bool(_ what: String) throws(FormatError) -> Bool {
        let at = offset
        let v = try u8()
        guard v <= 1 else { throw malformed("\(what) is \(v), not 0 or 1", at: at) }
        return v == 1
    }

    /// A field that must be zero (reserved).
    mutating func reserved(_ bytes: Int) throws(FormatError) {
        let at = offset
        for _ in 0..<bytes {
            guard try u8() == 0 else { throw malformed("reserved bytes are not zero", at: at) }
        }
    }
}
