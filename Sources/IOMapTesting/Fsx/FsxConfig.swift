// Counterpart: fstests' fsx (ltp/fsx.c): its command-line options (sizes, op classes, fault
// injection), here one value; a preset such as the random runner's is a function building it.

import ExtentFS
import IOMap
import IOMapBase

/// How an fsx run is set up.
public struct FsxConfig: Sendable, DeliberateBugsCarrier {
    public var seed: UInt64
    public var ops = 100_000
    public var maxFileSize = 256 << 10
    public var maxOpSize = 64 << 10
    /// Every offset of the run is shifted by this much in the engine's file.
    public var offsetBase = 0
    public var blockSize = 4096
    public var maxFolioSize = 64 << 10
    /// The engine's deliberate bugs; the switches (`policy`, `eofRounding`, ...) are views of them (DeliberateBugsCarrier).
    public var bugs: DeliberateBugs = []
    /// Whether the file is the engine's alone or a file of a volume (TestFileSystem).
    public var backing: FileBacking = .engine
    /// The fault sites that may fire.
    public var faults: Set<FaultSite> = Set(FaultSite.allCases)
    /// The probability of each site per query.
    public var faultRates: [FaultSite: Double] = FsxConfig.defaultFaultRates
    /// The probability of a user-buffer fault in a write that carries a race (nil: as in any
    /// other write): a race is worth most when the write then fails under it.
    public var raceUserBufferFaultRate: Double?
    /// Op classes not generated.
    public var disabled: Set<FsxOpName> = []
    /// Generate the engine-only events: writeback of a range, reclaim, close_open.
    public var engineEvents = true
    /// Make stores through the mapping land inside a third of the writes (`#@ race`); the
    /// differential tester turns this off, since the kernel side cannot do it.
    public var races = true
    /// What to generate instead of fsx's uniform choice of ops (nil: fsx's).
    public var mix: FsxMix?
    /// Compare the whole file and check the invariants after every op (else every `checkEvery`).
    public var checkEveryOp = false
    public var checkEvery = 100
    /// After every entry, check the invariants and space accounting and compare the range
    /// the entry changed (a block either side): a violation is reported at the op causing it.
    public var checkAroundEveryOp = false
    /// fsync, drop the cache, expect no delalloc block left and compare, every this many
    /// entries (nil: only at the end).
    public var flushCheckEvery: Int?
    /// Print the file's cache and extent state around this (0-based) entry, for debugging.
    public var traceEntry: Int?
    /// With a replayed log: count and skip ops the engine does not support instead of failing.
    public var skipUnsupported = false

    public init(seed: UInt64) { self.seed = seed }

    /// fsx's rates of each site per query.
    public static let defaultFaultRates: [FaultSite: Double] = [
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
        if checkEvery < 1 { return "checkEvery must be at least 1, got \(checkEvery)" }
        return nil
    }

    /// The engine's largest file size (2^52).
    public static var maxFileSizeLimit: Int { IOMapBase.maxFileSize }
    var maxFileSizeLimit: Int { Self.maxFileSizeLimit }
}
