// Counterpart: the block layer under a file system: struct block_device and bio
// submission (submit_bio, blkdev_issue_flush), reduced to synchronous whole-block calls.
//
// The extent file system stores file data in device blocks and must be testable for
// what a real disk does to it: I/O errors at particular sectors and the loss of a
// volatile write cache on power failure. So the device is a protocol with three
// implementations: a sparse in-memory disk for tests and fuzzing (a 1 TiB device costs
// nothing until written), an image file for the command-line tool, and a fault-injecting
// wrapper that adds errors and a write cache that a simulated crash throws away.
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

/// Validates a request: the buffer size is a contract, the range an I/O error.
@inline(__always)
func checkDeviceRequest(
    block: Int, count: Int, bufferCount: Int, blockSize: Int, blockCount: Int
) throws(Errno) {
    precondition(count >= 0, "block request count must not be negative, got \(count)")
    precondition(
        bufferCount == count * blockSize,
        "buffer of \(bufferCount) bytes for \(count) blocks of \(blockSize) bytes")
    if block < 0 || block > blockCount || count > blockCount - block { throw .ioError }
}

// MARK: - Memory

/// A sparse in-memory disk. Data lives in fixed 64 KiB chunks allocated on the first
/// write that touches them; blocks never written read as zeroes. Writes are durable the
/// moment they return, so `flush()` does nothing.
public final class MemoryBlockDevice: BlockDevice {
    /// Bytes per storage chunk; a multiple of every supported block size.
    static let chunkSize = 64 * 1024

    private struct State {
        var chunks: [Int: [UInt8]] = [:]
        var writeCount = 0
    }

    public let blockSize: Int
    public let blockCount: Int
    private let state: OrderedMutex<State>

    public init(blockSize: Int, blockCount: Int) {
        checkDeviceGeometry(blockSize: blockSize, blockCount: blockCount)
        self.blockSize = blockSize
        self.blockCount = blockCount
        self.state = OrderedMutex(.device, "memory block device", State())
    }

    /// Bytes of backing store allocated so far (whole chunks).
    public var bytesAllocated: Int { state.withLock { $0.chunks.count * Self.chunkSize } }

    /// The number of successful `write` calls.
    public var writeCount: Int { state.withLock { $0.writeCount } }

    public func read(block: Int, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) {
        try checkDeviceRequest(
            block: block, count: count, bufferCount: buffer.count, blockSize: blockSize,
            blockCount: blockCount)
        guard count > 0, let dst = buffer.baseAddress else { return }
        let start = block * blockSize
        let total = buffer.count
        state.withLock { s in
            var done = 0
            while done < total {
                let offset = start + done
                let chunk = offset / Self.chunkSize
                let within = offset % Self.chunkSize
                let n = min(Self.chunkSize - within, total - done)
                if let bytes = s.chunks[chunk] {
                    bytes.withUnsafeBytes { src in
                        (dst + done).copyMemory(from: src.baseAddress! + within, byteCount: n)
                    }
                } else {
                    (dst + done).initializeMemory(as: UInt8.self, repeating: 0, count: n)
                }
                done += n
            }
        }
    }

    public func write(block: Int, count: Int, from buffer: UnsafeRawBufferPointer) throws(Errno) {
        try checkDeviceRequest(
            block: block, count: count, bufferCount: buffer.count, blockSize: blockSize,
            blockCount: blockCount)
        let start = block * blockSize
        let total = buffer.count
        state.withLock { s in
            s.writeCount += 1
            guard total > 0, let src = buffer.baseAddress else { return }
            var done = 0
            while done < total {
                let offset = start + done
                let chunk = offset / Self.chunkSize
                let within = offset % Self.chunkSize
                let n = min(Self.chunkSize - within, total - done)
                s.chunks[chunk, default: [UInt8](repeating: 0, count: Self.chunkSize)]
                    .withUnsafeMutableBytes { dst in
                        (dst.baseAddress! + within).copyMemory(from: src + done, byteCount: n)
                    }
                done += n
            }
        }
    }

    public func flush() throws(Errno) {}
}

// MARK: - Image file

/// O_DIRECT, which Swift's Glibc module does not export (it needs _GNU_SOURCE); its value
/// differs between architectures. 0 where unknown: no direct I/O.
#if os(Linux) && (arch(x86_64) || arch(i386))
let directIOFlag: Int32 = 0o40000
#elseif os(Linux) && (arch(arm64) || arch(arm))
let directIOFlag: Int32 = 0o200000
#else
let directIOFlag: Int32 = 0
#endif

/// A device backed by an image file, read and written with pread/pwrite; `flush()` is
/// fsync. Reads past the end of a shorter file return zeroes, so an image may be sparse
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
        var fd: Int32
        repeat {
            fd = open(path, flags, 0o644)
        } while fd < 0 && errno == EINTR
        if fd < 0 { throw Errno(rawValue: errno) }
        if create {
            var rc: Int32
            repeat {
                rc = ftruncate(fd, off_t(blockCount * blockSize))
            } while rc < 0 && errno == EINTR
            if rc < 0 {
                let error = Errno(rawValue: errno)
                close(fd)
                throw error
            }
        }
        self.fd = fd
        var direct: Int32
        repeat {
            direct = directIOFlag == 0 ? -1 : open(path, O_RDWR | O_CLOEXEC | directIOFlag)
        } while direct < 0 && errno == EINTR
        self.directFD = direct
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
        try checkDeviceRequest(
            block: block, count: count, bufferCount: buffer.count, blockSize: blockSize,
            blockCount: blockCount)
        guard count > 0, let base = buffer.baseAddress else { return }
        let start = block * blockSize
        let total = buffer.count
        let fd = descriptor(base, start, total)
        var done = 0
        while done < total {
            let n = pread(fd, base + done, total - done, off_t(start + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno(rawValue: errno)
            }
            if n == 0 {
                // Past the end of the image file: the rest reads as zeroes.
                (base + done).initializeMemory(as: UInt8.self, repeating: 0, count: total - done)
                return
            }
            done += n
        }
    }

    public func write(block: Int, count: Int, from buffer: UnsafeRawBufferPointer) throws(Errno) {
        try checkDeviceRequest(
            block: block, count: count, bufferCount: buffer.count, blockSize: blockSize,
            blockCount: blockCount)
        guard count > 0, let base = buffer.baseAddress else { return }
        let start = block * blockSize
        let total = buffer.count
        let fd = descriptor(base, start, total)
        var done = 0
        while done < total {
            let n = pwrite(fd, base + done, total - done, off_t(start + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno(rawValue: errno)
            }
            if n == 0 { throw .ioError }
            done += n
        }
    }

    /// One pwritev for the whole request (through O_DIRECT when every piece is aligned), so
    /// that the kernel can put the pieces on the disk in one go.
    public func write(block: Int, count: Int, from buffers: [UnsafeRawBufferPointer]) throws(Errno) {
        let total = buffers.reduce(0) { $0 + $1.count }
        precondition(total == count * blockSize, "buffers do not add up to \(count) blocks")
        try checkDeviceRequest(block: block, count: count, bufferCount: total, blockSize: blockSize, blockCount: blockCount)
        guard buffers.count > 1, buffers.count <= 1024 else {
            var b = block
            for buffer in buffers {
                try write(block: b, count: buffer.count / blockSize, from: buffer)
                b += buffer.count / blockSize
            }
            return
        }
        let start = block * blockSize
        let aligned = directFD >= 0 && buffers.allSatisfy { (Int(bitPattern: $0.baseAddress) | $0.count) & (pageSize - 1) == 0 }
            && (start | total) & (pageSize - 1) == 0
        let fd = aligned ? directFD : self.fd
        var vectors = buffers.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
        var n: Int
        repeat {
            n = vectors.withUnsafeMutableBufferPointer { pwritev(fd, $0.baseAddress, Int32($0.count), off_t(start)) }
        } while n < 0 && errno == EINTR
        if n < 0 { throw Errno(rawValue: errno) }
        if n == total { return }
        // A short vectored write (rare): finish the rest piece by piece.
        var done = 0
        for buffer in buffers {
            let end = done + buffer.count
            if end > n {
                let skip = max(0, n - done)
                try writeBytes(UnsafeRawBufferPointer(rebasing: buffer[skip...]), at: start + done + skip)
            }
            done = end
        }
    }

    /// pwrite until every byte of `bytes` is at `offset`, on the buffered descriptor.
    private func writeBytes(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno(rawValue: errno)
            }
            if n == 0 { throw .ioError }
            done += n
        }
    }

    public func flush() throws(Errno) {
        while fsync(fd) < 0 {
            if errno == EINTR { continue }
            throw Errno(rawValue: errno)
        }
    }
}

// MARK: - Faults

// Fault specification of FaultyBlockDevice.
//
// What can fail:
// - Reads and writes whose block range overlaps a range given to failReads / failWrites
//   throw EIO, every time, until clearFaults().
// - With setRandomFailure, every read or write call independently throws EIO with the
//   given probability, drawn from the device's seeded generator, so a run replays from
//   its seed (as long as calls arrive in the same order).
// - A failed write changes nothing: no block of the request reaches the cache or the
//   disk. (Real disks may tear a multi-block write; this device does not model that.)
// - Requests outside the device fail with EIO too, but are not counted as injected.
// - flush() injects no errors of its own; it fails only if the wrapped device does.
//
// The volatile write cache:
// - A write that succeeds lands in an in-memory overlay, not on the wrapped device.
//   Reads see the overlay, newest write first, then the wrapped device.
// - flush() pushes the overlay's writes to the wrapped device in submission order and
//   then flushes that device. Writes submitted while a flush runs stay cached for the
//   next flush. If the wrapped device fails part way, the writes already pushed leave
//   the overlay and the rest stay in it.
//
// What a crash loses:
// - crash(keepFraction:) is a power loss. Each unflushed write is independently dropped,
//   or with probability keepFraction (seeded) written through to the wrapped device, as
//   if the disk had destaged it on its own before the power went; kept writes land in
//   submission order. Either way the overlay is empty afterwards. Flushed data is never
//   lost. Call crash with no other I/O in flight, as a power loss ends all of it.

/// A device wrapper that injects I/O errors and simulates a volatile write cache that a
/// crash discards. See the fault specification above.
public final class FaultyBlockDevice: BlockDevice {
    /// One cached write, in submission order.
    private struct PendingWrite {
        var sequence: Int
        var block: Int
        var count: Int
        var bytes: [UInt8]
    }

    private struct State {
        var readFaults: [ClosedRange<Int>] = []
        var writeFaults: [ClosedRange<Int>] = []
        var readProbability = 0.0
        var writeProbability = 0.0
        var random: SeededRandom
        var injectedErrors = 0
        /// Unflushed writes, oldest first; sequence numbers are consecutive.
        var pending: [PendingWrite] = []
        var nextSequence = 0
        /// For each cached block, the sequence number of the newest write holding it.
        var newest: [Int: Int] = [:]

        func pendingWrite(_ sequence: Int) -> PendingWrite {
            pending[sequence - pending[0].sequence]
        }

        mutating func draw(_ probability: Double) -> Bool {
            probability > 0 && Double.random(in: 0..<1, using: &random) < probability
        }
    }

    public let inner: any BlockDevice
    public var blockSize: Int { inner.blockSize }
    public var blockCount: Int { inner.blockCount }
    private let state: OrderedMutex<State>
    /// Serialises flush() and crash(), which call into the wrapped device and must not
    /// interleave their pushes. It is held across calls into the wrapped device, whose own
    /// lock is at the same device level, so it is a plain mutex outside the checked
    /// hierarchy; it is always the innermost lock but for the wrapped device's.
    private let destage = Mutex<Void>(())

    public init(wrapping inner: any BlockDevice, seed: UInt64 = 0) {
        self.inner = inner
        self.state = OrderedMutex(.device, "faulty block device", State(random: SeededRandom(seed: seed)))
    }

    /// Makes every read overlapping `blocks` fail with EIO until `clearFaults()`.
    public func failReads(blocks: ClosedRange<Int>) { state.withLock { $0.readFaults.append(blocks) } }

    /// Makes every write overlapping `blocks` fail with EIO until `clearFaults()`.
    public func failWrites(blocks: ClosedRange<Int>) { state.withLock { $0.writeFaults.append(blocks) } }

    /// Makes each read and write call fail with the given probability (seeded).
    public func setRandomFailure(readProbability: Double, writeProbability: Double) {
        precondition((0...1).contains(readProbability) && (0...1).contains(writeProbability))
        state.withLock {
            $0.readProbability = readProbability
            $0.writeProbability = writeProbability
        }
    }

    /// Removes every block fault and the random failure rates. Cached writes stay.
    public func clearFaults() {
        state.withLock {
            $0.readFaults = []
            $0.writeFaults = []
            $0.readProbability = 0
            $0.writeProbability = 0
        }
    }

    /// The number of writes cached since the last flush.
    public var unflushedWriteCount: Int { state.withLock { $0.pending.count } }

    /// The number of errors injected so far (block faults and random failures).
    public var injectedErrors: Int { state.withLock { $0.injectedErrors } }

    private static func overlaps(_ faults: [ClosedRange<Int>], block: Int, count: Int) -> Bool {
        guard count > 0 else { return false }
        let last = block + count - 1
        return faults.contains { $0.lowerBound <= last && block <= $0.upperBound }
    }

    public func read(block: Int, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) {
        let blockSize = self.blockSize
        try checkDeviceRequest(
            block: block, count: count, bufferCount: buffer.count, blockSize: blockSize,
            blockCount: blockCount)
        guard count > 0, let base = buffer.baseAddress else { return }
        // Copy the cached blocks first and note the gaps; then read the gaps from the
        // wrapped device. Taking the cache first is what makes a concurrent flush safe:
        // a block either came from the cache, or was read from the device after
        // anything flushed from the cache had already been written there.
        let gaps = try state.withLock { (s) throws(Errno) -> [Range<Int>] in
            if Self.overlaps(s.readFaults, block: block, count: count) || s.draw(s.readProbability) {
                s.injectedErrors += 1
                throw .ioError
            }
            guard !s.newest.isEmpty else { return [block..<block + count] }
            var gaps: [Range<Int>] = []
            var gapStart: Int?
            for b in block..<block + count {
                if let sequence = s.newest[b] {
                    if let g = gapStart {
                        gaps.append(g..<b)
                        gapStart = nil
                    }
                    let write = s.pendingWrite(sequence)
                    write.bytes.withUnsafeBytes { src in
                        (base + (b - block) * blockSize).copyMemory(
                            from: src.baseAddress! + (b - write.block) * blockSize, byteCount: blockSize)
                    }
                } else if gapStart == nil {
                    gapStart = b
                }
            }
            if let g = gapStart { gaps.append(g..<block + count) }
            return gaps
        }
        for gap in gaps {
            let slice = UnsafeMutableRawBufferPointer(
                start: base + (gap.lowerBound - block) * blockSize, count: gap.count * blockSize)
            try inner.read(block: gap.lowerBound, count: gap.count, into: slice)
        }
    }

    public func write(block: Int, count: Int, from buffer: UnsafeRawBufferPointer) throws(Errno) {
        try checkDeviceRequest(
            block: block, count: count, bufferCount: buffer.count, blockSize: blockSize,
            blockCount: blockCount)
        let bytes = [UInt8](buffer)
        try state.withLock { (s) throws(Errno) -> Void in
            if Self.overlaps(s.writeFaults, block: block, count: count) || s.draw(s.writeProbability) {
                s.injectedErrors += 1
                throw .ioError
            }
            guard count > 0 else { return }
            let sequence = s.nextSequence
            s.nextSequence += 1
            s.pending.append(PendingWrite(sequence: sequence, block: block, count: count, bytes: bytes))
            for b in block..<block + count { s.newest[b] = sequence }
        }
    }

    /// Forgets the cached writes with sequence numbers below `end`, which have reached the
    /// wrapped device (or were lost).
    private static func retire(_ s: inout State, below end: Int) {
        guard let first = s.pending.first, first.sequence < end else { return }
        let n = min(end - first.sequence, s.pending.count)
        s.pending.removeFirst(n)
        s.newest = s.newest.filter { $0.value >= end }
    }

    public func flush() throws(Errno) {
        try destage.withLock { _ throws(Errno) in
            let batch = state.withLock { $0.pending }
            for (i, write) in batch.enumerated() {
                let failure = write.bytes.withUnsafeBytes { src -> Errno? in
                    do throws(Errno) {
                        try inner.write(block: write.block, count: write.count, from: src)
                        return nil
                    } catch {
                        return error
                    }
                }
                if let error = failure {
                    if i > 0 {
                        let end = batch[i - 1].sequence + 1
                        state.withLock { Self.retire(&$0, below: end) }
                    }
                    throw error
                }
            }
            if let last = batch.last {
                state.withLock { Self.retire(&$0, below: last.sequence + 1) }
            }
            try inner.flush()
        }
    }

    /// Simulates a power loss: every unflushed write is dropped, or with probability
    /// `keepFraction` (seeded) written through to the wrapped device; the cache empties.
    /// Errors from the wrapped device while writing kept data through are ignored (that
    /// write is lost too).
    public func crash(keepFraction: Double = 0) {
        precondition((0...1).contains(keepFraction), "keepFraction must be in 0...1, got \(keepFraction)")
        destage.withLock { _ in
            let kept = state.withLock { s -> [PendingWrite] in
                var kept: [PendingWrite] = []
                for write in s.pending where s.draw(keepFraction) { kept.append(write) }
                s.pending = []
                s.newest = [:]
                return kept
            }
            for write in kept {
                write.bytes.withUnsafeBytes { src in
                    _ = try? inner.write(block: write.block, count: write.count, from: src)
                }
            }
        }
    }
}
