// Counterpart: fstests' fsstress and fsx run with several processes on one file: random
// operations from real threads at once, each checked against a model.
//
// Each worker thread owns a region of one shared file and runs random operations inside it:
// buffered writes with injected faults and unreadable user buffers, stores and loads through
// the mapping, reads, punch hole, zero range, fallocate, fsync, and (for the worker owning
// the last region) truncate and writes that move EOF. Regions are deliberately not
// aligned to blocks, pages or folios, so neighbours share folios and blocks: one worker's
// failure cleanup walks folios another worker dirtied, its punch writes back and drops
// another's pages, and writeback and reclaim threads run across all of them. Because the
// regions are disjoint in bytes, each worker's model predicts its own bytes exactly
// whatever the others do. At quiet points, all workers and background threads stop and the
// invariants of docs/KERNEL-MODEL.md §8 are checked; at the end the whole file is compared, then
// written back, dropped from the cache and compared again.
//
// Threads run for real, so a run is not replayable step by step; the seed fixes every
// worker's operations and data and is printed with the configuration.

import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Synchronization

/// How a threaded stress run is set up.
public struct StressConfig: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var workers = 3
    public var opsPerWorker = 2000
    /// Bytes each worker owns; not a multiple of the block size, so neighbours share blocks.
    public var regionSize = 45_000
    public var blockSize = 1024
    public var maxFolioSize = 16 << 10
    public var policy: CleanupPolicy = .preserveDirty
    /// The engine's file system alone, or a file of a volume.
    public var backing: FileBacking = .engine
    /// Stop everything and check the invariants every this many operations per worker.
    public var quietEvery = 200
    /// Test the checker: a rogue thread keeps changing bytes of worker 0's region behind its
    /// back, which the run must report.
    public var rogueStore = false

    public init(seed: UInt64) { self.seed = seed }

    public var description: String {
        "StressConfig(seed: \(seed), workers: \(workers), opsPerWorker: \(opsPerWorker), regionSize: \(regionSize), "
            + "blockSize: \(blockSize), maxFolioSize: \(maxFolioSize), policy: .\(policy), quietEvery: \(quietEvery)"
            + "\(rogueStore ? ", rogueStore: true" : "")\(backing == .volume ? ", backing: .volume" : ""))"
    }

    /// The file offset where worker `w`'s region starts.
    func regionStart(_ w: Int) -> Int { w * regionSize }
    /// The last worker owns the region that holds EOF.
    var tailStart: Int { regionStart(workers - 1) }
}

/// What a threaded stress run found.
public struct StressReport: Sendable, ReportsWriteFailures {
    public var config: StressConfig
    public var opsRun = 0
    public var opsByKind: [String: Int] = [:]
    public var writeFailures = WriteFailureCounts()
    public var quietChecks = 0
    public var writebackPasses = 0
    public var violation: String?
    public var elapsedSeconds = 0.0
}

/// State the threads of one stress run share.
final class StressShared: Sendable {
    let violation = HarnessMutex<String?>(nil)
    let stopBackground = Atomic<Bool>(false)
    /// Held by the flusher and the reclaimer around each pass; the quiet-point checker takes
    /// both to stop them.
    let flusherGate = HarnessMutex<Int>(0)
    let reclaimerGate = HarnessMutex<Int>(0)
    let ops = HarnessMutex<[String: Int]>([:])
    let failedWrites = Atomic<Int>(0)
    let shortWrites = Atomic<Int>(0)
    let quietChecks = Atomic<Int>(0)
    let models = HarnessMutex<[Int: FileModel]>([:])

    var failed: Bool { violation.withLock { $0 != nil } }

    func fail(_ what: String) {
        violation.withLock { if $0 == nil { $0 = what } }
    }
}

/// Runs the threaded stress workload; see the file comment.
public func runThreadedStress(_ config: StressConfig) -> StressReport {
    precondition(config.workers >= 1 && config.regionSize >= 4096 && config.quietEvery >= 1)
    var report = StressReport(config: config)
    let start = ContinuousClock.now
    let injector = FaultInjector(
        seed: config.seed ^ 0x5757,
        rates: [
            .shortCopy: 0.04, .zeroCopy: 0.02, .reserveENOSPC: 0.01, .staleBeforeFolioLock: 0.02, .staleMidMapping: 0.03,
        ])
    let fileSystem = TestFileSystem(
        config.backing, dataBytes: 64 << 20,
        config: ExtentFSConfig(
            blockSize: config.blockSize, maxFolioSize: config.maxFolioSize, cleanupPolicy: config.policy,
            environment: IOMapEnvironment(faults: injector)))
    let fs = fileSystem.fs
    let file = fileSystem.createFile()
    let shared = StressShared()
    if config.tailStart > 0 {
        do throws(Errno) { try file.truncate(to: config.tailStart) } catch { shared.fail("initial truncate: \(error.symbolicName)") }
    }

    let background = [
        JoinableThread { FaultInjector.exempting { stressFlusher(file, config, shared) } },
        JoinableThread { FaultInjector.exempting { stressReclaimer(file, config, shared) } },
    ]
    let barrier = ThreadBarrier(count: config.workers)
    runOnThreads(config.workers) { w in
        var worker = StressWorker(file: file, config: config, index: w, shared: shared)
        for op in 0..<config.opsPerWorker {
            if !shared.failed { worker.step(op) }
            if (op + 1) % config.quietEvery == 0 {
                barrier.wait()
                if w == 0 && !shared.failed {
                    FaultInjector.exempting { stressQuietCheck(file, fs, shared, "after \(op + 1) ops per worker") }
                }
                barrier.wait()
                if !shared.failed { worker.checkRegion("whole-region check after \(op + 1) ops") }
            }
        }
        shared.models.withLock { $0[w] = worker.model }
        shared.ops.withLock { ops in for (k, n) in worker.opsByKind { ops[k, default: 0] += n } }
    }
    shared.stopBackground.store(true, ordering: .relaxed)
    for t in background { t.join() }

    if !shared.failed {
        FaultInjector.exempting { stressFinalCheck(file, fs, config, shared) }
    }
    report.violation = shared.violation.withLock { $0 }
    report.opsByKind = shared.ops.withLock { $0 }
    report.opsRun = report.opsByKind.values.reduce(0, +)
    report.failedWrites = shared.failedWrites.load(ordering: .relaxed)
    report.shortWrites = shared.shortWrites.load(ordering: .relaxed)
    report.quietChecks = shared.quietChecks.load(ordering: .relaxed)
    report.writebackPasses = shared.flusherGate.withLock { $0 }
    report.cleanups = file.inode.stats.cleanups
    report.punches = file.inode.stats.punches
    for (site, n) in injector.injectedCounts { report.faultsInjected[site.rawValue] = n }
    report.elapsedSeconds = (ContinuousClock.now - start).inSeconds
    return report
}

/// One worker: its region, its model and its random stream.
struct StressWorker {
    let file: ExtentFile
    let config: StressConfig
    let index: Int
    let shared: StressShared
    let base: Int
    let isTail: Bool
    var rng: SeededRandom
    /// The region's bytes, offsets relative to `base`. A non-tail region is always wholly
    /// below EOF; the tail region's model size is i_size minus `base`.
    var model = FileModel()
    var opsByKind: [String: Int] = [:]
    /// The last operations, for the report of a violation.
    var log: [String] = []

    mutating func note(_ entry: String) {
        log.append(entry)
        if log.count > 16 { log.removeFirst() }
    }

    func fail(_ what: String) {
        shared.fail("\(what)\nworker \(index)'s last operations (region at \(base)):\n" + log.map { "  \($0)" }.joined(separator: "\n"))
    }

    init(file: ExtentFile, config: StressConfig, index: Int, shared: StressShared) {
        self.file = file
        self.config = config
        self.index = index
        self.shared = shared
        self.base = config.regionStart(index)
        self.isTail = index == config.workers - 1
        self.rng = SeededRandom(seed: config.seed &+ UInt64(index + 1) &* 0x9E37_79B9_7F4A_7C15)
        if !isTail { model.truncate(to: config.regionSize) }
    }

    /// The bytes of the region below EOF.
    var liveLength: Int { isTail ? model.size : config.regionSize }

    static let kinds: [(String, Int)] = [
        ("write", 30), ("mapwrite", 14), ("mapread", 5), ("read", 10), ("punch_hole", 6), ("zero_range", 5),
        ("fallocate", 5), ("fsync", 2), ("truncate", 6),
    ]

    mutating func pickKind() -> String {
        let kinds = Self.kinds.filter { isTail || $0.0 != "truncate" }
        var pick = Int.random(in: 0..<kinds.reduce(0) { $0 + $1.1 }, using: &rng)
        for (k, w) in kinds {
            if pick < w { return k }
            pick -= w
        }
        return kinds[0].0
    }

    /// A random range inside `[0, limit)`, relative to the region, often block- or
    /// page-aligned at its start.
    mutating func range(limit: Int) -> (Int, Int)? {
        guard limit > 0 else { return nil }
        let length = Int.random(in: 1...min(limit, 20 << 10), using: &rng)
        var offset = Int.random(in: 0...(limit - length), using: &rng)
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: offset = (base + offset) - (base + offset) % config.blockSize - base
        case 1: offset = (base + offset) - (base + offset) % pageSize - base
        default: break
        }
        return offset >= 0 ? (offset, length) : nil
    }

    func stamp(_ op: Int, _ count: Int, salt: UInt8) -> [UInt8] {
        let tag = UInt8(truncatingIfNeeded: op &* 31 &+ index &* 7) ^ salt
        return (0..<count).map { tag ^ UInt8(truncatingIfNeeded: $0 >> 9) | 1 }
    }

    /// The arguments of the operation in progress, absolute offsets, for the log.
    var lastArgs = ""

    /// Runs one random operation `op` in the region and checks it against the model; the log
    /// notes it, with its arguments, however it ends.
    mutating func step(_ op: Int) {
        lastArgs = ""
        let kind = pickKind()
        opsByKind[kind, default: 0] += 1
        let what = "worker \(index) op \(op) \(kind)"
        let sizeBefore = file.size
        defer { note("op \(op) \(kind) \(lastArgs) (i_size \(sizeBefore) -> \(file.size))") }
        switch kind {
        case "write":
            runWrite(op, what)
        case "mapwrite":
            runMapwrite(op, what)
        case "mapread":
            guard let (offset, length) = range(limit: liveLength) else { return }
            let got = FaultInjector.exempting {
                Result { () throws(Errno) -> [UInt8] in try file.mappedLoad(count: length, at: base + offset) }
            }
            compare(got, offset: offset, want: Array(model.read(offset: offset, count: length)), what)
        case "read":
            guard let (offset, length) = range(limit: config.regionSize) else { return }
            checkRange(offset, length, what)
        case "punch_hole", "zero_range", "fallocate":
            runSpaceOp(kind, what)
        case "fsync":
            let result = FaultInjector.exempting { Result { () throws(Errno) in try file.fsync() } }
            if case .failure(let error) = result { return fail("\(what) failed with \(error.symbolicName)") }
        default:  // truncate, tail worker only
            runTruncate(what)
        }
    }

    /// A buffered write of a random range, one time in five with a fault at a random byte of
    /// the source, which the write may stop at but never pass.
    mutating func runWrite(_ op: Int, _ what: String) {
        // The tail worker may write past EOF, up to the end of its region.
        let limit = isTail ? config.regionSize : config.regionSize
        guard let (offset, length) = range(limit: limit) else { return }
        let data = stamp(op, length, salt: 0)
        let faultOffset = Int.random(in: 0..<100, using: &rng) < 20 ? Int.random(in: 0..<length, using: &rng) : nil
        lastArgs = "[\(base + offset), +\(length))\(faultOffset.map { " fault@\($0)" } ?? "")"
        do throws(Errno) {
            let n = try file.write(data, at: base + offset, faultOffset: faultOffset)
            if n <= 0 || n > length || (faultOffset.map { n > $0 } ?? false) {
                return fail("\(what) [\(base + offset), +\(length)) fault@\(faultOffset ?? -1) returned \(n)")
            }
            if n < length { shared.shortWrites.add(1, ordering: .relaxed) }
            lastArgs += " -> \(n)"
            model.write(data[0..<n], at: offset)
        } catch {
            shared.failedWrites.add(1, ordering: .relaxed)
            lastArgs += " -> \(error.symbolicName)"
            if ![.badAddress, .noSpace].contains(error) {
                return fail("\(what) [\(base + offset), +\(length)) failed with \(error.symbolicName)")
            }
        }
        checkRange(offset - config.blockSize, length + 2 * config.blockSize, what)
    }

    /// A store through the mapping below EOF, which must succeed.
    mutating func runMapwrite(_ op: Int, _ what: String) {
        guard let (offset, length) = range(limit: liveLength) else { return }
        let data = stamp(op, length, salt: 0x5A)
        lastArgs = "[\(base + offset), +\(length))"
        do throws(Errno) {
            try FaultInjector.exempting { () throws(Errno) in try file.mappedStore(data, at: base + offset) }
        } catch {
            return fail("\(what) [\(base + offset), +\(length)) below EOF failed with \(error.symbolicName)")
        }
        model.store(data[...], at: offset)
        checkRange(offset, length, what)
    }

    /// punch_hole, zero_range or fallocate (`kind`) of a random range; only the tail worker
    /// may change the size.
    mutating func runSpaceOp(_ kind: String, _ what: String) {
        // Beyond EOF only the tail worker may reach; below it, anyone inside the region.
        guard let (offset, length) = range(limit: isTail ? config.regionSize : liveLength) else { return }
        let keepSize = !isTail || Bool.random(using: &rng)
        lastArgs = "[\(base + offset), +\(length))\(keepSize ? " keep_size" : "")"
        let result = FaultInjector.exempting {
            Result { () throws(Errno) in
                switch kind {
                case "punch_hole": try file.punchHole(offset: base + offset, length: length)
                case "zero_range": try file.zeroRange(offset: base + offset, length: length, keepSize: keepSize)
                default: try file.allocate(offset: base + offset, length: length, keepSize: keepSize)
                }
            }
        }
        if case .failure(let error) = result {
            return fail("\(what) [\(base + offset), +\(length)) failed with \(error.symbolicName)")
        }
        if kind != "fallocate" { model.zero(offset: offset, length: length) }
        if kind != "punch_hole" && !keepSize && offset + length > model.size { model.truncate(to: offset + length) }
        checkRange(offset - config.blockSize, length + 2 * config.blockSize, what)
    }

    /// A truncate of the tail region to a random size within it.
    mutating func runTruncate(_ what: String) {
        let newSize = Int.random(in: 0...config.regionSize, using: &rng)
        lastArgs = "to \(base + newSize)"
        let result = FaultInjector.exempting { Result { () throws(Errno) in try file.truncate(to: base + newSize) } }
        if case .failure(let error) = result { return fail("\(what) to \(base + newSize) failed with \(error.symbolicName)") }
        model.truncate(to: newSize)
        checkRange(newSize - config.blockSize, 2 * config.blockSize, what)
    }

    /// Reads `[offset, offset + length)` of the region (clipped to it) and compares it with
    /// the model.
    func checkRange(_ offset: Int, _ length: Int, _ what: String) {
        let lo = max(0, offset)
        let hi = min(config.regionSize, offset + length)
        guard hi > lo else { return }
        let got = FaultInjector.exempting { Result { () throws(Errno) -> [UInt8] in try file.read(count: hi - lo, at: base + lo) } }
        // Reads stop at EOF; only the tail region can hold it.
        compare(got, offset: lo, want: Array(model.read(offset: lo, count: hi - lo)), "after \(what)")
    }

    func checkRegion(_ what: String) { checkRange(0, config.regionSize, "worker \(index) \(what)") }

    func compare(_ got: Result<[UInt8], Errno>, offset: Int, want: [UInt8], _ what: String) {
        switch got {
        case .failure(let error):
            fail("\(what): reading [\(base + offset), +\(want.count)) failed with \(error.symbolicName)")
        case .success(let bytes):
            if !isTail, bytes.count != want.count {
                return fail("\(what): read \(bytes.count) bytes at \(base + offset), expected \(want.count)")
            }
            if let i = firstDifference(bytes, want) {
                let g = i < bytes.count ? String(bytes[i]) : "EOF"
                let w = i < want.count ? String(want[i]) : "EOF"
                let message = "\(what): byte at \(base + offset + i) is \(g), worker \(index)'s model has \(w)"
                fail(PoisonCheck.describe(message, got: bytes, expected: want, fileOffset: base + offset) { base + offset + $0 })
            }
        }
    }
}

/// The index of the first byte where `a` and `b` differ (a length difference counts), or nil.
public func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    let n = min(a.count, b.count)
    if let i = (0..<n).first(where: { a[$0] != b[$0] }) { return i }
    return a.count == b.count ? nil : n
}

/// Writes back random stretches of the file until told to stop.
func stressFlusher(_ file: ExtentFile, _ config: StressConfig, _ shared: StressShared) {
    var rng = SeededRandom(seed: config.seed ^ 0xF1F1)
    let span = config.workers * config.regionSize
    while !shared.stopBackground.load(ordering: .relaxed) {
        let start = Int.random(in: 0..<span, using: &rng)
        let length = Int.random(in: 1...span, using: &rng)
        shared.flusherGate.withLock { passes in
            file.writeback(ByteRange(start: start, length: length))
            passes += 1
        }
        yieldProcessor()
    }
}

/// Evicts clean folios until told to stop; the rogue variant also flips every bit of a
/// random byte of worker 0's region on each pass, until the run notices.
func stressReclaimer(_ file: ExtentFile, _ config: StressConfig, _ shared: StressShared) {
    var rng = SeededRandom(seed: config.seed ^ 0xECEC)
    while !shared.stopBackground.load(ordering: .relaxed) {
        shared.reclaimerGate.withLock { _ in
            file.reclaim(targetBytes: Int.random(in: 0...max(0, file.mapping.cachedBytes / 2), using: &rng))
            if config.rogueStore && !shared.failed {
                let at = Int.random(in: 0..<min(config.regionSize, file.size), using: &rng)
                if let byte = try? file.mappedLoad(count: 1, at: at) { _ = try? file.mappedStore([~byte[0]], at: at) }
            }
        }
        yieldProcessor()
    }
}

/// A quiet point: with the workers at a barrier and the background threads held, check the
/// invariants and the space accounting.
func stressQuietCheck(_ file: ExtentFile, _ fs: ExtentFS, _ shared: StressShared, _ when: String) {
    shared.flusherGate.withLock { _ in
        shared.reclaimerGate.withLock { _ in
            shared.quietChecks.add(1, ordering: .relaxed)
            if let problem = file.invariantViolations().first { return shared.fail("\(when): \(problem)") }
            if let problem = fs.checkSpaceAccounting() { shared.fail("\(when): \(problem)") }
        }
    }
}

/// The end: invariants, the whole file against the workers' models, then fsync, a cache
/// drop and the whole file again.
func stressFinalCheck(_ file: ExtentFile, _ fs: ExtentFS, _ config: StressConfig, _ shared: StressShared) {
    stressQuietCheck(file, fs, shared, "at the end")
    if shared.failed { return }
    let models = shared.models.withLock { $0 }
    var whole = FileModel()
    for w in 0..<config.workers {
        guard let m = models[w] else { return shared.fail("worker \(w) left no model") }
        whole.write(m.read(offset: 0, count: m.size), at: config.regionStart(w))
        if w == config.workers - 1 { whole.truncate(to: config.regionStart(w) + m.size) }
    }
    func compareWhole(_ when: String) {
        if file.size != whole.size { return shared.fail("\(when): i_size is \(file.size), the models say \(whole.size)") }
        switch Result(catching: { () throws(Errno) -> [UInt8] in try file.read(count: whole.size + pageSize, at: 0) }) {
        case .failure(let error): shared.fail("\(when): reading the file failed with \(error.symbolicName)")
        case .success(let got):
            let want = Array(whole.read(offset: 0, count: whole.size))
            if let i = firstDifference(got, want) {
                shared.fail(
                    "\(when): byte at \(i) is \(i < got.count ? String(got[i]) : "EOF"), the model has \(i < want.count ? String(want[i]) : "EOF") (worker \(i / config.regionSize)'s region)"
                )
            }
        }
    }
    compareWhole("final check")
    if shared.failed { return }
    do throws(Errno) { try file.fsync() } catch { return shared.fail("final fsync failed with \(error.symbolicName)") }
    file.dropCaches()
    if file.delallocBlocks != 0 { return shared.fail("\(file.delallocBlocks) delalloc blocks left after the final fsync") }
    if let problem = fs.checkSpaceAccounting() { return shared.fail("after the final fsync: \(problem)") }
    compareWhole("final check after fsync and cache drop")
}
