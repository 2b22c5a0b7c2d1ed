// Counterpart: fstests' fsx (ltp/fsx.c): what an operation returned, and the report of a run
// (fsx's failure dump: the bad offsets, the good and the bad file).

import ExtentFS
import IOMapBase

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
public struct FsxReport: Sendable, ReportsWriteFailures {
    public var config: FsxConfig
    /// The entries run, with the faults that fired during each op; what a log records.
    public var entries: [FsxEntry] = []
    public var opsByKind: [String: Int] = [:]
    public var skippedUnsupported: [String: Int] = [:]
    /// Races that landed inside a write, by kind.
    public var racesLanded: [String: Int] = [:]
    public var writeFailures = WriteFailureCounts()
    public var violation: FsxViolation?
    /// The model's bytes and the engine's at the violation (or the end): the expected and
    /// actual images.
    public var expectedImage: [UInt8] = []
    public var actualImage: [UInt8] = []
    public var elapsedSeconds = 0.0

    /// The failure cleanups, and the holes they punched, by fsx's names for them.
    public var cleanupCalls: Int { writeFailures.cleanups }
    public var punchCalls: Int { writeFailures.punches }
}
