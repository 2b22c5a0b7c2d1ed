// Counterpart: none in the kernel; the harness resembles fio (and dd for the memcpy line):
// each workload runs the engine in-process and, with the same sizes and the same bytes, a
// real file through syscalls, in one process and one run, so that both sides see the same
// machine, the same CPU frequency and the same memory state.
//
// Why it is built this way:
// - Engine and kernel runs alternate within every repetition (and the order rotates), so
//   a drift in the machine (a noisy neighbour, thermal throttling, the page cache filling)
//   lands on both sides instead of on whichever ran last.
// - One warm-up run per side is thrown away: the first run pays for page faults in the
//   harness's own buffers, for the allocator growing its arenas and for cold caches.
// - Medians, not means: one descheduled repetition on a shared 2-core machine would move a
//   mean by tens of percent and a median not at all.
// - A memcpy of the same bytes with the same operation size and count is the floor for any
//   buffered write or read path; showing it beside the two gives the ratios a scale.
// - After every run a sample of the bytes is read back and compared, so a path that got
//   faster by not doing its work fails the run instead of winning it.
//
// The clock is read here, in test support; the engine itself never reads one.

import ExtentFS
import IOMapBase
import IOMapKernelSide
import IOMapTesting

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

// MARK: - Configuration and results

/// The workloads, by the names `--only` accepts.
public enum BenchWorkload: String, CaseIterable, Sendable {
    case overwrite4k = "overwrite-4k"
    case append4k = "append-4k"
    case append1m = "append-1m"
    case read4k = "read-4k"
    case seekData = "seek-data"
    case seekHole = "seek-hole"
    case cleanup
    case writebackFsync = "writeback-fsync"
    case liveHooks = "live-hooks"
    case memory
    case volumeOverwrite4k = "volume-overwrite-4k"
    case volumeNamespace = "volume-namespace"
    case volumeFsync = "volume-fsync"
    case volumeFsync8t = "volume-fsync-8t"
    case volumeSnapshot = "volume-snapshot"
    case volumeMkfs = "volume-mkfs"
    case volumeMount = "volume-mount"
    case fuse
    case fuseWriteback = "fuse-writeback"
    case scalingThreads = "scaling-threads"
    case scalingExtents = "scaling-extents"
    case scalingCache = "scaling-cache"
    case scalingFiles = "scaling-files"

    /// The result rows the workload produces: memory has two goals, one per folio size; the
    /// namespace workload one per call (and the log bytes of a create); volume-fsync one per
    /// kind of fsync. The scaling workloads have no rows: they draw curves (`curveNames`).
    public var rowNames: [String] {
        switch self {
        case _ where isScaling: return []
        case .memory: return ["memory-4k", "memory-2m"]
        case .volumeNamespace: return ["volume-create", "volume-create-log", "volume-setattr", "volume-rename", "volume-unlink"]
        case .volumeFsync: return ["volume-fsync-overwrite", "volume-fsync-append", "volume-fsync-clean"]
        case .fuse: return FUSERow.allCases.map { $0.name(writeback: false) }
        case .fuseWriteback: return FUSERow.allCases.map { $0.name(writeback: true) }
        default: return [rawValue]
        }
    }

    /// Whether the workload puts files in the disk directory (`BenchConfig.diskDirectory`):
    /// the rows whose flushes or whole-device writes must land on a real disk.
    public var needsDiskDirectory: Bool {
        switch self {
        case .writebackFsync, .volumeFsync, .volumeFsync8t, .volumeSnapshot, .volumeMkfs, .volumeMount: return true
        default: return false
        }
    }

    /// What a run without `--only` runs: every workload but the FUSE group, which mounts
    /// file systems, needs root and takes minutes (`--only fuse,fuse-writeback` or `--fuse`).
    public static var defaultWorkloads: [BenchWorkload] { allCases.filter { !$0.isFUSE } }

    /// The FUSE group: our mount beside tmpfs and XFS on a loop device.
    public var isFUSE: Bool { self == .fuse || self == .fuseWriteback }

    /// Parses a comma-separated list; `memory-4k` and `memory-2m` name the memory workload,
    /// any row names its workload, and a name ending in `*` names every workload whose name
    /// or a row's starts with what precedes it (`fuse-*`). Returns the workloads in run
    /// order, or the names it did not know.
    public static func parse(_ list: String) -> Result<[BenchWorkload], BenchUsageError> {
        var chosen = Set<BenchWorkload>()
        var unknown: [String] = []
        for raw in list.split(separator: ",", omittingEmptySubsequences: false) {
            let name = String(raw.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
            if name.hasSuffix("*") {
                let prefix = name.dropLast()
                let matched = allCases.filter { w in ([w.rawValue] + w.rowNames + w.curveNames).contains { $0.hasPrefix(prefix) } }
                if matched.isEmpty { unknown.append(name) }
                chosen.formUnion(matched)
            } else if let w = BenchWorkload(rawValue: name) {
                chosen.insert(w)
            } else if let w = allCases.first(where: { $0.rowNames.contains(name) || $0.curveNames.contains(name) }) {
                chosen.insert(w)
            } else {
                unknown.append(name)
            }
        }
        if !unknown.isEmpty {
            let known = allCases.map(\.rawValue).joined(separator: ", ")
            let names = unknown.map { "'\($0)'" }.joined(separator: ", ")
            return .failure(BenchUsageError("--only: unknown workload \(names); workloads are \(known)"))
        }
        return .success(allCases.filter { chosen.contains($0) })
    }
}

public struct BenchUsageError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// How a benchmark run is set up.
public struct BenchConfig: Sendable {
    /// Every workload at 1/16 of its size (what the test suite runs).
    public var quick = false
    /// The workloads to run, in run order.
    public var workloads: [BenchWorkload] = BenchWorkload.defaultWorkloads
    /// Where the kernel-side files go (nil: a new directory on tmpfs, /dev/shm when present).
    public var kernelDirectory: String?
    /// Where writeback-fsync's device image and kernel file go, and the volume rows' device
    /// images and kernel files (nil: a new directory on the root file system).
    public var diskDirectory: String?
    /// Counted repetitions per side, after one warm-up.
    public var repetitions = 5
    /// Runs one memory measurement in a fresh process (the tool starts itself). Without it
    /// the measurement runs in this process, where memory freed by earlier workloads and
    /// kept by the folio allocator for reuse hides growth.
    public var memoryProbe: (@Sendable (BenchMemoryProbe) throws -> BenchMemorySample)?
    /// The `iomap` executable the FUSE rows mount with (the tool passes itself); nil: those
    /// rows are skipped, saying so.
    public var iomapExecutable: String?
    /// The bytes of the FUSE rows' fio jobs (nil: 1 GiB, 64 MiB with `quick`).
    public var fuseBytes: Int?
    /// A canary for the scaling workloads' checks: one check of each compares with an
    /// expected value off by one, so every scaling workload must fail (the tests show that
    /// their checks bite).
    public var scalingCanary = false

    public init(quick: Bool = false) { self.quick = quick }

    /// The divisor applied to every size.
    var scale: Int { quick ? 16 : 1 }
}

/// One row of the report. Times are medians in nanoseconds per operation; nil where the
/// workload has no such side.
public struct BenchResult: Sendable {
    public var name: String
    public var engineNsPerOp: Double?
    public var kernelNsPerOp: Double?
    public var memcpyNsPerOp: Double?
    /// kernel / engine where there is a kernel side; cleanup: the largest range's time over
    /// the smallest's; live-hooks: hooked / live - 1; memory: the overhead fraction.
    public var ratio: Double?
    /// How far the row is toward its goal, 1 exactly at it and above 1 beyond it (ratio /
    /// the least ratio accepted; for own-work goals, the most accepted / ownWork): what
    /// `--plot` draws. Nil for rows whose goal is not one number.
    public var attainment: Double?
    /// The engine's own work beside the kernel's, the copy taken out of both:
    /// (engine - memcpy) / (kernel - memcpy), for the rows with all three sides.
    public var ownWork: Double?
    public var goal: String
    public var holds: Bool
    /// Further named numbers (cleanup's per-size times, memory's byte counts, ...).
    public var detail: [String: Double] = [:]
    /// Why the workload could not run correctly; the run then exits 1.
    public var error: String?
    /// Why the row was not measured on this machine (no root, no fio, ...): not a failure.
    public var skipped: String?

    public init(name: String, goal: String) {
        self.name = name
        self.goal = goal
        self.holds = false
    }
}

/// One point of a scaling curve: the engine and the kernel doing the same thing at one
/// size of the axis (1 or 2 threads, 10^3 or 10^6 extents, ...).
public struct BenchScalingPoint: Sendable {
    /// Where on the axis: threads, extents, cached bytes or files.
    public var x: Double
    /// How the point is named in the table ("2 threads, one file", "1GiB").
    public var label: String
    public var engineNsPerOp: Double?
    public var kernelNsPerOp: Double?

    public init(x: Double, label: String, engineNsPerOp: Double?, kernelNsPerOp: Double?) {
        self.x = x
        self.label = label
        self.engineNsPerOp = engineNsPerOp
        self.kernelNsPerOp = kernelNsPerOp
    }
}

/// How the cost of one operation grows along one axis, for the engine and the kernel.
public struct BenchScaling: Sendable {
    /// The curve's name ("threads-overwrite-4k", "extents-seek-data", ...).
    public var name: String
    /// What `x` counts: "threads", "extents", "cached bytes" or "files".
    public var axis: String
    public var goal: String
    public var holds: Bool
    public var points: [BenchScalingPoint]
    /// Further named numbers (the ratio the goal is checked on, ...).
    public var detail: [String: Double] = [:]
    /// Why the curve could not be measured correctly; the run then exits 1.
    public var error: String?
    /// Why it was not measured on this machine: not a failure.
    public var skipped: String?

    public init(name: String, axis: String, goal: String, points: [BenchScalingPoint] = []) {
        self.name = name
        self.axis = axis
        self.goal = goal
        self.holds = false
        self.points = points
    }
}

/// What a benchmark run measured.
public struct BenchReport: Sendable {
    public var results: [BenchResult] = []
    /// The scaling curves, from the workloads that draw them.
    public var scaling: [BenchScaling] = []
    public var kernelDirFSType = ""
    public var diskDirFSType = ""
    public var kernelDirectory = ""
    public var diskDirectory = ""
    public var repetitions = 0
    public var quick = false
    public var elapsedSeconds = 0.0

    /// The rows whose workload could not run correctly.
    public var failures: [BenchResult] { results.filter { $0.error != nil } }
    /// The scaling curves that could not be measured correctly.
    public var scalingFailures: [BenchScaling] { scaling.filter { $0.error != nil } }
}

/// A workload that could not run correctly: a data check failed or an operation errored.
struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The run could not be set up (a directory could not be made or written).
public struct BenchSetupError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}

// MARK: - The run

/// Runs the configured workloads; `progress` gets one line per step (the tool prints them on
/// standard error). Directories the run creates are removed before it returns.
public func runBench(_ config: BenchConfig, progress: @escaping (String) -> Void = { _ in }) throws(BenchSetupError) -> BenchReport {
    let start = ContinuousClock.now
    var created: [String] = []
    defer { for dir in created { HostFiles.remove(dir) } }

    var kernelDir = config.kernelDirectory ?? ""
    if kernelDir.isEmpty {
        kernelDir = try makeBenchDirectory(disk: false)
        created.append(kernelDir)
    }
    var diskDir = config.diskDirectory ?? ""
    if diskDir.isEmpty && config.workloads.contains(where: \.needsDiskDirectory) {
        diskDir = try makeBenchDirectory(disk: true)
        created.append(diskDir)
    }

    var report = BenchReport()
    report.repetitions = config.repetitions
    report.quick = config.quick
    report.kernelDirectory = kernelDir
    report.kernelDirFSType = try fileSystemType(of: kernelDir)
    if !diskDir.isEmpty {
        report.diskDirectory = diskDir
        report.diskDirFSType = try fileSystemType(of: diskDir)
    }
    let context = BenchContext(
        scale: config.scale, repetitions: config.repetitions, kernelDir: kernelDir, diskDir: diskDir,
        memoryProbe: config.memoryProbe, progress: progress, iomapExecutable: config.iomapExecutable,
        fuseBytes: config.fuseBytes ?? GiB / config.scale, canary: config.scalingCanary ? 1 : 0)
    for workload in config.workloads {
        progress("\(workload.rawValue): starting")
        let began = ContinuousClock.now
        if workload.isScaling {
            do {
                report.scaling += try context.runScaling(workload)
            } catch {
                progress("\(workload.rawValue): FAILED: \(error)")
                report.scaling += workload.curveNames.map { failedCurve($0, error) }
            }
        } else {
            runRows(workload, context, into: &report, progress: progress)
        }
        progress("\(workload.rawValue): done in \(formatFixed(seconds(since: began), digits: 1)) s")
    }
    report.elapsedSeconds = seconds(since: start)
    return report
}

/// Runs a workload that produces rows; a thrown error becomes every row's error.
private func runRows(_ workload: BenchWorkload, _ context: BenchContext, into report: inout BenchReport, progress: (String) -> Void) {
    do {
        report.results += try context.run(workload)
    } catch {
        progress("\(workload.rawValue): FAILED: \(error)")
        report.results += workload.rowNames.map { name in
            var r = BenchResult(name: name, goal: goalText(name))
            r.error = "\(error)"
            return r
        }
    }
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let d = ContinuousClock.now - start
    return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

/// Makes a new directory for a run's files: for the kernel side on tmpfs (/dev/shm when
/// present), so that the kernel rows measure the page cache and not a disk; for
/// writeback-fsync (`disk`) in /var/tmp rather than /tmp, which is tmpfs on many systems.
public func makeBenchDirectory(disk: Bool) throws(BenchSetupError) -> String {
    let parent =
        disk
        ? (HostFiles.isWritable("/var/tmp") ? "/var/tmp" : HostFiles.temporaryDirectory)
        : (HostFiles.exists("/dev/shm") ? "/dev/shm" : HostFiles.temporaryDirectory)
    switch HostFiles.makeUniqueDirectory(in: parent, prefix: "iomap-bench") {
    case .success(let path): return path
    case .failure(let e): throw BenchSetupError(e.description)
    }
}

/// The prefix of every file this process's runs make in a directory: with the process id in
/// it, runs sharing a directory do not open each other's files, and an interrupted run's
/// files are found without touching anybody else's.
public var benchFilePrefix: String { "iomap-bench-\(getpid())-" }

func benchFileName(_ role: String) -> String { benchFilePrefix + role }

/// The statfs type name of `directory`, found by creating (and removing) a probe file, which
/// also proves the directory writable.
public func fileSystemType(of directory: String) throws(BenchSetupError) -> String {
    let name = benchFileName("probe")
    do {
        let probe = try KernelFile(directory: directory, name: name)
        defer { probe.unlink() }
        return probe.fileSystemType
    } catch {
        throw BenchSetupError("cannot create a file in \(directory): \(error.symbolicName)")
    }
}

/// What every workload needs: sizes, repetitions, directories and the progress sink.
struct BenchContext {
    let scale: Int
    let repetitions: Int
    let kernelDir: String
    let diskDir: String
    let memoryProbe: (@Sendable (BenchMemoryProbe) throws -> BenchMemorySample)?
    let progress: (String) -> Void
    let iomapExecutable: String?
    let fuseBytes: Int
    /// Added to the scaling workloads' expected values: 0, or 1 for the canary.
    let canary: Int

    func run(_ workload: BenchWorkload) throws -> [BenchResult] {
        switch workload {
        case .overwrite4k: return [try overwrite4k()]
        case .append4k: return [try append(opSize: 4096, name: workload.rawValue)]
        case .append1m: return [try append(opSize: 1 << 20, name: workload.rawValue)]
        case .read4k: return [try read4k()]
        case .seekData: return [try seek(data: true)]
        case .seekHole: return [try seek(data: false)]
        case .cleanup: return [try cleanup()]
        case .writebackFsync: return [try writebackFsync()]
        case .liveHooks: return [try liveHooks()]
        case .memory: return try memory()
        case .volumeOverwrite4k: return [try volumeOverwrite4k()]
        case .volumeNamespace: return try volumeNamespace()
        case .volumeFsync: return try volumeFsync()
        case .volumeFsync8t: return [try volumeFsync8t()]
        case .volumeSnapshot: return [try volumeSnapshot()]
        case .volumeMkfs: return [try volumeMkfs()]
        case .volumeMount: return [try volumeMount()]
        case .fuse: return try fuse(writeback: false)
        case .fuseWriteback: return try fuse(writeback: true)
        // The scaling workloads draw curves, not rows (runScaling).
        case .scalingThreads, .scalingExtents, .scalingCache, .scalingFiles: return []
        }
    }

    /// Runs one warm-up and then `repetitions` counted rounds; in every round each side runs
    /// once, the order rotating from round to round. Each side gets the round number (0 is
    /// the warm-up), from which it derives its data, and returns its nanoseconds per
    /// operation. Returns the counted samples, one array per side.
    func alternate(_ name: String, _ sides: [(Int) throws -> Double]) throws -> [[Double]] {
        var samples = Array(repeating: [Double](), count: sides.count)
        for round in 0...repetitions {
            let label = round == 0 ? "warm-up" : "repetition \(round)/\(repetitions)"
            progress("\(name): \(label)")
            for k in 0..<sides.count {
                let i = (k + round) % sides.count
                let ns = try sides[i](round)
                guard ns.isFinite && ns > 0 else { throw BenchFailure("\(name): side \(i) measured \(ns) ns per op") }
                if round > 0 { samples[i].append(ns) }
            }
        }
        return samples
    }
}

/// The goal of each row, as the issue states it.
func goalText(_ row: String) -> String {
    switch row {
    case "overwrite-4k", "read-4k": return "own work ≤ 0.25× kernel's"
    case "append-4k": return "engine ≥ 1.5× kernel"
    case "append-1m": return "engine ≥ 1.0× kernel"
    case "seek-data", "seek-hole": return "engine ≥ 5× kernel"
    case "cleanup": return "1 TiB ≤ 2× 1 MiB"
    case "writeback-fsync": return "engine ≥ 0.9× kernel"
    case "live-hooks": return "cost ≤ 2%"
    case "memory-4k": return "overhead ≤ 3%"
    case "memory-2m": return "overhead ≤ 0.5%"
    case "volume-overwrite-4k": return "volume ≥ 0.95× plain engine"
    case "volume-create", "volume-setattr", "volume-rename", "volume-unlink": return "≤ 5 µs, no synchronous I/O"
    case "volume-create-log": return "≤ 300 log bytes per create"
    case "volume-fsync-overwrite": return "1 flush per fsync"
    case "volume-fsync-append": return "≤ 2 flushes per fsync"
    case "volume-fsync-clean": return "0 flushes per fsync"
    case "volume-fsync-8t": return "8 threads ≥ 4× 1 thread's fsyncs/s, ≤ 2 flushes per batch"
    case "volume-snapshot": return "100,000 inodes ≤ 0.5 s"
    case "volume-mkfs": return "1 GiB ≤ 1 s"
    case "volume-mount": return "full 64 MiB log ≤ 1 s"
    case "fuse-write-1m": return "≥ 1.0× XFS on loop"
    case "fuse-pwrite-4k": return "≤ 10 µs median, writer and daemon on one CPU"
    case "fuse-wb-write-4k": return "≥ 0.5× tmpfs"
    case _ where row.hasPrefix("fuse-"): return "none (reported)"
    default: return ""
    }
}

// MARK: - Statistics and clocks

func median(_ values: [Double]) -> Double {
    precondition(!values.isEmpty, "median of nothing")
    let s = values.sorted()
    let n = s.count
    return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
}

/// CLOCK_MONOTONIC in nanoseconds: a vDSO call, cheap enough to bracket a whole timed loop.
@inline(__always)
func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Nanoseconds `body` took.
@inline(__always)
func timed(_ body: () throws -> Void) rethrows -> Double {
    let t0 = monotonicNs()
    try body()
    return Double(monotonicNs() &- t0)
}

// MARK: - Data

/// A page-aligned source buffer whose bytes are a function of their index and a tag; each
/// run uses a new tag, so reading back the previous run's bytes is caught.
final class PatternBuffer {
    let count: Int
    let base: UnsafeMutableRawPointer
    private(set) var tag = 0

    init(count: Int) {
        self.count = count
        var p: UnsafeMutableRawPointer?
        precondition(posix_memalign(&p, 4096, count) == 0 && p != nil, "cannot allocate \(count) bytes")
        base = p!
        fill(tag: 0)
    }

    deinit { free(base) }

    @inline(__always)
    static func byte(_ i: Int, tag: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: i &* 131 &+ tag &* 7 &+ (i >> 12) &+ (i >> 20) &* 13)
    }

    func fill(tag: Int) {
        self.tag = tag
        let p = base.assumingMemoryBound(to: UInt8.self)
        for i in 0..<count { p[i] = Self.byte(i, tag: tag) }
    }

    /// The `length` source bytes of an operation at file offset `offset`: the buffer is
    /// used cyclically, so file byte `o` holds source byte `o % count`.
    @inline(__always)
    func bytes(forFileOffset offset: Int, length: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + offset % count, count: length)
    }

    /// What file byte `offset` holds after a run with the current tag.
    func expected(atFileOffset offset: Int) -> UInt8 { Self.byte(offset % count, tag: tag) }
}

/// Offsets spread over `[0, size)` to check after a run: both ends and 62 between.
func sampleOffsets(size: Int, length: Int = 16) -> [Int] {
    let last = size - length
    var out = [0, last]
    var x: UInt64 = 0x9E37_79B9_7F4A_7C15
    for _ in 0..<62 {
        x = x &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        out.append(Int((x >> 16) % UInt64(last + 1)))
    }
    return out
}

/// Compares `read(offset, 16)` with the expected bytes at every sample offset.
func checkSamples(
    _ what: String, size: Int, expected: (Int) -> UInt8, read: (Int, Int) throws -> [UInt8]
) throws {
    for offset in sampleOffsets(size: size) {
        let got = try read(offset, 16)
        let want = (0..<16).map { expected(offset + $0) }
        if got != want {
            let message = "\(what): data check failed at offset \(offset): read \(hex(got)), expected \(hex(want))"
            throw BenchFailure(PoisonCheck.describe(message, got: got, expected: want, fileOffset: offset) { offset + $0 })
        }
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { b in
        let s = String(b, radix: 16)
        return b < 16 ? "0" + s : s
    }.joined(separator: " ")
}

// MARK: - Kernel side

extension KernelFile {
    /// pwrite of raw bytes, which the benchmark needs to keep array bridging out of the timed
    /// loops; returns the bytes written or throws the errno.
    @inline(__always)
    func pwriteAll(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws -> Int {
        switch pwrite(raw: bytes, at: offset) {
        case .success(let n): return n
        case .failure(let e): throw BenchFailure("pwrite(\(path), \(bytes.count) bytes at \(offset)): \(e.symbolicName)")
        }
    }

    @inline(__always)
    func preadAll(_ buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
        switch pread(raw: buffer, at: offset) {
        case .success(let n): return n
        case .failure(let e): throw BenchFailure("pread(\(path), \(buffer.count) bytes at \(offset)): \(e.symbolicName)")
        }
    }

    func check<T>(_ what: String, _ result: Result<T, Errno>) throws -> T {
        switch result {
        case .success(let v): return v
        case .failure(let e): throw BenchFailure("\(what) on \(path): \(e.symbolicName)")
        }
    }
}

// MARK: - Resident memory

/// A field of /proc/self/status in bytes (VmRSS, VmHWM), or nil where there is none.
func procStatusBytes(_ field: String) -> Int? {
    guard let text = HostFiles.contents("/proc/self/status") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
        let digits = line.dropFirst(field.count + 1).filter(\.isNumber)
        return Int(digits).map { $0 * 1024 }
    }
    return nil
}

/// Resets VmHWM to the current RSS (clear_refs 5), so the peak measured next belongs to the
/// next step only. False where the kernel does not allow it.
func resetPeakRSS() -> Bool {
    let fd = open("/proc/self/clear_refs", O_WRONLY)
    if fd < 0 { return false }
    defer { close(fd) }
    return write(fd, "5", 1) == 1
}
