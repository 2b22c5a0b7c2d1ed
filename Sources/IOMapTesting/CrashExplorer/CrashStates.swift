// Counterpart: none in the kernel; CrashMonkey's crash-state generation (the disk at every
// persistence point, and the writes of the epoch after it in every subset a volatile write
// cache could have kept), with dm-log-writes' torn-sector variant, cut from a CrashRecording.
//
// A flush makes every write before it durable, so the device at a crash is: every write of
// the epochs before the last completed flush, plus any subset of the writes since (the disk
// may destage them in any order, or not at all). An epoch is the writes between two flushes
// (the last one runs to the end of the recording). For each epoch after the workload began:
// - every subset of its writes when it has at most `exhaustiveLimit`, else `samples` seeded
//   subsets (none and all of them first). A closed epoch's full subset is the next epoch's
//   empty one, so it is left to that one;
// - torn writes: one of its writes (up to `tornPerEpoch` of them, seeded) landing sector by
//   sector: a seeded subset of its 512-byte sectors new, the rest old or garbage, with the
//   writes before it in the epoch kept and those after it dropped. Garbage only where the
//   block is metadata (it starts with a block kind's magic): metadata is checksummed, so a
//   torn block must be detected; data is not (as in XFS), so the sectors of a torn data block
//   are each old or new, which is what the oracle allows, and garbage in a data block
//   overwritten in place is beyond what any file system without data checksums can see.
// The crash point of an epoch's states is its end: the ops whose end mark lies before it
// had returned, and the op under way there is cut (CrashRecording.cut).

import ExtentFS
import IOMapBase
import Volume

/// One crash state of a recording.
public enum CrashStateKind: Sendable, Equatable, CustomStringConvertible {
    /// The epoch's writes whose indices are in `kept` landed, the others did not.
    case subset(epoch: Int, kept: [Int])
    /// Writes 0..<write of the epoch landed, write `write` tore: of the sectors of its block
    /// `block` (its index in the write), those in `sectors` are new, the others old (or
    /// `garbage`); the write's blocks before `block` landed, those after did not.
    case torn(epoch: Int, write: Int, block: Int, sectors: UInt64, garbage: Bool)

    public var epoch: Int {
        switch self {
        case .subset(let e, _), .torn(let e, _, _, _, _): return e
        }
    }

    public var description: String {
        switch self {
        case .subset(let e, let kept):
            return "epoch \(e), writes kept: \(kept.isEmpty ? "none" : kept.map(String.init).joined(separator: ","))"
        case .torn(let e, let w, let b, let sectors, let garbage):
            return
                "epoch \(e), write \(w) torn at its block \(b): sectors 0x\(String(sectors, radix: 16)) new, the rest \(garbage ? "garbage" : "old")"
        }
    }
}

/// The writes between two flushes.
public struct CrashEpoch: Sendable {
    /// Event indices: the first after the flush that opens it, and its closing flush (or the
    /// recording's end).
    public var start: Int
    public var end: Int
    public var closed: Bool
    public var writes: [(block: Int, bytes: [UInt8])]
}

/// How many states to cut from each epoch.
public struct CrashStatePolicy: Sendable {
    /// Epochs of at most this many writes get every subset.
    public var exhaustiveLimit = 10
    /// Seeded subsets of a larger epoch.
    public var samples = 64
    /// Torn-write states per epoch.
    public var tornPerEpoch = 2
    public init() {}
}

extension CrashRecording {
    /// The epochs of `events`, in order.
    static func epochs(of events: [DeviceEvent]) -> [CrashEpoch] {
        var out: [CrashEpoch] = []
        var current = CrashEpoch(start: 0, end: 0, closed: false, writes: [])
        for (i, e) in events.enumerated() {
            switch e {
            case .write(let block, let bytes): current.writes.append((block, bytes))
            case .flush:
                current.end = i
                current.closed = true
                out.append(current)
                current = CrashEpoch(start: i + 1, end: i + 1, closed: false, writes: [])
            case .mark: break
            }
        }
        current.end = events.count
        out.append(current)
        return out
    }

    /// The model for a crash at event index `point`: the op under way there cut, or the ops
    /// that had ended.
    public func model(atCrash point: Int) -> (model: CrashModel, opsDone: Int, cutOp: Int?) {
        let done = ends.prefix { $0 < point }.count
        if done < begins.count && begins[done] < point { return (cut[done], done, done) }
        return (models[done], done, nil)
    }

    /// The states of every epoch that ends after the workload began, in order.
    public func crashStates(_ policy: CrashStatePolicy, seed: UInt64) -> [CrashStateKind] {
        var random = SeededRandom(seed: seed ^ 0x5747_E5C0_0000_0000)
        var out: [CrashStateKind] = []
        for (e, epoch) in epochs.enumerated() where epoch.end > start {
            let n = epoch.writes.count
            if n <= policy.exhaustiveLimit {
                let masks = epoch.closed ? (0..<(1 << n) - 1) : (0..<(1 << n))
                for mask in masks { out.append(.subset(epoch: e, kept: (0..<n).filter { mask >> $0 & 1 == 1 })) }
            } else {
                out.append(.subset(epoch: e, kept: []))
                if !epoch.closed { out.append(.subset(epoch: e, kept: Array(0..<n))) }
                for _ in 0..<max(0, policy.samples - 2) {
                    out.append(.subset(epoch: e, kept: (0..<n).filter { _ in random.next() & 1 == 1 }))
                }
            }
            guard n > 0 else { continue }
            for _ in 0..<policy.tornPerEpoch {
                let w = Int(random.next() % UInt64(n))
                let blocks = epoch.writes[w].bytes.count / blockSize
                let sectors = blockSize / 512
                let mask = random.next() & ((1 << UInt64(sectors)) - 1)
                let b = Int(random.next() % UInt64(blocks))
                let garbage = random.next() & 1 == 1 && Self.isMetadata(epoch.writes[w].bytes, block: b, blockSize: blockSize)
                out.append(.torn(epoch: e, write: w, block: b, sectors: mask, garbage: garbage))
            }
        }
        return out
    }

    /// Whether block `b` of a write's bytes is a metadata block: it starts with a block kind's
    /// magic (docs/FORMAT.md).
    static func isMetadata(_ bytes: [UInt8], block b: Int, blockSize: Int) -> Bool {
        let i = b * blockSize
        let word = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
        return BlockKind.allCases.contains { $0.magic == word }
    }

    /// The device image of a state, built on `durable`, the image of every epoch before it.
    public func image(_ state: CrashStateKind, durable: BlockImage) -> BlockImage {
        var image = durable
        let epoch = epochs[state.epoch]
        switch state {
        case .subset(_, let kept):
            for i in kept { image.write(block: epoch.writes[i].block, bytes: epoch.writes[i].bytes) }
        case .torn(_, let w, let b, let sectors, let garbage):
            for i in 0..<w { image.write(block: epoch.writes[i].block, bytes: epoch.writes[i].bytes) }
            let write = epoch.writes[w]
            for i in 0..<b {
                image.write(block: write.block + i, bytes: Array(write.bytes[i * blockSize..<(i + 1) * blockSize]))
            }
            var block = image.block(write.block + b)
            for s in 0..<blockSize / 512 {
                let range = b * blockSize + s * 512..<b * blockSize + (s + 1) * 512
                if sectors >> UInt64(s) & 1 == 1 {
                    block.replaceSubrange(s * 512..<(s + 1) * 512, with: write.bytes[range])
                } else if garbage {
                    block.replaceSubrange(
                        s * 512..<(s + 1) * 512, with: (0..<512).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ s &* 7 &+ 1) | 1 })
                }
            }
            image.write(block: write.block + b, bytes: block)
        }
        return image
    }

    /// The durable image before epoch `e`: every write of epochs 0..<e.
    public func durableImage(before e: Int) -> BlockImage {
        var cursor = DurableImages(self)
        return cursor.image(before: e)
    }
}

/// The durable images of a recording's epochs, built forward: the states come in epoch
/// order, so one image advanced epoch by epoch serves them all. (An image kept for every
/// epoch at once held hundreds of megabytes for the fsx workloads.)
public struct DurableImages {
    let recording: CrashRecording
    /// The image holds every write of the epochs before this one.
    private var next = 0
    private var image: BlockImage

    public init(_ recording: CrashRecording) {
        self.recording = recording
        image = BlockImage(blockSize: recording.blockSize, blockCount: recording.blockCount, fill: recording.fill)
    }

    /// The image of every write of epochs 0..<e; an epoch before the last asked for starts
    /// over from the blank device.
    public mutating func image(before e: Int) -> BlockImage {
        if e < next { self = DurableImages(recording) }
        while next < e {
            for w in recording.epochs[next].writes { image.write(block: w.block, bytes: w.bytes) }
            next += 1
        }
        return image
    }
}
