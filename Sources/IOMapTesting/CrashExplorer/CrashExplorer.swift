// Counterpart: none in the kernel; CrashMonkey's AutoChecker loop (every crash state of a
// bounded workload mounted, checked against what the workload was promised) and the
// fstests that replay dm-log-writes logs to every mark, run in process on the volume.
//
// For each workload: record it once (CrashRecording.swift), cut its crash states
// (CrashStates.swift), and for each state:
// 1. fsck of the crashed image (it recovers in memory and changes nothing): clean, but for
//    naming a superblock copy that the state tears (the mount must then heal it);
// 2. mount (recovery): succeeds;
// 3. fsck of the mounted volume: clean (space balances, no block owned twice, ...);
// 4. the oracle (CrashModel.check): the tree is the tree after some op between the last
//    one a returned fsync, fdatasync or sync depended on and the last op begun (so a rename,
//    link or unlink is all or nothing), and every file's bytes are what a promise says, or
//    bytes once written at that offset of that file, or zero: never another file's, never a
//    never-written block's (the disk starts poisoned);
// 5. the volume takes new writes: a probe file created, written, fsync'd, then a second
//    crash (no unmount) and a mount that must find it;
// 6. crashes during recovery: every prefix of the writes the mount of step 2 made is a
//    crash state too, mounted and checked again as in 1-4 (recovery must be idempotent).
// A violation names the workload, the state, the check and the command that replays
// exactly that state.

import ExtentFS
import IOMap
import IOMapBase
import Volume

/// One check that did not hold.
public struct CrashViolation: Sendable, CustomStringConvertible {
    /// The workload's description (its ops).
    public var workload: String
    /// Which state: "W.S" (workload W's state S) or "W.S.rI" (its recovery's crash after I writes).
    public var stateID: String
    public var state: String
    /// The class of the check: fsck, mount, oracle, probe.
    public var check: String
    public var detail: String

    public var description: String { "state \(stateID) (\(state)): \(check): \(detail)" }
}

/// What an exploration did and found.
public struct CrashExploreResult: Sendable {
    public var workloads = 0
    public var ops = 0
    public var states = 0
    public var tornStates = 0
    public var recoveryStates = 0
    public var violations: [CrashViolation] = []
    /// Workloads whose live run failed (a failure of the volume too).
    public var failedRuns: [String] = []
    /// The index of each failed run's workload, in the order of `failedRuns`.
    public var failedRunWorkloads: [Int] = []
    public var elapsedSeconds = 0.0
    /// The race workload's stores made inside their write, and after it (CrashRecording).
    public var racedStores = 0
    public var lateStores = 0
    /// Faults beyond power loss: fault → block kind → outcomes.
    public var faults = FaultTable()

    public init() {}

    /// Every state checked, recovery crashes included.
    public var statesChecked: Int { states + tornStates + recoveryStates }

    public var violationsByClass: [String: Int] {
        var out: [String: Int] = [:]
        for v in violations { out[v.check, default: 0] += 1 }
        return out
    }

    public mutating func add(_ other: CrashExploreResult) {
        workloads += other.workloads
        ops += other.ops
        states += other.states
        tornStates += other.tornStates
        recoveryStates += other.recoveryStates
        racedStores += other.racedStores
        lateStores += other.lateStores
        violations += other.violations
        failedRuns += other.failedRuns
        failedRunWorkloads += other.failedRunWorkloads
        merge(&faults, other.faults)
    }
}

/// How each state is checked.
public struct CrashCheckPolicy: Sendable {
    /// Run the probe of step 5 on every this many states (1: all).
    public var probeEvery = 1
    /// Crash during each state's recovery (step 6) on every this many states (0: never).
    public var recoveryEvery = 1
    /// Stop at the first violation of a workload.
    public var stopAtViolation = true
    public init() {}
}

/// Explores every crash state of one recorded workload, `index` naming it in state IDs;
/// `only` checks that one state alone (a replay), by its index (and recovery prefix).
public func exploreCrashStates(
    _ recording: CrashRecording, workload: String, index: Int, setup: CrashVolumeSetup, states policy: CrashStatePolicy,
    checks: CrashCheckPolicy, seed: UInt64, only: (state: Int, recovery: Int?)? = nil,
    inspect: ((String, BlockImage) -> Void)? = nil
) -> CrashExploreResult {
    var result = CrashExploreResult()
    result.workloads = 1
    result.ops = recording.ops.count
    result.racedStores = recording.racedStores
    result.lateStores = recording.lateStores
    if let failure = recording.failure {
        result.failedRuns.append("\(workload): \(failure)")
        result.failedRunWorkloads.append(index)
        return result
    }
    var durables = DurableImages(recording)
    let epochs = recording.epochs
    let states = recording.crashStates(policy, seed: seed)
    let checker = CrashStateChecker(setup: setup)
    for (s, state) in states.enumerated() {
        if let only, only.state != s { continue }
        let image = recording.image(state, durable: durables.image(before: state.epoch))
        let point = recording.model(atCrash: epochs[state.epoch].end)
        let id = "\(index).\(s)"
        let where_ = "\(state); \(point.opsDone) ops returned\(point.cutOp.map { ", op \($0) (\(recording.ops[$0])) cut" } ?? "")"
        func report(_ found: [(String, String)], _ sid: String, _ label: String) {
            for (check, detail) in found {
                result.violations.append(CrashViolation(workload: workload, stateID: sid, state: label, check: check, detail: detail))
            }
        }
        if only?.recovery == nil {
            inspect?(id, image)
            if case .torn = state { result.tornStates += 1 } else { result.states += 1 }
        }
        let probe = checks.probeEvery > 0 && s % checks.probeEvery == 0
        var tornSuperblock: Int?
        if case .torn(let e, let w, let b, _, _) = state, epochs[e].writes[w].block + b < 2 {
            tornSuperblock = epochs[e].writes[w].block + b
        }
        let outcome = checker.check(image, point.model, probe: probe && only?.recovery == nil, tornSuperblock: tornSuperblock)
        if only?.recovery == nil { report(outcome.violations, id, where_) }
        if checks.recoveryEvery > 0 && s % checks.recoveryEvery == 0 && outcome.violations.isEmpty {
            for i in 0..<outcome.recoveryWrites.count {
                if let only, let r = only.recovery, r != i { continue }
                var cut = image
                for w in outcome.recoveryWrites.prefix(i) { cut.write(block: w.block, bytes: w.bytes) }
                let rid = "\(id).r\(i)"
                inspect?(rid, cut)
                result.recoveryStates += 1
                let again = checker.check(cut, point.model, probe: false, tornSuperblock: tornSuperblock)
                report(again.violations, rid, "\(where_); its recovery cut after \(i) of its \(outcome.recoveryWrites.count) writes")
                if checks.stopAtViolation && !again.violations.isEmpty { break }
            }
        }
        if checks.stopAtViolation && !result.violations.isEmpty { break }
    }
    return result
}

/// The checks of one state (steps 1-5 of the file's comment).
struct CrashStateChecker {
    let setup: CrashVolumeSetup

    struct Outcome {
        var violations: [(String, String)] = []
        /// The writes the mount made, in order: the crash points of its recovery.
        var recoveryWrites: [(block: Int, bytes: [UInt8])] = []
    }

    /// `tornSuperblock`: the superblock copy this state tears. The crashed image's fsck
    /// rightly names it (a torn copy and a damaged one look alike), and only that is allowed:
    /// the mount must choose the other copy and rewrite this one, and the fsck after it be
    /// clean (docs/FORMAT.md "Two copies").
    func check(_ image: BlockImage, _ model: CrashModel, probe: Bool, tornSuperblock: Int? = nil) -> Outcome {
        var out = Outcome()
        var retired: [AnyObject] = []
        defer { withExtendedLifetime(retired) {} }
        let device = ImageBlockDevice(image)
        // Steps 1 and 2 share one recovery: it is a function of the image's bytes and writes
        // nothing, so the mount would compute what the fsck did (it was a third of a state's
        // cost). The mount still does everything after it: the other superblock copy, the
        // intents and orphans, the snapshot.
        let store: DeviceLogStore
        do throws(VolumeError) { store = try DeviceLogStore.open(device) } catch {
            out.violations.append(("fsck", "of the crashed image: the volume cannot be opened: \(error)"))
            out.violations.append(("mount", "\(error)"))
            return out
        }
        let recovered = Result { () throws(VolumeError) in try recoverLog(store) }
        report(
            checkVolume(store, deviceBlocks: device.blockCount, recovered: recovered), "of the crashed image", &out,
            allowing: tornSuperblock)
        let before = device.eventCount
        let volume: Volume
        do throws(VolumeError) {
            volume = try Volume.mount(device: device, store: store, recovered: recovered, options: setup.options())
        } catch {
            out.violations.append(("mount", "\(error)"))
            return out
        }
        retired.append(volume)
        for e in device.events.dropFirst(before) { if case .write(let b, let bytes) = e { out.recoveryWrites.append((b, bytes)) } }
        fsck(device, "after the mount", &out)
        for v in model.check(volume).violations { out.violations.append(("oracle", v)) }
        guard probe, out.violations.isEmpty else { return out }
        let name = "crash-probe"
        let data = crashData(stamp: 90_001, offset: 0, count: 5000)
        do throws(Errno) {
            let ino = try volume.create(in: .root, name, permissions: 0o644).inode
            let h = try volume.open(ino)
            retired.append(h)
            _ = try h.write(data, at: 0)
            try h.fsync()
        } catch {
            out.violations.append(("probe", "the recovered volume did not take a new file: \(error)"))
            return out
        }
        // A second crash: the image as the fsync left it, no unmount.
        let again = ImageBlockDevice(device.image, recording: false)
        do throws(VolumeError) {
            let v2 = try Volume.mount(device: again, options: setup.options())
            retired.append(v2)
            let back = try volumeCall { () throws(Errno) in try readContents(v2, try v2.lookup(.root, name)) }
            if back != data { out.violations.append(("probe", "the probe read back \(back.count) bytes, not its \(data.count) fsync'd")) }
        } catch {
            out.violations.append(("probe", "after a second crash: \(error)"))
        }
        return out
    }

    func fsck(_ device: any BlockDevice, _ context: String, _ out: inout Outcome) {
        do throws(VolumeError) {
            report(checkVolume(try DeviceLogStore.open(device), deviceBlocks: device.blockCount), context, &out)
        } catch {
            out.violations.append(("fsck", "\(context): the volume cannot be opened: \(error)"))
        }
    }

    /// An fsck report's errors as violations, but for the superblock copy a torn state may
    /// name (the check's comment).
    func report(_ report: FsckReport, _ context: String, _ out: inout Outcome, allowing tornSuperblock: Int? = nil) {
        for c in report.checks {
            for e in c.errors {
                if let b = tornSuperblock, c.code == "S", e.hasPrefix("superblock \(b):") { continue }
                out.violations.append(("fsck", "\(context): \(c.code): \(e)"))
            }
        }
    }
}
