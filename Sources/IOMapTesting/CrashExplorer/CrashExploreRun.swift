// Counterpart: none in the kernel; the driver of `iomap crash`: which workloads, how many
// states each, and the replay of one state. CrashMonkey's bounded workloads (seq1, seq2)
// and seeded longer ones (random) share one exploration loop (CrashExplorer.swift).

import ExtentFS
import IOMap
import IOMapBase
import Volume

/// The workloads `iomap crash` explores.
public enum CrashWorkloadKind: String, Sendable, CaseIterable {
    /// Seeded workloads of 3 to 6 ops drawn from the model (CrashGenerator).
    case random
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

    public init(seed: UInt64) { self.seed = seed }

    /// The seed of workload `w`: the mixed output of seed + w, not seed + w times SplitMix's
    /// increment, which made workload w's generator workload 0's shifted by w draws (the
    /// workloads were near copies of each other).
    public func workloadSeed(_ w: Int) -> UInt64 {
        var r = SeededRandom(seed: seed &+ UInt64(w))
        return r.next()
    }
}

/// A workload of the exploration: its recording and how it is named.
public func recordCrashWorkload(_ config: CrashExploreConfig, index w: Int) -> (recording: CrashRecording, name: String) {
    let setup = crashSetup(config, index: w)
    switch config.workload {
    case .random:
        var generator = CrashGenerator(seed: config.workloadSeed(w))
        var random = SeededRandom(seed: config.workloadSeed(w) ^ 0x0005_EED0)
        let count = config.minOps + Int(random.next() % UInt64(config.maxOps - config.minOps + 1))
        let recording = recordCrashWorkload(setup) { model, k in k < count ? generator.next(model) : nil }
        return (recording, recording.ops.map(\.description).joined(separator: "; "))
    }
}

/// The volume setup of workload `w`.
public func crashSetup(_ config: CrashExploreConfig, index w: Int) -> CrashVolumeSetup {
    var setup = CrashVolumeSetup()
    setup.bugs = config.bugs
    setup.seed = config.workloadSeed(w)
    // Logs of three sizes, so that some workloads fill theirs and write snapshots (a
    // snapshot's ordering is rule 3's).
    setup.logBlocks = [16, 24, 64][Int(setup.seed % 3)]
    return setup
}

/// Runs the exploration; `progress` is called after each workload.
public func runCrashExploration(
    _ config: CrashExploreConfig, progress: ((CrashExploreResult) -> Void)? = nil,
    inspect: ((String, BlockImage) -> Void)? = nil
) -> CrashExploreResult {
    var result = CrashExploreResult()
    let start = ContinuousClock.now
    let indices = config.only.map { [$0.workload] } ?? Array(0..<config.workloads)
    for w in indices {
        let (recording, name) = recordCrashWorkload(config, index: w)
        let one = exploreCrashStates(
            recording, workload: name, index: w, setup: crashSetup(config, index: w), states: config.states, checks: config.checks,
            seed: config.workloadSeed(w), only: config.only.map { ($0.state, $0.recovery) }, inspect: inspect)
        result.add(one)
        if config.only == nil && !config.faults.isEmpty {
            let f = exploreFaults(
                recording, workload: name, index: w, setup: crashSetup(config, index: w), faults: config.faults,
                perTarget: config.faultsPerKind, seed: config.workloadSeed(w))
            merge(&result.faults, f.table)
            result.violations += f.violations
        }
        result.elapsedSeconds = (ContinuousClock.now - start).seconds
        progress?(result)
        if let limit = config.seconds, result.elapsedSeconds >= limit { break }
        if config.stopAtFirst && (!result.violations.isEmpty || !result.failedRuns.isEmpty) { break }
    }
    result.elapsedSeconds = (ContinuousClock.now - start).seconds
    return result
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
