// Counterpart: fstests' fsx (ltp/fsx.c) in spirit: random operations applied to the engine
// and to a model, with every answer and every invariant checked after each operation.
//
// Beyond fsx, it injects faults at the write path's fault sites and, through hook point
// H3, makes another actor's operation land inside a write between its copy and its failure
// cleanup: a store through a mapping ahead of the write's cursor (the seed commit's race),
// a writeback (which turns the write's reservation stale under it) or a reclaim. A store
// ahead of the cursor is overwritten by whatever the write still copies afterwards, and
// survives wherever the write fails first, so the model can predict it exactly.

import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Synchronization

/// How a random run is set up.
public struct RandomRunConfig: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var ops: Int
    public var blockSize: Int
    public var maxFolioSize: Int
    public var policy: CleanupPolicy
    public var eofRounding: EOFRounding
    /// `.kernel` leaves the tail of a short copy as Linux does (wrong on purpose).
    public var writeEnd: WriteEndPolicy = .zeroTail
    /// Inject faults at the write path's sites.
    public var faults: Bool
    public var maxFileSize: Int
    public var maxOpSize: Int
    /// Compare the whole file every this many operations (and always at the end).
    public var fullCheckEvery: Int
    /// fsync, drop the cache and compare every this many operations.
    public var flushCheckEvery: Int
    /// Print the file's cache and extent state around this operation (for debugging).
    public var traceOp: Int? = nil

    public init(
        seed: UInt64, ops: Int, blockSize: Int = 4096, maxFolioSize: Int = 64 << 10,
        policy: CleanupPolicy = .preserveDirty, eofRounding: EOFRounding = .blockEnd, faults: Bool = true,
        maxFileSize: Int = 256 << 10, maxOpSize: Int = 64 << 10, fullCheckEvery: Int = 50, flushCheckEvery: Int = 500
    ) {
        self.seed = seed
        self.ops = ops
        self.blockSize = blockSize
        self.maxFolioSize = maxFolioSize
        self.policy = policy
        self.eofRounding = eofRounding
        self.faults = faults
        self.maxFileSize = maxFileSize
        self.maxOpSize = maxOpSize
        self.fullCheckEvery = fullCheckEvery
        self.flushCheckEvery = flushCheckEvery
    }

    /// The line that replays this run.
    public var description: String {
        "seed=\(seed) ops=\(ops) blockSize=\(blockSize) maxFolioSize=\(maxFolioSize) policy=\(policy.rawValue) "
            + "eofRounding=\(eofRounding.rawValue) writeEnd=\(writeEnd.rawValue) faults=\(faults) maxFileSize=\(maxFileSize) maxOpSize=\(maxOpSize)"
    }
}

/// What a random run found.
public struct RandomRunReport: Sendable {
    public var config: RandomRunConfig
    public var opsRun = 0
    /// The first violation, described, or nil.
    public var violation: String?
    /// The operation index at which it was found.
    public var violationOp: Int?
    public var opsByKind: [String: Int] = [:]
    public var faultsInjected: [String: Int] = [:]
    public var cleanups = 0
    public var punches = 0
    public var racesLanded = 0
    public var failedWrites = 0
    public var shortWrites = 0
    /// The last operations before the violation (or the end).
    public var logTail: [String] = []

    public var replayLine: String { "replay with RandomRunConfig(\(config))" }
}

/// The action a write's H3 hook performs once.
enum RaceAction: Sendable {
    case mappedStore(writeEnd: Int, fraction: Double, data: [UInt8])
    case writeback
    case reclaim
}

struct RaceState: Sendable {
    var file: ExtentFile?
    var pending: RaceAction?
    var storeDone: (offset: Int, data: [UInt8])?
    var landed = false
}

final class RaceBox: Sendable {
    let state = HarnessMutex(RaceState())
    let injector: FaultInjector?
    init(injector: FaultInjector?) { self.injector = injector }

    func fire(_ event: HookEvent) {
        guard event.point == .afterCopy else { return }
        let (file, action) = state.withLock { s -> (ExtentFile?, RaceAction?) in
            let a = s.pending
            s.pending = nil
            return (s.file, a)
        }
        guard let file, let action else { return }
        // The other actor's operation runs fault-free: only the write is being failed.
        injector?.setEnabled(false)
        defer { injector?.setEnabled(true) }
        switch action {
        case .writeback:
            file.writeback()
        case .reclaim:
            file.reclaim(targetBytes: 0)
        case .mappedStore(let writeEnd, let fraction, let data):
            // Ahead of the write's cursor, inside its range, below EOF.
            let lo = event.range.end
            let hi = min(writeEnd, file.size)
            guard hi - lo >= 1 else { return }
            let offset = lo + Int(Double(hi - lo - 1) * fraction)
            let n = min(data.count, hi - offset)
            do {
                try file.mappedStore(Array(data[0..<n]), at: offset)
                state.withLock { $0.storeDone = (offset, Array(data[0..<n])) }
            } catch {
                return
            }
        }
        state.withLock { $0.landed = true }
    }
}

/// Runs `config.ops` random operations against the engine and the model, checking after
/// each one; stops at the first violation.
public func runRandomOps(_ config: RandomRunConfig, progress: ((Int) -> Void)? = nil) -> RandomRunReport {
    var rng = SeededRandom(seed: config.seed)
    var report = RandomRunReport(config: config)
    let injector: FaultInjector? =
        config.faults
        ? FaultInjector(
            seed: config.seed ^ 0x5eed,
            rates: [
                .shortCopy: 0.04, .zeroCopy: 0.01, .reserveENOSPC: 0.01, .staleBeforeFolioLock: 0.02,
                .staleMidMapping: 0.03, .readIOError: 0.003,
            ]) : nil
    let race = RaceBox(injector: injector)
    let env = IOMapEnvironment(faults: injector, hook: { race.fire($0) })
    let fsConfig = ExtentFSConfig(
        blockSize: config.blockSize, maxFolioSize: config.maxFolioSize, cleanupPolicy: config.policy,
        eofRounding: config.eofRounding, writeEnd: config.writeEnd, environment: env)
    let fs = ExtentFS(memoryBytes: 256 << 20, config: fsConfig)
    let file = fs.createFile()
    race.state.withLock { $0.file = file }
    var model = FileModel()
    var log: [String] = []

    func note(_ s: String) {
        log.append(s)
        if log.count > 64 { log.removeFirst(log.count - 64) }
    }

    func fail(_ op: Int, _ what: String) {
        report.violation = what
        report.violationOp = op
    }

    /// `what`, led by the poison message when a differing byte read at `offset` is poison.
    func poisoned(_ what: String, _ got: [UInt8], _ want: [UInt8], _ offset: Int) -> String {
        PoisonCheck.describe(what, got: got, expected: want, fileOffset: offset) { offset + $0 }
    }

    /// Reads the engine's bytes with faults off (a check must not be failed by injection).
    func engineRead(_ offset: Int, _ count: Int) -> Result<[UInt8], Errno> {
        injector?.setEnabled(false)
        defer { injector?.setEnabled(true) }
        return Result { () throws(Errno) -> [UInt8] in try file.read(count: count, at: offset) }
    }

    func compare(_ op: Int, _ offset: Int, _ count: Int, _ what: String) -> Bool {
        switch engineRead(offset, count) {
        case .failure(let e):
            fail(op, "\(what): read of [\(offset), \(offset + count)) failed with \(e.symbolicName)")
            return false
        case .success(let got):
            let want = Array(model.read(offset: offset, count: count))
            if got != want {
                let i = (0..<min(got.count, want.count)).first { got[$0] != want[$0] } ?? min(got.count, want.count)
                let g = i < got.count ? String(got[i]) : "EOF"
                let w = i < want.count ? String(want[i]) : "EOF"
                fail(op, poisoned("\(what): byte at \(offset + i) is \(g), model has \(w) (read \(got.count) of \(want.count) bytes)", got, want, offset))
                return false
            }
            return true
        }
    }

    func randomRange(maxLength: Int, within limit: Int) -> (Int, Int) {
        let length = Int.random(in: 1...max(1, maxLength), using: &rng)
        var offset = Int.random(in: 0...max(0, limit - length), using: &rng)
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: offset = roundDown(offset, config.blockSize)
        case 1: offset = roundDown(offset, pageSize)
        default: break
        }
        return (offset, length)
    }

    func stamp(_ op: Int, _ count: Int, salt: UInt8 = 0) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: op) ^ UInt8(truncatingIfNeeded: $0 >> 10) ^ salt }
    }

    let kinds: [(String, Int)] = [
        ("write", 22), ("write+race", 14), ("mapwrite", 10), ("mapread", 5), ("read", 9), ("truncate", 7),
        ("punch_hole", 6), ("zero_range", 5), ("fallocate", 5), ("writeback", 7), ("reclaim", 4),
        ("drop_caches", 2), ("fsync", 4),
    ]
    let totalWeight = kinds.reduce(0) { $0 + $1.1 }

    opLoop: for op in 0..<config.ops {
        var pick = Int.random(in: 0..<totalWeight, using: &rng)
        var kind = kinds[0].0
        for (k, w) in kinds {
            if pick < w {
                kind = k
                break
            }
            pick -= w
        }
        report.opsByKind[kind, default: 0] += 1
        if op == config.traceOp { print("before op \(op):\n\(file.debugDump())") }
        defer { if op == config.traceOp { print("after op \(op) (\(log.last ?? "")):\n\(file.debugDump())") } }
        var checkRange: (Int, Int)?
        switch kind {
        case "write", "write+race":
            let (offset, length) = randomRange(maxLength: config.maxOpSize, within: config.maxFileSize)
            let data = stamp(op, length)
            let permanent = Int.random(in: 0..<100, using: &rng) < (kind == "write" ? 15 : 60)
            let faultOffset = permanent ? Int.random(in: 0..<length, using: &rng) : nil
            race.state.withLock {
                $0.pending = nil
                $0.storeDone = nil
                $0.landed = false
            }
            if kind == "write+race" {
                let action: RaceAction
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: action = .writeback
                case 1: action = .reclaim
                default:
                    let fraction = Double.random(in: 0..<1, using: &rng)
                    let n = Int.random(in: 1...16, using: &rng)
                    action = .mappedStore(writeEnd: offset + length, fraction: fraction, data: stamp(op, n, salt: 0xA5))
                }
                race.state.withLock { $0.pending = action }
            }
            let result = Result { () throws(Errno) -> Int in try file.write(data, at: offset, faultOffset: faultOffset) }
            let (store, landed) = race.state.withLock { s -> ((offset: Int, data: [UInt8])?, Bool) in
                let r = (s.storeDone, s.landed)
                s.pending = nil
                return r
            }
            if landed { report.racesLanded += 1 }
            if let store { model.store(store.data[...], at: store.offset) }
            switch result {
            case .success(let n):
                note("write \(offset) \(length) -> \(n)\(faultOffset.map { " fault@\($0)" } ?? "")\(store.map { " store \($0.offset)+\($0.data.count)" } ?? "")")
                if n <= 0 || n > length {
                    fail(op, "write of \(length) bytes returned \(n)")
                    break opLoop
                }
                if let faultOffset, n > faultOffset {
                    fail(op, "write wrote \(n) bytes past an unreadable byte at \(faultOffset)")
                    break opLoop
                }
                if n < length { report.shortWrites += 1 }
                if injector == nil && faultOffset == nil && n != length {
                    fail(op, "fault-free write of \(length) bytes returned \(n)")
                    break opLoop
                }
                model.write(data[0..<n], at: offset)
            case .failure(let e):
                report.failedWrites += 1
                note("write \(offset) \(length) -> \(e.symbolicName)\(faultOffset.map { " fault@\($0)" } ?? "")\(store.map { " store \($0.offset)+\($0.data.count)" } ?? "")")
                let allowed: [Errno] = [.badAddress, .noSpace, .ioError]
                if !allowed.contains(e) || (injector == nil && faultOffset == nil) {
                    fail(op, "write failed with unexpected \(e.symbolicName)")
                    break opLoop
                }
            }
            checkRange = (max(0, offset - config.blockSize), length + 2 * config.blockSize)
        case "mapwrite":
            guard model.size > 0 else { continue }
            let (offset, length) = randomRange(maxLength: min(config.maxOpSize, model.size), within: model.size)
            let data = stamp(op, length, salt: 0x5A)
            injector?.setEnabled(false)
            let result = Result { () throws(Errno) in try file.mappedStore(data, at: offset) }
            injector?.setEnabled(true)
            note("mapwrite \(offset) \(length)")
            if case .failure(let e) = result {
                fail(op, "mapped store within EOF failed with \(e.symbolicName)")
                break opLoop
            }
            model.store(data[...], at: offset)
            checkRange = (offset, length)
        case "mapread":
            guard model.size > 0 else { continue }
            let (offset, length) = randomRange(maxLength: min(config.maxOpSize, model.size), within: model.size)
            injector?.setEnabled(false)
            let result = Result { () throws(Errno) -> [UInt8] in try file.mappedLoad(count: length, at: offset) }
            injector?.setEnabled(true)
            note("mapread \(offset) \(length)")
            switch result {
            case .failure(let e):
                fail(op, "mapped load within EOF failed with \(e.symbolicName)")
                break opLoop
            case .success(let got):
                let want = Array(model.read(offset: offset, count: length))
                if got != want {
                    let i = (0..<min(got.count, want.count)).first { got[$0] != want[$0] } ?? 0
                    fail(op, poisoned("mapped load of [\(offset), \(offset + length)) differs from the model at \(offset + i): \(got[i]) vs \(want[i])", got, want, offset))
                    break opLoop
                }
            }
        case "read":
            let (offset, length) = randomRange(maxLength: config.maxOpSize, within: config.maxFileSize)
            let readErrorsBefore = injector?.injectedCounts[.readIOError] ?? 0
            let result = Result { () throws(Errno) -> [UInt8] in try file.read(count: length, at: offset) }
            let readErrorInjected = (injector?.injectedCounts[.readIOError] ?? 0) > readErrorsBefore
            note("read \(offset) \(length)")
            switch result {
            case .failure(let e):
                if e != .ioError || !readErrorInjected {
                    fail(op, "read failed with \(e.symbolicName)")
                    break opLoop
                }
            case .success(let got):
                var want = Array(model.read(offset: offset, count: length))
                // An injected read error may end the read early, as an I/O error does.
                if readErrorInjected && got.count < want.count { want.removeLast(want.count - got.count) }
                if got != want {
                    let i = (0..<min(got.count, want.count)).first { got[$0] != want[$0] } ?? min(got.count, want.count)
                    fail(op, poisoned("read of [\(offset), \(offset + length)) differs from the model at \(offset + i): \(i < got.count ? String(got[i]) : "EOF") vs \(i < want.count ? String(want[i]) : "EOF") (\(got.count) vs \(want.count) bytes)", got, want, offset))
                    break opLoop
                }
            }
        case "truncate":
            let newSize = Int.random(in: 0...config.maxFileSize, using: &rng)
            injector?.setEnabled(false)
            let result = Result { () throws(Errno) in try file.truncate(to: newSize) }
            injector?.setEnabled(true)
            note("truncate \(newSize) (was \(model.size))")
            if case .failure(let e) = result {
                fail(op, "truncate failed with \(e.symbolicName)")
                break opLoop
            }
            model.truncate(to: newSize)
            checkRange = (max(0, newSize - config.blockSize), 2 * config.blockSize)
        case "punch_hole", "zero_range", "fallocate":
            let (offset, length) = randomRange(maxLength: config.maxOpSize, within: config.maxFileSize)
            let keepSize = Bool.random(using: &rng)
            // These operations are not the write path under test: they run fault-free.
            injector?.setEnabled(false)
            let result = Result { () throws(Errno) in
                switch kind {
                case "punch_hole": try file.punchHole(offset: offset, length: length)
                case "zero_range": try file.zeroRange(offset: offset, length: length, keepSize: keepSize)
                default: try file.allocate(offset: offset, length: length, keepSize: keepSize)
                }
            }
            injector?.setEnabled(true)
            note("\(kind) \(offset) \(length)\(kind != "punch_hole" && keepSize ? " keep_size" : "")")
            if case .failure(let e) = result {
                fail(op, "\(kind) failed with \(e.symbolicName)")
                break opLoop
            }
            if kind == "punch_hole" || kind == "zero_range" { model.zero(offset: offset, length: length) }
            if kind != "punch_hole" && !keepSize && offset + length > model.size { model.truncate(to: offset + length) }
            checkRange = (max(0, offset - config.blockSize), length + 2 * config.blockSize)
        case "writeback":
            let (offset, length) = randomRange(maxLength: config.maxFileSize, within: config.maxFileSize)
            file.writeback(ByteRange(start: offset, length: length))
            note("writeback \(offset) \(length)")
        case "reclaim":
            let target = Int.random(in: 0...config.maxFileSize, using: &rng)
            file.reclaim(targetBytes: target)
            note("reclaim to \(target)")
        case "drop_caches":
            file.dropCaches()
            note("drop_caches")
        default:
            let result = Result { () throws(Errno) in try file.fsync() }
            note("fsync")
            if case .failure(let e) = result {
                fail(op, "fsync failed with \(e.symbolicName)")
                break opLoop
            }
        }
        report.opsRun = op + 1
        // Checks after every operation.
        if file.size != model.size {
            fail(op, "size is \(file.size), model has \(model.size)")
            break
        }
        let problems = file.invariantViolations()
        if !problems.isEmpty {
            fail(op, problems.prefix(3).joined(separator: "; "))
            break
        }
        if let problem = fs.checkSpaceAccounting() {
            fail(op, problem)
            break
        }
        if let (offset, count) = checkRange, !compare(op, offset, count, "after \(kind)") { break }
        if (op + 1) % config.fullCheckEvery == 0 && !compare(op, 0, config.maxFileSize + pageSize, "whole-file check") { break }
        if (op + 1) % config.flushCheckEvery == 0 {
            injector?.setEnabled(false)
            let synced = Result { () throws(Errno) in try file.fsync() }
            file.dropCaches()
            injector?.setEnabled(true)
            if case .failure(let e) = synced {
                fail(op, "fsync before the flush check failed with \(e.symbolicName)")
                break
            }
            if file.delallocBlocks != 0 {
                fail(op, "\(file.delallocBlocks) delalloc blocks left after a full flush")
                break
            }
            if !compare(op, 0, config.maxFileSize + pageSize, "after fsync and cache drop") { break }
        }
        if let progress, (op + 1) % 10_000 == 0 { progress(op + 1) }
    }
    if report.violation == nil {
        injector?.setEnabled(false)
        let synced = Result { () throws(Errno) in try file.fsync() }
        file.dropCaches()
        if case .failure(let e) = synced {
            fail(report.opsRun, "final fsync failed with \(e.symbolicName)")
        } else if file.delallocBlocks != 0 {
            fail(report.opsRun, "\(file.delallocBlocks) delalloc blocks left after the final flush")
        } else if let problem = fs.checkSpaceAccounting() {
            fail(report.opsRun, problem)
        } else {
            _ = compare(report.opsRun, 0, config.maxFileSize + pageSize, "final check after fsync and cache drop")
        }
    }
    report.logTail = log
    report.cleanups = file.inode.stats.cleanups
    report.punches = file.inode.stats.punches
    for (site, n) in injector?.injectedCounts ?? [:] { report.faultsInjected[site.rawValue] = n }
    return report
}
