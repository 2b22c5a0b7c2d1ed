// `iomap difftest`: the same fsx operations on the engine and, through syscalls, on a real
// file; the running kernel judges every byte, size and errno.

import ArgumentParser
import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapKernelSide
import IOMapTesting

struct DiffTestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "difftest",
        abstract: "Apply the same fsx operations to the engine and to a real file; compare results, errnos, sizes and content.",
        discussion: """
            Exit status: 0 when everything agreed, 1 on any mismatch (the first is named with \
            its op index), 2 for bad usage. SEEK_DATA/SEEK_HOLE answers are compared exactly \
            only on XFS (--seek-oracle xfs mounts a loop XFS image; it needs root and loop \
            devices). On any other file system (tmpfs, an `iomap mount`) --seek-oracle auto, \
            the default, or content checks them against the bytes every --seek-every ops, with \
            nothing synced first: every range an answer calls a hole must read as zeroes \
            (lseek(2) allows calling a hole data, never data a hole). --seek-canary moves the \
            real file's SEEK_DATA answers one byte on, which that check must catch.
            """)

    @Option(parsing: .unconditional, help: "Number of operations.") var ops = 20_000
    @Option(help: "Seed (default: chosen at random and printed).") var seed: UInt64?
    @Option(help: "Replay this op log (fsx format) instead of generating ops.") var replayOps: String?
    @Option(help: "Directory for the kernel-side file (default: a new temporary directory).") var dir: String?
    @Option(
        help:
            "How SEEK_DATA/SEEK_HOLE answers are judged: auto (exactly on XFS, against the bytes elsewhere), xfs (a loop-mounted XFS image, exactly), content (against the bytes) or none."
    )
    var seekOracle = "auto"
    @Option(parsing: .unconditional, help: "Largest file offset used, in bytes.") var maxFileSize = 256 << 10
    @Option(parsing: .unconditional, help: "Largest operation, in bytes.") var maxOpSize = 64 << 10
    @Option(parsing: .unconditional, help: "Engine block size: 512, 1024, 2048 or 4096.") var blockSize = 4096
    @Option(
        parsing: .unconditional,
        help: "Engine's largest folio, a power of two from 4096 to 2097152 (default 65536; 4096 when SEEK answers are compared).")
    var maxFolioSize: Int?
    @Flag(help: "Generate no mapread or mapwrite.") var noMmap = false
    @Flag(help: "Run a deliberately wrong engine (truncate down skips zeroing the EOF block) to show the comparison has teeth.")
    var canary = false
    @Option(
        parsing: .unconditional, help: "Compare SEEK answers every this many ops (each time after fsync and a cache drop on both sides).")
    var seekEvery = 16
    @Flag(help: "Move the real file's SEEK_DATA answers one byte on, so that the content check of SEEK answers must fail.")
    var seekCanary = false
    @Flag(help: "Keep the kernel-side file (and, with --dir, leave it there) for inspection.") var keep = false
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Flag(help: "Run the engine side on a file of a new in-memory volume.") var volume = false

    func validate() throws {
        guard ops > 0 else { throw ValidationError("--ops must be positive, got \(ops)") }
        guard seekEvery > 0 else { throw ValidationError("--seek-every must be positive, got \(seekEvery)") }
        guard ["auto", "xfs", "content", "none"].contains(seekOracle) else {
            throw ValidationError("--seek-oracle must be auto, xfs, content or none, got '\(seekOracle)'")
        }
        if seekCanary && !["auto", "content"].contains(seekOracle) {
            throw ValidationError("--seek-canary plants a wrong answer for the content check: use it with --seek-oracle auto or content")
        }
        let sizes = FsxConfig(
            seed: 0, ops: ops, blockSize: blockSize, maxFolioSize: maxFolioSize ?? 65536, maxFileSize: maxFileSize, maxOpSize: maxOpSize)
        try throwUsageError(sizes.problem)
        if let dir, !FileManager.default.fileExists(atPath: dir) { throw ValidationError("--dir: '\(dir)' does not exist") }
    }

    /// The run the options ask for; run() settles whether SEEK answers are compared.
    func config(seed: UInt64) -> DiffConfig {
        var c = DiffConfig(seed: seed)
        c.ops = ops
        c.maxFileSize = maxFileSize
        c.maxOpSize = maxOpSize
        c.blockSize = blockSize
        c.maxFolioSize = maxFolioSize ?? 65536
        c.canary = canary
        c.seekEvery = seekEvery
        c.seekCanary = seekCanary
        if noMmap { c.disabled = [.mapread, .mapwrite] }
        c.backing = volume ? .volume : .engine
        return c
    }

    func run() throws {
        var config = config(seed: runSeed(seed))
        let replay = try replayOps.map(readFsxLog)
        var directory = dir
        var mount: XFSLoopMount?
        var temporary: String?
        var seekNote: String?
        if seekOracle == "xfs" {
            do {
                mount = try XFSLoopMount.make()
                directory = mount!.mountPoint
            } catch {
                seekNote = "SEEK_DATA/SEEK_HOLE comparison SKIPPED: \(error)"
                say("*** \(seekNote!) ***")
            }
        }
        if directory == nil {
            let t = FileManager.default.temporaryDirectory.appendingPathComponent("iomap-difftest-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: t, withIntermediateDirectories: true)
            temporary = t
            directory = t
        }
        defer {
            if let temporary { try? FileManager.default.removeItem(atPath: temporary) }
            if let mount { for p in mount.unmount() { say("cleanup: \(p)") } }
        }
        let report: DiffReport
        do {
            // SEEK answers are XFS's to give; elsewhere they legally differ.
            let probe = try KernelFile(directory: directory!, name: ".iomap-probe")
            let fstype = probe.fileSystemType
            // tmpfs has no FALLOC_FL_ZERO_RANGE: every zero_range would be a mismatch that
            // says nothing about the engine, so none is generated there, and the run says so.
            if case .failure(.notSupported) = probe.fallocate(offset: 0, length: 4096, mode: .zeroRange(keepSize: true)) {
                config.disabled.insert(.zero_range)
                say("zero_range not generated: \(fstype) answers FALLOC_FL_ZERO_RANGE with EOPNOTSUPP")
            }
            try? FileManager.default.removeItem(atPath: directory! + "/.iomap-probe")
            config.compareSeek = fstype == "xfs" && ["auto", "xfs"].contains(seekOracle)
            config.checkSeekContent = seekOracle == "content" || (seekOracle == "auto" && fstype != "xfs")
            // A store through a mapping reserves and writes its whole folio, and XFS's folio
            // sizes follow its readahead, not ours: with larger folios the two allocate
            // different blocks and SEEK answers differ legally (DIFFERENCES §10).
            if config.compareSeek && maxFolioSize == nil { config.maxFolioSize = 4096 }
            if config.checkSeekContent && seekNote == nil {
                seekNote =
                    "SEEK_DATA/SEEK_HOLE checked against the bytes on \(fstype) (a hole answer must read as zeroes), not compared exactly"
                say(seekNote!)
            } else if !config.compareSeek && seekNote == nil {
                seekNote = "SEEK_DATA/SEEK_HOLE not checked (--seek-oracle \(seekOracle) on \(fstype))"
                say(seekNote!)
            }
            say(
                "iomap difftest: seed \(config.seed), \(replay.map { "replaying \($0.count) entries" } ?? "\(config.ops) ops") in \(directory!) (\(fstype))\(canary ? ", CANARY engine" : "")"
            )
            report = try runDiffTest(config, replay: replay, directory: directory!)
            if !keep { try? FileManager.default.removeItem(atPath: directory! + "/iomap-difftest-\(config.seed)") }
        } catch {
            throw ValidationError("cannot create a file in \(directory!): \(error.symbolicName)")
        }
        if json {
            printJSON(DiffTestJSON(report, config, seekNote: seekNote))
        } else {
            print(
                "seed \(config.seed): \(report.ops) ops on \(report.dirFSType), \(report.compared) comparisons, \(report.seekProbes) seek probes (\(report.seekHolesSeen) holes seen), \(report.mismatches) mismatches, \(String(format: "%.1f", report.elapsedSeconds)) s"
            )
        }
        if let m = report.firstMismatch {
            reportMismatch(m, report, config)
            throw ExitStatus.violation
        }
    }

    /// Says on stderr where the engine and the kernel first differed, the entries before it,
    /// the engine's extents and the command that runs it again.
    func reportMismatch(_ m: DiffMismatch, _ report: DiffReport, _ config: DiffConfig) {
        say("MISMATCH at op index \(m.opIndex): \(m)")
        say(
            "last entries:\n"
                + report.log.suffix(8).map { "  " + FsxLog.format([$0]).split(separator: "\n").joined(separator: " ") }.joined(
                    separator: "\n"))
        say(
            "engine extents (file blocks of \(blockSize) bytes): "
                + report.engineExtents.map { "[\($0.startBlock)+\($0.blockCount) \($0.state)]" }.joined(separator: " "))
        say(
            "run again: iomap difftest --seed \(config.seed) --ops \(ops)\(replayOps.map { " --replay-ops \($0)" } ?? "")\(canary ? " --canary" : "")\(seekOracle != "auto" ? " --seek-oracle \(seekOracle)" : "")\(seekCanary ? " --seek-canary" : "")\(dir.map { " --dir \($0)" } ?? "")\(noMmap ? " --no-mmap" : "")"
        )
    }
}

/// `iomap difftest --json`.
struct DiffTestJSON: Encodable {
    struct Mismatch: Encodable {
        var op_index: Int
        var op, field, engine, kernel: String
    }

    var seed: UInt64
    var ops, entries, compared, mismatches, seek_probes, seek_holes_seen: Int
    var dir_fstype: String
    var ops_not_generated: [String]
    var seek_compared, seek_content_checked, seek_canary, canary: Bool
    @KeepNull var first_mismatch: Mismatch?
    @KeepNull var seek_note: String?
    var elapsed_s: Double
}

extension DiffTestJSON {
    init(_ report: DiffReport, _ config: DiffConfig, seekNote: String?) {
        let first = report.firstMismatch.map { m in
            Mismatch(op_index: m.opIndex, op: m.op, field: m.field, engine: m.engine, kernel: m.kernel)
        }
        self.init(
            seed: config.seed, ops: report.ops, entries: report.entries, compared: report.compared, mismatches: report.mismatches,
            seek_probes: report.seekProbes, seek_holes_seen: report.seekHolesSeen, dir_fstype: report.dirFSType,
            ops_not_generated: config.disabled.map(\.rawValue).sorted(), seek_compared: config.compareSeek,
            seek_content_checked: config.checkSeekContent, seek_canary: config.seekCanary,
            canary: config.canary,
            first_mismatch: first, seek_note: seekNote, elapsed_s: report.elapsedSeconds)
    }
}
