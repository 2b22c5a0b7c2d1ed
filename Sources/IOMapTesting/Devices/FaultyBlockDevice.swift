// Counterpart: none in the kernel as such; the test device of dm-flakey and dm-log-writes
// (drivers/md): I/O errors at chosen blocks and a volatile write cache a crash discards.
//
// Fault specification.
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
//
// A crash at a flush:
// - armCrash(atFlush: n, keeping:) makes the n-th flush from then on a power loss instead:
//   the unflushed writes for which `keeping(block, count)` is true land on the wrapped
//   device, the others are dropped, the flush throws EIO, and the device is dead: every
//   later read, write and flush throws EIO, until revive(). A test that must lose exactly
//   the data write and keep the log write (or the reverse) says so with `keeping`.
//   disarmCrash() takes back an armed crash that has not happened yet.
//
// The recording:
// - After startRecording(), every successful write (its blocks and bytes), every flush and
//   every mark(_:) a workload makes (an fsync returned, op k done) is appended, in order, to
//   the recording: what a crash-state explorer needs to rebuild the device as it was at any
//   point, with any subset of the writes since the last flush (dm-log-writes' log).

import ExtentFS
import IOMapBase
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One event of a recording.
public enum DeviceEvent: Sendable, Equatable {
    /// A write of whole blocks from `block` on.
    case write(block: Int, bytes: [UInt8])
    /// A completed flush: every write before it is durable.
    case flush
    /// A workload's mark.
    case mark(String)
}

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
        /// The events since startRecording(), or nil when not recording.
        var recording: [DeviceEvent]?
        /// An armed crash: flushes left before it, and which writes survive it.
        var armed: (flushesLeft: Int, keeping: @Sendable (Int, Int) -> Bool)?
        /// Set by an armed crash: everything fails until revive().
        var dead = false

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

    /// Makes the `n`-th flush from now (1: the next) a power loss that keeps only the
    /// unflushed writes `keeping` accepts; see the fault specification.
    public func armCrash(atFlush n: Int, keeping: @escaping @Sendable (_ block: Int, _ count: Int) -> Bool = { _, _ in false }) {
        precondition(n >= 1, "the flush to crash at is counted from 1")
        state.withLock { $0.armed = (n, keeping) }
    }

    /// Takes back an armed crash that has not happened (a workload ended before its flush).
    public func disarmCrash() { state.withLock { $0.armed = nil } }

    /// Whether an armed crash has happened (and the device is dead).
    public var crashed: Bool { state.withLock { $0.dead } }

    /// Brings a dead device back, its cache empty, as after a reboot.
    public func revive() { state.withLock { $0.dead = false } }

    /// Starts (or restarts, empty) the recording of writes, flushes and marks.
    public func startRecording() { state.withLock { $0.recording = [] } }

    /// Adds a workload's mark to the recording (nothing when not recording).
    public func mark(_ label: String) { state.withLock { $0.recording?.append(.mark(label)) } }

    /// The events recorded since startRecording().
    public var recordedEvents: [DeviceEvent] { state.withLock { $0.recording ?? [] } }

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
        try checkRequest(block: block, count: count, bufferCount: buffer.count)
        guard count > 0, let base = buffer.baseAddress else { return }
        // Copy the cached blocks first and note the gaps; then read the gaps from the
        // wrapped device. Taking the cache first is what makes a concurrent flush safe:
        // a block either came from the cache, or was read from the device after
        // anything flushed from the cache had already been written there.
        let gaps = try state.withLock { (s) throws(Errno) -> [Range<Int>] in
            if s.dead { throw .ioError }
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
        try checkRequest(block: block, count: count, bufferCount: buffer.count)
        let bytes = [UInt8](buffer)
        try state.withLock { (s) throws(Errno) -> Void in
            if s.dead { throw .ioError }
            if Self.overlaps(s.writeFaults, block: block, count: count) || s.draw(s.writeProbability) {
                s.injectedErrors += 1
                throw .ioError
            }
            guard count > 0 else { return }
            let sequence = s.nextSequence
            s.nextSequence += 1
            s.pending.append(PendingWrite(sequence: sequence, block: block, count: count, bytes: bytes))
            s.recording?.append(.write(block: block, bytes: bytes))
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
        if let keeping = state.withLock({ s -> (@Sendable (Int, Int) -> Bool)? in
            guard let a = s.armed else { return nil }
            if a.flushesLeft > 1 {
                s.armed = (a.flushesLeft - 1, a.keeping)
                return nil
            }
            s.armed = nil
            return a.keeping
        }) {
            crash(keeping: keeping)
            state.withLock { $0.dead = true }
            throw .ioError
        }
        if state.withLock({ $0.dead }) { throw .ioError }
        try destage.withLock { _ throws(Errno) in
            // A copy into a buffer of its own (map, not the array itself): a writer appending to
            // the pending list after the lock is released must never share a buffer this
            // thread reads, which Thread Sanitizer cannot see the reference count hand over.
            let batch = state.withLock { s in s.pending.map { $0 } }
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
            state.withLock { $0.recording?.append(.flush) }
        }
    }

    /// Simulates a power loss: every unflushed write is dropped, or with probability
    /// `keepFraction` (seeded) written through to the wrapped device; the cache empties.
    /// Errors from the wrapped device while writing kept data through are ignored (that
    /// write is lost too).
    public func crash(keepFraction: Double = 0) {
        precondition((0...1).contains(keepFraction), "keepFraction must be in 0...1, got \(keepFraction)")
        crash { s, _ in s.draw(keepFraction) }
    }

    /// A power loss that keeps the unflushed writes `keeping(block, count)` accepts.
    public func crash(keeping: @Sendable (Int, Int) -> Bool) {
        crash { _, w in keeping(w.block, w.count) }
    }

    private func crash(_ keep: (inout State, PendingWrite) -> Bool) {
        destage.withLock { _ in
            let kept = state.withLock { s -> [PendingWrite] in
                var kept: [PendingWrite] = []
                for write in s.pending where keep(&s, write) { kept.append(write) }
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
