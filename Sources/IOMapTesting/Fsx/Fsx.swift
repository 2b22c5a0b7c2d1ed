// Counterpart: fstests' fsx (ltp/fsx.c): random operations on one file, each applied to the
// file and to an in-memory copy, every read and size checked; here the file is our engine's
// and faults are injected at every fault site of the write path as it runs.
//
// The model is fsx's good_buf plus a mask of bytes a writeback I/O error made indeterminate
// (the page cache keeps the new bytes until eviction, the disk the old ones; fsx on a real
// disk never sees this). Data written by operation n is fsx's: byte o is n mod 256, plus a
// fixed pseudo-random byte at odd offsets, so a bad byte names the op that wrote it.
//
// Every run is a list of `FsxEntry`s, generated from the seed or read from a log, and a run
// records the faults that fired during each op, so a log replays exactly, also after ops
// were taken out of it by the minimizer.

import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Synchronization

/// How an fsx run is set up.
public struct FsxConfig: Sendable {
    public var seed: UInt64
    public var ops = 100_000
    public var maxFileSize = 256 << 10
    public var maxOpSize = 64 << 10
    /// Every offset of the run is shifted by this much in the engine's file.
    public var offsetBase = 0
    public var blockSize = 4096
    public var maxFolioSize = 64 << 10
    public var policy: CleanupPolicy = .preserveDirty
    public var eofRounding: EOFRounding = .blockEnd
    /// `.kernel` leaves the tail of a short copy as Linux does (wrong on purpose).
    public var writeEnd: WriteEndPolicy = .zeroTail
    /// The fault sites that may fire.
    public var faults: Set<FaultSite> = Set(FaultSite.allCases)
    /// Op classes not generated.
    public var disabled: Set<FsxOpName> = []
    /// Generate the engine-only events: writeback of a range, reclaim, close_open.
    public var engineEvents = true
    /// Make stores through the mapping land inside a third of the writes (`#@ race`); the
    /// differential tester turns this off, since the kernel side cannot do it.
    public var races = true
    /// Compare the whole file and check the invariants after every op (else every 100).
    public var checkEveryOp = false
    /// With a replayed log: count and skip ops the engine does not support instead of failing.
    public var skipUnsupported = false
    /// A deliberately wrong engine, for the differential tester's canary (see ExtentFSConfig).
    public var canarySkipEOFZeroing = false

    public init(seed: UInt64) { self.seed = seed }

    /// The probability of each site per query.
    static let faultRates: [FaultSite: Double] = [
        .shortCopy: 0.04, .zeroCopy: 0.01, .reserveENOSPC: 0.01, .staleBeforeFolioLock: 0.02, .staleMidMapping: 0.03,
        .readIOError: 0.003, .writebackIOError: 0.002, .userBufferFault: 0.15,
    ]

    /// What is wrong with the configuration, naming the option; nil when usable.
    public var problem: String? {
        if ops < 1 { return "--ops must be at least 1, got \(ops)" }
        if maxFileSize < 4096 || maxFileSize > 1 << 30 { return "--max-file-size must be from 4096 to 1 GiB, got \(maxFileSize)" }
        if maxOpSize < 1 || maxOpSize > maxFileSize { return "--max-op-size must be from 1 to --max-file-size, got \(maxOpSize)" }
        if offsetBase < 0 || offsetBase % pageSize != 0 || offsetBase + 2 * maxFileSize > maxFileSizeLimit {
            return "--offset-base must be a multiple of 4096 from 0 to \(maxFileSizeLimit - 2 * maxFileSize), got \(offsetBase)"
        }
        if ![512, 1024, 2048, 4096].contains(blockSize) { return "--block-size must be 512, 1024, 2048 or 4096, got \(blockSize)" }
        if maxFolioSize < 4096 || maxFolioSize > 2 << 20 || maxFolioSize & (maxFolioSize - 1) != 0 {
            return "--max-folio-size must be a power of two from 4096 to 2097152, got \(maxFolioSize)"
        }
        return nil
    }

    /// The engine's largest file size (2^52).
    public static var maxFileSizeLimit: Int { IOMapBase.maxFileSize }
    var maxFileSizeLimit: Int { Self.maxFileSizeLimit }
}

/// What an op returned: bytes read, a count, plain success, an errno, or nothing (not run).
public enum FsxOutcome: Sendable, Equatable, CustomStringConvertible {
    case bytes([UInt8])
    case count(Int)
    case done
    case error(Errno)
    case skipped

    public init<T>(_ result: Result<T, Errno>) {
        switch result {
        case .failure(let e): self = .error(e)
        case .success(let v as [UInt8]): self = .bytes(v)
        case .success(let v as Int): self = .count(v)
        case .success: self = .done
        }
    }

    public var description: String {
        switch self {
        case .bytes(let b): return "\(b.count) bytes"
        case .count(let n): return "\(n)"
        case .done: return "ok"
        case .error(let e): return e.symbolicName
        case .skipped: return "not run"
        }
    }
}

/// A byte the model and the engine disagree on.
public struct FsxBadByte: Sendable, Equatable {
    public var offset: Int
    public var good: UInt8
    public var bad: UInt8
}

/// The first violation of a run.
public struct FsxViolation: Sendable {
    /// The 1-based number of the entry during or after which it was found.
    public var entryIndex: Int
    public var what: String
    /// Bad bytes found by a comparison (relative offsets), the first few hundred.
    public var badBytes: [FsxBadByte] = []
    public var firstBadOffset: Int? { badBytes.first?.offset }
}

/// What an fsx run did.
public struct FsxReport: Sendable {
    public var config: FsxConfig
    /// The entries run, with the faults that fired during each op; what a log records.
    public var entries: [FsxEntry] = []
    public var opsByKind: [String: Int] = [:]
    public var faultsInjected: [String: Int] = [:]
    public var skippedUnsupported: [String: Int] = [:]
    public var cleanupCalls = 0
    public var violation: FsxViolation?
    /// The model's bytes and the engine's at the violation (or the end): the expected and
    /// actual images.
    public var expectedImage: [UInt8] = []
    public var actualImage: [UInt8] = []
    public var elapsedSeconds = 0.0
}

/// fsx's original_buf: a fixed pseudo-random byte for each offset, the same in every run.
public func fsxOriginalByte(_ o: Int) -> UInt8 {
    var rng = SeededRandom(seed: UInt64(o >> 3) &+ 0xF5C0_0001)
    return UInt8(truncatingIfNeeded: rng.next() >> UInt64((o & 7) * 8))
}

/// fsx's data: byte `offset` of what op `n` writes (gendata): n mod 256, plus the original
/// byte at odd offsets.
@inline(__always)
func fsxDataByte(op n: Int, offset o: Int) -> UInt8 {
    let stamp = UInt8(truncatingIfNeeded: n)
    return o & 1 == 1 ? stamp &+ fsxOriginalByte(o) : stamp
}

public func fsxData(op n: Int, offset: Int, count: Int) -> [UInt8] {
    (0..<count).map { fsxDataByte(op: n, offset: offset + $0) }
}

/// The model: fsx's good_buf, with a mask of indeterminate bytes.
struct FsxModel {
    var bytes: [UInt8] = []
    var unknown: [Bool] = []
    var size = 0

    mutating func ensure(_ n: Int) {
        if bytes.count < n {
            bytes += [UInt8](repeating: 0, count: n - bytes.count)
            unknown += [Bool](repeating: false, count: n - unknown.count)
        }
    }

    mutating func write(_ data: ArraySlice<UInt8>, at offset: Int) {
        guard !data.isEmpty else { return }
        ensure(offset + data.count)
        // A write past EOF zeroes the gap first.
        if offset > size { for i in size..<offset { unknown[i] = false } }
        bytes.replaceSubrange(offset..<offset + data.count, with: data)
        for i in offset..<offset + data.count { unknown[i] = false }
        size = max(size, offset + data.count)
    }

    /// A store through the mapping: bytes at or past EOF never reach the file.
    mutating func store(_ data: ArraySlice<UInt8>, at offset: Int) {
        let end = min(offset + data.count, size)
        guard end > offset else { return }
        write(data.prefix(end - offset), at: offset)
    }

    mutating func truncate(to newSize: Int) {
        if newSize > size {
            // Growing zeroes what lies between the old and the new EOF.
            ensure(newSize)
            for i in size..<newSize { unknown[i] = false }
        }
        if newSize < size {
            for i in newSize..<min(size, bytes.count) {
                bytes[i] = 0
                unknown[i] = false
            }
        }
        ensure(newSize)
        size = newSize
    }

    mutating func zero(offset: Int, length: Int) {
        let end = min(offset + length, size)
        guard end > offset else { return }
        for i in offset..<end {
            bytes[i] = 0
            unknown[i] = false
        }
    }

    /// copy_file_range: the bytes and their indeterminacy move together.
    mutating func copy(from src: Int, count: Int, to dst: Int) {
        let data = Array(read(offset: src, count: count))
        guard !data.isEmpty else { return }
        let flags = Array(unknown[src..<src + data.count])
        write(data[...], at: dst)
        for (i, u) in flags.enumerated() where u { unknown[dst + i] = true }
    }

    /// Marks bytes indeterminate, past EOF too: a failed writeback of the block holding EOF
    /// leaves the disk's stale bytes past EOF in place, and a later fault shows them in the
    /// EOF page, in Linux as here.
    mutating func markUnknown(offset: Int, length: Int) {
        guard length > 0 else { return }
        ensure(offset + length)
        for i in offset..<offset + length { unknown[i] = true }
    }

    func read(offset: Int, count: Int) -> ArraySlice<UInt8> {
        let end = min(offset + count, size)
        guard end > offset else { return [] }
        return bytes[offset..<end]
    }

    /// The bytes of `[offset, offset + got.count)` that differ from `got`, skipping
    /// indeterminate ones.
    func badBytes(_ got: [UInt8], at offset: Int, limit: Int = 256) -> [FsxBadByte] {
        var out: [FsxBadByte] = []
        for (i, b) in got.enumerated() {
            let o = offset + i
            let want: UInt8 = o < size ? bytes[o] : 0
            if b != want && !(o < unknown.count && unknown[o]) {
                out.append(FsxBadByte(offset: o, good: want, bad: b))
                if out.count >= limit { break }
            }
        }
        return out
    }
}

/// Decides faults at random and records them, or replays recorded ones.
final class FsxFaultPlan: Sendable {
    struct State {
        var random: SeededRandom
        var sites: Set<FaultSite>
        var replay: [FsxFault]?
        var fired: [FsxFault] = []
        var counts: [FaultSite: Int] = [:]
        /// Queries so far in this op, per site (copies as shortCopy) and offset.
        var queries: [QueryKey: Int] = [:]
    }

    struct QueryKey: Hashable {
        var site: FaultSite
        var offset: Int
    }

    let state: HarnessMutex<State>
    /// Faults are recorded relative to the run's offset base, so a log replays at any base.
    let base: Int

    init(seed: UInt64, sites: Set<FaultSite>, base: Int) {
        state = HarnessMutex(State(random: SeededRandom(seed: seed ^ 0xF5_F5F5), sites: sites))
        self.base = base
    }

    /// Starts an op: with `replay`, exactly those faults fire; without, random ones.
    func begin(replay: [FsxFault]?) {
        state.withLock {
            $0.replay = replay
            $0.fired = []
            $0.queries = [:]
        }
    }

    /// The faults that fired since `begin`.
    func end() -> [FsxFault] { state.withLock { $0.fired } }

    /// Where the user buffer of a write of `length` bytes at `offset` (relative) stops being
    /// readable, if it does: a recorded fault on replay, a random one otherwise.
    func userBufferFault(offset: Int, length: Int) -> Int? {
        state.withLock { s -> Int? in
            if let replay = s.replay {
                guard let i = replay.firstIndex(where: { $0.site == .userBufferFault }) else { return nil }
                let f = replay[i]
                s.replay!.remove(at: i)
                s.fired.append(f)
                s.counts[.userBufferFault, default: 0] += 1
                return f.offset
            }
            guard s.sites.contains(.userBufferFault), let p = FsxConfig.faultRates[.userBufferFault],
                Double.random(in: 0..<1, using: &s.random) < p
            else { return nil }
            let f = FsxFault(site: .userBufferFault, offset: offset + Int.random(in: 0..<length, using: &s.random), value: 0)
            s.fired.append(f)
            s.counts[.userBufferFault, default: 0] += 1
            return f.offset
        }
    }

    func answer(_ q: FaultQuery) -> Int? {
        let offset = q.offset - base
        return state.withLock { s -> Int? in
            let isCopy = q.site == .shortCopy
            let key = QueryKey(site: q.site, offset: offset)
            let nth = s.queries[key, default: 0]
            s.queries[key] = nth + 1
            if let replay = s.replay {
                guard
                    let i = replay.firstIndex(where: {
                        $0.offset == offset && $0.nth == nth
                            && (isCopy ? ($0.site == .shortCopy || $0.site == .zeroCopy) : $0.site == q.site)
                    })
                else { return nil }
                let f = replay[i]
                s.replay!.remove(at: i)
                s.fired.append(f)
                s.counts[f.site, default: 0] += 1
                return isCopy ? min(f.value, q.length) : 1
            }
            func hit(_ site: FaultSite) -> Bool {
                guard s.sites.contains(site), let p = FsxConfig.faultRates[site] else { return false }
                return Double.random(in: 0..<1, using: &s.random) < p
            }
            var fault: FsxFault?
            if isCopy {
                if hit(.zeroCopy) {
                    fault = FsxFault(site: .zeroCopy, offset: offset, value: 0, nth: nth)
                } else if q.length > 1 && hit(.shortCopy) {
                    fault = FsxFault(site: .shortCopy, offset: offset, value: Int.random(in: 1..<q.length, using: &s.random), nth: nth)
                }
            } else if hit(q.site) {
                fault = FsxFault(site: q.site, offset: offset, value: q.site == .writebackIOError ? q.length : 1, nth: nth)
            }
            guard let fault else { return nil }
            s.fired.append(fault)
            s.counts[fault.site, default: 0] += 1
            return isCopy ? fault.value : 1
        }
    }
}

/// The store a write's H3 hook makes once: either at a fraction of the range still ahead of
/// the write's cursor (generation) or at a recorded offset (replay).
final class FsxRaceBox: Sendable {
    struct State {
        var file: ExtentFile?
        var base = 0
        var request: (fraction: Double, length: Int)?
        var replay: FsxRace?
        var writeEnd = 0
        var data: (Int, Int) -> [UInt8] = { _, _ in [] }
        var landed: (FsxRace, [UInt8])?
    }

    let state = HarnessMutex(State())

    func fire(_ event: HookEvent) {
        guard event.point == .afterCopy else { return }
        let (file, base, request, replay, writeEnd, data) = state.withLock { s in
            let r = (s.file, s.base, s.request, s.replay, s.writeEnd, s.data)
            s.request = nil
            s.replay = nil
            return r
        }
        guard let file, request != nil || replay != nil else { return }
        let lo = event.range.end - base
        let hi = min(writeEnd, file.size - base)
        let race: FsxRace
        if let replay {
            guard replay.offset >= lo, replay.offset + replay.length <= hi else { return }
            race = replay
        } else {
            guard let request, hi - lo >= 1 else { return }
            let offset = lo + Int(Double(hi - lo - 1) * request.fraction)
            race = FsxRace(offset: offset, length: min(request.length, hi - offset))
        }
        let bytes = data(race.offset, race.length)
        let stored = FaultInjector.exempting { (try? file.mappedStore(bytes, at: base + race.offset)) != nil }
        if stored { state.withLock { $0.landed = (race, bytes) } }
    }
}

/// One fsx run: the engine's file, the model and the fault plan.
public struct FsxRun {
    public let config: FsxConfig
    let plan: FsxFaultPlan
    let raceBox: FsxRaceBox
    let fs: ExtentFS
    public let file: ExtentFile
    var model = FsxModel()
    var rng: SeededRandom
    /// A writeback I/O error fired and no fsync has reported it yet.
    var writebackErrorPending = false
    public private(set) var report: FsxReport
    /// The number of the last op run (fsx's testcalls): the stamp of the data it wrote.
    public private(set) var opNumber = 0
    /// What the last op returned, for the differential tester.
    public private(set) var lastOutcome: FsxOutcome?

    public init(_ config: FsxConfig) {
        self.config = config
        let plan = FsxFaultPlan(seed: config.seed, sites: config.faults, base: config.offsetBase)
        self.plan = plan
        let box = FsxRaceBox()
        raceBox = box
        let env = IOMapEnvironment(faults: FaultInjector(script: { plan.answer($0) }), hook: { box.fire($0) })
        fs = ExtentFS(
            memoryBytes: 4 * config.maxFileSize + (64 << 20),
            config: ExtentFSConfig(
                blockSize: config.blockSize, maxFolioSize: config.maxFolioSize, cleanupPolicy: config.policy,
                eofRounding: config.eofRounding, canarySkipEOFZeroing: config.canarySkipEOFZeroing,
                writeEnd: config.writeEnd, environment: env))
        let newFile = fs.createFile()
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

    // MARK: Generation

    /// A random entry, fsx-style.
    public mutating func generate() -> FsxEntry {
        let maxLen = config.maxFileSize
        if config.engineEvents && Int.random(in: 0..<100, using: &rng) < 4 {
            if Bool.random(using: &rng) {
                let offset = Int.random(in: 0..<maxLen, using: &rng)
                return .writeback(offset: offset, length: Int.random(in: 1...maxLen, using: &rng))
            }
            return .reclaim(target: Int.random(in: 0...maxLen, using: &rng))
        }
        let names = FsxOpName.allCases.filter { $0.isSupported && !config.disabled.contains($0) && $0 != .read_dontcache && $0 != .write_dontcache }
        let name = names.isEmpty ? FsxOpName.fsync : names[Int.random(in: 0..<names.count, using: &rng)]
        let size = model.size
        func range(_ limit: Int) -> (Int, Int) {
            let offset = Int.random(in: 0..<max(1, limit), using: &rng)
            let length = Int.random(in: 1...config.maxOpSize, using: &rng)
            return (offset, min(length, max(1, limit - offset)))
        }
        var op: FsxOp
        switch name {
        case .read, .mapread:
            let (o, l) = range(maxLen)
            op = FsxOp(name, [o, l, size])
        case .write, .mapwrite:
            let (o, l) = range(maxLen)
            op = FsxOp(name, [o, l, size])
            // The seed commit's race, single-threaded: a store through the mapping lands
            // inside a third of the writes, ahead of its cursor.
            if name == .write && config.engineEvents && config.races && Int.random(in: 0..<3, using: &rng) == 0 {
                op.raceRequest = (Double.random(in: 0..<1, using: &rng), Int.random(in: 1...64, using: &rng))
            }
        case .truncate:
            op = FsxOp(.truncate, [0, Int.random(in: 0..<maxLen, using: &rng), size])
        case .fallocate, .zero_range:
            let (o, l) = range(maxLen)
            op = FsxOp(name, [o, l, size], keepSize: Bool.random(using: &rng))
        case .punch_hole:
            let (o, l) = range(max(size, 1))
            op = FsxOp(.punch_hole, [o, l, size])
        case .copy_range:
            let (s, l) = range(max(size, 1))
            var d = Int.random(in: 0..<maxLen, using: &rng)
            // copy_file_range refuses overlapping ranges in one file; fsx moves the target.
            if d + l > s && d < s + l { d = (s + l + Int.random(in: 0..<4096, using: &rng)) % maxLen }
            op = FsxOp(.copy_range, [s, min(l, maxLen - d), d, size])
        default:
            op = FsxOp(.fsync, [0, 0, size])
        }
        if config.engineEvents && Int.random(in: 0..<100, using: &rng) < 2 { op.closeOpen = true }
        return .op(op)
    }

    // MARK: Running

    /// Runs one entry; records it (with its faults) in the report. Returns false when the
    /// run must stop: a violation, or an unsupported op.
    @discardableResult
    public mutating func run(_ entry: FsxEntry, replaying: Bool = false) -> Bool {
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
        case .op(var op):
            if op.skip {
                report.entries.append(.op(op))
                return true
            }
            if !op.name.isSupported {
                if config.skipUnsupported {
                    report.skippedUnsupported[op.name.rawValue, default: 0] += 1
                    op.skip = true
                    report.entries.append(.op(op))
                    return true
                }
                fail("the log has \(op.name.rawValue), which the engine does not support (use --skip-unsupported to skip it)")
                return false
            }
            opNumber += 1
            report.opsByKind[op.name.rawValue, default: 0] += 1
            plan.begin(replay: replaying ? op.faults : nil)
            let recorded = op
            op.args[op.name.argumentCount - 1] = model.size
            apply(&op)
            op.faults = plan.end()
            // A replay keeps the recorded faults; a fault the engine did not ask for again
            // (ops were taken out before it) simply did not fire.
            if replaying { op.faults = recorded.faults }
            report.entries.append(.op(op))
            if op.closeOpen && report.violation == nil { closeOpen() }
        }
        guard report.violation == nil else { return false }
        if file.size != base + model.size {
            fail("file size is \(file.size - base) (relative), the model says \(model.size)")
            return false
        }
        if config.checkEveryOp || report.entries.count % 100 == 0 { check("check after entry \(report.entries.count)") }
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

    mutating func apply(_ op: inout FsxOp) {
        let n = opNumber
        let what = "op \(n) (\(op.line))"
        lastOutcome = .skipped
        switch op.name {
        case .read, .read_dontcache:
            let result = Result { () throws(Errno) -> [UInt8] in try file.read(count: op.length, at: base + op.offset) }
            lastOutcome = FsxOutcome(result)
            let injected = plan.end().contains { $0.site == .readIOError }
            switch result {
            case .failure(let e):
                if !(e == .ioError && injected) { fail("\(what): read failed with \(e.symbolicName)") }
            case .success(let got):
                let want = model.read(offset: op.offset, count: op.length)
                if got.count != want.count && !(injected && got.count < want.count) {
                    fail("\(what): read returned \(got.count) bytes, the model has \(want.count)")
                }
                let bad = model.badBytes(got, at: op.offset)
                if !bad.isEmpty { fail("\(what): read returned bytes that differ from the model", bad: bad) }
            }
            if op.name == .read_dontcache { file.mapping.invalidateClean(ByteRange(start: base + op.offset, length: op.length)) }
        case .write, .write_dontcache:
            let data = fsxData(op: n, offset: op.offset, count: op.length)
            raceBox.state.withLock {
                $0.request = op.raceRequest
                $0.replay = op.race
                $0.writeEnd = op.offset + op.length
                $0.data = { offset, count in fsxData(op: n &+ 128, offset: offset, count: count) }
                $0.landed = nil
            }
            let faultOffset = plan.userBufferFault(offset: op.offset, length: op.length)
            let result = Result { () throws(Errno) -> Int in
                try file.write(data, at: base + op.offset, faultOffset: faultOffset.map { $0 - op.offset })
            }
            lastOutcome = FsxOutcome(result)
            let landed = raceBox.state.withLock { s in
                let l = s.landed
                s.request = nil
                s.replay = nil
                s.landed = nil
                return l
            }
            op.race = landed?.0
            op.raceRequest = nil
            // A store ahead of the cursor is overwritten by whatever the write copies after
            // it, and survives wherever the write stopped first.
            if let (race, bytes) = landed { model.store(bytes[...], at: race.offset) }
            let faults = plan.end()
            switch result {
            case .failure(let e):
                if faults.isEmpty || ![Errno.noSpace, .ioError, .badAddress].contains(e) {
                    fail("\(what): write failed with \(e.symbolicName)\(faults.isEmpty ? " with no fault injected" : "")")
                }
            case .success(let written):
                if written < op.length && faults.isEmpty { fail("\(what): write returned \(written) with no fault injected") }
                if written <= 0 || written > op.length { fail("\(what): write returned \(written)") }
                model.write(data[0..<min(max(written, 0), op.length)], at: op.offset)
            }
            if op.name == .write_dontcache { _ = file.writeback(ByteRange(start: base + op.offset, length: op.length)) }
        case .mapread:
            let size = model.size
            guard size > 0, op.offset < size else { return }
            let count = min(op.length, size - op.offset)
            let result = FaultInjector.exempting {
                Result { () throws(Errno) -> [UInt8] in try file.mappedLoad(count: count, at: base + op.offset) }
            }
            lastOutcome = FsxOutcome(result)
            switch result {
            case .failure(let e): fail("\(what): mapped load failed with \(e.symbolicName)")
            case .success(let got):
                let bad = model.badBytes(got, at: op.offset)
                if !bad.isEmpty { fail("\(what): mapped load differs from the model", bad: bad) }
            }
            checkEOFPage(what)
        case .mapwrite:
            let data = fsxData(op: n, offset: op.offset, count: op.length)
            let end = op.offset + op.length
            let result = FaultInjector.exempting {
                Result { () throws(Errno) in
                    if end > file.size - base { try file.truncate(to: base + end) }
                    try file.mappedStore(data, at: base + op.offset)
                    _ = file.writeback(ByteRange(start: base + op.offset, length: op.length))
                }
            }
            lastOutcome = FsxOutcome(result)
            if case .failure(let e) = result { return fail("\(what): mapped write failed with \(e.symbolicName)") }
            if end > model.size { model.truncate(to: end) }
            model.store(data[...], at: op.offset)
            checkEOFPage(what)
        case .truncate:
            let result = FaultInjector.exempting { Result { () throws(Errno) in try file.truncate(to: base + op.newSize) } }
            lastOutcome = FsxOutcome(result)
            if case .failure(let e) = result { return fail("\(what): truncate failed with \(e.symbolicName)") }
            model.truncate(to: op.newSize)
        case .fallocate, .punch_hole, .zero_range:
            let result = FaultInjector.exempting {
                Result { () throws(Errno) in
                    switch op.name {
                    case .fallocate: try file.allocate(offset: base + op.offset, length: op.length, keepSize: op.keepSize)
                    case .punch_hole: try file.punchHole(offset: base + op.offset, length: op.length)
                    default: try file.zeroRange(offset: base + op.offset, length: op.length, keepSize: op.keepSize)
                    }
                }
            }
            lastOutcome = FsxOutcome(result)
            if case .failure(let e) = result { return fail("\(what): \(op.name.rawValue) failed with \(e.symbolicName)") }
            if op.name != .fallocate { model.zero(offset: op.offset, length: op.length) }
            if op.name != .punch_hole && !op.keepSize && op.offset + op.length > model.size {
                model.truncate(to: op.offset + op.length)
            }
        case .copy_range:
            let (src, len, dst) = (op.offset, op.length, op.destination)
            let count = src >= model.size ? 0 : min(len, model.size - src)
            let overlap = dst + count > src && dst < src + count
            let result = FaultInjector.exempting {
                Result { () throws(Errno) -> Int in try file.copyFileRange(from: base + src, length: len, to: base + dst) }
            }
            lastOutcome = FsxOutcome(result)
            switch result {
            case .failure(let e):
                if !(overlap && e == .invalidArgument) { fail("\(what): copy_range failed with \(e.symbolicName)") }
            case .success(let copied):
                if overlap || copied != count { return fail("\(what): copy_range copied \(copied), expected \(overlap ? "EINVAL" : String(count))") }
                model.copy(from: src, count: count, to: dst)
            }
        case .fsync:
            let result = Result { () throws(Errno) in try file.fsync() }
            lastOutcome = FsxOutcome(result)
            noteWritebackFaults(plan.end())
            if case .failure(let e) = result {
                if !(e == .ioError && writebackErrorPending) { fail("\(what): fsync failed with \(e.symbolicName)") }
            }
            writebackErrorPending = false
        default:
            fail("\(what): not supported")
        }
    }

    /// fsx's check_eofpage: the bytes of the EOF page past EOF read as zero through the mapping.
    mutating func checkEOFPage(_ what: String) {
        let size = model.size
        let pageEnd = roundUp(size, pageSize)
        guard size > 0, pageEnd > size else { return }
        let tail = FaultInjector.exempting {
            Result { () throws(Errno) -> [UInt8] in try file.mappedLoad(count: pageEnd - size, at: base + size) }
        }
        if case .success(let bytes) = tail,
            let i = bytes.indices.first(where: { bytes[$0] != 0 && !(size + $0 < model.unknown.count && model.unknown[size + $0]) })
        {
            fail(
                "\(what): byte \(size + i) of the EOF page, past EOF, reads \(bytes[i]) through the mapping, not 0",
                bad: [FsxBadByte(offset: size + i, good: 0, bad: bytes[i])])
        }
    }

    /// The engine's bytes of the run's range, read fault-free.
    func engineImage() -> [UInt8] {
        FaultInjector.exempting {
            (try? file.read(count: model.size + pageSize, at: base)) ?? []
        }
    }

    /// Compares the whole file and checks the invariants.
    mutating func check(_ when: String) {
        let got = engineImage()
        if got.count != model.size { return fail("\(when): the file reads \(got.count) bytes, the model has \(model.size)") }
        let bad = model.badBytes(got, at: 0)
        if !bad.isEmpty { return fail("\(when): the file differs from the model", bad: bad) }
        if let p = file.invariantViolations().first { return fail("\(when): \(p)") }
        if let p = fs.checkSpaceAccounting() { fail("\(when): \(p)") }
    }

    /// The end of a run: fsync, drop the cache, compare everything.
    public mutating func finish() {
        if report.violation == nil {
            check("before the final fsync")
        }
        if report.violation == nil {
            let synced = FaultInjector.exempting { Result { () throws(Errno) in try file.fsync() } }
            if case .failure(let e) = synced, !(e == .ioError && writebackErrorPending) {
                fail("final fsync failed with \(e.symbolicName)")
            }
            file.dropCaches()
            if file.delallocBlocks != 0 { fail("\(file.delallocBlocks) delalloc blocks left after the final fsync") }
            check("after the final fsync and cache drop")
        }
        report.cleanupCalls = file.inode.stats.cleanups
        report.faultsInjected = Dictionary(uniqueKeysWithValues: plan.state.withLock { $0.counts }.map { ($0.key.rawValue, $0.value) })
        report.expectedImage = Array(model.read(offset: 0, count: model.size))
        report.actualImage = engineImage()
    }
}

/// Runs `config.ops` generated ops, or the entries of `replay`.
public func runFsx(_ config: FsxConfig, replay: [FsxEntry]? = nil, progress: ((Int) -> Void)? = nil) -> FsxReport {
    let start = ContinuousClock.now
    var run = FsxRun(config)
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
    var report = run.report
    report.elapsedSeconds = (ContinuousClock.now - start).inSeconds
    return report
}

/// Delta debugging (Zeller's ddmin) over a failing entry list: the smallest list found that
/// still fails when replayed from an empty file.
public func minimizeFsx(_ config: FsxConfig, _ failing: [FsxEntry], maxRuns: Int = 2000) -> [FsxEntry] {
    var runs = 0
    // The checks read the file and so change what the cache holds; the replays check as the
    // failing run did, so that they see the same engine.
    func fails(_ entries: [FsxEntry]) -> Bool {
        runs += 1
        return runFsx(config, replay: entries).violation != nil
    }
    var current = failing
    var n = 2
    while current.count >= 2 && runs < maxRuns {
        let chunk = (current.count + n - 1) / n
        var reduced = false
        var i = 0
        while i < current.count && runs < maxRuns {
            let complement = Array(current[..<i]) + Array(current[min(current.count, i + chunk)...])
            if !complement.isEmpty && fails(complement) {
                current = complement
                n = max(n - 1, 2)
                reduced = true
                break
            }
            i += chunk
        }
        if !reduced {
            if n >= current.count { break }
            n = min(current.count, n * 2)
        }
    }
    return current
}
