// `iomap random`: the randomized model check of the test suite, for longer runs and other
// seeds: fsx run with the random runner's preset (RandomRunConfig.fsxConfig).

import ArgumentParser
import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapTesting

struct Random: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run random operations with injected faults and races against a model; check every invariant after each.")

    @Option(help: "Number of operations.") var ops = 100_000
    @Option(help: "Seed (default: chosen at random and printed).") var seed: UInt64?
    @Option(help: "File-system block size in bytes.") var blockSize = 4096
    @Option(help: "Largest folio in bytes, a power of two from 4096 to 2097152.") var maxFolioSize = 65536
    @Option(help: "Failure-cleanup policy: preserve-dirty or truncate-page-cache.") var policy = CleanupPolicy.preserveDirty
    @Option(help: "Largest file offset used, in bytes.") var maxFileSize = 256 << 10
    @Flag(help: "Run without fault injection.") var noFaults = false
    @Option(help: writeEndHelp) var writeEnd = WriteEndPolicy.zeroTail
    @Flag(help: "Print one JSON object.") var json = false
    @Option(help: ArgumentHelp("Print the file's state around this operation.", visibility: .hidden)) var traceOp: Int?
    @OptionGroup var campaign: SeedCampaignOptions

    func validate() throws {
        guard ops > 0 else { throw ValidationError("--ops must be positive, got \(ops)") }
        guard [512, 1024, 2048, 4096].contains(blockSize) else {
            throw ValidationError("--block-size must be 512, 1024, 2048 or 4096, got \(blockSize)")
        }
        guard maxFolioSize >= 4096, maxFolioSize <= 2 << 20, maxFolioSize & (maxFolioSize - 1) == 0 else {
            throw ValidationError("--max-folio-size must be a power of two from 4096 to 2097152, got \(maxFolioSize)")
        }
        guard maxFileSize >= 4096, maxFileSize <= 1 << 30 else {
            throw ValidationError("--max-file-size must be from 4096 to 1 GiB, got \(maxFileSize)")
        }
        try campaign.check(seed: seed, json: json)
    }

    /// The options that decide a seed's run, as flags, every one spelled out: a campaign's
    /// identity and, after --seed, the command that replays a run.
    var resultOptions: [String] {
        [
            "--ops \(ops)", "--block-size \(blockSize)", "--max-folio-size \(maxFolioSize)", "--policy \(policy.rawValue)",
            "--write-end \(writeEnd.rawValue)", "--max-file-size \(maxFileSize)",
        ] + (noFaults ? ["--no-faults"] : [])
    }

    func run() throws {
        try runSeedCampaign(tool: "random", campaign: resultOptions.joined(separator: " "), options: campaign, seed: seed) {
            try runOne(seed: $0, quiet: $1)
        }
    }

    /// One seed's run, its report printed on stdout, or on stderr when `quiet`.
    func runOne(seed: UInt64, quiet: Bool) throws -> SeedOutcome {
        var config = RandomRunConfig(
            seed: seed, ops: ops, blockSize: blockSize, maxFolioSize: maxFolioSize, policy: policy,
            faults: !noFaults, maxFileSize: maxFileSize, maxOpSize: min(64 << 10, maxFileSize))
        config.fullCheckEvery = 50
        config.traceOp = traceOp
        config.writeEnd = writeEnd
        FileHandle.standardError.write(Data("iomap random: \(config)\n".utf8))
        let start = ContinuousClock.now
        let report = runRandomOps(config) { done in
            FileHandle.standardError.write(Data("  \(done)/\(ops) operations\n".utf8))
        }
        let elapsed = ContinuousClock.now - start
        let print = reportPrinter(quiet: quiet)
        if json && !quiet {
            printJSON(RandomJSON(config, report, elapsed: elapsed.inSeconds))
        } else {
            print(
                "seed \(seed): \(report.opsRun) operations, \(report.cleanups) failure cleanups, \(report.racesLanded) races, \(report.failedWrites) failed and \(report.shortWrites) short writes"
            )
            print(
                "faults injected: \(report.faultsInjected.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"
            )
        }
        var outcome = SeedOutcome()
        outcome.counts = [
            "ops": report.opsRun, "cleanup_calls": report.cleanups, "punch_calls": report.punches, "races_landed": report.racesLanded,
            "failed_writes": report.failedWrites, "short_writes": report.shortWrites,
        ]
        if let v = report.violation {
            let replay = "\(poisonPrefix)iomap random --seed \(seed) " + resultOptions.joined(separator: " ")
            FileHandle.standardError.write(
                Data(
                    "VIOLATION at op \(report.violationOp ?? -1): \(v)\n\(report.replayLine)\nreplay: \(replay)\nlast operations:\n\(report.logTail.suffix(20).map { "  \($0)" }.joined(separator: "\n"))\n"
                        .utf8))
            outcome.violations = [("op \(report.violationOp ?? -1): \(v)", replay)]
        }
        return outcome
    }
}

/// `iomap random --json`.
struct RandomJSON: Encodable {
    var seed: UInt64
    var ops, block_size, max_folio_size, cleanup_calls, punch_calls, races_landed, failed_writes, short_writes: Int
    var policy, write_end, result: String
    var ops_by_kind, faults_injected: [String: Int]
    @KeepNull var violation: String?
    @KeepNull var violation_op: Int?
    var elapsed_s: Double
}

extension RandomJSON {
    init(_ config: RandomRunConfig, _ report: RandomRunReport, elapsed: Double) {
        self.init(
            seed: config.seed, ops: report.opsRun, block_size: config.blockSize, max_folio_size: config.maxFolioSize,
            cleanup_calls: report.cleanups, punch_calls: report.punches, races_landed: report.racesLanded,
            failed_writes: report.failedWrites, short_writes: report.shortWrites, policy: config.policy.rawValue,
            write_end: config.writeEnd.rawValue, result: report.violation == nil ? "pass" : "violation",
            ops_by_kind: report.opsByKind, faults_injected: report.faultsInjected, violation: report.violation,
            violation_op: report.violationOp, elapsed_s: elapsed)
    }
}
