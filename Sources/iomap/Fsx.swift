// `iomap fsx`: fstests' fsx on the engine, with fault injection, fsx-format op logs (record
// and replay), and on failure the evidence fsx gives plus a minimized log.

import ArgumentParser
import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapTesting

struct Fsx: SeededRunCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsx",
        abstract: "Run random fsx operations with injected faults against a model; record or replay fsx op logs.",
        discussion: """
            Exit status: 0 when every read, size and invariant matched the model, 1 on a \
            violation (the evidence and a minimized op log are written to --artifacts), 2 for \
            bad usage or an unreadable log.
            """)

    @Option(parsing: .unconditional, help: "Number of operations.") var ops = 100_000
    @Option(help: "Seed (default: chosen at random and printed).") var seed: UInt64?
    @Option(parsing: .unconditional, help: "Largest file offset used, in bytes.") var maxFileSize = 256 << 10
    @Option(parsing: .unconditional, help: "Largest operation, in bytes.") var maxOpSize = 64 << 10
    @Option(parsing: .unconditional, help: "Run the whole sequence at this file offset (a multiple of 4096), e.g. 17592186044416 (2^44).")
    var offsetBase = 0
    @Option(parsing: .unconditional, help: "File-system block size in bytes: 512, 1024, 2048 or 4096.") var blockSize = 4096
    @Option(parsing: .unconditional, help: "Largest folio in bytes, a power of two from 4096 to 2097152.") var maxFolioSize = 65536
    @Option(help: "Failure-cleanup policy: preserve-dirty or truncate-page-cache.") var policy = CleanupPolicy.preserveDirty
    @Option(help: writeEndHelp) var writeEnd = WriteEndPolicy.zeroTail
    @Option(help: "Fault sites: none, all, or a comma-separated list of \(FaultSite.allCases.map(\.rawValue).joined(separator: ", ")).")
    var faults = "all"
    @Option(help: "Op classes not to generate, comma-separated (e.g. punch_hole,zero_range).") var disable = ""
    @Flag(help: "Generate no mapread or mapwrite.") var noMmap = false
    @Flag(help: "Generate no engine-only events (writeback of a range, reclaim, close_open).") var noEngineEvents = false
    @Flag(help: "Compare the whole file and check the invariants after every op.") var checkEveryOp = false
    @Option(help: "Write the op log (fsx format) of the run to this file.") var recordOps: String?
    @Option(help: "Replay this op log (fsx format) instead of generating ops.") var replayOps: String?
    @Flag(help: "Skip ops the engine does not support in a replayed log, counting them, instead of failing.")
    var skipUnsupported = false
    @Option(help: "Directory for the evidence of a failure (default: iomap-fsx-SEED in the current directory).")
    var artifacts: String?
    @Flag(help: "Do not minimize a failing op log.") var noMinimize = false
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @OptionGroup var campaign: SeedCampaignOptions

    func validate() throws {
        try throwUsageError(config(seed: 0).problem)
        try campaign.check(seed: seed, json: json)
        guard !campaign.isSingleRun else { return }
        if replayOps != nil { throw ValidationError("--replay-ops replays one log: it takes no --seeds or --shard") }
        if recordOps != nil { throw ValidationError("--record-ops writes one run's log: it takes no --seeds or --shard") }
    }

    func faultSites() throws -> Set<FaultSite> {
        switch faults {
        case "all": return Set(FaultSite.allCases)
        case "none": return []
        default:
            return Set(
                try faults.split(separator: ",").map { name in
                    guard let site = FaultSite(rawValue: String(name)) else {
                        throw ValidationError(
                            "--faults: unknown fault site '\(name)'; sites are \(FaultSite.allCases.map(\.rawValue).joined(separator: ", "))"
                        )
                    }
                    return site
                })
        }
    }

    func disabledOps() throws -> Set<FsxOpName> {
        var out = Set<FsxOpName>()
        for name in disable.split(separator: ",") {
            guard let op = FsxOpName(rawValue: String(name)) else {
                throw ValidationError(
                    "--disable: unknown op '\(name)'; ops are \(FsxOpName.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            out.insert(op)
        }
        if noMmap { out.formUnion([.mapread, .mapwrite]) }
        return out
    }

    @Flag(help: "Run on a file of a new in-memory volume (its journal logs every allocation; fsync is a log force).")
    var volume = false

    func config(seed: UInt64) throws -> FsxConfig {
        var c = FsxConfig(
            seed: seed, ops: ops, blockSize: blockSize, maxFolioSize: maxFolioSize, maxFileSize: maxFileSize, maxOpSize: maxOpSize)
        c.offsetBase = offsetBase
        c.policy = policy
        c.writeEnd = writeEnd
        c.faults = try faultSites()
        c.disabled = try disabledOps()
        c.engineEvents = !noEngineEvents
        c.checkEveryOp = checkEveryOp
        c.skipUnsupported = skipUnsupported
        c.backing = volume ? .volume : .engine
        return c
    }

    func run() throws {
        try runSeedCampaign(tool: "fsx", campaign: resultOptions.joined(separator: " "), options: campaign, seed: seed) { seed, quiet in
            try runOne(config(seed: seed), quiet: quiet)
        }
    }

    /// The options that decide a seed's run, as flags, every one spelled out: a campaign's
    /// identity and, after --seed, the command that replays a run.
    var resultOptions: [String] {
        [
            "--ops \(ops)", "--max-file-size \(maxFileSize)", "--max-op-size \(maxOpSize)", "--offset-base \(offsetBase)",
            "--block-size \(blockSize)", "--max-folio-size \(maxFolioSize)", "--policy \(policy.rawValue)",
            "--write-end \(writeEnd.rawValue)", "--faults \(faults)",
        ] + (disable.isEmpty ? [] : ["--disable \(disable)"]) + (noMmap ? ["--no-mmap"] : [])
            + (noEngineEvents ? ["--no-engine-events"] : []) + (checkEveryOp ? ["--check-every-op"] : []) + (volume ? ["--volume"] : [])
    }

    /// One seed's run (or the replay of a log), its report printed on stdout, or on stderr
    /// when `quiet` (stdout is kept for a shard line).
    func runOne(_ config: FsxConfig, quiet: Bool) throws -> SeedOutcome {
        let replay = try replayOps.map(readFsxLog)
        say(
            "iomap fsx: seed \(config.seed), \(replay.map { "replaying \($0.count) entries of \(replayOps!)" } ?? "\(config.ops) ops"), block size \(config.blockSize), folios up to \(config.maxFolioSize), policy \(config.policy.rawValue), faults \(faults), offset base \(config.offsetBase)"
        )
        let total = replay?.count ?? config.ops
        let report = runFsx(config, replay: replay) { done in say("  \(done)/\(total) ops") }
        if let path = recordOps {
            let header = ["iomap fsx --seed \(config.seed) \(engineFlags(config)) --faults \(faults)"]
            try FsxLog.format(report.entries, header: header).write(toFile: path, atomically: true, encoding: .utf8)
        }
        var minimizedCount: Int?
        var artifactDir: String?
        if report.violation != nil {
            // Each seed of a campaign gets a directory of its own, in --artifacts if given.
            let dir = campaign.isSingleRun ? artifacts ?? "iomap-fsx-\(config.seed)" : "\(artifacts ?? ".")/iomap-fsx-\(config.seed)"
            artifactDir = dir
            minimizedCount = try reportViolation(report, config, in: dir)
        }
        if json && !quiet {
            printJSON(FsxJSON(report, config, minimizedCount: minimizedCount, artifactDir: artifactDir))
        } else {
            printSummary(report, config, to: reportPrinter(quiet: quiet))
        }
        var outcome = SeedOutcome()
        outcome.counts = [
            "ops": report.opsByKind.values.reduce(0, +), "cleanup_calls": report.cleanupCalls,
            "faults_injected": report.faultsInjected.values.reduce(0, +),
        ]
        if let v = report.violation {
            outcome.violations = [
                (
                    "entry \(v.entryIndex): \(v.what)",
                    // --no-minimize is no part of the run, but a campaign that asked for it
                    // (minimizing takes up to 2000 runs) gets replays that skip it too.
                    "\(poisonPrefix)iomap fsx --seed \(config.seed) " + resultOptions.joined(separator: " ")
                        + (noMinimize ? " --no-minimize" : "")
                )
            ]
        }
        return outcome
    }

    /// The engine flags a replay of `config` needs.
    func engineFlags(_ config: FsxConfig) -> String {
        "--block-size \(config.blockSize) --max-folio-size \(config.maxFolioSize) --policy \(config.policy.rawValue)"
            + (config.writeEnd == .zeroTail ? "" : " --write-end \(config.writeEnd.rawValue)")
            + (config.backing == .volume ? " --volume" : "")
    }

    /// Writes a violation's evidence into `dir` (the failing and minimized logs, the expected
    /// and actual images) and says on stderr what went wrong and how to replay it. Returns
    /// the minimized log's length, nil when not minimized.
    func reportViolation(_ report: FsxReport, _ config: FsxConfig, in dir: String) throws -> Int? {
        guard let v = report.violation else { return nil }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let header = [
            "failing run: seed \(config.seed); replay with: \(poisonPrefix)iomap fsx --replay-ops \(dir)/failure.fsxops \(engineFlags(config))"
        ]
        try FsxLog.format(report.entries, header: header).write(toFile: "\(dir)/failure.fsxops", atomically: true, encoding: .utf8)
        try Data(report.expectedImage).write(to: URL(fileURLWithPath: "\(dir)/expected.fsxgood"))
        try Data(report.actualImage).write(to: URL(fileURLWithPath: "\(dir)/actual.fsxbad"))
        var lines = ["VIOLATION at entry \(v.entryIndex): \(v.what)"] + badByteTable(v)
        lines.append("last operations:")
        let bad = Set(v.badBytes.map(\.offset))
        for e in report.entries.suffix(20) { lines.append("  " + fsxLine(e, touching: bad)) }
        var minimizedCount: Int?
        if !noMinimize {
            say("minimizing the failing log of \(report.entries.count) entries...")
            let minimized = minimizeFsx(config, report.entries)
            minimizedCount = minimized.count
            try FsxLog.format(minimized, header: ["minimized from \(report.entries.count) entries; seed \(config.seed)"])
                .write(toFile: "\(dir)/minimized.fsxops", atomically: true, encoding: .utf8)
            lines.append("minimized op log (\(minimized.count) entries): \(dir)/minimized.fsxops")
            for e in minimized.prefix(40) { lines.append("  " + fsxLine(e, touching: [])) }
        }
        lines.append(
            "seed \(config.seed); replay: \(poisonPrefix)iomap fsx --replay-ops \(dir)/failure.fsxops \(engineFlags(config))\(config.offsetBase > 0 ? " --offset-base \(config.offsetBase)" : "")"
        )
        lines.append("expected image: \(dir)/expected.fsxgood, actual image: \(dir)/actual.fsxbad")
        say(lines.joined(separator: "\n"))
        return minimizedCount
    }

    /// fsx's bad-offset table and its guess at the op that wrote the bad data.
    func badByteTable(_ v: FsxViolation) -> [String] {
        guard let b = v.badBytes.first, let last = v.badBytes.last else { return [] }
        var lines = ["OFFSET      GOOD    BAD     RANGE"]
        for x in v.badBytes.prefix(16) {
            lines.append(String(format: "0x%-9x 0x%02x    0x%02x    0x%x", x.offset, x.good, x.bad, last.offset - b.offset + 1))
        }
        let hint = (Int(b.bad) &- (b.offset & 1 == 1 ? Int(fsxOriginalByte(b.offset)) : 0)) & 0xff
        lines.append("operation# (mod 256) for the bad data may be \(hint)")
        return lines
    }

    func printSummary(_ report: FsxReport, _ config: FsxConfig, to print: (String) -> Void) {
        let opsRun = report.opsByKind.values.reduce(0, +)
        print(
            "seed \(config.seed): \(opsRun) ops, \(report.cleanupCalls) failure cleanups, \(String(format: "%.1f", report.elapsedSeconds)) s, \(report.violation == nil ? "no violation" : "VIOLATION")"
        )
        let counted = { (d: [String: Int]) in d.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") }
        print("faults injected: \(counted(report.faultsInjected))")
        if !report.skippedUnsupported.isEmpty { print("skipped unsupported: \(counted(report.skippedUnsupported))") }
    }
}

/// `iomap fsx --json`.
struct FsxJSON: Encodable {
    var seed: UInt64
    var ops, cleanup_calls, block_size, max_folio_size, offset_base: Int
    var result, policy, write_end: String
    var ops_by_kind, faults_injected, skipped_unsupported: [String: Int]
    @KeepNull var violation: String?
    @KeepNull var violation_entry: Int?
    @KeepNull var first_bad_offset: Int?
    @KeepNull var minimized_entries: Int?
    @KeepNull var artifacts: String?
    var elapsed_s: Double
}

extension FsxJSON {
    init(_ report: FsxReport, _ config: FsxConfig, minimizedCount: Int?, artifactDir: String?) {
        self.init(
            seed: config.seed, ops: report.opsByKind.values.reduce(0, +), cleanup_calls: report.cleanupCalls,
            block_size: config.blockSize, max_folio_size: config.maxFolioSize, offset_base: config.offsetBase,
            result: report.violation == nil ? "pass" : "violation", policy: config.policy.rawValue, write_end: config.writeEnd.rawValue,
            ops_by_kind: report.opsByKind, faults_injected: report.faultsInjected, skipped_unsupported: report.skippedUnsupported,
            violation: report.violation?.what, violation_entry: report.violation?.entryIndex,
            first_bad_offset: report.violation?.firstBadOffset, minimized_entries: minimizedCount, artifacts: artifactDir,
            elapsed_s: report.elapsedSeconds)
    }
}

/// An entry's log line, starred when it touches one of `bad`.
func fsxLine(_ e: FsxEntry, touching bad: Set<Int>) -> String {
    var line = FsxLog.format([e]).split(separator: "\n").joined(separator: " ")
    if case .op(let op) = e, !bad.isEmpty {
        let ranges: [Range<Int>] =
            op.name.argumentCount == 4
            ? [op.offset..<op.offset + op.length, op.destination..<op.destination + op.length]
            : op.name == .truncate ? [op.newSize..<Int.max] : [op.offset..<op.offset + op.length]
        if bad.contains(where: { o in ranges.contains { $0.contains(o) } }) { line += " *" }
    }
    return line
}

/// Reads an fsx op log named by --replay-ops; an unreadable or malformed one is a usage
/// error naming the file, the line and why.
func readFsxLog(_ path: String) throws -> [FsxEntry] {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw ValidationError("--replay-ops: cannot read '\(path)'")
    }
    do {
        return try FsxLog.parse(text)
    } catch {
        throw ValidationError("--replay-ops: \(path): \(error)")
    }
}

/// Writes a line to standard error.
func say(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
