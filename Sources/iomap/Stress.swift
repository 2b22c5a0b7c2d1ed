// `iomap stress`: the threaded stress test of the test suite, for longer runs and other
// seeds.

import ArgumentParser
import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapTesting

struct Stress: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run random operations from several threads on one file, each thread against its own model.")

    @Option(help: "Worker threads, each owning a region of the file.") var workers = 3
    @Option(help: "Operations per worker.") var ops = 2000
    @Option(help: "Bytes each worker owns.") var regionSize = 45_000
    @Option(help: "File-system block size in bytes: 512, 1024, 2048 or 4096.") var blockSize = 1024
    @Option(help: "Largest folio in bytes, a power of two from 4096 to 2097152.") var maxFolioSize = 16 << 10
    @Option(help: "Failure-cleanup policy: preserve-dirty or truncate-page-cache.") var policy = CleanupPolicy.preserveDirty
    @Option(help: "Check the invariants with every thread stopped every this many operations per worker.") var quietEvery = 200
    @Option(help: "Seed (default: chosen at random and printed).") var seed: UInt64?
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @OptionGroup var campaign: SeedCampaignOptions

    func validate() throws {
        guard (1...16).contains(workers) else { throw ValidationError("--workers must be from 1 to 16, got \(workers)") }
        guard ops > 0 else { throw ValidationError("--ops must be positive, got \(ops)") }
        guard (4096...(4 << 20)).contains(regionSize) else {
            throw ValidationError("--region-size must be from 4096 to 4 MiB, got \(regionSize)")
        }
        guard [512, 1024, 2048, 4096].contains(blockSize) else {
            throw ValidationError("--block-size must be 512, 1024, 2048 or 4096, got \(blockSize)")
        }
        guard maxFolioSize >= 4096, maxFolioSize <= 2 << 20, maxFolioSize & (maxFolioSize - 1) == 0 else {
            throw ValidationError("--max-folio-size must be a power of two from 4096 to 2097152, got \(maxFolioSize)")
        }
        guard quietEvery > 0 else { throw ValidationError("--quiet-every must be positive, got \(quietEvery)") }
        try campaign.check(seed: seed, json: json)
    }

    /// The options that decide a seed's run, as flags, every one spelled out: a campaign's
    /// identity and, after --seed, the command that runs a seed again.
    var resultOptions: [String] {
        if namespace { return ["--namespace", "--workers \(workers)", "--ops \(ops)"] }
        return [
            "--workers \(workers)", "--ops \(ops)", "--region-size \(regionSize)", "--block-size \(blockSize)",
            "--max-folio-size \(maxFolioSize)", "--policy \(policy.rawValue)", "--quiet-every \(quietEvery)",
        ] + (volume ? ["--volume"] : [])
    }

    @Flag(help: "Run on a file of a new in-memory volume (its journal logs every allocation; fsync is a log force).")
    var volume = false

    @Flag(
        help: """
            Run the namespace workload instead: threads creating, renaming, linking and removing files, directories and \
            xattrs in a new in-memory volume, with writes and fsyncs, each against its own model; then sync, a crash and \
            the checks again. Uses --workers, --ops and --seed.
            """)
    var namespace = false

    func run() throws {
        try runSeedCampaign(tool: "stress", campaign: resultOptions.joined(separator: " "), options: campaign, seed: seed) {
            try namespace ? runNamespace(seed: $0, quiet: $1) : runOne(seed: $0, quiet: $1)
        }
    }

    /// The command that runs `seed` again.
    func replay(_ seed: UInt64) -> String { "\(poisonPrefix)iomap stress --seed \(seed) " + resultOptions.joined(separator: " ") }

    /// One seed's run, its report printed on stdout, or on stderr when `quiet`.
    func runOne(seed: UInt64, quiet: Bool) throws -> SeedOutcome {
        var config = StressConfig(seed: seed)
        config.backing = volume ? .volume : .engine
        config.workers = workers
        config.opsPerWorker = ops
        config.regionSize = regionSize
        config.blockSize = blockSize
        config.maxFolioSize = maxFolioSize
        config.policy = policy
        config.quietEvery = quietEvery
        FileHandle.standardError.write(Data("iomap stress: \(config)\n".utf8))
        let report = runThreadedStress(config)
        let print = reportPrinter(quiet: quiet)
        if json && !quiet {
            printJSON(StressJSON(config, report))
        } else {
            print(
                "seed \(config.seed): \(report.opsRun) operations on \(workers) threads, \(report.failedWrites) failed and \(report.shortWrites) short writes, \(report.cleanups) failure cleanups, \(report.quietChecks) quiet-point checks, \(report.writebackPasses) writeback passes, \(String(format: "%.1f", report.elapsedSeconds)) s"
            )
        }
        var outcome = SeedOutcome()
        outcome.counts = [
            "ops": report.opsRun, "failed_writes": report.failedWrites, "short_writes": report.shortWrites,
            "cleanup_calls": report.cleanups, "quiet_checks": report.quietChecks,
        ]
        if let v = report.violation {
            FileHandle.standardError.write(Data("VIOLATION: \(v)\nrun again: \(replay(config.seed))\n".utf8))
            outcome.violations = [(v, replay(config.seed))]
        }
        return outcome
    }
}

extension Stress {
    /// `iomap stress --namespace`.
    func runNamespace(seed: UInt64, quiet: Bool) throws -> SeedOutcome {
        var config = VolumeStressConfig(seed: seed)
        config.workers = workers
        config.opsPerWorker = ops
        FileHandle.standardError.write(Data("iomap stress: \(config)\n".utf8))
        let report = runVolumeNamespaceStress(config)
        let print = reportPrinter(quiet: quiet)
        if json && !quiet {
            printJSON(
                NamespaceStressJSON(
                    seed: config.seed, workers: workers, ops: report.opsRun, ops_by_kind: report.opsByKind,
                    result: report.violation == nil ? "ok" : "violation", violation: report.violation, elapsed_s: report.elapsedSeconds))
        } else {
            let seconds = String(format: "%.1f", report.elapsedSeconds)
            print(
                "seed \(config.seed): \(report.opsRun) namespace operations on \(workers) threads of a volume, synced, crashed and mounted again, \(seconds) s"
            )
        }
        var outcome = SeedOutcome(counts: ["ops": report.opsRun])
        if let v = report.violation {
            FileHandle.standardError.write(Data("VIOLATION: \(v)\nrun again: \(replay(config.seed))\n".utf8))
            outcome.violations = [(v, replay(config.seed))]
        }
        return outcome
    }
}

/// `iomap stress --namespace --json`.
struct NamespaceStressJSON: Encodable {
    var seed: UInt64
    var workers, ops: Int
    var ops_by_kind: [String: Int]
    var result: String
    @KeepNull var violation: String?
    var elapsed_s: Double
}

/// `iomap stress --json`.
struct StressJSON: Encodable {
    var seed: UInt64
    var workers, ops, failed_writes, short_writes, cleanup_calls, quiet_checks, writeback_passes: Int
    var ops_by_kind: [String: Int]
    var result: String
    @KeepNull var violation: String?
    var elapsed_s: Double
}

extension StressJSON {
    init(_ config: StressConfig, _ report: StressReport) {
        self.init(
            seed: config.seed, workers: config.workers, ops: report.opsRun, failed_writes: report.failedWrites,
            short_writes: report.shortWrites, cleanup_calls: report.cleanups, quiet_checks: report.quietChecks,
            writeback_passes: report.writebackPasses, ops_by_kind: report.opsByKind,
            result: report.violation == nil ? "pass" : "violation", violation: report.violation, elapsed_s: report.elapsedSeconds)
    }
}
