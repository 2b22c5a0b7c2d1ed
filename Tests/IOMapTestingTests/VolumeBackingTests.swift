// Counterpart: none in the kernel; the harnesses on a file of a volume. Their file's data
// path is the engine's either way, so fsx, the explorer, the race harness and the threaded
// stress must give the same results on a volume as on the engine alone (the same fsx log,
// the same schedules and violations), with the volume's journal logging every allocation
// and every fsync a log force, and the canaries must still be caught there.

import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import Testing

@Suite("Harnesses on a volume's file")
struct VolumeBackingTests {
    /// The same op sequence is not expected: fault decisions depend on the lengths of the
    /// mappings a write gets, and a volume allocates elsewhere (its metadata, its snapshots,
    /// and blocks kept busy until their free commits, docs/VOLUME.md rule 2). What must hold
    /// is the outcome, and that a run's log replays the same on either.
    @Test("fsx: a seed holds on a volume as on the engine, and a volume run's log replays on both", arguments: [1, 2, 3] as [UInt64])
    func fsxSame(seed: UInt64) {
        var config = FsxConfig(seed: seed, ops: 3000, blockSize: 1024, maxFolioSize: 16 << 10, maxFileSize: 256 << 10, maxOpSize: 64 << 10)
        let engine = runFsx(config)
        config.backing = .volume
        let volume = runFsx(config)
        #expect(engine.violation == nil, "seed \(seed): \(engine.violation.map { "\($0)" } ?? "")")
        #expect(volume.violation == nil, "seed \(seed) on a volume: \(volume.violation.map { "\($0)" } ?? "")")
        #expect(volume.opsByKind.values.reduce(0, +) == engine.opsByKind.values.reduce(0, +))
        for backing in FileBacking.allCases {
            config.backing = backing
            let replayed = runFsx(config, replay: volume.entries)
            #expect(replayed.violation == nil, "seed \(seed), the volume's log replayed on \(backing)")
            // On the volume the replay is the run again; on the engine some recorded faults
            // ask at offsets the engine's mappings never query, so only the outcome is the same.
            if backing == .volume { #expect(replayed.entries == volume.entries, "seed \(seed): the replay ran another sequence") }
        }
    }

    /// Found by replaying a volume run's log on the engine: the log recorded a writeback
    /// error on a one-block run at 0xc000; on the engine the run starting there is longer, and
    /// the model forgot only the recorded 1024 bytes while the whole run failed.
    @Test("a replayed writeback error makes the model forget the run that failed now, whatever its recorded length")
    func replayedWritebackError() throws {
        let log = """
            write 0x48d3 0xc829 0x3f5ed
            #@ fault stale-mid 0xf000 1
            #@ race mapwrite 0x7ad8 0x3c
            fsync 0x0 0x0 0x3f5ed
            #@ fault writeback-eio 0xc000 1024
            """
        let entries = try FsxLog.parse(log)
        for backing in FileBacking.allCases {
            var config = FsxConfig(seed: 1, ops: 2, blockSize: 1024, maxFolioSize: 16 << 10, maxFileSize: 256 << 10, maxOpSize: 64 << 10)
            config.backing = backing
            let r = runFsx(config, replay: entries)
            #expect(r.violation == nil, "on \(backing): \(r.violation.map { "\($0.what)" } ?? "")")
            #expect(r.faultsInjected["writeback-eio"] == 1, "on \(backing): the error must still fire")
        }
    }

    // The random preset checks around every op, so the loss is caught when the failing
    // write leaves dirty data without a reservation, before writeback meets it (which a
    // verify build would trap on).
    @Test("fsx's canary is caught on a volume: the pre-seed cleanup loses data")
    func fsxCanary() {
        var config = RandomRunConfig(seed: 346, ops: 5000, blockSize: 4096, maxFolioSize: 4096, policy: .truncatePageCache).fsxConfig
        config.backing = .volume
        #expect(runFsx(config).violation != nil)
    }

    @Test("the explorer finds the same schedules and the same violation on a volume", arguments: [false, true])
    func explorerSame(canary: Bool) {
        var config = ExploreConfig(scenario: .writeFailVsMappedStore)
        if canary { config.engine = ExploreEngineOptions(policy: .truncatePageCache) }
        let engine = runExplore(config)
        config.engine.backing = .volume
        let volume = runExplore(config)
        #expect(volume.schedulesExplored == engine.schedulesExplored)
        #expect(volume.violations == engine.violations)
        #expect(volume.firstViolation?.schedule == engine.firstViolation?.schedule)
        #expect((engine.violations > 0) == canary)
    }

    @Test("the race harness and the threaded stress lose nothing on a volume, and the space balances")
    func threadedOnVolume() {
        var race = RaceConfig(seed: 346)
        race.sizeMiB = 2
        race.rounds = 2
        race.backing = .volume
        let r = runRace(race)
        #expect(r.slotsLost == 0 && r.slotsChecked > 0 && r.errors.isEmpty, "losses \(r.losses.prefix(3)) errors \(r.errors.prefix(3))")
        var stress = StressConfig(seed: 346)
        stress.opsPerWorker = 1000
        stress.backing = .volume
        let s = runThreadedStress(stress)
        #expect(s.violation == nil, "\(s.violation ?? "")")
    }
}
