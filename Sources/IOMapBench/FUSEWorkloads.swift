// Counterpart: none in the kernel; the FUSE rows of `iomap bench`: the volume mounted with
// `iomap mount` (fs/fuse/ in front of the engine), measured beside tmpfs and XFS on a loop
// device with fio jobs and system-call loops, in one run.
//
// Why it is built this way:
// - The three targets are set up once per group and each row alternates between them round
//   by round (the order rotating), as every other row does, so that a noisy neighbour lands
//   on all three. fio's jobs are a minute each at full size, so the group takes three counted
//   rounds after a warm-up, not five.
// - The XFS image and our volume's image both live on tmpfs, beside the tmpfs target: no
//   row measures a disk, only the path to the page cache (ours: the engine's).
// - fio runs with `--invalidate=0`: a read row reads a cached file on every target, since
//   tmpfs cannot drop its cache and the engine's does not hear fadvise.
// - The pwrite round trip is timed call by call, median per round, with the writer and every
//   daemon thread bound to one CPU (the case a round trip costs least in: no cross-CPU
//   wake-up), the same writer unbound beside it.
// - Before every fio job, the memory the job will need (its bytes and a quarter more) is
//   touched and freed: a virtual machine that hands freed memory back to its host (free page
//   reporting) otherwise makes the first touch of each page a host fault, and a side that
//   reuses its own memory (the engine's folios) would be measured against sides paying that.
// - Rows say why they were skipped (no root, no fio, no loop devices) instead of failing:
//   the group needs a machine that can mount.

import IOMapBase
import IOMapKernelSide

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The rows of the FUSE group, named `fuse-ROW` (default cache) or `fuse-wb-ROW`
/// (`-o cache=writeback`).
public enum FUSERow: String, CaseIterable, Sendable {
    case write4k = "write-4k"
    case write1m = "write-1m"
    case read4k = "read-4k"
    case read1m = "read-1m"
    case randwrite4k = "randwrite-4k"
    case pwrite4k = "pwrite-4k"
    case seekData = "seek-data"
    case create
    case stat
    case unlink

    public func name(writeback: Bool) -> String { (writeback ? "fuse-wb-" : "fuse-") + rawValue }

    /// The fio job of the row: `--rw` and `--bs`; nil for the rows timed here.
    var fio: (rw: String, blockSize: Int)? {
        switch self {
        case .write4k: return ("write", 4 * KiB)
        case .write1m: return ("write", MiB)
        case .read4k: return ("read", 4 * KiB)
        case .read1m: return ("read", MiB)
        case .randwrite4k: return ("randwrite", 4 * KiB)
        default: return nil
        }
    }
}

/// The three directories every FUSE row runs in, ours first.
struct FUSETargets {
    let mount: FUSEBenchMount
    let tmpfs: String
    let xfs: String
    /// Where fio's reports go: beside the targets, never in one.
    let scratch: String

    var directories: [String] { [mount.mountPoint, tmpfs, xfs] }
}

/// The FUSE group counts this many rounds at most, after a warm-up.
private let fuseRepetitions = 3
/// The CPU the pinned round trip runs on.
private let pinnedCPU = 0

extension BenchContext {
    /// The FUSE group, default cache or `cache=writeback`.
    func fuse(writeback: Bool) throws -> [BenchResult] {
        if let why = FUSEBenchHost.unavailable(iomap: iomapExecutable) {
            progress("fuse: skipped: \(why)")
            return FUSERow.allCases.map { row in
                var r = BenchResult(name: row.name(writeback: writeback), goal: goalText(row.name(writeback: writeback)))
                r.skipped = why
                return r
            }
        }
        let base = kernelDir + "/" + benchFileName(writeback ? "fuse-wb" : "fuse")
        let tmpfs = base + "/tmpfs"
        guard mkdir(base, 0o755) == 0, mkdir(tmpfs, 0o755) == 0 else {
            throw BenchFailure("cannot make \(tmpfs): \(Errno(rawValue: errno).symbolicName)")
        }
        defer { HostFiles.remove(base) }
        let imageBytes = 2 * fuseBytes + 512 * MiB
        progress("fuse: making an XFS image of \(imageBytes / MiB) MiB on a loop device")
        let xfs = try LoopMount.make(sizeBytes: imageBytes, fileSystem: .xfs, parent: base)
        defer { for p in xfs.unmount() { progress("fuse: cleanup: \(p)") } }
        let options = writeback ? "cache=writeback" : "cache=direct"
        progress("fuse: iomap mkfs and iomap mount -o \(options)")
        let mount = try FUSEBenchMount(iomap: iomapExecutable!, directory: base, imageBytes: imageBytes, options: options)
        defer { for p in mount.unmount() { progress("fuse: cleanup: \(p)") } }
        let targets = FUSETargets(mount: mount, tmpfs: tmpfs, xfs: xfs.mountPoint, scratch: base)
        var out: [BenchResult] = []
        for row in FUSERow.allCases where row.fio != nil { out.append(try fioRow(row, writeback: writeback, targets)) }
        out.append(try pwriteRow(writeback: writeback, targets))
        out.append(try fuseSeekRow(writeback: writeback, targets))
        out += try namespaceRows(writeback: writeback, targets)
        return out
    }

    /// Runs one warm-up and `fuseRepetitions` counted rounds; each round runs every side once,
    /// the order rotating. A side returns its figures (one per metric); the result is, per
    /// side, per metric, the counted samples.
    func fuseRounds(_ name: String, _ sides: [(Int) throws -> [Double]]) throws -> [[[Double]]] {
        var samples: [[[Double]]] = Array(repeating: [], count: sides.count)
        for round in 0...fuseRepetitions {
            progress("\(name): \(round == 0 ? "warm-up" : "repetition \(round)/\(fuseRepetitions)")")
            for k in 0..<sides.count {
                let i = (k + round) % sides.count
                let figures = try sides[i](round)
                guard figures.allSatisfy({ $0.isFinite && $0 > 0 }) else { throw BenchFailure("\(name): side \(i) measured \(figures)") }
                if round > 0 {
                    if samples[i].isEmpty { samples[i] = Array(repeating: [], count: figures.count) }
                    for (m, x) in figures.enumerated() { samples[i][m].append(x) }
                }
            }
        }
        return samples
    }

    /// A row from the medians of ours, tmpfs and XFS (nanoseconds per operation).
    func fuseResult(_ name: String, ours: Double, tmpfs: Double, xfs: Double) -> BenchResult {
        var r = BenchResult(name: name, goal: goalText(name))
        r.engineNsPerOp = ours
        r.kernelNsPerOp = xfs
        r.ratio = xfs / ours
        r.detail = [
            "tmpfs_ns_per_op": tmpfs, "xfs_ns_per_op": xfs, "tmpfs_ratio": tmpfs / ours, "xfs_ratio": xfs / ours,
            "repetitions": Double(fuseRepetitions),
        ]
        switch name {
        case "fuse-write-1m":
            r.holds = xfs / ours >= 1.0
            r.attainment = xfs / ours
        case "fuse-pwrite-4k":
            r.holds = ours <= 10_000
            r.attainment = 10_000 / ours
        case "fuse-wb-write-4k":
            r.holds = tmpfs / ours >= 0.5
            r.attainment = tmpfs / ours / 0.5
        default: r.holds = true
        }
        return r
    }

    /// A sequential or random fio job of `fuseBytes` on each target: a new file per write
    /// job, checked for its size after; a file laid out once (untimed) for the read jobs.
    func fioRow(_ row: FUSERow, writeback: Bool, _ t: FUSETargets) throws -> BenchResult {
        let name = row.name(writeback: writeback)
        let (rw, bs) = row.fio!
        let reading = rw == "read"
        let files = t.directories.map { $0 + "/" + benchFileName(name) }
        func job(_ file: String, _ rw: String, _ bs: Int) -> [String] {
            [
                "--name=\(name)", "--filename=\(file)", "--rw=\(rw)", "--bs=\(bs)", "--size=\(fuseBytes)", "--ioengine=psync",
                "--fallocate=none", "--invalidate=0", "--end_fsync=0", "--randrepeat=1",
            ]
        }
        if reading {
            progress("\(name): laying out the files")
            for f in files { _ = try Fio.run(job(f, "write", MiB), direction: "write", scratch: t.scratch + "/layout") }
        }
        defer { for f in files { HostFiles.remove(f) } }
        let sides = files.map { file in
            { (_: Int) throws -> [Double] in
                if !reading { HostFiles.remove(file) }
                warmMemory(fuseBytes + fuseBytes / 4)
                let r = try Fio.run(job(file, rw, bs), direction: reading ? "read" : "write", scratch: t.scratch + "/" + name)
                guard r.bytes == fuseBytes else { throw BenchFailure("\(name): fio moved \(r.bytes) of \(fuseBytes) bytes on \(file)") }
                if !reading {
                    var st = Glibc.stat()
                    guard stat(file, &st) == 0, Int(st.st_size) == fuseBytes else {
                        throw BenchFailure("\(name): \(file) is \(st.st_size) bytes after the job, not \(fuseBytes)")
                    }
                    HostFiles.remove(file)
                }
                return [r.nsPerOp]
            }
        }
        let s = try fuseRounds(name, sides)
        var r = fuseResult(name, ours: median(s[0][0]), tmpfs: median(s[1][0]), xfs: median(s[2][0]))
        let mibPerS = { (ns: Double) in Double(bs) / ns * 1e9 / Double(MiB) }
        r.detail["mib_per_s"] = mibPerS(median(s[0][0]))
        r.detail["tmpfs_mib_per_s"] = mibPerS(median(s[1][0]))
        r.detail["xfs_mib_per_s"] = mibPerS(median(s[2][0]))
        r.detail["bytes"] = Double(fuseBytes)
        r.detail["block_bytes"] = Double(bs)
        r.detail["memory_warmed"] = 1
        return r
    }
}

// MARK: - Timed here

extension BenchContext {
    /// The round trip of a 4 KiB pwrite into a cached 1 MiB file, each call timed, median per
    /// round: ours with the writer and the daemon's threads on one CPU (the goal's case),
    /// tmpfs and XFS with the writer on that CPU, and ours again unbound.
    func pwriteRow(writeback: Bool, _ t: FUSETargets) throws -> BenchResult {
        let name = FUSERow.pwrite4k.name(writeback: writeback)
        let calls = max(256, 20_000 / scale)
        let src = sourceBuffer(opSize: 4 * KiB)
        var times = [Double](repeating: 0, count: calls)
        func side(_ dir: String, pin: Bool, daemon: Bool) -> (Int) throws -> [Double] {
            { round in
                src.fill(tag: round + 1)
                let f = try benchCall("create in \(dir)") { () throws(Errno) in try KernelFile(directory: dir, name: benchFileName(name)) }
                defer { f.unlink() }
                _ = try kernelWrites(f, src, size: MiB, opSize: MiB)
                if pin {
                    if let e = FUSEBenchHost.bind(cpu: pinnedCPU) {
                        throw BenchFailure("\(name): binding to CPU \(pinnedCPU): \(e.symbolicName)")
                    }
                    if daemon { t.mount.bindDaemon(cpu: pinnedCPU) }
                }
                defer {
                    if pin {
                        _ = FUSEBenchHost.bind(cpu: nil)
                        if daemon { t.mount.bindDaemon(cpu: nil) }
                    }
                }
                try timePwrites(f, src, into: &times)
                try checkKernel("\(name) on \(dir)", f, src, size: MiB)
                return [median(times)]
            }
        }
        let s = try fuseRounds(
            name,
            [
                side(t.mount.mountPoint, pin: true, daemon: true), side(t.tmpfs, pin: true, daemon: false),
                side(t.xfs, pin: true, daemon: false), side(t.mount.mountPoint, pin: false, daemon: false),
            ])
        var r = fuseResult(name, ours: median(s[0][0]), tmpfs: median(s[1][0]), xfs: median(s[2][0]))
        r.detail["unpinned_ns_per_op"] = median(s[3][0])
        r.detail["calls"] = Double(calls)
        r.detail["cpu"] = Double(pinnedCPU)
        return r
    }

    /// SEEK_DATA from inside each hole of a file with a 64 KiB run of data at every MiB
    /// (written and fsync'd first, which the writeback cache needs), every answer checked.
    func fuseSeekRow(writeback: Bool, _ t: FUSETargets) throws -> BenchResult {
        let name = FUSERow.seekData.name(writeback: writeback)
        let runs = max(2, fuseBytes / MiB)
        let passes = max(1, (20_000 / scale) / (runs - 1))
        let src = sourceBuffer(opSize: 64 * KiB)
        let files = try t.directories.map { dir in
            let f = try benchCall("create in \(dir)") { () throws(Errno) in try KernelFile(directory: dir, name: benchFileName(name)) }
            for k in 0..<runs { _ = try f.pwriteAll(src.bytes(forFileOffset: k * MiB, length: 64 * KiB), at: k * MiB) }
            _ = try f.check("ftruncate", f.truncate(to: runs * MiB))
            _ = try f.check("fsync", f.fsync())
            return f
        }
        defer { for f in files { f.unlink() } }
        let sides = files.map { f in
            { (_: Int) throws -> [Double] in
                var wrong: (Int, Int64)?
                let ns = timed {
                    for _ in 0..<passes {
                        for k in 0..<(runs - 1) {
                            let got = f.seekRaw(data: true, from: k * MiB + 64 * KiB)
                            if got != Int64((k + 1) * MiB) && wrong == nil { wrong = (k, got) }
                        }
                    }
                }
                if let (k, got) = wrong {
                    throw BenchFailure("\(name): SEEK_DATA from \(k * MiB + 64 * KiB) in \(f.path) gave \(got), not \((k + 1) * MiB)")
                }
                return [ns / Double(passes * (runs - 1))]
            }
        }
        let s = try fuseRounds(name, sides)
        var r = fuseResult(name, ours: median(s[0][0]), tmpfs: median(s[1][0]), xfs: median(s[2][0]))
        r.detail["calls_per_s"] = 1e9 / median(s[0][0])
        r.detail["extents"] = Double(runs)
        return r
    }

    /// 10,000 files (1/16 with --quick) created (open O_CREAT|O_EXCL, close), stat'd and
    /// unlinked in a new directory of each target, each call of a timed loop.
    func namespaceRows(writeback: Bool, _ t: FUSETargets) throws -> [BenchResult] {
        let files = 10_000 / scale
        let sides = t.directories.map { dir in
            { (round: Int) throws -> [Double] in
                let d = dir + "/" + benchFileName("ns-\(round)")
                guard mkdir(d, 0o755) == 0 else { throw BenchFailure("mkdir \(d): \(Errno(rawValue: errno).symbolicName)") }
                defer { rmdir(d) }
                let paths = (0..<files).map { d + "/f\($0)" }
                return try namespaceLoops(paths)
            }
        }
        let s = try fuseRounds("fuse\(writeback ? "-wb" : "")-namespace", sides)
        return [FUSERow.create, .stat, .unlink].enumerated().map { m, row in
            var r = fuseResult(row.name(writeback: writeback), ours: median(s[0][m]), tmpfs: median(s[1][m]), xfs: median(s[2][m]))
            r.detail["files"] = Double(files)
            return r
        }
    }
}

/// Touches `bytes` of new memory and frees it, so that the pages are the guest kernel's free
/// pages again (not yet handed back to the host) when the next job allocates.
private func warmMemory(_ bytes: Int) {
    guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else { return }
    // MADV_HUGEPAGE (14; Glibc hides it behind _GNU_SOURCE): 2 MiB faults touch it faster
    // where transparent huge pages are `madvise`.
    _ = madvise(p, bytes, 14)
    memset(p, 1, bytes)
    munmap(p, bytes)
}

/// Times each of `times.count` 4 KiB pwrites over the first MiB of `f`, one by one.
@inline(never)
private func timePwrites(_ f: KernelFile, _ src: PatternBuffer, into times: inout [Double]) throws {
    for i in times.indices {
        let off = (i * 4 * KiB) % MiB
        let bytes = src.bytes(forFileOffset: off, length: 4 * KiB)
        let t0 = monotonicNs()
        let n = try f.pwriteAll(bytes, at: off)
        times[i] = Double(monotonicNs() &- t0)
        if n != 4 * KiB { throw BenchFailure("pwrite at \(off) wrote \(n) of 4096 bytes") }
    }
}

/// The create, stat and unlink loops over `paths`: nanoseconds per call of each.
@inline(never)
private func namespaceLoops(_ paths: [String]) throws -> [Double] {
    let create = try timed {
        for p in paths { if let e = HostFiles.createExclusive(p) { throw BenchFailure("create \(p): \(e.symbolicName)") } }
    }
    var st = Glibc.stat()
    let statNs = try timed {
        for p in paths where stat(p, &st) != 0 { throw BenchFailure("stat \(p): \(Errno(rawValue: errno).symbolicName)") }
    }
    let unlinkNs = try timed {
        for p in paths { if let e = HostFiles.unlinkFile(p) { throw BenchFailure("unlink \(p): \(e.symbolicName)") } }
    }
    let n = Double(paths.count)
    return [create / n, statNs / n, unlinkNs / n]
}

/// A call that throws an errno, as a benchmark failure naming what it was doing.
func benchCall<T>(_ what: String, _ body: () throws(Errno) -> T) throws -> T {
    do throws(Errno) { return try body() } catch { throw BenchFailure("\(what): \(error.symbolicName)") }
}
