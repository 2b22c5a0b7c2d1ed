// Counterpart: the parts of struct inode (include/linux/fs.h) that the iomap layer uses:
// i_size with i_size_read/i_size_write, i_blkbits, i_rwsem and i_mapping.

import IOMapBase
import PageCache
import Synchronization

/// What a buffered write does with the unused part of its new delalloc reservation when it
/// fails part-way (docs/DESIGN.md decision 4).
public enum CleanupPolicy: String, Sendable, CaseIterable {
    /// The seed's algorithm in its newest shape: walk the cache, keep delalloc under dirty
    /// data (per block in partly dirty folios), punch the rest. Never truncate the cache.
    case preserveDirty = "preserve-dirty"
    /// The behaviour before the seed: truncate the page cache over the range, then punch it.
    /// Kept so that our tools can show the corruption it causes.
    case truncatePageCache = "truncate-page-cache"
}

/// How the delalloc release treats an unaligned end of file (docs/KERNEL-MODEL.md §3.8 O1,
/// docs/DESIGN.md decision 5).
public enum EOFRounding: String, Sendable, CaseIterable {
    /// Ours: the scan for dirty data runs to the end of the block holding EOF, so a block
    /// with dirty bytes below EOF keeps its reservation.
    case blockEnd = "block-end"
    /// The kernel's: the scan stops at i_size, the final punch starts mid-block and the file
    /// system rounds it down, removing the reservation under the dirty EOF block.
    case kernel = "kernel"
}

/// What a buffered write does with the part of its range a short copy did not reach, inside
/// the blocks its write-begin zeroed around the write (docs/DIFFERENCES-FROM-LINUX.md §4).
public enum WriteEndPolicy: String, Sendable, CaseIterable {
    /// Ours, as buffer heads' block_write_end zeroes new buffers: zero it, so that a block
    /// the fill made uptodate holds only zeroes and copied bytes.
    case zeroTail = "zero-tail"
    /// Linux's __iomap_write_end as its source reads: leave it. Whatever the folio's memory
    /// held there is then readable, and goes to disk with the dirty block. (Linux 6.18 on
    /// the machine we probe shows zeroes there all the same: `iomap kernel-probe short-copy`.)
    case kernel = "kernel"
}

/// Counters the tools and tests read.
public final class InodeStats: Sendable {
    let cleanupsCounter = Atomic<Int>(0)
    let punchesCounter = Atomic<Int>(0)
    let staleCounter = Atomic<Int>(0)
    let shortCopiesCounter = Atomic<Int>(0)

    /// Failure cleanups run (iomap_write_delalloc_release or the truncating variant).
    public var cleanups: Int { cleanupsCounter.load(ordering: .relaxed) }
    /// Punch callbacks issued by failure cleanup.
    public var punches: Int { punchesCounter.load(ordering: .relaxed) }
    /// Mappings found stale after a folio lock.
    public var staleMappings: Int { staleCounter.load(ordering: .relaxed) }
    /// Copies rejected or accepted short.
    public var shortCopies: Int { shortCopiesCounter.load(ordering: .relaxed) }
}

public final class Inode: Sendable {
    /// A number naming the file in hook events and messages.
    public let id: Int
    public let mapping: AddressSpace
    /// inode->i_rwsem.
    public let ioLock = RWSleepLock(level: .inodeIO, name: "inode I/O lock")
    public let environment: IOMapEnvironment
    public let stats = InodeStats()
    @usableFromInline let sizeValue = Atomic<Int>(0)
    /// The deliberate bugs this file runs with (DeliberateBugs' raw value).
    let bugsValue: Atomic<UInt16>
    /// Whether the environment has a hook or an interleaver: a hook point in the live
    /// environment is then one test of a stored flag, with no copy of the environment.
    let hasHooks: Bool
    /// Whether the environment has a hook closure (not only an interleaver).
    let hasHookClosure: Bool

    public init(
        id: Int, geometry: BlockGeometry, maxFolioSize: Int, environment: IOMapEnvironment,
        bugs: DeliberateBugs = []
    ) {
        self.id = id
        self.mapping = AddressSpace(geometry: geometry, maxFolioSize: maxFolioSize)
        self.environment = environment
        self.hasHooks = environment.hook != nil || environment.interleaver != nil
        self.hasHookClosure = environment.hook != nil
        self.bugsValue = Atomic(bugs.rawValue)
    }

    @inlinable @inline(__always) public var geometry: BlockGeometry { mapping.geometry }

    /// Takes the I/O lock exclusive. A call, not `inode.ioLock.lockExclusive()` at the call
    /// site: reached through another module's inode, the lock object was retained and
    /// released around every lock and unlock.
    public func lockIOExclusive() { ioLock.lockExclusive() }
    /// Releases the I/O lock taken by lockIOExclusive.
    public func unlockIOExclusive() { ioLock.unlockExclusive() }
    /// Takes the I/O lock shared (see lockIOExclusive).
    public func lockIOShared() { ioLock.lockShared() }
    /// Releases the I/O lock taken by lockIOShared.
    public func unlockIOShared() { ioLock.unlockShared() }

    /// i_size_read; inlinable, so that a caller in another module (every seek, read and
    /// write asks) pays one load and no call.
    @inlinable public var size: Int { sizeValue.load(ordering: .acquiring) }

    /// i_size_write. Callers hold the I/O lock exclusive or the folio lock of the EOF folio
    /// (the write path), as in the kernel.
    public func setSize(_ newSize: Int) {
        precondition(newSize >= 0 && newSize <= maxFileSize, "i_size \(newSize) out of range")
        sizeValue.store(newSize, ordering: .releasing)
    }

    /// The deliberate bugs this file runs with; a test may change them between operations.
    public var bugs: DeliberateBugs {
        get { DeliberateBugs(rawValue: bugsValue.load(ordering: .relaxed)) }
        set { bugsValue.store(newValue.rawValue, ordering: .relaxed) }
    }

    public var cleanupPolicy: CleanupPolicy { bugs.cleanupPolicy }
    public var eofRounding: EOFRounding { bugs.eofRounding }
    public var writeEnd: WriteEndPolicy { bugs.writeEnd }

    @inline(__always)
    func fire(_ point: HookPoint, _ range: @autoclosure () -> ByteRange) {
        guard hasHooks else { return }
        // An interleaver only acts on the threads it runs: on any other thread the hook point
        // costs one load of the process-wide count of such threads, as the locks pay.
        if !hasHookClosure && Interleaving.current == nil { return }
        environment.fire(point, fileID: id, range: range())
    }
}
