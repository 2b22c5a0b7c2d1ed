// Counterpart: a RAM disk (drivers/block/brd.c): a sparse in-memory block device whose
// writes are durable the moment they return.

import IOMapBase
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

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
        try checkRequest(block: block, count: count, bufferCount: buffer.count)
        guard count > 0, let dst = buffer.baseAddress else { return }
        let start = block * blockSize
        let total = buffer.count
        state.withLock { s in
            Self.forEachChunk(start: start, total: total) { chunk, within, done, n in
                if let bytes = s.chunks[chunk] {
                    bytes.withUnsafeBytes { src in
                        (dst + done).copyMemory(from: src.baseAddress! + within, byteCount: n)
                    }
                } else {
                    (dst + done).initializeMemory(as: UInt8.self, repeating: 0, count: n)
                }
            }
        }
    }

    public func write(block: Int, count: Int, from buffer: UnsafeRawBufferPointer) throws(Errno) {
        try checkRequest(block: block, count: count, bufferCount: buffer.count)
        let start = block * blockSize
        let total = buffer.count
        state.withLock { s in
            s.writeCount += 1
            guard total > 0, let src = buffer.baseAddress else { return }
            Self.forEachChunk(start: start, total: total) { chunk, within, done, n in
                s.chunks[chunk, default: [UInt8](repeating: 0, count: Self.chunkSize)]
                    .withUnsafeMutableBytes { dst in
                        (dst.baseAddress! + within).copyMemory(from: src + done, byteCount: n)
                    }
            }
        }
    }

    /// Walks `[start, start + total)` chunk by chunk: the chunk's number, the offset inside
    /// it, the bytes done before it, and how many of its bytes the range covers.
    @inline(__always)
    static func forEachChunk(start: Int, total: Int, _ body: (Int, Int, Int, Int) -> Void) {
        var done = 0
        while done < total {
            let offset = start + done
            let within = offset % chunkSize
            let n = min(chunkSize - within, total - done)
            body(offset / chunkSize, within, done, n)
            done += n
        }
    }

    public func flush() throws(Errno) {}
}
