// The crash-state explorer (IOMapTesting/CrashExplorer): clean workloads hold in every state,
// each deliberate ordering bug is caught, a violation's state replays alone to the same
// violation, and the state enumeration is what its comment says.

import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import Testing
import Volume

#if canImport(Glibc)
    import Glibc
#endif

/// An environment variable's value.
func environmentValue(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

@Suite("Crash-state explorer")
struct CrashExplorerTests {
    @Test("seeded random workloads hold in every crash state")
    func cleanRandomWorkloads() {
        var config = CrashExploreConfig(seed: 20_261_201)
        config.workloads = 40
        let r = runCrashExploration(config)
        print(
            "crash explorer: \(r.workloads) workloads, \(r.statesChecked) states (\(r.tornStates) torn, \(r.recoveryStates) during recovery), \(r.violations.count) violations"
        )
        #expect(r.failedRuns.isEmpty, "\(r.failedRuns)")
        #expect(r.violations.isEmpty, "\(r.violations.prefix(3))")
        #expect(r.states > 100 && r.tornStates > 0 && r.recoveryStates > 0, "the exploration checked too little: \(r.statesChecked)")
    }

    /// CI's share of the bounded workloads: all of seq1, and a seeded sample of seq2 on two
    /// threads (CRASH_SEQ2_WORKLOADS, default 20,000 of its 42,781, about two minutes;
    /// `iomap crash --workload seq2 --jobs 2` runs them all in about three).
    @Test("every seq1 workload and a seeded sample of seq2 hold in every crash state")
    func boundedWorkloads() {
        var one = CrashExploreConfig(seed: 1)
        one.workload = .seq1
        one.workloads = Int.max
        let r1 = runCrashExploration(one)
        print("crash explorer seq1: \(r1.workloads) workloads, \(r1.statesChecked) states, \(r1.violations.count) violations")
        #expect(r1.workloads == boundedCrashWorkloads(length: 1).count)
        #expect(r1.failedRuns.isEmpty && r1.violations.isEmpty, "\(r1.failedRuns.prefix(3)) \(r1.violations.prefix(3))")
        var two = CrashExploreConfig(seed: 2026_12_01)
        two.workload = .seq2
        two.workloads = Int(environmentValue("CRASH_SEQ2_WORKLOADS") ?? "") ?? 20_000
        two.jobs = 2
        let r2 = runCrashExploration(two)
        print(
            "crash explorer seq2 (seed \(two.seed)): \(r2.workloads) workloads, \(r2.statesChecked) states in \(Int(r2.elapsedSeconds)) s, \(r2.violations.count) violations"
        )
        #expect(r2.workloads == min(two.workloads, boundedCrashWorkloads(length: 2).count))
        #expect(r2.failedRuns.isEmpty && r2.violations.isEmpty, "\(r2.failedRuns.prefix(3)) \(r2.violations.prefix(3))")
    }

    @Test("race workloads: failed writes racing stores through the mapping hold in every crash state")
    func raceWorkloads() {
        var config = CrashExploreConfig(seed: 3)
        config.workload = .race
        config.workloads = 3
        config.minOps = 32
        config.maxOps = 32
        let (recording, _) = recordCrashWorkload(config, index: 0)
        let raced = recording.ops.filter { if case .racedWrite = $0 { return true } else { return false } }.count
        #expect(recording.failure == nil && raced == 15, "\(recording.failure ?? "") \(raced) raced writes")
        // Most stores land inside their write, after its reservation: the race happened.
        #expect(
            recording.racedStores + recording.lateStores == raced && recording.racedStores >= raced / 2, "\(recording.racedStores) raced")
        let r = runCrashExploration(config)
        #expect(r.failedRuns.isEmpty && r.violations.isEmpty, "\(r.failedRuns.prefix(2)) \(r.violations.prefix(2))")
        #expect(r.statesChecked > 100)
    }

    @Test("--jobs: workloads on two threads give the result one thread gives, violations in the list's order")
    func jobsMatchOneThread() {
        var config = CrashExploreConfig(seed: 12)
        config.workloads = 40
        config.bugs = .fsyncSkipsForce
        let one = runCrashExploration(config)
        config.jobs = 2
        let two = runCrashExploration(config)
        #expect(!one.violations.isEmpty, "the tooth was not caught: the comparison would be empty")
        #expect(two.workloads == one.workloads && two.ops == one.ops && two.statesChecked == one.statesChecked)
        #expect(two.violations.map(\.description) == one.violations.map(\.description))
    }

    @Test("the seed's bug: the pre-seed cleanup drops a store made inside the failing write, and the race workload catches it")
    func truncatePageCacheCaught() throws {
        var config = CrashExploreConfig(seed: 3)
        config.workload = .race
        config.workloads = 5
        config.minOps = 32
        config.maxOps = 32
        config.bugs = .truncatePageCache
        config.stopAtFirst = true
        let r = runCrashExploration(config)
        let first = try #require(r.violations.first, "truncatePageCache was not caught in \(r.statesChecked) states")
        #expect(first.check == "oracle", "\(first)")
        config.bugs = []
        let clean = runCrashExploration(config)
        #expect(clean.violations.isEmpty, "\(clean.violations.prefix(2))")
    }

    @Test("the tooth: committing a conversion before its data is flushed is caught, and its state replays")
    func commitBeforeDataCaughtAndReplayed() throws {
        var config = CrashExploreConfig(seed: 7)
        config.workloads = 200
        config.bugs = .commitBeforeData
        let r = runCrashExploration(config)
        let first = try #require(r.violations.first, "commitBeforeData was not caught in \(r.statesChecked) states")
        #expect(first.check == "oracle")
        // The replay: that state alone, the same check failing.
        let parts = first.stateID.split(separator: ".").map { Int($0.filter(\.isNumber))! }
        config.only = (parts[0], parts[1], parts.count > 2 ? parts[2] : nil)
        let again = runCrashExploration(config)
        #expect(again.statesChecked == 1, "a replay checks one state, not \(again.statesChecked)")
        #expect(again.violations.map(\.detail) == [first.detail], "the replay of \(first.stateID) found \(again.violations)")
        // The same state without the bug holds.
        config.bugs = []
        #expect(runCrashExploration(config).violations.isEmpty)
    }

    @Test("the tooth: blocks freed and reused before the free commits show another file's bytes")
    func reuseBeforeCommitCaught() {
        let found = reuseWorkload(bugs: .reuseBeforeCommit)
        #expect(found.violations.contains { $0.check == "oracle" }, "reuseBeforeCommit was not caught: \(found.statesChecked) states")
        #expect(reuseWorkload(bugs: []).violations.isEmpty, "the same workload without the bug must hold")
    }

    /// a, 64 KiB synced; its blocks punched out; b written over as many blocks (the first
    /// free ones: a's, if they are free at once) and fsync'd.
    func reuseWorkload(bugs: DeliberateBugs) -> CrashExploreResult {
        var setup = CrashVolumeSetup()
        setup.bugs = bugs
        var a = InodeNumber.root
        let recording = recordCrashWorkload(
            setup,
            fixture: { (v: Volume) throws(Errno) in
                a = try v.create(in: .root, "a", permissions: 0o644).inode
                let h = try v.open(a)
                _ = try h.write(crashData(stamp: 1, offset: 0, count: 64 << 10), at: 0)
                try h.fsync()
                try h.close()
            },
            next: { model, k in
                let b = model.tree["b"]
                switch k {
                case 0: return .punch(a, offset: 0, length: 64 << 10)
                case 1: return .create("b")
                case 2: return .write(b!, offset: 0, length: 64 << 10, stamp: 2)
                case 3: return .fsync(b!)
                default: return nil
                }
            })
        return exploreCrashStates(
            recording, workload: "reuse", index: 0, setup: setup, states: CrashStatePolicy(), checks: CrashCheckPolicy(), seed: 1)
    }

    @Test("an epoch of n writes gives 2^n subsets (less the full one when a flush closes it), torn states, recovery states")
    func stateEnumeration() {
        let fill: UInt8 = 0xEE
        let block = [UInt8](repeating: 1, count: 4096)
        var r = recordCrashWorkload(CrashVolumeSetup(), next: { _, _ in nil })
        r.start = 0
        r.events = [.write(block: 10, bytes: block), .write(block: 11, bytes: block), .flush, .write(block: 12, bytes: block)]
        r.blockSize = 4096
        r.blockCount = 64
        r.fill = fill
        var policy = CrashStatePolicy()
        policy.tornPerEpoch = 1
        let states = r.crashStates(policy, seed: 3)
        let subsets = states.filter { if case .subset = $0 { return true } else { return false } }
        // Epoch 0 (2 writes, closed): 3 subsets; epoch 1 (1 write, open): 2.
        #expect(subsets.count == 5, "\(states)")
        #expect(states.count == 7, "one torn state per epoch: \(states)")
        let durable = r.durableImage(before: 1)
        let last = r.image(.subset(epoch: 1, kept: [0]), durable: durable)
        #expect(last.block(10) == block && last.block(11) == block && last.block(12) == block)
        #expect(r.image(.subset(epoch: 1, kept: []), durable: durable).block(12) == [UInt8](repeating: fill, count: 4096))
    }

    @Test("faults beyond power loss: each fault kind on each metadata block kind injected, none silent; a data flip is silent")
    func faultsOnEveryBlockKind() {
        var config = CrashExploreConfig(seed: 4)
        config.workloads = 10
        config.minOps = 10
        config.maxOps = 30
        config.faults = CrashFault.allCases
        config.faultsPerKind = 3
        let r = runCrashExploration(config)
        #expect(r.failedRuns.isEmpty && r.violations.isEmpty, "\(r.failedRuns.prefix(2)) \(r.violations.prefix(2))")
        for fault in CrashFault.allCases {
            let row = r.faults[fault.rawValue] ?? [:]
            for kind in BlockKind.allCases {
                let cell = row[kind.description] ?? FaultCell()
                #expect(cell.injected > 0, "\(fault) never hit a \(kind)")
                #expect(cell.silent == 0, "\(fault) on a \(kind): \(cell.silent) silent")
                // Only the log's newest checkpoint may roll back (nothing on the disk tells
                // its lost write from a crash before it); every other kind detects or holds.
                if kind != .log { #expect(cell.rolledBack == 0, "\(fault) on a \(kind) rolled back \(cell.rolledBack)") }
                #expect(cell.detected + cell.held + cell.rolledBack + cell.silent == cell.injected)
            }
        }
        // The classifier's canary: data has no checksum, so some flips there must read back
        // wrong and be counted silent; were the oracle blind, none would be.
        #expect((r.faults["bitflip"]?["data"]?.silent ?? 0) > 0, "no data bit flip was seen: the oracle is blind")
        #expect((r.faults["latent"]?["data"]?.silent ?? 0) == 0, "a data read error that is not EIO")
    }
}
