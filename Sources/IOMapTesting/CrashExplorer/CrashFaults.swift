// Counterpart: none in the kernel; the faults beyond power loss of dm-flakey and dm-dust
// (drivers/md: corrupted, dropped and failing I/O) and of TigerBeetle's and FoundationDB's
// storage simulators (misdirected, lost and torn writes, latent sector errors, bit rot),
// injected into a recorded workload's final image, one fault per mount.
//
// For each fault kind and each kind of block (every metadata block kind, by its magic, and
// data), a few of the blocks the workload wrote last are hit:
// - lost: the block's last write never reached the disk (it holds what it held before);
// - misdirected: that write landed on another block (1 to 16 blocks on) instead;
// - torn: some of its 512-byte sectors new, the others old, although a flush said durable;
// - bitflip: one bit of the block flipped;
// - latent: reads of the block fail with EIO.
// Then fsck, the mount and the oracle (CrashModel.check against the model at the end of
// the workload). Each outcome is one of: detected (fsck names an error, the mount refuses,
// or a read fails with EIO), held (nothing the workload was promised changed: the block
// was not live, or the fault left it as it was), rolled back (a lost, misdirected or torn
// write left what a crash just before that write would have: the oracle of that crash
// point holds; no disk state tells the two apart when the write was the last checkpoint's,
// nor for data, which has no checksum), or silent (the volume mounted clean and gave an
// answer no crash allows). Metadata is self-describing and checksummed (docs/FORMAT.md), so a
// silent result on a metadata block is a violation. Data is not checksummed (as in XFS), so
// a flipped, lost, torn or misdirected data block can only be counted, not caught; a latent
// error on a data block must come back as EIO.

import ExtentFS
import IOMapBase
import Volume

/// A fault beyond power loss.
public enum CrashFault: String, CaseIterable, Sendable {
    case misdirected, lost, torn, latent, bitflip
}

/// How a fault kind fared on one kind of block.
public struct FaultCell: Sendable, Equatable, Codable {
    public var injected = 0
    public var detected = 0
    public var held = 0
    /// The volume recovered what a crash just before the damaged write would have left: a
    /// write lost, misdirected or torn after its flush, which nothing on the disk tells from
    /// a crash before it (the last checkpoint's, a data block's).
    public var rolledBack = 0
    public var silent = 0
    public init() {}

    enum CodingKeys: String, CodingKey {
        case injected, detected, held, silent
        case rolledBack = "rolled_back"
    }

    mutating func add(_ o: FaultCell) {
        injected += o.injected
        detected += o.detected
        held += o.held
        rolledBack += o.rolledBack
        silent += o.silent
    }
}

/// fault → block kind ("data" or a metadata kind's name) → outcomes.
public typealias FaultTable = [String: [String: FaultCell]]

func merge(_ a: inout FaultTable, _ b: FaultTable) {
    for (f, row) in b { for (k, c) in row { a[f, default: [:]][k, default: FaultCell()].add(c) } }
}

extension CrashRecording {
    /// The kind of block `b` of a write's bytes: its magic's, or nil (data).
    static func kind(_ bytes: [UInt8], block b: Int, blockSize: Int) -> BlockKind? {
        let i = b * blockSize
        let word = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
        return BlockKind.allCases.first { $0.magic == word }
    }

    /// Per block, its last written bytes, what it held before that write, and the write's
    /// event index.
    func lastWrites() -> [Int: (last: [UInt8], before: [UInt8], at: Int)] {
        var out: [Int: (last: [UInt8], before: [UInt8], at: Int)] = [:]
        let fillBlock = [UInt8](repeating: fill, count: blockSize)
        for (at, e) in events.enumerated() {
            guard case .write(let block, let bytes) = e else { continue }
            for i in 0..<bytes.count / blockSize {
                let b = Array(bytes[i * blockSize..<(i + 1) * blockSize])
                out[block + i] = (b, out[block + i]?.last ?? fillBlock, at)
            }
        }
        return out
    }
}

/// Injects `faults` into the final image of `recording`, `perTarget` blocks of each kind per
/// fault kind, and checks each; returns the table and the violations (silent metadata faults,
/// data read errors that did not come back as EIO).
func exploreFaults(
    _ recording: CrashRecording, workload: String, index: Int, setup: CrashVolumeSetup, faults: [CrashFault], perTarget: Int,
    seed: UInt64
) -> (table: FaultTable, violations: [CrashViolation]) {
    var table = FaultTable()
    var violations: [CrashViolation] = []
    guard !faults.isEmpty, recording.failure == nil else { return (table, violations) }
    var random = SeededRandom(seed: seed ^ 0xFA17_0000_0000_0000)
    let epochs = recording.epochs
    let last = epochs.count - 1
    let final = recording.image(
        .subset(epoch: last, kept: Array(epochs[last].writes.indices)), durable: recording.durableImage(before: last))
    let model = recording.model(atCrash: recording.events.count).model
    let writes = recording.lastWrites()
    var byKind: [String: [Int]] = [:]
    // Blocks the workload wrote, for the faults that undo a write: what a crash before an
    // earlier write (the fixture's, the format's) leaves is beyond the model, which begins
    // with the workload. Bit flips and read errors hit any block.
    var undoable: Set<Int> = []
    for (block, w) in writes where w.at > recording.start { undoable.insert(block) }
    for (block, w) in writes {
        let name = CrashRecording.kind(w.last, block: 0, blockSize: recording.blockSize).map { "\($0)" } ?? "data"
        byKind[name, default: []].append(block)
    }
    let checker = CrashStateChecker(setup: setup)
    var n = 0
    // A block of one sector cannot tear: the devices write a sector whole.
    for fault in faults where fault != .torn || recording.blockSize >= 1024 {
        for (kind, blocks) in byKind.sorted(by: { $0.key < $1.key }) {
            let undoes = fault == .lost || fault == .misdirected || fault == .torn
            let sorted = blocks.filter { !undoes || undoable.contains($0) }.sorted()
            for _ in 0..<min(perTarget, sorted.count) {
                let b = sorted[Int(random.next() % UInt64(sorted.count))]
                let w = writes[b]!
                let (image, unreadable, what, cellKind) = injectFault(
                    fault, block: b, kind: kind, write: (w.last, w.before), into: final, writes: writes, blockSize: recording.blockSize,
                    blockCount: recording.blockCount, random: &random)
                var cell = FaultCell()
                cell.injected = 1
                // A fault that only undoes the write (lost, misdirected, torn) is judged also
                // against a crash just before it: the ops that returned before it.
                // A flip in a log block's stamp looks torn (docs/FORMAT.md): judged so too.
                let before = (undoes || fault == .bitflip) && undoable.contains(b) ? recording.model(atCrash: w.at).model : nil
                let outcome = checker.checkFault(image, model, crashBefore: before, unreadable: unreadable)
                switch outcome {
                case .detected: cell.detected = 1
                case .held: cell.held = 1
                case .rolledBack: cell.rolledBack = 1
                case .silent(let detail):
                    cell.silent = 1
                    // Data carries no checksum: only a read error must be caught there.
                    if cellKind == kind && kind != "data" || fault == .latent {
                        violations.append(
                            CrashViolation(
                                workload: workload, stateID: "\(index).f\(n)", state: what, check: "fault",
                                detail: "not detected: \(detail)"))
                    }
                }
                table[fault.rawValue, default: [:]][cellKind, default: FaultCell()].add(cell)
                n += 1
            }
        }
    }
    return (table, violations)
}

/// `fault` applied to block `b` (of `kind`, last written with `write.last` over
/// `write.before`) of `final`: the damaged image, the blocks whose reads fail, a description,
/// and the table row it counts in.
private func injectFault(
    _ fault: CrashFault, block b: Int, kind: String, write w: (last: [UInt8], before: [UInt8]), into final: BlockImage,
    writes: [Int: (last: [UInt8], before: [UInt8], at: Int)], blockSize: Int, blockCount: Int, random: inout SeededRandom
) -> (image: BlockImage, unreadable: Set<Int>, what: String, cellKind: String) {
    var image = final
    var unreadable: Set<Int> = []
    var what = "\(fault) on \(kind) block \(b)"
    var cellKind = kind
    switch fault {
    case .lost: image.write(block: b, bytes: w.before)
    case .misdirected:
        let to = (b + 1 + Int(random.next() % 16)) % blockCount
        image.write(block: b, bytes: w.before)
        // Landed on a data block, the write is a data fault there too, which no checksum
        // can see: its outcomes are counted apart ("onto data").
        if kind != "data" && CrashRecording.kind(final.block(to), block: 0, blockSize: blockSize) == nil && writes[to] != nil {
            cellKind = "\(kind) onto data"
        }
        image.write(block: to, bytes: w.last)
        what += " (landed on block \(to))"
    case .torn:
        let sectors = blockSize / 512
        let mask = 1 + random.next() % ((1 << UInt64(sectors)) - 2)
        var block = w.before
        for s in 0..<sectors where mask >> UInt64(s) & 1 == 1 {
            block.replaceSubrange(s * 512..<(s + 1) * 512, with: w.last[s * 512..<(s + 1) * 512])
        }
        image.write(block: b, bytes: block)
        what += " (sectors 0x\(String(mask, radix: 16)) new)"
    case .bitflip:
        var block = image.block(b)
        let bit = Int(random.next() % UInt64(blockSize * 8))
        block[bit / 8] ^= 1 << UInt8(bit % 8)
        image.write(block: b, bytes: block)
        what += " (bit \(bit))"
    case .latent: unreadable = [b]
    }
    return (image, unreadable, what, cellKind)
}

extension CrashStateChecker {
    enum FaultOutcome {
        case detected(String)
        case held
        case rolledBack
        case silent(String)
    }

    /// fsck, mount and oracle on a faulty image: detected when any of them reports the damage
    /// (an fsck error, a refused mount, an EIO), held when all pass, silent when the volume
    /// mounts clean and answers wrong.
    func checkFault(_ image: BlockImage, _ model: CrashModel, crashBefore: CrashModel?, unreadable: Set<Int>) -> FaultOutcome {
        var retired: [AnyObject] = []
        defer { withExtendedLifetime(retired) {} }
        let device = ImageBlockDevice(image)
        device.failReads(unreadable)
        var out = Outcome()
        fsck(device, "of the damaged image", &out)
        if let first = out.violations.first { return .detected(first.1) }
        let volume: Volume
        do throws(VolumeError) { volume = try Volume.mount(device: device, options: setup.options()) } catch {
            return .detected("mount: \(error)")
        }
        retired.append(volume)
        fsck(device, "after the mount", &out)
        if let first = out.violations.first { return .detected(first.1) }
        let found = model.check(volume).violations
        if let eio = found.first(where: { $0.contains("reading it failed") && $0.contains("\(Errno.ioError)") }) { return .detected(eio) }
        if found.isEmpty { return .held }
        if let crashBefore, crashBefore.check(volume).violations.isEmpty { return .rolledBack }
        return .silent(found[0])
    }
}
