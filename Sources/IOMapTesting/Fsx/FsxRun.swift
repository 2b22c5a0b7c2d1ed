// Counterpart: fstests' fsx (ltp/fsx.c): random operations on one file, each applied to the
// file and to an in-memory copy, every read and size checked; here the file is our engine's
// and faults are injected at every fault site of the write path as it runs.
//
// The model is `FileModel`: fsx's good_buf plus a mask of bytes a writeback I/O error made
// indeterminate (fsx on a real disk never sees this). Data written by operation n is fsx's
// (FsxData.swift), so a bad byte names the op that wrote it.
//
// Every run is a list of `FsxEntry`s, generated from the seed or read from a log, and a run
// records the faults that fired during each op, so a log replays exactly, also after ops
// were taken out of it by the minimizer.

import ExtentFS
import IOMap
import IOMapBase
import Synchronization
import PageCache

/// One fsx run: the engine's file, the model and the fault plan.
public struct FsxRun {
    public let config: FsxConfig
    let plan: FsxFaultPlan
    let raceBox: FsxRaceBox
    let fs: ExtentFS
    /// What keeps a volume's handles alive when the file is on one.
    let fileSystem: TestFileSystem
    public let file: ExtentFile
    var model = FileModel()
    var rng: SeededRandom
    /// A writeback I/O error fired and no fsync has reported it yet.
    var writebackErrorPending = false
    public internal(set) var report: FsxReport
    /// The engine's warnings during `runFsx` (bound there): each is a violation.
    let warnings = WarningSink()
    /// The number of the last op run (fsx's testcalls): the stamp of the data it wrote.
    public internal(set) var opNumber = 0
    /// What the last op returned, for the differential tester.
    public internal(set) var lastOutcome: FsxOutcome?

    public init(_ config: FsxConfig) {
        self.config = config
        let plan = FsxFaultPlan(seed: config.seed, sites: config.faults, rates: config.faultRates, base: config.offsetBase)
        self.plan = plan
        let box = FsxRaceBox()
        raceBox = box
        let env = IOMapEnvironment(faults: FaultInjector(script: { plan.answer($0) }), hook: { box.fire($0) })
        fileSystem = TestFileSystem(
            config.backing, dataBytes: 4 * config.maxFileSize + (64 << 20),
            config: ExtentFSConfig(
                blockSize: config.blockSize, maxFolioSize: config.maxFolioSize, bugs: config.bugs, environment: env))
        fs = fileSystem.fs
        let newFile = fileSystem.createFile()
        file = newFile
        let base = config.offsetBase
        box.state.withLock {
            $0.file = newFile
            $0.base = base
        }
        rng = SeededRandom(seed: config.seed)
        report = FsxReport(config: config)
        if config.offsetBase > 0 {
            do throws(Errno) {
                try FaultInjector.exempting { () throws(Errno) in try file.truncate(to: config.offsetBase) }
            } catch {
                fail("setting up the offset base: truncate to \(config.offsetBase) failed with \(error.symbolicName)")
            }
        }
    }

    var base: Int { config.offsetBase }

    mutating func fail(_ what: String, bad: [FsxBadByte] = []) {
        guard report.violation == nil else { return }
        // Bad bytes holding the poison of their (absolute) offset are memory the engine never
        // wrote or zeroed; say so first.
        let poison = bad.first { FolioMemory.isPoison($0.bad, atFileOffset: base + $0.offset) }
        let described = poison.map { "\(PoisonCheck.message(offset: $0.offset)): \(what)" } ?? what
        report.violation = FsxViolation(entryIndex: report.entries.count, what: described, badBytes: bad)
    }

    // MARK: Running

    /// Runs one entry; records it (with its faults) in the report. Returns false when the
    /// run must stop: a violation, or an unsupported op.
    @discardableResult
    public mutating func run(_ entry: FsxEntry, replaying: Bool = false) -> Bool {
        let index = report.entries.count
        let traced = index == config.traceEntry
        if traced { print("before entry \(index):\n\(file.debugDump())") }
        defer { if traced { print("after entry \(index) (\(FsxLog.format([entry]).dropLast())):\n\(file.debugDump())") } }
        switch entry {
        case .writeback(let offset, let length):
            report.entries.append(entry)
            report.opsByKind["writeback", default: 0] += 1
            // Events carry no fault lines: they run fault-free, so that a replay matches.
            let result = FaultInjector.exempting { file.writeback(ByteRange(start: base + offset, length: length)) }
            if let e = result.error { fail("writeback failed with \(e.symbolicName)") }
        case .reclaim(let target):
            report.entries.append(entry)
            report.opsByKind["reclaim", default: 0] += 1
            file.reclaim(targetBytes: target)
        case .op(let op):
            // A skipped op is only recorded: no check runs after it.
            guard let ran = runOp(op, replaying: replaying) else { return true }
            guard ran else { return false }
        }
        return afterEntry(entry)
    }

    /// Runs an op entry: false when the log holds an op the engine cannot run, nil when the
    /// op was skipped.
    mutating func runOp(_ recorded: FsxOp, replaying: Bool) -> Bool? {
        var op = recorded
        if op.skip {
            report.entries.append(.op(op))
            return nil
        }
        if !op.name.isSupported {
            if config.skipUnsupported {
                report.skippedUnsupported[op.name.rawValue, default: 0] += 1
                op.skip = true
                report.entries.append(.op(op))
                return nil
            }
            fail("the log has \(op.name.rawValue), which the engine does not support (use --skip-unsupported to skip it)")
            return false
        }
        opNumber += 1
        report.opsByKind[op.name.rawValue, default: 0] += 1
        plan.begin(replay: replaying ? op.faults : nil)
        op.args[op.name.argumentCount - 1] = model.size
        apply(&op)
        op.faults = plan.end()
        // A replay keeps the recorded faults; a fault the engine did not ask for again
        // (ops were taken out before it) simply did not fire.
        if replaying { op.faults = recorded.faults }
        report.entries.append(.op(op))
        if op.closeOpen && report.violation == nil { closeOpen() }
        return true
    }

    /// The checks after an entry: the size always, the rest at the configured cadence.
    mutating func afterEntry(_ entry: FsxEntry) -> Bool {
        noteWarnings()
        guard report.violation == nil else { return false }
        if file.size != base + model.size {
            fail("file size is \(file.size - base) (relative), the model says \(model.size)")
            return false
        }
        let n = report.entries.count
        if config.checkAroundEveryOp { checkAround(entry, "after entry \(n)") }
        if report.violation == nil && (config.checkEveryOp || n % config.checkEvery == 0) { check("check after entry \(n)") }
        if report.violation == nil, let every = config.flushCheckEvery, n % every == 0 { flushCheck("periodic") }
        return report.violation == nil
    }

    mutating func noteWritebackFaults(_ faults: [FsxFault]) {
        for f in faults where f.site == .writebackIOError {
            writebackErrorPending = true
            model.markUnknown(offset: f.offset, length: f.value)
        }
    }

    /// Writes back everything, drops the cache (fsx's close and reopen).
    mutating func closeOpen() {
        plan.begin(replay: [])
        _ = FaultInjector.exempting { file.writeback() }
        file.dropCaches()
        _ = plan.end()
    }

    /// A warning the engine raised (a "cannot happen" it degraded from) fails the run.
    mutating func noteWarnings() {
        if let first = warnings.collected.first { fail("the engine warned: \(first)") }
    }

    /// The end of a run: fsync, drop the cache, compare everything.
    public mutating func finish() {
        if report.violation == nil { check("before the final fsync") }
        if report.violation == nil { flushCheck("final") }
        noteWarnings()
        report.cleanups = file.inode.stats.cleanups
        report.punches = file.inode.stats.punches
        report.faultsInjected = Dictionary(uniqueKeysWithValues: plan.state.withLock { $0.counts }.map { ($0.key.rawValue, $0.value) })
        report.expectedImage = Array(model.read(offset: 0, count: model.size))
        report.actualImage = engineImage()
    }
}

/// Runs `config.ops` generated ops, or the entries of `replay`.
public func runFsx(_ config: FsxConfig, replay: [FsxEntry]? = nil, progress: ((Int) -> Void)? = nil) -> FsxReport {
    let start = ContinuousClock.now
    var run = FsxRun(config)
    Warnings.$sink.withValue(run.warnings) { runEntries(&run, config, replay: replay, progress: progress) }
    var report = run.report
    report.elapsedSeconds = (ContinuousClock.now - start).inSeconds
    return report
}

/// The body of `runFsx`, with the engine's warnings going to the run's sink.
func runEntries(_ run: inout FsxRun, _ config: FsxConfig, replay: [FsxEntry]?, progress: ((Int) -> Void)?) {
    if let replay {
        for (i, e) in replay.enumerated() {
            if !run.run(e, replaying: true) { break }
            if let progress, (i + 1) % 10_000 == 0 { progress(i + 1) }
        }
    } else {
        for i in 0..<config.ops {
            let e = run.generate()
            if !run.run(e) { break }
            if let progress, (i + 1) % 10_000 == 0 { progress(i + 1) }
        }
    }
    run.finish()
}
