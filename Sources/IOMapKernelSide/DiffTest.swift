// Counterpart: none in the kernel tree: the running Linux kernel as the oracle. The same fsx
// operations with the same data go to the engine (in-process, through `FsxRun`, which also
// checks the model) and, through syscalls, to a real file (`KernelFile`); after every op
// the bytes or count returned, the errno, the file size and the bytes of the EOF page past
// EOF must agree, and at the end the whole content. SEEK_DATA/SEEK_HOLE answers at probe
// offsets are compared exactly only against XFS, whose semantics we implement (other file
// systems answer differently and legally: docs/DIFFERENCES-FROM-LINUX.md, "SEEK_DATA and
// SEEK_HOLE"). Elsewhere (tmpfs, a FUSE mount) they are checked against the bytes instead:
// lseek(2) lets a file system call a hole data, never data a hole, so every range an answer
// calls a hole must read as zeroes, whatever else it says.

import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import PageCache

/// How a differential run is set up: the fsx run it generates (ops, seed, sizes, disabled
/// ops, reachable as `config.ops` and so on) and what the comparison adds. The engine side
/// always runs without faults or races, which the kernel side cannot reproduce.
@dynamicMemberLookup
public struct DiffConfig: Sendable {
    var fsx: FsxConfig
    /// Compare SEEK_DATA/SEEK_HOLE answers (only meaningful on XFS).
    public var compareSeek = false
    /// Probe SEEK answers every this many ops (each probe round syncs and drops both caches).
    public var seekEvery = 16
    /// Run the deliberately wrong engine (ExtentFSConfig.canarySkipEOFZeroing).
    public var canary = false
    /// Check the real file's SEEK answers against the bytes (never data called a hole),
    /// every seekEvery ops, with nothing synced or dropped first.
    public var checkSeekContent = false
    /// The content check's canary: the real file's SEEK_DATA answers are moved one byte on,
    /// past the first byte of data, as a file system calling data a hole would answer.
    public var seekCanary = false

    public init(seed: UInt64) {
        fsx = FsxConfig(seed: seed)
        fsx.ops = 20_000
        fsx.faults = []
        fsx.races = false
    }

    public subscript<T>(dynamicMember field: WritableKeyPath<FsxConfig, T>) -> T {
        get { fsx[keyPath: field] }
        set { fsx[keyPath: field] = newValue }
    }

    var fsxConfig: FsxConfig {
        var c = fsx
        c.canarySkipEOFZeroing = canary
        return c
    }
}

/// The first place the engine and the kernel disagreed.
public struct DiffMismatch: Sendable, CustomStringConvertible {
    /// The 1-based index of the entry in the sequence.
    public var opIndex: Int
    public var op: String
    /// What differed: result, size, eof_page, seek_data, seek_hole, content, model.
    public var field: String
    public var engine: String
    public var kernel: String

    public var description: String { "entry \(opIndex) (\(op)): \(field): engine \(engine), kernel \(kernel)" }
}

/// What a differential run found.
public struct DiffReport: Sendable {
    public var entries = 0
    public var ops = 0
    public var compared = 0
    public var mismatches = 0
    public var seekProbes = 0
    /// Content-checked probes whose answer called some range a hole (the check would pass
    /// a file system that called everything data; this says the answers were not that).
    public var seekHolesSeen = 0
    public var firstMismatch: DiffMismatch?
    public var dirFSType = ""
    public var elapsedSeconds = 0.0
    /// The entries run, as a log can record them.
    public var log: [FsxEntry] = []
    /// The engine's extent records when the run stopped, for a mismatch report.
    public var engineExtents: [ExtentRecord] = []
}

/// Runs the sequence (generated from the seed, or `replay`) on the engine and on a new file
/// in `directory`, comparing after every entry.
public func runDiffTest(_ config: DiffConfig, replay: [FsxEntry]? = nil, directory: String) throws(Errno) -> DiffReport {
    let start = ContinuousClock.now
    let kernel = try KernelFile(directory: directory, name: "iomap-difftest-\(config.seed)")
    var run = DiffRun(config, kernel: kernel)
    let total = replay?.count ?? config.ops
    for i in 0..<total {
        let entry = replay?[i] ?? run.engine.generate()
        if !run.step(entry, index: i + 1, replaying: replay != nil) { break }
    }
    if run.report.mismatches == 0 { run.compareContent() }
    var report = run.report
    report.log = run.engine.report.entries
    report.engineExtents = run.engine.file.extentRecords
    report.elapsedSeconds = (ContinuousClock.now - start).inSeconds
    return report
}

/// A differential run in progress: the two sides, the stream that picks SEEK probe offsets,
/// and what has been found so far.
private struct DiffRun {
    let config: DiffConfig
    let kernel: KernelFile
    var engine: FsxRun
    var report = DiffReport()
    var rng: SeededRandom

    init(_ config: DiffConfig, kernel: KernelFile) {
        self.config = config
        self.kernel = kernel
        engine = FsxRun(config.fsxConfig)
        report.dirFSType = kernel.fileSystemType
        rng = SeededRandom(seed: config.seed ^ 0x5EE4)
    }

    /// Counts a mismatch; only the first is described.
    mutating func mismatch(_ index: Int, _ entry: FsxEntry, _ field: String, _ e: String, _ k: String) {
        report.mismatches += 1
        if report.firstMismatch == nil {
            report.firstMismatch = DiffMismatch(opIndex: index, op: fsxEntryLine(entry), field: field, engine: e, kernel: k)
        }
    }

    /// Runs entry `index` (1-based) on both sides and compares them; false when the run must
    /// stop (the model broke, or the sides disagreed).
    mutating func step(_ generated: FsxEntry, index: Int, replaying: Bool) -> Bool {
        let entry = prepare(generated)
        let before = engine.opNumber
        let ok = engine.run(entry, replaying: replaying)
        report.entries = index
        if !ok {
            let why = engine.report.violation?.what ?? "stopped"
            mismatch(index, entry, "model", why, "-")
            return false
        }
        guard case .op(let op) = entry, !op.skip else { return true }
        report.ops += 1
        let n = engine.opNumber
        precondition(n == before + 1, "the engine ran no op for \(op.line)")
        compareOp(op, number: n, index: index, entry)
        // SEEK answers over unwritten extents depend on what the page cache holds, and the
        // kernel's readahead caches more than a fault here does; so the answers are compared
        // with nothing cached on either side: every seekEvery ops, after fsync and a cache drop.
        if config.compareSeek && report.ops % config.seekEvery == 0 { compareSeek(around: op, index: index, entry) }
        if config.checkSeekContent && report.ops % config.seekEvery == 0 { checkSeekContent(around: op, index: index, entry) }
        return report.mismatches == 0
    }

    /// The entry as both sides can run it, with the engine's and the kernel's caches made
    /// alike first where that decides the outcome.
    func prepare(_ generated: FsxEntry) -> FsxEntry {
        var entry = generated
        // A store landing inside a write cannot be made on the kernel side.
        if case .op(var op) = entry, op.race != nil {
            op.race = nil
            entry = .op(op)
        }
        // A store's page_mkwrite reserves and dirties its whole folio, so when SEEK answers
        // are compared both sides fault the store in with nothing cached: no large folio a
        // buffered write or readahead left behind decides what it allocates.
        if config.compareSeek, case .op(let op) = entry, op.name == .mapwrite, !op.skip {
            _ = FaultInjector.exempting { Result { () throws(Errno) in try engine.file.fsync() } }
            engine.file.dropCaches()
            _ = kernel.dropCache()
        }
        return entry
    }

    /// Applies the op the engine just ran (as its number `n`) to the kernel's file and
    /// compares the result, the size and the EOF page past EOF.
    mutating func compareOp(_ op: FsxOp, number n: Int, index: Int, _ entry: FsxEntry) {
        let k = kernelApply(op, number: n, kernel)
        report.compared += 1
        let e = engine.lastOutcome ?? .skipped
        if e != k { mismatch(index, entry, "result", e.description, k.description) }
        let engineSize = engine.file.size
        if engineSize != kernel.size { mismatch(index, entry, "size", String(engineSize), String(kernel.size)) }
        // The EOF page past EOF, as a mapping shows it: zeroes on both sides.
        let size = kernel.size
        if size % pageSize != 0 && engineSize == size {
            let tail = roundUp(size, pageSize) - size
            let et = FsxOutcome(
                FaultInjector.exempting { Result { () throws(Errno) -> [UInt8] in try engine.file.mappedLoad(count: tail, at: size) } })
            let kt = FsxOutcome(kernel.mappedLoad(count: tail, at: size))
            if et != kt { mismatch(index, entry, "eof_page", describeBytes(et), describeBytes(kt)) }
        }
    }

    /// Compares SEEK_DATA and SEEK_HOLE at the file's ends, at the op's offset and at random
    /// offsets, with both caches synced and dropped first.
    mutating func compareSeek(around op: FsxOp, index: Int, _ entry: FsxEntry) {
        let size = kernel.size
        let synced = FaultInjector.exempting { Result { () throws(Errno) in try engine.file.fsync() } }
        if case .failure(let e) = synced { mismatch(index, entry, "fsync before seek probes", e.symbolicName, "-") }
        engine.file.dropCaches()
        _ = kernel.dropCache()
        var probes = [0, op.offset, max(0, size - 1), size]
        for _ in 0..<4 where size > 0 { probes.append(Int.random(in: 0..<size, using: &rng)) }
        for p in probes {
            report.seekProbes += 1
            let ed = FsxOutcome(Result { () throws(Errno) -> Int in try engine.file.seekData(from: p) })
            let kd = FsxOutcome(kernel.seekData(from: p))
            if ed != kd { mismatch(index, entry, "seek_data(\(p))", ed.description, kd.description) }
            let eh = FsxOutcome(Result { () throws(Errno) -> Int in try engine.file.seekHole(from: p) })
            let kh = FsxOutcome(kernel.seekHole(from: p))
            if eh != kh { mismatch(index, entry, "seek_hole(\(p))", eh.description, kh.description) }
        }
    }

    /// Checks the real file's SEEK_DATA and SEEK_HOLE answers against the engine's bytes
    /// (which the comparisons hold equal to the real file's), at the file's ends, at the op's
    /// offset and at random offsets, and SEEK_DATA again where each hole answer starts.
    mutating func checkSeekContent(around op: FsxOp, index: Int, _ entry: FsxEntry) {
        let size = kernel.size
        let read = FaultInjector.exempting { Result { () throws(Errno) -> [UInt8] in try engine.file.read(count: size, at: 0) } }
        guard case .success(let bytes) = read, bytes.count == size else {
            mismatch(index, entry, "seek content read", "\(read)", "size \(size)")
            return
        }
        var probes = [0, op.offset, max(0, size - 1), size, size + pageSize]
        for _ in 0..<4 where size > 0 { probes.append(Int.random(in: 0..<size, using: &rng)) }
        for p in probes {
            report.seekProbes += 1
            let h = kernel.seekHole(from: p)
            var dataProbes = [p]
            if case .success(let at) = h, at < size { dataProbes.append(at) }
            if let why = seekHoleProblem(from: p, h, bytes) { mismatch(index, entry, "seek_hole(\(p))", why, describe(h)) }
            for q in dataProbes {
                var d = kernel.seekData(from: q)
                if config.seekCanary, case .success(let at) = d { d = at + 1 < size ? .success(at + 1) : .failure(.noSuchAddressOrDevice) }
                if let why = seekDataProblem(from: q, d, bytes) { mismatch(index, entry, "seek_data(\(q))", why, describe(d)) }
            }
            if case .success(let at) = h, at < size { report.seekHolesSeen += 1 }
        }
    }

    private func describe(_ r: Result<Int, Errno>) -> String {
        switch r {
        case .success(let n): return String(n)
        case .failure(let e): return e.symbolicName
        }
    }

    /// What is wrong with SEEK_DATA's answer `d` from `p`, given the file's bytes; nil if it
    /// is allowed: ENXIO at or past EOF; below EOF an offset from p up to EOF with only
    /// zeroes before it, or ENXIO with only zeroes up to EOF.
    func seekDataProblem(from p: Int, _ d: Result<Int, Errno>, _ bytes: [UInt8]) -> String? {
        let size = bytes.count
        switch d {
        case .failure(.noSuchAddressOrDevice):
            guard p < size else { return nil }
            return nonZero(in: p..<size).map { "ENXIO (all hole) from \(p), but byte \($0) is \(bytes[$0])" }
        case .failure(let e):
            return "\(e.symbolicName) is not an answer SEEK_DATA may give from \(p) (size \(size))"
        case .success(let at):
            if p >= size { return "an offset from \(p) at or past EOF \(size); must be ENXIO" }
            if at < p || at >= size { return "\(at) is outside [\(p), \(size))" }
            return nonZero(in: p..<at).map { "\(at) calls [\(p), \(at)) a hole, but byte \($0) is \(bytes[$0])" }
        }

        func nonZero(in r: Range<Int>) -> Int? { r.first { bytes[$0] != 0 } }
    }

    /// What is wrong with SEEK_HOLE's answer `h` from `p`; nil if allowed: ENXIO at or past
    /// EOF; below it an offset from p to EOF (EOF is a hole) whose byte, below EOF, is zero.
    func seekHoleProblem(from p: Int, _ h: Result<Int, Errno>, _ bytes: [UInt8]) -> String? {
        let size = bytes.count
        switch h {
        case .failure(.noSuchAddressOrDevice):
            return p >= size ? nil : "ENXIO from \(p) below EOF \(size)"
        case .failure(let e):
            return "\(e.symbolicName) is not an answer SEEK_HOLE may give from \(p) (size \(size))"
        case .success(let at):
            if p >= size { return "an offset from \(p) at or past EOF \(size); must be ENXIO" }
            if at < p || at > size { return "\(at) is outside [\(p), \(size)]" }
            if at < size && bytes[at] != 0 { return "a hole at \(at), whose byte is \(bytes[at])" }
            return nil
        }
    }

    /// The final comparison: the whole content of both files, and a page past EOF.
    mutating func compareContent() {
        let size = kernel.size
        let e = FsxOutcome(
            FaultInjector.exempting { Result { () throws(Errno) -> [UInt8] in try engine.file.read(count: size + pageSize, at: 0) } })
        let k = FsxOutcome(kernel.read(count: size + pageSize, at: 0))
        report.compared += 1
        if e != k {
            var detail = ("\(e)", "\(k)")
            if case .bytes(let eb) = e, case .bytes(let kb) = k, let i = firstDifference(eb, kb) {
                detail = ("byte \(i) is \(i < eb.count ? String(eb[i]) : "EOF")", "byte \(i) is \(i < kb.count ? String(kb[i]) : "EOF")")
                detail.0 = PoisonCheck.describe(detail.0, got: eb, expected: kb, fileOffset: 0) { $0 }
            }
            mismatch(report.entries, .op(FsxOp(.read, [0, size, size])), "content", detail.0, detail.1)
        }
    }
}

func describeBytes(_ o: FsxOutcome) -> String {
    if case .bytes(let b) = o, let i = b.firstIndex(where: { $0 != 0 }) { return "\(b.count) bytes, byte \(i) is \(b[i])" }
    return o.description
}

func fsxEntryLine(_ e: FsxEntry) -> String {
    FsxLog.format([e]).split(separator: "\n").joined(separator: " ")
}

/// Applies one fsx op to the real file, with fsx's semantics (ltp/fsx.c): mapread is cut
/// at EOF and skipped on an empty file; mapwrite grows the file with ftruncate first and
/// syncs the stored range; close_open writes back and drops the cache.
func kernelApply(_ op: FsxOp, number n: Int, _ k: KernelFile) -> FsxOutcome {
    let outcome: FsxOutcome
    switch op.name {
    case .read, .read_dontcache:
        outcome = FsxOutcome(k.read(count: op.length, at: op.offset))
    case .write, .write_dontcache:
        outcome = FsxOutcome(k.write(fsxData(op: n, offset: op.offset, count: op.length), at: op.offset))
    case .mapread:
        let size = k.size
        guard size > 0, op.offset < size else { return .skipped }
        outcome = FsxOutcome(k.mappedLoad(count: min(op.length, size - op.offset), at: op.offset))
    case .mapwrite:
        let end = op.offset + op.length
        if end > k.size, case .failure(let e) = k.truncate(to: end) { return .error(e) }
        outcome = FsxOutcome(k.mappedStore(fsxData(op: n, offset: op.offset, count: op.length), at: op.offset))
    case .truncate:
        outcome = FsxOutcome(k.truncate(to: op.newSize))
    case .fallocate:
        outcome = FsxOutcome(k.fallocate(offset: op.offset, length: op.length, mode: .allocate(keepSize: op.keepSize)))
    case .punch_hole:
        outcome = FsxOutcome(k.fallocate(offset: op.offset, length: op.length, mode: .punchHole))
    case .zero_range:
        outcome = FsxOutcome(k.fallocate(offset: op.offset, length: op.length, mode: .zeroRange(keepSize: op.keepSize)))
    case .copy_range:
        outcome = FsxOutcome(k.copyRange(from: op.offset, length: op.length, to: op.destination))
    case .fsync:
        outcome = FsxOutcome(k.fsync())
    default:
        return .error(.notSupported)
    }
    if op.closeOpen { _ = k.dropCache() }
    return outcome
}
