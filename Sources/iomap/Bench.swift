// Counterpart: none in the kernel; `iomap bench` is the engine's fio: each workload on the
// engine in-process and, with the same sizes and bytes, through syscalls on a real file, in
// one run, with the ratios and the goals they are held to.

import ArgumentParser
import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapBench
import IOMapKernelSide
import IOMapTesting

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract:
            "Benchmark the engine against the kernel's page cache: writes, appends, reads, seeks, cleanup, writeback, hooks, memory, the volume.",
        discussion: """
            Each workload runs on the engine in-process and through syscalls on a real file in \
            --dir, alternating engine and kernel runs, one warm-up and 5 counted repetitions, \
            reporting medians in ns per operation beside a memcpy of the same bytes. Workloads: \
            \(BenchWorkload.allCases.map(\.rawValue).joined(separator: ", ")); all but fuse and \
            fuse-writeback run by default (those mount this tool's FUSE file system beside tmpfs and \
            XFS on a loop device, as root: --fuse or --only 'fuse*'). Exit status: 0 when every \
            workload ran or was skipped for want of what it needs (goals that do not hold are \
            reported, not an error), 1 when a workload could not run correctly (a data check \
            failed), 2 for bad usage. --plot FILE.svg also draws the results as one SVG file (written \
            after the run, also when goals do not hold or a workload failed): every row with a \
            single-number goal as a bar of its attainment against that goal on a log scale, \
            green where it holds and red where not, the other rows listed beneath, and one chart \
            of ns per op, engine and kernel, per scaling curve.
            """)

    @Flag(help: "Run every workload at 1/16 of its size.") var quick = false
    @Option(help: "Comma-separated workloads to run (default: all).") var only: String?
    @Option(help: "Directory for the kernel-side files (default: a new directory on tmpfs, /dev/shm when present).")
    var dir: String?
    @Option(
        help:
            "Directory for the device images and kernel files of writeback-fsync and the volume's disk rows (default: a new directory in /var/tmp)."
    )
    var dirDisk: String?
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Option(help: "Also draw the results as an SVG file: the ratio of every row against its goal, the scaling rows as curves.")
    var plot: String?
    @Flag(help: "Run the FUSE rows (workloads fuse and fuse-writeback), besides any --only names.") var fuse = false
    @Option(help: "Bytes of each FUSE row's fio job, e.g. 256M (default 1G, 64M with --quick).") var fuseSize: String?
    // The memory workload's measurements, each run by a child process of the tool (see
    // BenchConfig.memoryProbe): the folio size, the bytes to cache and the data tag.
    @Option(help: .hidden) var memoryProbe: Int?
    @Option(help: .hidden) var memoryProbeBytes: Int?
    @Option(help: .hidden) var memoryProbeTag = 1

    func workloads() throws -> [BenchWorkload] {
        let fuseGroup: [BenchWorkload] = fuse ? [.fuse, .fuseWriteback] : []
        guard let only else { return fuse ? fuseGroup : BenchWorkload.defaultWorkloads }
        switch BenchWorkload.parse(only) {
        case .success(let w): return BenchWorkload.allCases.filter { w.contains($0) || fuseGroup.contains($0) }
        case .failure(let e): throw ValidationError(e.description)
        }
    }

    /// --fuse-size in bytes: a whole number of MiB, at least 1 MiB.
    func fuseBytes() throws -> Int? {
        guard let fuseSize else { return nil }
        guard let n = VolumeImage.parseSize(fuseSize), n >= 1 << 20, n % (1 << 20) == 0 else {
            throw ValidationError("--fuse-size: '\(fuseSize)' is not a whole number of MiB of at least 1M (e.g. 256M, 1G)")
        }
        return n
    }

    func validate() throws {
        _ = try workloads()
        _ = try fuseBytes()
        try validatePlotPath()
        for (flag, path) in [("--dir", dir), ("--dir-disk", dirDisk)] {
            guard let path else { continue }
            guard isDirectory(path) else { throw ValidationError("\(flag): '\(path)' is not a directory") }
            do {
                _ = try fileSystemType(of: path)
            } catch {
                throw ValidationError("\(flag): \(error)")
            }
        }
    }

    func run() throws {
        if let folioSize = memoryProbe { return try runMemoryProbe(folioSize: folioSize) }
        var config = BenchConfig(quick: quick)
        config.workloads = try workloads()
        config.memoryProbe = memoryProbeInChild
        config.iomapExecutable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        config.fuseBytes = try fuseBytes()
        // The tool makes the default directories itself, so that an interrupted run can
        // remove them too.
        var created: [String] = []
        func directory(_ given: String?, disk: Bool) throws(BenchSetupError) -> String {
            if let given { return given }
            let d = try makeBenchDirectory(disk: disk)
            created.append(d)
            return d
        }
        do {
            config.kernelDirectory = try directory(dir, disk: false)
            if config.workloads.contains(where: \.needsDiskDirectory) { config.diskDirectory = try directory(dirDisk, disk: true) }
        } catch {
            for d in created { try? FileManager.default.removeItem(atPath: d) }
            say("iomap bench: \(error)")
            throw ExitStatus.violation
        }
        let cleanup = BenchCleanup(created: created, used: [dir, dirDisk].compactMap { $0 })
        let signalSources = cleanup.removeOnSignals()
        defer {
            for s in signalSources { s.cancel() }
            cleanup.run()
        }
        say(
            "iomap bench: \(config.workloads.map(\.rawValue).joined(separator: ", "))\(quick ? " (quick: 1/16 size)" : ""), \(config.repetitions) repetitions after a warm-up"
        )
        let report: BenchReport
        do {
            report = try runBench(config) { say("  " + $0) }
        } catch {
            say("iomap bench: \(error)")
            throw ExitStatus.violation
        }
        if json {
            printJSON(BenchJSON(report))
        } else {
            print(table(report))
        }
        if let plot { try writePlot(report, to: plot) }
        for f in report.failures { say("FAILED: \(f.name): \(f.error ?? "")") }
        for f in report.scalingFailures { say("FAILED: \(f.name): \(f.error ?? "")") }
        if !report.failures.isEmpty || !report.scalingFailures.isEmpty { throw ExitStatus.violation }
    }
}

extension Bench {
    /// --plot names an .svg file in a directory that exists, so that a long run does not end
    /// in a file it cannot write.
    func validatePlotPath() throws {
        guard let plot else { return }
        guard plot.hasSuffix(".svg"), plot.count > 4, !plot.hasSuffix("/.svg") else {
            throw ValidationError("--plot: '\(plot)' does not name an .svg file")
        }
        let parent = plot.lastIndex(of: "/").map { String(plot[..<$0]) } ?? "."
        let directory = parent.isEmpty ? "/" : parent
        guard isDirectory(directory) else {
            throw ValidationError("--plot: '\(plot)': the directory '\(directory)' does not exist")
        }
    }

    /// Writes the report's SVG; a file that cannot be written fails the run (exit 1), after
    /// the table or JSON has been printed.
    func writePlot(_ report: BenchReport, to path: String) throws {
        if let problem = writeWhole(path, Array(benchPlotSVG(report).utf8)) {
            say("iomap bench: --plot: cannot write '\(path)': \(problem)")
            throw ExitStatus.violation
        }
    }

    /// The child's side of a memory measurement: one JSON object on stdout.
    func runMemoryProbe(folioSize: Int) throws {
        let probe = BenchMemoryProbe(folioSize: folioSize, bytes: memoryProbeBytes ?? (1 << 30), tag: memoryProbeTag)
        if let problem = probe.problem { throw ValidationError("--memory-probe: \(problem)") }
        do {
            let s = try runBenchMemoryProbe(probe)
            printJSON(s)
        } catch {
            say("memory probe: \(error)")
            throw ExitStatus.violation
        }
    }
}

/// Writes `bytes` as the whole of the file at `path`; returns the system's reason when it
/// cannot (with open(2) and write(2) rather than Foundation's write, whose errors on Linux
/// name a Cocoa error code instead of the errno).
private func writeWhole(_ path: String, _ bytes: [UInt8]) -> String? {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return String(cString: strerror(errno)) }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, bytes.count - done) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
            let reason = n == 0 ? "write(2) wrote nothing" : String(cString: strerror(errno))
            close(fd)
            return reason
        }
        done += n
    }
    return close(fd) == 0 ? nil : String(cString: strerror(errno))
}

/// Removes what a run left: the directories the tool made, and the run's files in the
/// directories it was given. Runs at the end of a run and on SIGINT or SIGTERM.
final class BenchCleanup: Sendable {
    let created: [String]
    let used: [String]

    init(created: [String], used: [String]) {
        self.created = created
        self.used = used
    }

    func run() {
        let fm = FileManager.default
        for d in created { try? fm.removeItem(atPath: d) }
        for d in used {
            for name in (try? fm.contentsOfDirectory(atPath: d)) ?? [] where name.hasPrefix(benchFilePrefix) {
                try? fm.removeItem(atPath: d + "/" + name)
            }
        }
    }

    /// Handles SIGINT and SIGTERM on a dispatch thread while the run goes on in this one:
    /// clean up, then exit as the signal would have.
    func removeOnSignals() -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [self] in
                run()
                exit(128 + sig)
            }
            source.resume()
            return source
        }
    }
}

/// Runs one memory measurement in a fresh child process of this tool.
@Sendable private func memoryProbeInChild(_ probe: BenchMemoryProbe) throws -> BenchMemorySample {
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = [
        "bench", "--memory-probe", "\(probe.folioSize)", "--memory-probe-bytes", "\(probe.bytes)", "--memory-probe-tag",
        "\(probe.tag)",
    ]
    // One pipe for both streams, read to its end before waiting: a child that fails loudly
    // (a crash report) cannot fill a pipe nobody reads and hang the run. The JSON object
    // is the line that starts with a brace.
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    let line = output.split(separator: "\n").last { $0.hasPrefix("{") }
    guard process.terminationStatus == 0, let line, let sample = try? JSONDecoder().decode(BenchMemorySample.self, from: Data(line.utf8))
    else {
        throw BenchProbeError(
            "the memory probe (\(executable) \(process.arguments!.joined(separator: " "))) exited \(process.terminationStatus): \(output.trimmingCharacters(in: .whitespacesAndNewlines))"
        )
    }
    return sample
}

struct BenchProbeError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// `iomap bench --json`.
struct BenchJSON: Encodable {
    struct Result: Encodable {
        var name, goal: String
        var holds: Bool
        @KeepNull var engine_ns_per_op: Double?
        @KeepNull var kernel_ns_per_op: Double?
        @KeepNull var memcpy_ns_per_op: Double?
        @KeepNull var ratio: Double?
        /// (engine - memcpy) / (kernel - memcpy): the engine's own work beside the kernel's.
        @KeepNull var own_work: Double?
        /// Toward the goal: 1 at it, above 1 beyond it; null where the goal is not one number.
        @KeepNull var attainment: Double?
        /// The workload's further numbers (cleanup's per-size times, memory's byte counts,
        /// ...), named by the workload. They are all doubles, and a whole one (a count) prints
        /// as an integer, as it did before.
        var detail: [String: Double]
        /// Only a workload that could not run has one.
        var error: String?
        /// Only a row not measured on this machine has one: why (not a failure).
        var skipped: String?
    }

    struct Point: Encodable {
        var x: Double
        var label: String
        @KeepNull var engine_ns_per_op: Double?
        @KeepNull var kernel_ns_per_op: Double?
    }

    struct Scaling: Encodable {
        var name, axis, goal: String
        var holds: Bool
        var points: [Point]
        var detail: [String: Double]
        var error: String?
        var skipped: String?
    }

    var results: [Result]
    var scaling: [Scaling]
    var kernel_dir_fstype: String
    /// Null when no workload needed the disk directory.
    @KeepNull var disk_dir_fstype: String?
    var repetitions: Int
    var quick: Bool
    var elapsed_s: Double
}

extension BenchJSON {
    init(_ report: BenchReport) {
        let results = report.results.map { r in
            Result(
                name: r.name, goal: r.goal, holds: r.holds, engine_ns_per_op: r.engineNsPerOp, kernel_ns_per_op: r.kernelNsPerOp,
                memcpy_ns_per_op: r.memcpyNsPerOp, ratio: r.ratio, own_work: r.ownWork, attainment: r.attainment, detail: r.detail,
                error: r.error, skipped: r.skipped)
        }
        let scaling = report.scaling.map { s in
            Scaling(
                name: s.name, axis: s.axis, goal: s.goal, holds: s.holds,
                points: s.points.map {
                    Point(x: $0.x, label: $0.label, engine_ns_per_op: $0.engineNsPerOp, kernel_ns_per_op: $0.kernelNsPerOp)
                },
                detail: s.detail, error: s.error, skipped: s.skipped)
        }
        self.init(
            results: results, scaling: scaling, kernel_dir_fstype: report.kernelDirFSType,
            disk_dir_fstype: report.diskDirFSType.isEmpty ? nil : report.diskDirFSType, repetitions: report.repetitions,
            quick: report.quick, elapsed_s: report.elapsedSeconds)
    }
}

/// A time per operation, in the unit that keeps three significant digits readable.
private func formatNs(_ ns: Double?) -> String {
    guard let ns else { return "—" }
    if ns < 1_000 { return String(format: "%.0f ns", ns) }
    if ns < 1_000_000 { return String(format: "%.2f µs", ns / 1_000) }
    return String(format: "%.2f ms", ns / 1_000_000)
}

private func formatRatio(_ r: BenchResult) -> String {
    guard let x = r.ratio else { return "—" }
    switch r.name {
    case "live-hooks": return String(format: "%+.1f%%", x * 100)
    case "memory-4k", "memory-2m": return String(format: "%.2f%%", x * 100)
    default: return String(format: "%.2f×", x)
    }
}

/// Pads (by characters, not bytes: the table has µ, × and ≥ in it).
private func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

private func table(_ report: BenchReport) -> String {
    let header = ["workload", "engine", "kernel", "memcpy", "ratio", "own work", "goal", "holds"]
    var rows = [header]
    for r in report.results {
        let holds = r.error != nil ? "FAILED" : r.skipped != nil ? "skipped" : (r.holds ? "yes" : "NO")
        rows.append([
            r.name, formatNs(r.engineNsPerOp), formatNs(r.kernelNsPerOp), formatNs(r.memcpyNsPerOp), formatRatio(r),
            r.ownWork.map { String(format: "%.2f×", $0) } ?? "—", r.goal, holds,
        ])
    }
    let widths = header.indices.map { c in rows.map { $0[c].count }.max()! }
    var lines = [
        "kernel side: \(report.kernelDirectory) (\(report.kernelDirFSType))"
            + (report.diskDirectory.isEmpty ? "" : "; disk side: \(report.diskDirectory) (\(report.diskDirFSType))"),
        "medians of \(report.repetitions) repetitions after a warm-up, per operation\(report.quick ? "; quick (1/16 size)" : "")",
        "",
    ]
    // A run of scaling workloads alone has no rows: no header for them either.
    for row in rows where !report.results.isEmpty {
        lines.append(row.indices.map { pad(row[$0], widths[$0]) }.joined(separator: "  ").trimmingCharacters(in: .whitespaces))
    }
    var notes: [String] = []
    var skips: [String] = []
    for r in report.results {
        if let why = r.skipped, !skips.contains(why) { skips.append(why) }
    }
    notes += skips.map { "skipped: \($0)" }
    for r in report.results where !r.detail.isEmpty && r.error == nil {
        switch r.name {
        case "cleanup":
            let sizes = r.detail.keys.filter { $0.hasPrefix("ns_per_op_") }.sorted { sizeKeyBytes($0) < sizeKeyBytes($1) }
            notes.append(
                "cleanup: " + sizes.map { "\($0.dropFirst("ns_per_op_".count)) \(formatNs(r.detail[$0]))" }.joined(separator: ", ")
                    + ", \(Int(r.detail["punches_per_cleanup"] ?? 0)) punches per cleanup, "
                    + "\(Int(r.detail["kept_delalloc_blocks"] ?? 0)) delalloc blocks kept under the dirty folios")
        case "live-hooks":
            notes.append(
                "live-hooks: no-op interleaver installed \(formatNs(r.engineNsPerOp)), live \(formatNs(r.detail["live_ns_per_op"])); "
                    + "with the timing thread bound to it (the explorer's scheduling path at every yield point) "
                    + "\(formatNs(r.detail["bound_thread_ns_per_op"])), "
                    + String(format: "%+.1f%%", (r.detail["bound_thread_cost"] ?? 0) * 100))
        case "memory-4k", "memory-2m":
            let mib = { (x: Double?) in String(format: "%.1f MiB", (x ?? 0) / 1_048_576) }
            notes.append(
                "\(r.name): resident memory grew \(mib(r.detail["rss_delta_bytes"])) caching \(mib(r.detail["cached_bytes"])) (\(r.detail["peak_rss_measured"] == 1 ? "peak" : "current") RSS\(r.detail["separate_process"] == 1 ? ", in a fresh process" : ", in this process"))"
            )
        case "overwrite-4k":
            notes.append(String(format: "overwrite-4k: engine %.2f× memcpy", r.detail["engine_over_memcpy"] ?? 0))
        default:
            if let note = volumeNote(r) ?? fuseNote(r) { notes.append(note) }
        }
    }
    if !notes.isEmpty { lines += [""] + notes }
    lines += scalingTable(report.scaling)
    lines.append(String(format: "\n%.1f s", report.elapsedSeconds))
    return lines.joined(separator: "\n")
}

/// The scaling curves: per curve a heading with its goal, then one line per point.
private func scalingTable(_ curves: [BenchScaling]) -> [String] {
    guard !curves.isEmpty else { return [] }
    var lines = ["", "scaling (per operation; ratio kernel / engine):"]
    for c in curves {
        let holds = c.error != nil ? "FAILED" : c.skipped != nil ? "skipped" : (c.holds ? "holds" : "does NOT hold")
        lines.append("  \(c.name) by \(c.axis): goal \(c.goal): \(holds)\(c.skipped.map { " (\($0))" } ?? "")")
        let rows = c.points.map { p in
            let ratio = p.engineNsPerOp.flatMap { e in p.kernelNsPerOp.map { String(format: "%.2f×", $0 / e) } } ?? "—"
            return [p.label, formatNs(p.engineNsPerOp), formatNs(p.kernelNsPerOp), ratio]
        }
        let widths = (0..<4).map { col in rows.map { $0[col].count }.max() ?? 0 }
        for row in rows { lines.append("    " + row.indices.map { pad(row[$0], widths[$0]) }.joined(separator: "  ")) }
    }
    return lines
}

/// The bytes a cleanup detail key names ("ns_per_op_64MiB"), for sorting.
private func sizeKeyBytes(_ key: String) -> Int {
    let label = key.dropFirst("ns_per_op_".count)
    let units: [(String, Int)] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
    for (suffix, factor) in units where label.hasSuffix(suffix) {
        return (Int(label.dropLast(3)) ?? 0) * factor
    }
    return 0
}

/// The table's note for a volume row: the figures behind its goal.
private func volumeNote(_ r: BenchResult) -> String? {
    let d = r.detail
    let n = { (key: String) in d[key] ?? 0 }
    switch r.name {
    case "volume-create", "volume-setattr", "volume-rename", "volume-unlink":
        return "\(r.name): "
            + String(
                format: "%.0f writes and flushes in the timed loops; %.0f log bytes per call (%.0f in whole blocks), %.0f files",
                n("io_in_timed_loops"), n("log_bytes_per_op"), n("log_block_bytes_per_op"), n("files"))
    case "volume-create-log":
        return String(
            format: "volume-create-log: %.0f log bytes per create (%.0f in whole blocks)", n("log_bytes_per_create"),
            n("log_block_bytes_per_create"))
    case "volume-fsync-overwrite", "volume-fsync-append", "volume-fsync-clean":
        return "\(r.name): "
            + String(
                format: "%.2f flushes per fsync (%.0f to %.0f)", n("flushes_per_fsync"), n("min_flushes_per_fsync"),
                n("max_flushes_per_fsync"))
            + String(
                format: "; %.0f of %.0f fsyncs met a full log and wrote a snapshot; at most %.0f flushes without one",
                n("snapshot_fsyncs"), n("fsyncs_counted"), n("max_flushes_per_fsync_without_snapshot"))
            + "; on an in-memory device \(formatNs(d["memory_ns_per_op"])) per fsync"
    case "volume-fsync-8t":
        return String(
            format: "volume-fsync-8t: %.0f fsyncs/s with 1 thread, %.0f with 8 (%.1f×), %.2f flushes per batch of %.1f fsyncs; "
                + "kernel %.0f and %.0f (%.1f×); in memory %.0f and %.0f (%.1f×)", n("fsyncs_per_s_1_thread"),
            n("fsyncs_per_s_8_threads"), r.ratio ?? 0, n("flushes_per_batch"), n("fsyncs_per_batch"), n("kernel_fsyncs_per_s_1_thread"),
            n("kernel_fsyncs_per_s_8_threads"), n("kernel_scaling"), n("memory_fsyncs_per_s_1_thread"), n("memory_fsyncs_per_s_8_threads"),
            n("memory_scaling"))
    case "volume-overwrite-4k":
        return "volume-overwrite-4k: volume \(formatNs(r.engineNsPerOp)), plain engine \(formatNs(d["plain_ns_per_op"])), "
            + "kernel \(formatNs(d["kernel_ns_per_op"]))"
    case "volume-snapshot":
        return String(format: "volume-snapshot: %.0f inodes; ", n("inodes")) + "on an in-memory device \(formatNs(d["memory_ns"]))"
    case "volume-mount":
        return String(
            format: "volume-mount: the log %.0f MiB, %.2f%% full: %.0f checkpoints, %.0f records replayed", n("log_bytes") / 1_048_576,
            n("log_full_fraction") * 100, n("checkpoints_replayed"), n("records_replayed"))
    default: return nil
    }
}

/// The table's note for a FUSE row: ours beside tmpfs and XFS on a loop device.
private func fuseNote(_ r: BenchResult) -> String? {
    guard r.name.hasPrefix("fuse-"), let ours = r.engineNsPerOp else { return nil }
    let d = r.detail
    let vs = { (label: String, key: String, ratio: String) in
        "\(label) \(formatNs(d[key])) (ratio \(String(format: "%.2f×", d[ratio] ?? 0)))"
    }
    var note =
        "\(r.name): ours \(formatNs(ours)), " + vs("tmpfs", "tmpfs_ns_per_op", "tmpfs_ratio") + ", "
        + vs("XFS on loop", "xfs_ns_per_op", "xfs_ratio")
    if let mib = d["mib_per_s"] {
        note += String(format: "; %.0f MiB/s, tmpfs %.0f, XFS %.0f", mib, d["tmpfs_mib_per_s"] ?? 0, d["xfs_mib_per_s"] ?? 0)
    }
    if let unpinned = d["unpinned_ns_per_op"] {
        note += "; pinned to CPU \(Int(d["cpu"] ?? 0)), unpinned ours \(formatNs(unpinned))"
    }
    if let calls = d["calls_per_s"] { note += String(format: "; %.0f calls/s", calls) }
    return note
}
