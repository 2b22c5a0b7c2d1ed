// Counterpart: none in the kernel; dm-log-writes' log (every write with its bytes, every
// flush, and marks the workload makes), taken in process while a crash workload runs on a
// volume, with the oracle's model after every op, so that each crash state cut from the log
// knows what the workload had been promised by then.

import ExtentFS
import IOMap
import IOMapBase
import Volume

/// Where a workload's ops come from: the next op given the model so far, or nil at the end.
public typealias CrashOpSource = (CrashModel, Int) -> CrashOp?

/// A workload run once under a recording device.
public struct CrashRecording: Sendable {
    /// Every write, flush and mark from before the format on.
    public var events: [DeviceEvent] { didSet { epochs = Self.epochs(of: events) } }
    /// The events' epochs, in order (CrashStates.swift), cut once when the events are set:
    /// every state's image reads them, and cutting them again per state cost a sixth of
    /// an fsx workload's exploration.
    public private(set) var epochs: [CrashEpoch] = []
    /// The index of the event after which the workload began (its fixture synced).
    public var start: Int
    /// The ops, in order, with the event indices of their beginning and end marks (nil
    /// when the op failed: the recording stops there).
    public var ops: [CrashOp]
    public var begins: [Int]
    public var ends: [Int]
    /// models[k]: the oracle's model after k ops. cut[k]: after ops 0..<k and op k begun but
    /// cut by the crash (it promises nothing).
    public var models: [CrashModel]
    public var cut: [CrashModel]
    /// An op that failed in the live run (a failure of the volume), with its error.
    public var failure: String?
    /// The geometry and the poison of the recorded device.
    public var blockSize: Int
    public var blockCount: Int
    public var fill: UInt8
    /// The racedWrite stores made from inside their write (at H1), and after it (no H1 of
    /// the write covered the store: its copy faulted in an earlier mapping).
    public var racedStores = 0
    public var lateStores = 0
}

/// How a recorded workload's volume is made.
public struct CrashVolumeSetup: Sendable {
    public var blockCount = 2048
    public var blockSize = 4096
    public var logBlocks = 24
    public var bugs: DeliberateBugs = []
    /// The seed of the volume's UUID and of the boundary forces.
    public var seed: UInt64 = 0
    /// A stand-in for the background force during the workload: the log forced at a
    /// transaction boundary with probability 1 in this (nil: never), as the crash cases do
    /// (BoundaryForces). It puts checkpoint boundaries between the transactions of one call,
    /// where a call made of several would show.
    public var boundaryForceOneIn: UInt64?
    /// After the ops, write a snapshot of the live state (open files still open): a final
    /// image with every kind of metadata block the state has (orphans of files unlinked
    /// while open, open free intents), for the fault injection.
    public var finalSnapshot = false

    public init() {}

    /// Volume options for the live run and every mount of a crash state: no background force
    /// (the recording must be the workload's), a clock that ticks at every read (each data op
    /// logs its timestamps, as the model counts on).
    func options() -> VolumeOptions {
        var o = VolumeOptions()
        o.bugs = bugs
        o.backgroundForce = nil
        let clock = TickingClock()
        o.clock = { clock.tick() }
        return o
    }
}

/// Formats a volume on a poisoned, recording in-memory device, runs `fixture` (then sync),
/// then the ops `next` gives, each between marks, and returns the recording.
public func recordCrashWorkload(
    _ setup: CrashVolumeSetup, fixture: (Volume) throws(Errno) -> Void = { _ in }, next: CrashOpSource
) -> CrashRecording {
    let image = BlockImage(blockSize: setup.blockSize, blockCount: setup.blockCount, fill: CrashCase.poison)
    let device = ImageBlockDevice(image)
    var recording = CrashRecording(
        events: [], start: 0, ops: [], begins: [], ends: [], models: [], cut: [], failure: nil, blockSize: setup.blockSize,
        blockCount: setup.blockCount, fill: CrashCase.poison)
    var retired: [AnyObject] = []
    defer { withExtendedLifetime(retired) {} }
    let racing = RacingStore()
    let forces = setup.boundaryForceOneIn.map { BoundaryForces(seed: setup.seed ^ 0xB0DA_F0CE, oneIn: $0) }
    let volume: Volume
    var model: CrashModel
    do throws(VolumeError) {
        var f = FormatOptions()
        f.logBlocks = setup.logBlocks
        f.uuid = VolumeUUID(high: setup.seed, low: 0x0C4A_5E00)
        f.time = Timestamp(seconds: 1_700_000_000)
        try Volume.format(device: device, options: f)
        var options = setup.options()
        if let forces { options.transactionBoundary = { forces.hook($0) } }
        // The live run only: the stores of racedWrite ops, made from inside their writes.
        options.environment = racing.environment
        volume = try Volume.mount(device: device, options: options)
        try volumeCall { () throws(Errno) in
            try fixture(volume)
            try volume.sync()
        }
        model = try volumeCall { () throws(Errno) in try CrashModel(volume: volume) }
    } catch {
        recording.failure = "setting up the volume failed: \(error)"
        recording.events = device.events
        return recording
    }
    retired.append(volume)
    recording.start = device.eventCount
    device.mark("workload")
    forces?.setActive(true)
    defer { forces?.setActive(false) }
    recording.models.append(model)
    var handles: [InodeNumber: FileHandle] = [:]
    defer { retired.append(contentsOf: handles.values.map { $0 as AnyObject }) }
    while let op = next(model, model.opCount) {
        let k = model.opCount
        recording.ops.append(op)
        recording.begins.append(device.eventCount)
        device.mark("begin \(k)")
        let before = volume.journal.stats
        let done: CrashOpDone
        do throws(Errno) { done = try performCrashOp(op, on: volume, handles: &handles, model: model, racing: racing) } catch {
            var cut = model
            cut.recordInterrupted(op)
            recording.cut.append(cut)
            recording.failure = "op \(k) (\(op)) failed: \(error)"
            break
        }
        // A failing write is, to the model, the write of what it wrote (crashData depends on
        // the stamp and the file offset only, so its first bytes are that write's).
        var modelOp = op
        if case .failingWrite(let i, let o, _, let s, _) = op, let wrote = done.wrote, wrote > 0 {
            modelOp = .write(i, offset: o, length: wrote, stamp: s)
        }
        if case .racedWrite(let i, let o, _, let s, let f, let at) = op, let wrote = done.wrote {
            modelOp = .racedWrite(i, offset: o, length: wrote, stamp: s, faultAt: f, storeAt: at)
        }
        let cut = cutModel(model, modelOp, created: done.created)
        recording.cut.append(cut)
        if let wrote = done.shortWrite {
            recording.failure = "op \(k) (\(op)) wrote \(wrote) bytes"
            break
        }
        let after = volume.journal.stats
        let forced = after.checkpoints != before.checkpoints || after.snapshots != before.snapshots
        if modelOp.makesDurable {
            model.record(modelOp, created: done.created, forced: forced)
        } else {
            // The cut model is this op recorded unforced (cutModel): the op's data applied
            // once, not twice (the model's copies of 2,000 ops' files were a fifth of an
            // fsx workload's exploration).
            model = cut
            if forced { model.raise(to: k + 1) }
        }
        recording.ends.append(device.eventCount)
        device.mark("end \(k)")
        recording.models.append(model)
    }
    if setup.finalSnapshot && recording.failure == nil {
        forces?.setActive(false)
        device.mark("snapshot")
        do throws(Errno) { try volume.journal.writeSnapshotNow(clean: false) } catch {
            recording.failure = "the final snapshot failed: \(error)"
        }
    }
    recording.events = device.events
    (recording.racedStores, recording.lateStores) = racing.counts
    return recording
}

/// The model for a crash in the middle of `op`: an op that makes something durable
/// (fsync, fdatasync, sync) promises nothing until it returns; any other op may or may not
/// have happened (its transaction is in memory at once, and on the disk only if a force that
/// nothing in the op makes wrote it), so both trees are allowed.
func cutModel(_ model: CrashModel, _ op: CrashOp, created: InodeNumber?) -> CrashModel {
    var cut = model
    if op.makesDurable { cut.recordInterrupted(op) } else { cut.record(op, created: created, forced: false) }
    return cut
}

extension CrashOp {
    /// An fsync, fdatasync, msync, directory fsync or sync: an op that promises something
    /// when it returns, and nothing while it runs.
    var makesDurable: Bool {
        switch self {
        case .fsync, .fdatasync, .sync, .msync, .fsyncDirectory: return true
        default: return false
        }
    }
}

/// Runs `body`, turning an errno into a VolumeError for the setup's one catch.
func volumeCall<T>(_ body: () throws(Errno) -> T) throws(VolumeError) -> T {
    do throws(Errno) { return try body() } catch { throw .io(error, "the fixture") }
}
