// Counterpart: none in the kernel; the driver of `iomap crash`: which workloads, how many
// states each, and the replay of one state. CrashMonkey's bounded workloads (seq1, seq2)
// and seeded longer ones (random) share one exploration loop (CrashExplorer.swift).

import ExtentFS
import IOMap
import IOMapBase
import Synchronization
import Volume

/// The workloads `iomap crash` explores.
public enum CrashWorkloadKind: String, Sendable, CaseIterable {
    /// Every workload of one op (and its persistence point) on the fixed tree
    /// (boundedCrashWorkloads(length: 1), CrashMonkey's seq-1).
    case seq1
    /// Every workload of two (boundedCrashWorkloads(length: 2)); `workloads` fewer than all
    /// takes a seeded sample of them.
    case seq2
    /// Seeded workloads of 3 to 6 ops drawn from the model (CrashGenerator).
    case random
    /// fsx-style runs: 4 files, 2,000 ops by default, states cut sparsely (a few per epoch).
    case fsx
    /// The seed's race with crashes cut in: in a file with holes, rounds of a write whose
    /// buffer faults, racing a store through the mapping made from inside the write (at H1,
    /// after its reservation) into the part its failure cleanup undoes, then an fsync or a
    /// sync (raceCrashOp, RacingStore). The pre-seed cleanup
    /// (DeliberateBugs.truncatePageCache) loses the store, and the fsync's promise with it.
    case race

    /// The bounded list's length, for seq1 and seq2.
    var boundedLength: Int? {
        switch self {
        case .seq1: return 1
        case .seq2: return 2
        default: return nil
        }
    }
}

/// An exploration's settings.
public struct CrashExploreConfig: Sendable {
    public var workload = CrashWorkloadKind.random
    public var seed: UInt64
    /// Workloads to explore (random: each its own seed, seed + index).
    public var workloads = 100
    /// The fewest and most ops of a random workload.
    public var minOps = 3
    public var maxOps = 6
    public var states = CrashStatePolicy()
    public var checks = CrashCheckPolicy()
    public var bugs: DeliberateBugs = []
    /// Replay one state: workload index, state index, recovery prefix.
    public var only: (workload: Int, state: Int, recovery: Int?)?
    /// Stop after this many seconds (nil: when the workloads are done).
    public var seconds: Double?
    /// Stop at the first workload with a violation.
    public var stopAtFirst = false
    /// Faults beyond power loss injected into each workload's final image (CrashFaults.swift),
    /// and how many blocks of each kind each hits.
    public var faults: [CrashFault] = []
    public var faultsPerKind = 2
    /// Threads exploring workloads side by side (1: the caller's alone). Each takes the next
    /// workload of the list when it is done with one; the result is merged in the list's
    /// order, so it is the one run alone gives (but for where --seconds or --first stop).
    public var jobs = 1
    /// Explore only these positions of the list of workloads (`crashWorkloadList`): a
    /// shard's block of a campaign. Nil: all of it.
    public var positions: Range<Int>?

    public init(seed: UInt64) { self.seed = seed }

    /// The seed of workload `w`: the mixed output of seed + w, not seed + w times SplitMix's
    /// increment, which made workload w's generator workload 0's shifted by w draws (the
    /// workloads were near copies of each other).
    public func workloadSeed(_ w: Int) -> UInt64 {
        var r = SeededRandom(seed: seed &+ UInt64(w))
        return r.next()
    }
}

/// A workload of the exploration: its recording and how it is named. `bounded` is the
/// seq1 or seq2 list.
public func recordCrashWorkload(
    _ config: CrashExploreConfig, index w: Int, bounded: [[CrashOp]] = [], finalSnapshot: Bool = false, wide: Bool = false
) -> (recording: CrashRecording, name: String) {
    var setup = wide ? wideFaultSetup(config, index: w) : crashSetup(config, index: w)
    setup.finalSnapshot = finalSnapshot || wide
    let recording: CrashRecording
    let wideFixture = { (v: Volume) throws(Errno) in if wide { try makeWideFixture(v) } }
    switch config.workload {
    case .seq1, .seq2:
        let ops = bounded[w]
        recording = recordCrashWorkload(
            setup,
            fixture: { (v: Volume) throws(Errno) in
                _ = try makeCrashFixture(v)
                try wideFixture(v)
            }
        ) { _, k in
            k < ops.count ? ops[k] : nil
        }
    case .race:
        var random = SeededRandom(seed: config.workloadSeed(w) ^ 0x0005_EED0)
        let count = config.minOps + Int(random.next() % UInt64(config.maxOps - config.minOps + 1))
        recording = recordCrashWorkload(setup, fixture: wideFixture) { model, k in k < count ? raceCrashOp(model, k, &random) : nil }
    case .random, .fsx:
        var generator =
            config.workload == .fsx
            ? CrashGenerator(seed: config.workloadSeed(w), files: 4) : CrashGenerator(seed: config.workloadSeed(w))
        var random = SeededRandom(seed: config.workloadSeed(w) ^ 0x0005_EED0)
        let count = config.minOps + Int(random.next() % UInt64(config.maxOps - config.minOps + 1))
        recording = recordCrashWorkload(setup, fixture: wideFixture) { model, k in k < count ? generator.next(model) : nil }
    }
    let name = recording.ops.map(\.description).joined(separator: "; ")
    return (recording, config.workload.boundedLength == nil ? name : "\(config.workload.rawValue) #\(w): \(name)")
}

/// Which workloads a run explores: for seq1 and seq2 the whole list, or a seeded sample of
/// `workloads` of it (indices into the list, so that a replay names the same one); for the
/// seeded kinds 0 ..< workloads.
func workloadIndices(_ config: CrashExploreConfig, listCount: Int?) -> [Int] {
    guard let n = listCount else { return Array(0..<config.workloads) }
    if config.workloads >= n { return Array(0..<n) }
    var random = SeededRandom(seed: config.seed ^ 0x5E0_5A3F)
    var all = Array(0..<n)
    for i in 0..<config.workloads {
        let j = i + Int(random.next() % UInt64(n - i))
        all.swapAt(i, j)
    }
    return all.prefix(config.workloads).sorted()
}

/// The workloads an exploration of `config` (without `positions`) explores, by index, in
/// the order it explores them: a sharded campaign's units.
public func crashWorkloadList(_ config: CrashExploreConfig) -> [Int] {
    let listCount = config.workload.boundedLength.map { boundedCrashWorkloads(length: $0).count }
    return workloadIndices(config, listCount: listCount)
}

/// The volume setup of workload `w`.
public func crashSetup(_ config: CrashExploreConfig, index w: Int) -> CrashVolumeSetup {
    var setup = CrashVolumeSetup()
    setup.bugs = config.bugs
    setup.seed = config.workloadSeed(w)
    // Logs of three sizes, so that some workloads fill theirs and write snapshots (a
    // snapshot's ordering is rule 3's); the bounded workloads on the fixture's own volume.
    setup.logBlocks = config.workload.boundedLength == nil ? [16, 24, 64][Int(setup.seed % 3)] : BoundedVolume.format.logBlocks!
    // A third of the seeded workloads with the background force's stand-in.
    if config.workload.boundedLength == nil && (setup.seed >> 8) % 3 == 0 { setup.boundaryForceOneIn = 4 }
    return setup
}

/// The setup of workload `w`'s third fault image: 1 KiB blocks (8 MiB, two sectors a block,
/// so that a block can tear), on which a snapshot root lists about 60 blocks, so that the
/// wide fixture's snapshot needs map blocks and the snapshot map block kind gets its faults
/// too.
func wideFaultSetup(_ config: CrashExploreConfig, index w: Int) -> CrashVolumeSetup {
    var setup = crashSetup(config, index: w)
    setup.blockSize = 1024
    setup.blockCount = 8192
    setup.logBlocks = 256
    return setup
}

/// 600 empty directories in `wide/`: more inode blocks at 1 KiB than a snapshot root lists.
func makeWideFixture(_ v: Volume) throws(Errno) {
    let wide = try v.mkdir(in: .root, "wide", permissions: 0o755)
    for i in 0..<600 { _ = try v.mkdir(in: wide, "d\(i)", permissions: 0o755) }
}

/// Runs the exploration; `progress` is called after each workload.
public func runCrashExploration(
    _ config: CrashExploreConfig, progress: ((CrashExploreResult) -> Void)? = nil,
    inspect: ((String, BlockImage) -> Void)? = nil
) -> CrashExploreResult {
    var result = CrashExploreResult()
    let start = ContinuousClock.now
    let bounded = config.workload.boundedLength.map { boundedCrashWorkloads(length: $0) } ?? []
    if let only = config.only, config.workload.boundedLength != nil, only.workload >= bounded.count {
        result.failedRuns.append("there is no \(config.workload.rawValue) workload \(only.workload): the list has \(bounded.count)")
        return result
    }
    var indices =
        config.only.map { [$0.workload] } ?? workloadIndices(config, listCount: config.workload.boundedLength.map { _ in bounded.count })
    if let positions = config.positions, config.only == nil { indices = Array(indices[positions.clamped(to: indices.indices)]) }
    if config.jobs > 1 && config.only == nil && inspect == nil && indices.count > 1 {
        return runCrashExplorationInParallel(config, indices, bounded, start, progress)
    }
    for w in indices {
        result.add(exploreCrashWorkload(config, w, bounded, inspect: inspect))
        result.elapsedSeconds = (ContinuousClock.now - start).seconds
        progress?(result)
        if shouldStop(config, result) { break }
    }
    result.elapsedSeconds = (ContinuousClock.now - start).seconds
    return result
}

/// Whether an exploration stops after the workloads `result` holds (--seconds, --first).
func shouldStop(_ config: CrashExploreConfig, _ result: CrashExploreResult) -> Bool {
    if let limit = config.seconds, result.elapsedSeconds >= limit { return true }
    return config.stopAtFirst && (!result.violations.isEmpty || !result.failedRuns.isEmpty)
}

/// Workload `w` recorded and every crash state of it checked, with the faults of the config.
func exploreCrashWorkload(
    _ config: CrashExploreConfig, _ w: Int, _ bounded: [[CrashOp]], inspect: ((String, BlockImage) -> Void)? = nil
) -> CrashExploreResult {
    let (recording, name) = recordCrashWorkload(config, index: w, bounded: bounded)
    var result = exploreCrashStates(
        recording, workload: name, index: w, setup: crashSetup(config, index: w), states: config.states, checks: config.checks,
        seed: config.workloadSeed(w), only: config.only.map { ($0.state, $0.recovery) }, inspect: inspect)
    guard config.only == nil && !config.faults.isEmpty else { return result }
    // On the workload's final image (its log's last checkpoints live), on the same workload
    // again ending in a snapshot of its live state (every kind of metadata block it has is
    // then in the image), and on it after the wide fixture, on small blocks (a snapshot with
    // map blocks).
    let (withSnapshot, _) = recordCrashWorkload(config, index: w, bounded: bounded, finalSnapshot: true)
    let (wide, _) = recordCrashWorkload(config, index: w, bounded: bounded, wide: true)
    let setups = [crashSetup(config, index: w), crashSetup(config, index: w), wideFaultSetup(config, index: w)]
    for (i, r) in [recording, withSnapshot, wide].enumerated() {
        let f = exploreFaults(
            r, workload: name, index: w, setup: setups[i], faults: config.faults, perTarget: config.faultsPerKind,
            seed: config.workloadSeed(w) &+ UInt64(i))
        merge(&result.faults, f.table)
        result.violations += f.violations
    }
    return result
}

/// The exploration on `config.jobs` threads, the caller's one of them: each takes the next
/// workload of `indices` until none is left or the run stops. Each workload's result is kept
/// at its place in the list and merged in that order at the end. `progress` is called on the
/// caller's thread only, after each workload it explores, with every result so far.
private func runCrashExplorationInParallel(
    _ config: CrashExploreConfig, _ indices: [Int], _ bounded: [[CrashOp]], _ start: ContinuousClock.Instant,
    _ progress: ((CrashExploreResult) -> Void)?
) -> CrashExploreResult {
    struct Shared {
        var next = 0
        var stop = false
        var results: [CrashExploreResult?]
        var sofar = CrashExploreResult()
    }
    let shared = Mutex(Shared(results: Array(repeating: nil, count: indices.count)))
    /// Explores workloads until none is left; returns after each one when `oneAtATime`.
    @Sendable func work(oneAtATime: Bool) -> CrashExploreResult? {
        while true {
            guard
                let i = shared.withLock({ s -> Int? in
                    guard !s.stop, s.next < indices.count else { return nil }
                    s.next += 1
                    return s.next - 1
                })
            else { return nil }
            let one = exploreCrashWorkload(config, indices[i], bounded)
            let sofar = shared.withLock { s -> CrashExploreResult in
                s.results[i] = one
                s.sofar.add(one)
                s.sofar.elapsedSeconds = (ContinuousClock.now - start).seconds
                if shouldStop(config, s.sofar) { s.stop = true }
                return s.sofar
            }
            if oneAtATime { return sofar }
        }
    }
    let threads = (1..<config.jobs).map { _ in JoinableThread { _ = work(oneAtATime: false) } }
    while let sofar = work(oneAtATime: true) { progress?(sofar) }
    for t in threads { t.join() }
    var result = CrashExploreResult()
    shared.withLock { s in for r in s.results { if let r { result.add(r) } } }
    result.elapsedSeconds = (ContinuousClock.now - start).seconds
    return result
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// Op `k` of a race workload on `model`: a file of 256 KiB of holes first, then rounds of
/// (a write of a 16 KiB range whose buffer faults in one of its first three blocks, racing a
/// store of 8 bytes through the mapping into a later block of the range, made from inside the
/// write once it has reserved that block; then an fsync, or a sync every third round). The
/// write's failure cleanup undoes the reservation past what it wrote, and must keep the
/// stored block (the seed's fix); over the rounds the ranges find holes and data alike.
func raceCrashOp(_ model: CrashModel, _ k: Int, _ random: inout SeededRandom) -> CrashOp? {
    guard k >= 2, let file = model.tree["race"] else { return k == 0 ? .create("race") : .truncate(model.tree["race"]!, size: 256 << 10) }
    let round = (k - 2) / 2
    guard (k - 2) % 2 == 0 else { return round % 3 == 2 ? .sync : .fsync(file) }
    let base = Int(random.next() % 16) * (16 << 10)
    let faultBlock = Int(random.next() % 3)
    let faultAt = faultBlock * 4096 + 1 + Int(random.next() % 4095)
    let storeBlock = faultBlock + 1 + Int(random.next() % UInt64(3 - faultBlock))
    let storeAt = base + storeBlock * 4096 + Int(random.next() % 4089)
    return .racedWrite(file, offset: base, length: 16 << 10, stamp: 100 + round, faultAt: faultAt, storeAt: storeAt)
}
