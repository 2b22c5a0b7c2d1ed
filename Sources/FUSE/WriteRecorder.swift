// Counterpart: none in the kernel; a daemon-side trace of FUSE_WRITE, the request
// fuse_send_write and the writeback path's fuse_writepage_args build. `iomap mount
// --record-writes FILE` appends every WRITE the kernel sends, header and payload, before the
// volume sees it: the exact bytes the kernel handed the daemon as file data, which is what
// the short-copy probe's FUSE variant counts stale memory in (docs/FUSE.md "Recording
// writes").
//
// The format (docs/FORMAT.md "Write record"): a file of records, each a 32-byte header
// followed by its payload, all little-endian:
//   magic u32 = 0x574d4f49 ("IOMW"), flags u32 (fuse_write_in's write_flags: bit 0
//   FUSE_WRITE_CACHE marks the kernel's own writeback), inode u64 (the volume's inode
//   number, which is the st_ino the mount reports), offset u64, size u32, reserved u32 = 0;
//   then `size` bytes.
// One mutex orders the appends, so records of concurrent request threads never interleave.

import IOMapBase
import Synchronization
import Volume

#if canImport(Glibc)
    import Glibc
#endif

public final class WriteRecorder: Sendable {
    public static let magic: UInt32 = 0x574d_4f49
    public static let headerSize = 32

    /// The descriptor, opened for appending; guarded by the mutex so that one record's
    /// header and payload are written together.
    private let fd: Mutex<Int32>
    /// Appends that failed (the file system full, say); the mount goes on without them.
    private let failures = Atomic<Int>(0)

    /// Creates (or truncates) `path` for recording.
    public init(path: String) throws(Errno) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        self.fd = Mutex(fd)
    }

    deinit { fd.withLock { _ = close($0) } }

    /// Records that failed to be written.
    public var failedRecords: Int { failures.load(ordering: .relaxed) }

    /// Appends one WRITE.
    public func record(inode: InodeNumber, offset: UInt64, flags: UInt32, payload: UnsafeRawBufferPointer) {
        var header = [UInt8](repeating: 0, count: Self.headerSize)
        func put<T: FixedWidthInteger>(_ value: T, at: Int) {
            withUnsafeBytes(of: value.littleEndian) { header.replaceSubrange(at..<at + MemoryLayout<T>.size, with: $0) }
        }
        put(Self.magic, at: 0)
        put(flags, at: 4)
        put(inode.rawValue, at: 8)
        put(offset, at: 16)
        put(UInt32(truncatingIfNeeded: payload.count), at: 24)
        let ok = fd.withLock { fd in
            header.withUnsafeBytes { writeAll(fd, $0) } && writeAll(fd, payload)
        }
        if !ok { failures.add(1, ordering: .relaxed) }
    }
}

/// write(2) until every byte is out; false on an error.
private func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
    var done = 0
    while done < bytes.count {
        let n = write(fd, bytes.baseAddress! + done, bytes.count - done)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return false }
        done += n
    }
    return true
}

/// One record read back from a file `WriteRecorder` wrote.
public struct RecordedWrite: Sendable, Equatable {
    public var flags: UInt32
    public var inode: UInt64
    public var offset: UInt64
    public var payload: [UInt8]

    public init(flags: UInt32, inode: UInt64, offset: UInt64, payload: [UInt8]) {
        self.flags = flags
        self.inode = inode
        self.offset = offset
        self.payload = payload
    }

    /// Whether the kernel's writeback sent it (FUSE_WRITE_CACHE), not a process's write.
    public var fromPageCache: Bool { flags & 1 != 0 }

    /// Parses a whole recording; the error names the record and what is wrong with it.
    public static func parse(_ bytes: [UInt8]) throws(RecordFormatError) -> [RecordedWrite] {
        var out: [RecordedWrite] = []
        var at = 0
        func field<T: FixedWidthInteger>(_ type: T.Type, _ offset: Int) -> T {
            var v: T = 0
            withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: bytes[at + offset..<at + offset + MemoryLayout<T>.size]) }
            return T(littleEndian: v)
        }
        while at < bytes.count {
            let n = out.count
            guard bytes.count - at >= WriteRecorder.headerSize else {
                throw RecordFormatError("record \(n) at byte \(at): \(bytes.count - at) bytes left, a header needs 32")
            }
            guard field(UInt32.self, 0) == WriteRecorder.magic else { throw RecordFormatError("record \(n) at byte \(at): bad magic") }
            let size = Int(field(UInt32.self, 24))
            guard bytes.count - at - WriteRecorder.headerSize >= size else {
                throw RecordFormatError("record \(n) at byte \(at): payload of \(size) bytes runs past the end")
            }
            let start = at + WriteRecorder.headerSize
            out.append(
                RecordedWrite(
                    flags: field(UInt32.self, 4), inode: field(UInt64.self, 8), offset: field(UInt64.self, 16),
                    payload: Array(bytes[start..<start + size])))
            at = start + size
        }
        return out
    }
}

public struct RecordFormatError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
