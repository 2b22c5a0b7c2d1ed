// Counterpart: the loop driver (drivers/block/loop.c): a block device backed by an image
// file, with direct I/O for aligned requests.

import CIOMapBase
import IOMapBase
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// O_DIRECT, which Swift's Glibc module does not export (it needs _GNU_SOURCE); 0 where the
/// platform has none: no direct I/O.
let directIOFlag: Int32 = ciomap_o_direct()

/// Runs a system call until it is not interrupted; returns its result, or throws the errno
/// it failed with.
@discardableResult
func retryingInterrupts<T: BinaryInteger>(_ call: () -> T) throws(Errno) -> T {
    while true {
        let result = call()
        if result >= 0 { return result }
        if errno != EINTR { throw Errno(rawValue: errno) }
    }
}

/// A device backed by an image file, read and written with pread/pwrite; `flush()` is
/// fdatasync: what it leaves out, the image file's timestamps, is nothing a device has, and
/// the file's blocks (a sparse image's, allocated by a write) it does make durable. Reads past the end of a shorter file return zeroes, so an image may be sparse
/// or truncated. Interrupted system calls are retried.
///
/// Requests whose buffer, offset and length are all page-aligned (every whole-folio
/// writeback and read, since folio memory is aligned) go through a second descriptor opened
/// with O_DIRECT: the bytes go from the folio to the disk as a kernel block device's go from
/// the page, instead of being copied into the kernel's page cache of the image file first.
/// The kernel keeps the two descriptors coherent. Where O_DIRECT is refused (tmpfs before
/// 6.6, some FUSE file systems) everything uses the buffered descriptor.
public final class FileBlockDevice: BlockDevice {
    public let blockSize: Int
    public let blockCount: Int
    public let path: String
    private let fd: Int32
    /// The O_DIRECT descriptor, or -1.
    private let directFD: Int32
    /// Whether aligned requests bypass the kernel's cache of the image file.
    public var usesDirectIO: Bool { directFD >= 0 }

    /// Opens the image at `path`. With `create`, the file is created (or emptied) and sized
    /// to `blockCount * blockSize` bytes; without it, the file must exist.
    public init(path: String, blockSize: Int, blockCount: Int, create: Bool) throws(Errno) {
        checkDeviceGeometry(blockSize: blockSize, blockCount: blockCount)
        self.blockSize = blockSize
        self.blockCount = blockCount
        self.path = path
        var flags = O_RDWR | O_CLOEXEC
        if create { flags |= O_CREAT | O_TRUNC }
        let fd = try retryingInterrupts { open(path, flags, 0o644) }
        if create {
            do throws(Errno) {
                try retryingInterrupts { ftruncate(fd, off_t(blockCount * blockSize)) }
            } catch {
                close(fd)
                throw error
            }
        }
        self.fd = fd
        // Where O_DIRECT is refused, everything goes through the buffered descriptor.
        self.directFD = directIOFlag == 0 ? -1 : ((try? retryingInterrupts { open(path, O_RDWR | O_CLOEXEC | directIOFlag) }) ?? -1)
    }

    deinit {
        close(fd)
        if directFD >= 0 { close(directFD) }
    }

    /// The descriptor for a request at byte `offset` of `count` bytes at `address`.
    @inline(__always)
    private func descriptor(_ address: UnsafeRawPointer, _ offset: Int, _ count: Int) -> Int32 {
        let mask = pageSize - 1
        if directFD >= 0 && (Int(bitPattern: address) | offset | count) & mask == 0 { return directFD }
        return fd
    }

    public func read(block: Int, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) {
        try checkRequest(block: block, count: count, bufferCount: buffer.count)
        guard count > 0, let base = buffer.baseAddress else { return }
        let start = block * blockSize
        let total = buffer.count
        let fd = descriptor(base, start, total)
        var done = 0
        while done < total {
            let n = try retryingInterrupts { pread(fd, base + done, total - done, off_t(start + done)) }
            if n == 0 {
                // Past the end of the image file: the rest reads as zeroes.
                (base + done).initializeMemory(as: UInt8.self, repeating: 0, count: total - done)
                return
            }
            done += n
        }
    }

    public func write(block: Int, count: Int, from buffer: UnsafeRawBufferPointer) throws(Errno) {
        try checkRequest(block: block, count: count, bufferCount: buffer.count)
        guard count > 0, let base = buffer.baseAddress else { return }
        let start = block * blockSize
        let total = buffer.count
        try writeBytes(buffer, at: start, fd: descriptor(base, start, total))
    }

    /// One pwritev for the whole request (through O_DIRECT when every piece is aligned), so
    /// that the kernel can put the pieces on the disk in one go.
    public func write(block: Int, count: Int, from buffers: [UnsafeRawBufferPointer]) throws(Errno) {
        let total = buffers.reduce(0) { $0 + $1.count }
        precondition(total == count * blockSize, "buffers do not add up to \(count) blocks")
        try checkRequest(block: block, count: count, bufferCount: total)
        guard buffers.count > 1, buffers.count <= 1024 else {
            var b = block
            for buffer in buffers {
                try write(block: b, count: buffer.count / blockSize, from: buffer)
                b += buffer.count / blockSize
            }
            return
        }
        let start = block * blockSize
        let aligned =
            directFD >= 0 && buffers.allSatisfy { (Int(bitPattern: $0.baseAddress) | $0.count) & (pageSize - 1) == 0 }
            && (start | total) & (pageSize - 1) == 0
        let fd = aligned ? directFD : self.fd
        var vectors = buffers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        let n = try retryingInterrupts {
            vectors.withUnsafeMutableBufferPointer { pwritev(fd, $0.baseAddress, Int32($0.count), off_t(start)) }
        }
        if n == total { return }
        // A short vectored write (rare): finish the rest piece by piece.
        var done = 0
        for buffer in buffers {
            let end = done + buffer.count
            if end > n {
                let skip = max(0, n - done)
                try writeBytes(UnsafeRawBufferPointer(rebasing: buffer[skip...]), at: start + done + skip, fd: self.fd)
            }
            done = end
        }
    }

    /// pwrite until every byte of `bytes` is at `offset` of `fd`.
    private func writeBytes(_ bytes: UnsafeRawBufferPointer, at offset: Int, fd: Int32) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let n = try retryingInterrupts { pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done)) }
            if n == 0 { throw .ioError }
            done += n
        }
    }

    public func flush() throws(Errno) { try retryingInterrupts { fdatasync(fd) } }
}
