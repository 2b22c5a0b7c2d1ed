// Counterpart: none in the kernel; the write-failure counts fstests' fsx and fsstress print
// at the end of a run under injected faults.

/// What a run's failing buffered writes came to: the counters fsx, the random preset and the
/// threaded stress each report, in one type, so that they are counted and named alike and one
/// run's can be handed on whole (the random preset's report takes its fsx run's).
public struct WriteFailureCounts: Sendable, Equatable {
    /// Writes that failed, and writes that returned short (both only under faults).
    public var failedWrites = 0
    public var shortWrites = 0
    /// The engine's failure cleanups, and the holes they punched (the file's inode stats).
    public var cleanups = 0
    public var punches = 0
    /// The injected faults that fired, by site.
    public var faultsInjected: [String: Int] = [:]

    public init() {}
}

/// A report that carries `WriteFailureCounts`: their fields read and write as the report's
/// own (`report.failedWrites`).
@dynamicMemberLookup
public protocol ReportsWriteFailures {
    var writeFailures: WriteFailureCounts { get set }
}

extension ReportsWriteFailures {
    public subscript<T>(dynamicMember field: WritableKeyPath<WriteFailureCounts, T>) -> T {
        get { writeFailures[keyPath: field] }
        set { writeFailures[keyPath: field] = newValue }
    }
}
