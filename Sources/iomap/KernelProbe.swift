// `iomap kernel-probe`: shows, on the host kernel, behaviour our model predicts, beside
// controls and our engine. `eof-block`: the data loss at an unaligned EOF (docs/KERNEL-MODEL.md §3.8
// O1). `short-copy`: what a buffered write leaves where its copy from user memory stopped.

import ArgumentParser
import Dispatch
import ExtentFS
import Foundation
import IOMapBase
import IOMapKernelSide
import IOMapTesting

extension EOFProbeMethod: ExpressibleByArgument {}

struct KernelProbe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernel-probe",
        abstract: "Probe the host kernel for behaviour our model predicts.",
        subcommands: [EOFBlockProbe.self, ShortCopyProbe.self])
}

struct EOFBlockProbe: HostProbeCommand {
    static let configuration = CommandConfiguration(
        commandName: "eof-block",
        abstract: "Show whether the host kernel loses a mapped store at an unaligned EOF when a racing write fails.",
        discussion: """
            A file gets 4 KiB of data and is truncated to an unaligned i_size; a write of 4 KiB \
            at 5120 from an unreadable buffer reserves new delalloc over the block holding EOF \
            and fails with nothing written, while 8 bytes are stored through a shared mapping \
            into that block. After msync, fsync and a cache drop, are they still there? The \
            same runs with i_size rounded up to a block (the control) and on our engine. \
            Without --dir the probe makes, loop-mounts and afterwards removes an XFS image \
            (root needed). Exit status: 1 when the kernel lost data, 0 when it did not, 2 when \
            the probe could not run.
            """)

    @Option(help: "A directory on the file system to probe (default: a new XFS image, loop-mounted; needs root).")
    var dir: String?
    @Option(parsing: .unconditional, help: "Attempts at the unaligned i_size, and as many for the control and the engine.")
    var attempts = 500
    @Option(parsing: .unconditional, help: "The unaligned i_size, 4097 to 9215.") var isize = 6144
    @Option(parsing: .unconditional, help: "Block size of the XFS image made without --dir: 1024, 2048 or 4096.")
    var blockSize = 4096
    @Option(help: "race (the store races the failing write) or userfaultfd (the write is stalled while the store is made).")
    var method = EOFProbeMethod.race
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func configure(_ c: inout EOFProbeConfig) {
        c.isize = isize
        c.blockSize = blockSize
        c.method = method
    }

    static func probe(_ config: EOFProbeConfig, scratch: ProbeScratch, progress: (String) -> Void) throws -> EOFProbeReport {
        try runEOFProbe(config, scratch: scratch, progress: progress)
    }

    static func textLines(_ report: EOFProbeReport, _ config: EOFProbeConfig) -> [String] {
        let verdict = report.affected ? "AFFECTED" : "not affected"
        var lines = [
            "Linux \(report.kernel), \(report.fs), \(config.blockSize)-byte blocks, method \(config.method.rawValue): \(verdict)",
            "  i_size \(config.isize): \(report.lost) of \(config.attempts) stores lost (\(report.windowHits) attempts hit the window)",
            "  control, i_size \(config.controlIsize): \(report.controlLost) of \(config.attempts) lost",
            "  our engine, i_size \(config.isize): \(report.engineLost) of \(config.attempts) lost",
        ]
        if report.writesNotFailed > 0 { lines.append("  note: \(report.writesNotFailed) writes did not fail with EFAULT as intended") }
        return lines
    }

    static func jsonReport(_ report: EOFProbeReport, _ config: EOFProbeConfig) -> EOFProbeJSON { EOFProbeJSON(report, config) }
}

/// `iomap kernel-probe eof-block --json`.
struct EOFProbeJSON: Encodable {
    var kernel, fs, method: String
    var block_size, isize, attempts, window_hits, lost, writes_not_failed: Int
    var control_isize, control_attempts, control_window_hits, control_lost, engine_attempts, engine_lost: Int
    var elapsed_s: Double
}

extension EOFProbeJSON {
    init(_ report: EOFProbeReport, _ config: EOFProbeConfig) {
        // The control and the engine make as many attempts as the kernel at the unaligned size.
        self.init(
            kernel: report.kernel, fs: report.fs, method: config.method.rawValue, block_size: config.blockSize, isize: config.isize,
            attempts: config.attempts, window_hits: report.windowHits, lost: report.lost, writes_not_failed: report.writesNotFailed,
            control_isize: config.controlIsize, control_attempts: config.attempts, control_window_hits: report.controlWindowHits,
            control_lost: report.controlLost, engine_attempts: config.attempts, engine_lost: report.engineLost,
            elapsed_s: report.seconds)
    }
}

/// The settings of every host-kernel probe: --dir and --attempts, and the probe's own check.
protocol ProbeSettings: CheckedSettings {
    init()
    var directory: String? { get set }
    var attempts: Int { get set }
}

extension EOFProbeConfig: ProbeSettings {}
extension ShortCopyProbeConfig: ProbeSettings {}

/// What a probe found: whether the host kernel showed the behaviour probed for (exit 1).
protocol ProbeFinding {
    var affected: Bool { get }
}

extension EOFProbeReport: ProbeFinding {
    var affected: Bool { lost > 0 }
}

extension ShortCopyProbeReport: ProbeFinding {}

/// A `kernel-probe` subcommand. Its options make the probe's settings, whose problem (or a
/// --dir that is not a directory) is a usage error; it runs the probe with the scratch
/// space cleaned up on signals and prints the report as text or JSON.
protocol HostProbeCommand: ParsableCommand {
    associatedtype Settings: ProbeSettings
    associatedtype Report: ProbeFinding
    associatedtype ReportJSON: Encodable
    var dir: String? { get }
    var attempts: Int { get }
    var json: Bool { get }
    /// Sets what only this probe's options set, beside --dir and --attempts.
    func configure(_ settings: inout Settings)
    static func probe(_ settings: Settings, scratch: ProbeScratch, progress: (String) -> Void) throws -> Report
    static func textLines(_ report: Report, _ settings: Settings) -> [String]
    static func jsonReport(_ report: Report, _ settings: Settings) -> ReportJSON
}

extension HostProbeCommand {
    var settings: Settings {
        var s = Settings()
        s.directory = dir
        s.attempts = attempts
        configure(&s)
        return s
    }

    func validate() throws {
        try throwUsageError(settings.problem)
        if let dir, !isDirectory(dir) { throw ValidationError("--dir \(dir) is not a directory") }
    }

    func run() throws {
        let settings = self.settings
        let report = try runProbe(Self.configuration.commandName!) { scratch, progress in
            try Self.probe(settings, scratch: scratch, progress: progress)
        }
        if json {
            printJSON(Self.jsonReport(report, settings))
        } else {
            for line in Self.textLines(report, settings) { print(line) }
        }
        if report.affected { throw ExitStatus.violation }
    }
}

/// Runs probe `name` with its scratch space cleaned up on signals, its progress on stderr;
/// a probe that cannot run exits 2, saying why.
func runProbe<R>(_ name: String, _ body: (ProbeScratch, (String) -> Void) throws -> R) throws -> R {
    do {
        return try withCleanupOnSignals { scratch in try body(scratch) { say("\(name): \($0)") } }
    } catch {
        say("\(name): the probe could not run: \(error)")
        throw ExitCode(2)
    }
}

/// Runs `body` with scratch space that SIGINT and SIGTERM take down before the program
/// exits, so that an interrupted probe still unmounts and removes its images.
func withCleanupOnSignals<T>(_ body: (ProbeScratch) throws -> T) rethrows -> T {
    let scratch = ProbeScratch()
    let sources = [SIGINT, SIGTERM].map { (sig: Int32) -> any DispatchSourceSignal in
        signal(sig, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler {
            for problem in scratch.removeAll() { say("cleanup: \(problem)") }
            Foundation.exit(128 + sig)
        }
        source.resume()
        return source
    }
    defer {
        for s in sources { s.cancel() }
        for sig in [SIGINT, SIGTERM] { signal(sig, SIG_DFL) }
    }
    return try body(scratch)
}
