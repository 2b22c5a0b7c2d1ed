// Counterpart: the block layer under a file system: struct block_device and bio
// submission (submit_bio, blkdev_issue_flush), reduced to synchronous whole-block calls.
//
// The extent file system stores file data in device blocks and must be testable for
// what a real disk does to it: I/O errors at particular sectors and the loss of a
// volatile write cache on power failure. So the device is a protocol, implemented here by
// a sparse in-memory disk for tests and fuzzing (MemoryBlockDevice: a 1 TiB device costs
// nothing until written) and an image file (FileBlockDevice); the fault-injecting wrapper
// that adds errors and a write cache a simulated crash throws away is test support
// (IOMapTesting's FaultyBlockDevice).
//
// Every call is synchronous and works on whole blocks. A request reaching outside the
// device fails with EIO, as a bio past the end of a disk does. Buffer sizes that do not
// match the request are programmer errors (preconditions).

import IOMapBase
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A device of `blockCount` blocks of `blockSize` bytes, read and written in whole blocks.
public protocol BlockDevice: AnyObject, Sendable {
    /// Bytes per block: a power of two from 512 to 4096.
    var blockSize: Int { get }
    /// The number of blocks on the device.
    var blockCount: Int { get }
    /// Reads `count` blocks starting at `block` into `buffer`, whose size must be
    /// `count * blockSize`. A range outside the device throws `.ioError`.
    func read(block: Int, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno)
    /// Writes `count` blocks starting at `block` from `buffer`, whose size must be
    /// `count * blockSize`. A range outside the device throws `.ioError`.
    func write(block: Int, count: Int, from buffer: UnsafeRawBufferPointer) throws(Errno)
    /// Writes `count` blocks starting at `block` from `buffers` laid end to end (a bio of
    /// several pages); their sizes must add up to `count * blockSize`.
    func write(block: Int, count: Int, from buffers: [UnsafeRawBufferPointer]) throws(Errno)
    /// Makes every write that completed before the call durable (a cache flush / FUA).
    func flush() throws(Errno)
}

extension BlockDevice {
    /// Validates a request against this device's geometry (checkDeviceRequest).
    @inlinable @inline(__always)
    public func checkRequest(block: Int, count: Int, bufferCount: Int) throws(Errno) {
        try checkDeviceRequest(block: block, count: count, bufferCount: bufferCount, blockSize: blockSize, blockCount: blockCount)
    }
}

extension BlockDevice {
    /// One write per buffer, for devices with nothing better to do.
    public func write(block: Int, count: Int, from buffers: [UnsafeRawBufferPointer]) throws(Errno) {
        precondition(buffers.reduce(0) { $0 + $1.count } == count * blockSize, "buffers do not add up to \(count) blocks")
        var b = block
        for buffer in buffers {
            let n = buffer.count / blockSize
            try write(block: b, count: n, from: buffer)
            b += n
        }
    }
}

extension BlockDevice {
    /// `count` blocks from `block`, as bytes: for metadata and tools, where a copy costs
    /// nothing next to the I/O.
    public func readBlocks(_ block: Int, count: Int) throws(Errno) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count * blockSize)
        let failure = bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(Errno) in try read(block: block, count: count, into: buffer) }.failure
        }
        if let failure { throw failure }
        return bytes
    }

    /// Writes `bytes`, a whole number of blocks, from `block` on. The bytes are copied to
    /// page-aligned memory first, as folio memory is, so that an image file's device writes
    /// them with direct I/O: written through the kernel's cache of the image instead, a log
    /// block made the flush after it write the page back and wait for it, three times the
    /// cost of the flush alone (`iomap bench`'s volume-fsync rows).
    public func writeBlocks(_ block: Int, _ bytes: [UInt8]) throws(Errno) {
        precondition(bytes.count % blockSize == 0, "\(bytes.count) bytes is not a whole number of \(blockSize)-byte blocks")
        let aligned = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: pageSize)
        defer { aligned.deallocate() }
        bytes.withUnsafeBytes { aligned.copyMemory(from: $0) }
        try write(block: block, count: bytes.count / blockSize, from: UnsafeRawBufferPointer(aligned))
    }
}

extension Result {
    /// The error, or nil on success.
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

/// Checks a block size against the supported geometry.
@inline(__always)
func checkDeviceGeometry(blockSize: Int, blockCount: Int) {
    precondition(
        blockSize >= 512 && blockSize <= 4096 && blockSize & (blockSize - 1) == 0,
        "block size must be a power of two from 512 to 4096, got \(blockSize)")
    precondition(blockCount >= 0, "block count must not be negative, got \(blockCount)")
    let (_, overflow) = blockCount.multipliedReportingOverflow(by: blockSize)
    precondition(!overflow, "device of \(blockCount) blocks of \(blockSize) bytes is too large")
}

/// Validates a request: the buffer size is a contract, the range an I/O error. Every
/// implementation of `BlockDevice` calls it first.
@inlinable @inline(__always)
public func checkDeviceRequest(
    block: Int, count: Int, bufferCount: Int, blockSize: Int, blockCount: Int
) throws(Errno) {
    precondition(count >= 0, "block request count must not be negative, got \(count)")
    precondition(
        bufferCount == count * blockSize,
        "buffer of \(bufferCount) bytes for \(count) blocks of \(blockSize) bytes")
    if block < 0 || block > blockCount || count > blockCount - block { throw .ioError }
}
