// Counterpart: none in the kernel; the harness of dm-log-writes replays and of CrashMonkey
// (run a workload, cut the power, mount, check), in process, with FaultyBlockDevice's
// volatile cache standing in for the disk's.
//
// One case is one seed: a volume formatted on a poisoned disk (every block starts as
// CrashCase.poison, so a block the metadata calls written that never was shows), then two
// phases. Each phase runs a workload from the volume as it is and cuts it in one of two ways:
// - after a random op, with every write not yet flushed kept or dropped by a seeded coin
//   of a random bias (FaultyBlockDevice.crash(keepFraction:));
// - at a random flush (armCrash(atFlush:keeping:)), which lands in the middle of an fsync's
//   or a sync's flushes or of a snapshot, keeping the unflushed writes a rule chooses: a
//   seeded coin, the log's blocks only, the data's only, or none.
// In a third of the cases the volume's background force (off otherwise: its timing is the
// wall clock's) is stood in for by a seeded coin at every transaction boundary of the
// workload (VolumeOptions.transactionBoundary): one in four forces the log there, inside a
// call as well as between calls, so that a checkpoint boundary falls where only a
// concurrent force could put it.
// Recovery is then checked: fsck of the crashed image, the mount (a third of the time with
// a crash armed at one of its own first flushes, and mounted again after it), fsck, the
// oracle of CrashModel, half of the time a crash right after the mount (which must change
// nothing), and last a probe that the volume takes new writes (create, write, fsync, crash,
// mount, find it). The second phase starts from what the first left: a crash during and
// after recovery must be recoverable too.

import ExtentFS
import IOMap
import IOMapBase
import Synchronization
import Volume

/// How a crash case runs.
public struct CrashCaseConfig: Sendable {
    public var seed: UInt64
    /// Deliberate bugs of the volume (the canaries).
    public var bugs: DeliberateBugs = []
    /// The most ops of the first phase (it runs between half and all of them) and of the
    /// second.
    public var firstPhaseOps = 40
    public var secondPhaseOps = 12
    /// Stop at the first phase that finds a violation (what follows would build on a volume
    /// already wrong).
    public var stopAtViolation = true
    /// Print each line of the listing as it happens (a replay: the listing survives a trap).
    public var trace = false

    public init(seed: UInt64) { self.seed = seed }
}

/// How the unflushed writes fare at an armed crash.
public enum CrashKeep: Sendable, CustomStringConvertible {
    /// Each kept with this probability (seeded).
    case coin(Double)
    /// The superblocks' and the log's blocks kept, the rest (data, snapshots) dropped.
    case logOnly
    /// The reverse.
    case dataOnly
    case none

    public var description: String {
        switch self {
        case .coin(let p): return "each kept with probability \(Double(Int(p * 100)) / 100)"
        case .logOnly: return "log blocks kept, the others dropped"
        case .dataOnly: return "log blocks dropped, the others kept"
        case .none: return "all dropped"
        }
    }
}

/// What a case did and found.
public struct CrashCaseResult: Sendable {
    public var seed: UInt64
    public var violations: [String] = []
    /// Every op, cut, mount and check, in order: the replay's listing.
    public var log: [String] = []
    public var ops = 0
    /// Armed crashes that happened in a workload, and in a mount.
    public var flushCrashes = 0
    public var mountCrashes = 0
    public var mounts = 0
    /// Files the oracle checked, and of them those it held to exact contents.
    public var filesChecked = 0
    public var exactFiles = 0

    public init(seed: UInt64) { self.seed = seed }
}

/// A seeded coin the device's `keeping` closure can call.
final class SeededCoin: Sendable {
    let random: HarnessMutex<SeededRandom>
    let probability: Double

    init(seed: UInt64, probability: Double) {
        random = HarnessMutex(SeededRandom(seed: seed))
        self.probability = probability
    }

    func flip() -> Bool { random.withLock { Double.random(in: 0..<1, using: &$0) < probability } }
}

/// The background force at transaction boundaries: while a phase's workload runs, each
/// boundary forces the log with probability 1 in `oneIn` (seeded).
final class BoundaryForces: Sendable {
    struct State {
        var active = false
        var random: SeededRandom
    }

    let state: HarnessMutex<State>
    let oneIn: UInt64

    init(seed: UInt64, oneIn: UInt64) {
        state = HarnessMutex(State(random: SeededRandom(seed: seed)))
        self.oneIn = oneIn
    }

    func setActive(_ on: Bool) { state.withLock { $0.active = on } }

    /// The hook: a force when the coin says so. A failed force (the device crashed at its
    /// flush) is the workload's crash; the call goes on as it would after a background
    /// force failed.
    func hook(_ journal: Journal) {
        if state.withLock({ $0.active && $0.random.next() % oneIn == 0 }) { try? journal.forceLogged() }
    }
}

/// A clock that moves a millisecond at each read: every change gets a new time, so each
/// data op logs its file's timestamps (the model counts on it), and runs do not depend on
/// the wall clock.
final class TickingClock: Sendable {
    let milliseconds = Atomic<Int64>(1_700_000_000_000)

    func tick() -> Timestamp {
        let ms = milliseconds.add(1, ordering: .relaxed).newValue
        return Timestamp(seconds: ms / 1000, nanoseconds: UInt32(ms % 1000) * 1_000_000)
    }
}

/// Runs one crash case; see the file's opening comment.
public func runCrashCase(_ config: CrashCaseConfig) -> CrashCaseResult {
    let c = CrashCase(config)
    c.run()
    return c.result
}

/// One case's volume, device and workload.
public final class CrashCase {
    /// The byte every block of the disk starts as: even, so no workload data is ever it.
    public static let poison: UInt8 = 0xEE
    public static let blocks = 2048
    public static let blockSize = 4096

    let config: CrashCaseConfig
    var random: SeededRandom
    var generator: CrashGenerator
    let disk: MemoryBlockDevice
    let device: FaultyBlockDevice
    var options = VolumeOptions()
    /// The stand-in for the background force, in a third of the cases.
    var boundaryForces: BoundaryForces?
    var volume: Volume?
    var handles: [InodeNumber: FileHandle] = [:]
    /// Volumes and handles of before a crash, kept until the case ends: their release must
    /// not run on a volume that has been remounted since.
    var retired: [AnyObject] = []
    var result: CrashCaseResult

    init(_ config: CrashCaseConfig) {
        self.config = config
        random = SeededRandom(seed: config.seed ^ 0xC4A5_0000_0000_0000)
        generator = CrashGenerator(seed: config.seed)
        disk = MemoryBlockDevice(blockSize: Self.blockSize, blockCount: Self.blocks)
        device = FaultyBlockDevice(wrapping: disk, seed: config.seed)
        result = CrashCaseResult(seed: config.seed)
        options.bugs = config.bugs
        options.backgroundForce = nil
        let clock = TickingClock()
        options.clock = { clock.tick() }
        if below(3) == 0 {
            let forces = BoundaryForces(seed: random.next(), oneIn: 4)
            options.transactionBoundary = { forces.hook($0) }
            boundaryForces = forces
        }
    }

    func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(random.next() % UInt64(n)) }
    func fraction() -> Double { Double.random(in: 0...1, using: &random) }
    func log(_ line: String) {
        result.log.append(line)
        if config.trace { print(line) }
    }

    func violation(_ text: String) {
        result.violations.append(text)
        if config.trace { print("VIOLATION: " + text) }
    }

    func run() {
        guard start() else { return }
        for phase in 0..<2 {
            let most = phase == 0 ? config.firstPhaseOps : config.secondPhaseOps
            let count = (most + 1) / 2 + below(most / 2 + 1)
            guard let model = runPhase(phase, ops: count) else { break }
            guard recover(model, phase: phase) else { break }
            if config.stopAtViolation && !result.violations.isEmpty { break }
        }
        retired.removeAll()
    }

    /// Poisons the disk, formats it and mounts the volume.
    func start() -> Bool {
        let chunk = [UInt8](repeating: Self.poison, count: 16 * Self.blockSize)
        for b in stride(from: 0, to: Self.blocks, by: 16) { try? disk.writeBlocks(b, chunk) }
        var f = FormatOptions()
        f.logBlocks = [16, 24, 64][below(3)]
        f.uuid = VolumeUUID(high: config.seed, low: 0x0C4A_5000)
        f.time = Timestamp(seconds: 1_700_000_000)
        let forces = boundaryForces.map { " and a force at 1 in \($0.oneIn) transaction boundaries" } ?? ""
        log("format: \(Self.blocks) blocks of \(Self.blockSize), a \(f.logBlocks!)-block log, files \(generator.names)\(forces)")
        return mount(formatting: f, failure: "format and mount of a new volume failed")
    }

    /// Moves the volume and its handles out of use, before a crash.
    func retire() {
        retired.append(contentsOf: handles.values.map { $0 as AnyObject })
        handles = [:]
        if let v = volume { retired.append(v) }
        volume = nil
    }
}
