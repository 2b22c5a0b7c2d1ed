// Counterpart: fstests' fsx (ltp/fsx.c) run with one set of options: the random runner of
// issue 2 is fsx with a preset, its op mix heavy in writes, a race landing inside one write
// in seven (a store ahead of the cursor, a writeback or a reclaim, at hook point H3), the
// write path's faults, and the checks after every op, every `fullCheckEvery` and every
// `flushCheckEvery` (fsync, drop the cache, compare).

import ExtentFS
import IOMap
import IOMapBase

/// How a random run is set up: the preset's parameters.
public struct RandomRunConfig: Sendable, CustomStringConvertible, DeliberateBugsCarrier {
    public var seed: UInt64
    public var ops: Int
    public var blockSize: Int
    public var maxFolioSize: Int
    /// The engine's deliberate bugs; the switches (`policy`, `eofRounding`, ...) are views of them (DeliberateBugsCarrier).
    public var bugs: DeliberateBugs
    /// Inject faults at the write path's sites (user-buffer faults are always injected).
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
        self.bugs = DeliberateBugs(policy: policy, eofRounding: eofRounding)
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

    /// The random runner's op mix: writes (two in five of them with a race), the mapping's
    /// ops, the size changes, and writeback, reclaim and drop_caches between them.
    public static let mix = FsxMix(
        choices: [
            (.op(.write), 22), (.racedWrite, 14), (.op(.mapwrite), 10), (.op(.mapread), 5), (.op(.read), 9),
            (.op(.truncate), 7), (.op(.punch_hole), 6), (.op(.zero_range), 5), (.op(.fallocate), 5),
            (.writeback, 7), (.reclaim, 4), (.dropCaches, 2), (.op(.fsync), 4),
        ],
        races: [(.writeback, 1), (.reclaim, 1), (.mapwrite, 2)], raceStoreMax: 16)

    /// The sites the runner injects at: the write path's, without writeback I/O errors (a
    /// flush check expects every byte back).
    public static let faultSites: Set<FaultSite> = [
        .shortCopy, .zeroCopy, .reserveENOSPC, .staleBeforeFolioLock, .staleMidMapping, .readIOError, .userBufferFault,
    ]

    /// The fsx run this preset is.
    public var fsxConfig: FsxConfig {
        var c = FsxConfig(
            seed: seed, ops: ops, blockSize: blockSize, maxFolioSize: maxFolioSize, maxFileSize: maxFileSize, maxOpSize: maxOpSize)
        c.bugs = bugs
        c.faults = faults ? Self.faultSites : [.userBufferFault]
        // A write that races fails on its buffer more often: the seed commit's race needs both.
        c.raceUserBufferFaultRate = 0.6
        c.mix = Self.mix
        c.checkAroundEveryOp = true
        c.checkEvery = max(1, fullCheckEvery)
        c.flushCheckEvery = max(1, flushCheckEvery)
        c.traceEntry = traceOp
        return c
    }
}

extension FsxConfig {
    /// An fsx run of `ops` operations with these sizes, the settings every front end of fsx
    /// takes from its options: this preset, `iomap fsx` and `iomap difftest`.
    public init(seed: UInt64, ops: Int, blockSize: Int, maxFolioSize: Int, maxFileSize: Int, maxOpSize: Int) {
        self.init(seed: seed)
        (self.ops, self.blockSize, self.maxFolioSize) = (ops, blockSize, maxFolioSize)
        (self.maxFileSize, self.maxOpSize) = (maxFileSize, maxOpSize)
    }
}

/// What a random run found.
public struct RandomRunReport: Sendable, ReportsWriteFailures {
    public var config: RandomRunConfig
    public var opsRun = 0
    /// The first violation, described, or nil.
    public var violation: String?
    /// The operation index at which it was found.
    public var violationOp: Int?
    public var opsByKind: [String: Int] = [:]
    public var writeFailures = WriteFailureCounts()
    public var racesLanded = 0
    /// The last operations before the violation (or the end), as fsx log lines.
    public var logTail: [String] = []
    /// The whole fsx run, whose entries replay it (`FsxLog.format`, `runFsx(_:replay:)`).
    public var fsx: FsxReport?

    public var replayLine: String { "replay with RandomRunConfig(\(config))" }
}

/// Runs the preset: `config.ops` random operations against the engine and the model,
/// checking after each one; stops at the first violation.
public func runRandomOps(_ config: RandomRunConfig, progress: ((Int) -> Void)? = nil) -> RandomRunReport {
    let r = runFsx(config.fsxConfig, progress: progress)
    var out = RandomRunReport(config: config)
    out.opsRun = r.entries.count
    out.violation = r.violation?.what
    out.violationOp = r.violation.map { max(0, min($0.entryIndex, r.entries.count) - 1) }
    out.opsByKind = r.opsByKind
    out.writeFailures = r.writeFailures
    out.racesLanded = r.racesLanded.values.reduce(0, +)
    out.logTail = FsxLog.format(Array(r.entries.suffix(64))).split(separator: "\n").suffix(64).map(String.init)
    out.fsx = r
    return out
}
