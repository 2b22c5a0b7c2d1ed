// Counterpart: none in the kernel; the teeth of our tools. Each member is a way the engine can
// be made wrong on purpose, most of them by doing what Linux does (or did), so that a tool
// meant to catch that wrong can be shown to catch it: the canaries of the tests, and the
// switches `--policy truncate-page-cache`, `--eof-rounding kernel`, `--write-end kernel`,
// `--no-validity-check` and difftest's `--canary`.

/// The deliberate bugs an engine runs with; empty for the engine as it should be.
public struct DeliberateBugs: OptionSet, Sendable, Hashable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// The failure cleanup before the seed commit: truncate the page cache over the failed
    /// write's range, then punch (`CleanupPolicy.truncatePageCache`).
    public static let truncatePageCache = DeliberateBugs(rawValue: 1 << 0)
    /// Linux's EOF rounding in the delalloc release (`EOFRounding.kernel`, KERNEL-MODEL §3.8 O1).
    public static let kernelEOFRounding = DeliberateBugs(rawValue: 1 << 1)
    /// Linux's write end as its source reads: a short copy's tail left as the memory held it
    /// (`WriteEndPolicy.kernel`).
    public static let kernelWriteEnd = DeliberateBugs(rawValue: 1 << 2)
    /// A truncate down that skips zeroing the rest of the block holding the new EOF, so stale
    /// bytes come back when the file grows again (difftest's canary).
    public static let skipEOFZeroing = DeliberateBugs(rawValue: 1 << 3)
    /// No ->iomap_valid: a write trusts a mapping that went stale (KERNEL-MODEL §10.3 V-3).
    public static let noValidityCheck = DeliberateBugs(rawValue: 1 << 4)

    // The volume's ordering rules broken (docs/VOLUME.md "Ordering rules"), one each.

    /// Rule 1: a checkpoint holding a conversion or a size raise is written without first
    /// flushing the data it covers.
    public static let commitBeforeData = DeliberateBugs(rawValue: 1 << 5)
    /// Rule 2: freed blocks go back to the allocator before the free commits.
    public static let reuseBeforeCommit = DeliberateBugs(rawValue: 1 << 6)
    /// Rule 3: the superblock naming a snapshot is written before the snapshot is flushed.
    public static let superblockBeforeSnapshot = DeliberateBugs(rawValue: 1 << 7)
    /// Rule 4: fsync writes back every file of the volume, as ext3's did.
    public static let fsyncWritesEverything = DeliberateBugs(rawValue: 1 << 8)
    /// Rule 5: every log force writes and flushes on its own, with no group commit.
    public static let forceAlone = DeliberateBugs(rawValue: 1 << 9)

    // The volume's durability promises broken, for the crash tests (docs/VOLUME.md
    // "Deliberate bugs of the crash tests"): each a way a crash can lose what the model says
    // survives, which a crash explorer must catch.

    /// fsync, fdatasync and msync of a file, and fsync of a directory, write back and then
    /// return without forcing the log (or flushing the data): what they promised is lost by
    /// the next crash, as on a file system whose fsync only starts the I/O.
    public static let fsyncSkipsForce = DeliberateBugs(rawValue: 1 << 10)
    /// A rename is logged as two transactions, the old name removed and then the new one
    /// added, so that a force (the background force, or a crash explorer at a transaction
    /// boundary) can seal a checkpoint between them: a crash there shows neither name, and
    /// an inode that nothing names. The one rename record of LogRecord.rename is what rules
    /// this out.
    public static let renameTwoRecords = DeliberateBugs(rawValue: 1 << 11)

    /// The bugs the separate switches name.
    public init(
        policy: CleanupPolicy = .preserveDirty, eofRounding: EOFRounding = .blockEnd, writeEnd: WriteEndPolicy = .zeroTail,
        skipEOFZeroing: Bool = false, validityCheck: Bool = true
    ) {
        var b: DeliberateBugs = []
        if policy == .truncatePageCache { b.insert(.truncatePageCache) }
        if eofRounding == .kernel { b.insert(.kernelEOFRounding) }
        if writeEnd == .kernel { b.insert(.kernelWriteEnd) }
        if skipEOFZeroing { b.insert(.skipEOFZeroing) }
        if !validityCheck { b.insert(.noValidityCheck) }
        self = b
    }

    mutating func set(_ member: DeliberateBugs, _ on: Bool) {
        if on { insert(member) } else { remove(member) }
    }
}

/// A configuration that carries deliberate bugs: the switches the tools set are views of
/// its `bugs`, written once here for every configuration.
public protocol DeliberateBugsCarrier {
    var bugs: DeliberateBugs { get set }
}

extension DeliberateBugsCarrier {
    public var cleanupPolicy: CleanupPolicy {
        get { bugs.contains(.truncatePageCache) ? .truncatePageCache : .preserveDirty }
        set { bugs.set(.truncatePageCache, newValue == .truncatePageCache) }
    }
    /// `cleanupPolicy`, by the name the tools' `--policy` gives it.
    public var policy: CleanupPolicy {
        get { cleanupPolicy }
        set { cleanupPolicy = newValue }
    }
    public var eofRounding: EOFRounding {
        get { bugs.contains(.kernelEOFRounding) ? .kernel : .blockEnd }
        set { bugs.set(.kernelEOFRounding, newValue == .kernel) }
    }
    /// `.kernel` leaves the tail of a short copy as Linux's source reads (wrong on purpose).
    public var writeEnd: WriteEndPolicy {
        get { bugs.contains(.kernelWriteEnd) ? .kernel : .zeroTail }
        set { bugs.set(.kernelWriteEnd, newValue == .kernel) }
    }
    /// A truncate down skips zeroing the rest of the new EOF block (difftest's canary).
    public var canarySkipEOFZeroing: Bool {
        get { bugs.contains(.skipEOFZeroing) }
        set { bugs.set(.skipEOFZeroing, newValue) }
    }
    /// False: the file system has no ->iomap_valid (the explorer's stale-mapping teeth).
    public var validityCheck: Bool {
        get { !bugs.contains(.noValidityCheck) }
        set { bugs.set(.noValidityCheck, !newValue) }
    }
}

/// The set reads its own switches the same way.
extension DeliberateBugs: DeliberateBugsCarrier {
    public var bugs: DeliberateBugs {
        get { self }
        set { self = newValue }
    }
}
