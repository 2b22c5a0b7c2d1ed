// Counterpart: none in the kernel; the replay target of dm-log-writes (a device rebuilt from
// a log of writes up to a mark), in memory and copy-on-write, so that a crash-state explorer
// can build thousands of device states from one recording without copying the device.

import ExtentFS
import IOMapBase
import Synchronization

/// A device's contents as a map of the blocks written, every other block reading as `fill`.
/// A value: copying one shares the map until either copy changes.
public struct BlockImage: Sendable, Equatable {
    public let blockSize: Int
    public let blockCount: Int
    /// What a block never written holds (the crash tests poison their disks, so that a block
    /// read as written that never was shows).
    public let fill: UInt8
    public private(set) var blocks: [Int: [UInt8]] = [:]

    public init(blockSize: Int, blockCount: Int, fill: UInt8) {
        self.blockSize = blockSize
        self.blockCount = blockCount
        self.fill = fill
    }

    /// Applies a write of whole blocks from `block` on.
    public mutating func write(block: Int, bytes: [UInt8]) {
        precondition(bytes.count % blockSize == 0, "a write of \(bytes.count) bytes is not whole \(blockSize)-byte blocks")
        let n = bytes.count / blockSize
        if n == 1 {
            blocks[block] = bytes
            return
        }
        for i in 0..<n { blocks[block + i] = Array(bytes[i * blockSize..<(i + 1) * blockSize]) }
    }

    /// Block `block`'s bytes.
    public func block(_ block: Int) -> [UInt8] { blocks[block] ?? [UInt8](repeating: fill, count: blockSize) }
}

/// A block device over a BlockImage: reads see the image, writes change it, each write and
/// flush is recorded in order (a crash explorer's view of what a mount did). Nothing is
/// volatile: a flush only marks the recording.
public final class ImageBlockDevice: BlockDevice {
    struct State {
        var image: BlockImage
        var events: [DeviceEvent] = []
        /// Blocks whose reads fail with EIO: latent sector errors.
        var unreadable: Set<Int> = []
        var readErrors = 0
    }

    public let blockSize: Int
    public let blockCount: Int
    private let state: Mutex<State>
    /// Whether writes and flushes are recorded.
    let records: Bool

    public init(_ image: BlockImage, recording: Bool = true) {
        blockSize = image.blockSize
        blockCount = image.blockCount
        records = recording
        state = Mutex(State(image: image))
    }

    /// Makes reads of `blocks` fail with EIO from now on (latent sector errors).
    public func failReads(_ blocks: Set<Int>) { state.withLock { $0.unreadable.formUnion(blocks) } }
    /// How many reads failed so.
    public var readErrors: Int { state.withLock { $0.readErrors } }

    /// The image as it is now.
    public var image: BlockImage { state.withLock { $0.image } }
    /// Every write and flush since the device was made.
    public var events: [DeviceEvent] { state.withLock { $0.events } }

    public func read(block: Int, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) {
        try checkRequest(block: block, count: count, bufferCount: buffer.count)
        guard count > 0, let base = buffer.baseAddress else { return }
        let bs = blockSize
        let failed = state.withLock { s -> Bool in
            guard !s.unreadable.isEmpty, (block..<block + count).contains(where: s.unreadable.contains) else { return false }
            s.readErrors += 1
            return true
        }
        if failed { throw .ioError }
        state.withLock { s in
            for i in 0..<count {
                let dst = base + i * bs
                if let bytes = s.image.blocks[block + i] {
                    bytes.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress!, byteCount: bs) }
                } else {
                    dst.initializeMemory(as: UInt8.self, repeating: s.image.fill, count: bs)
                }
            }
        }
    }

    public func write(block: Int, count: Int, from buffer: UnsafeRawBufferPointer) throws(Errno) {
        try checkRequest(block: block, count: count, bufferCount: buffer.count)
        guard count > 0 else { return }
        let bytes = [UInt8](buffer)
        state.withLock { s in
            s.image.write(block: block, bytes: bytes)
            if records { s.events.append(.write(block: block, bytes: bytes)) }
        }
    }

    public func flush() throws(Errno) {
        state.withLock { s in if records { s.events.append(.flush) } }
    }

    /// Adds a workload's mark to the recording.
    public func mark(_ label: String) {
        state.withLock { s in if records { s.events.append(.mark(label)) } }
    }

    /// The number of events recorded so far: a position in the recording.
    public var eventCount: Int { state.withLock { $0.events.count } }
}
