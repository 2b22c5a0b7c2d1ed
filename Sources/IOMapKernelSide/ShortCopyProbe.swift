// Counterpart: none in the kernel; a reproducer of the kind attached to a kernel bug report.
// It asks the host kernel the question WriteEndPolicy answers for the engine: when a
// buffered write's copy from user memory comes up short, what is left in the part of the
// write's range the copy did not reach? Linux's __iomap_write_end, as the engine models it
// (WriteEndPolicy.kernel; docs/DIFFERENCES-FROM-LINUX.md §4), leaves it as the page
// allocator handed it out, in blocks write-begin already marked uptodate; then a read, and
// after writeback the disk, shows that memory.
//
// Each kernel attempt (CKernelShim's shortcopyprobe.c) lays out a new file (a hole, or an
// unwritten extent), drops its cache, fills and frees memory with a marker, writes from a
// buffer that turns unreadable part of the way through, and counts the non-zero bytes
// outside what the write reported written: in the cache, then after fsync and a cache drop.
// The controls are the same writes from readable buffers, on tmpfs and on ext4; the engine
// runs the same writes with poisoned folio memory.

import CKernelShim
import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapTesting
import PageCache

#if canImport(Glibc)
    import Glibc
#endif

/// One write of the probe: into a file of `fileSize` bytes, all hole or (unwritten) all
/// fallocated, `length` bytes at `offset`, of which the user buffer can supply `readable`.
public struct ShortCopyWrite: Sendable, Equatable {
    public var fileSize: Int
    public var unwritten = false
    public var offset: Int
    public var length: Int
    public var readable: Int
    /// Marker bytes put at the start of the file beforehand, which the count must find: a
    /// self-check of the counting, 0 in the probe itself.
    public var planted = 0

    /// The same write from a buffer that is readable throughout.
    public var fullyReadable: ShortCopyWrite {
        var w = self
        w.readable = length
        return w
    }

    public var description: String {
        "\(length) bytes at \(offset)\(unwritten ? " (unwritten)" : ""), \(readable) readable"
    }
}

public enum ShortCopyCase: String, CaseIterable, Sendable {
    /// One 4 KiB block per 4 KiB folio: write-begin zeroes around the write, which marks the
    /// whole folio uptodate, so the short copy is accepted as it is.
    case hole4k = "4k-hole"
    /// 1 KiB blocks: the write covers two blocks whole and two in part, so the folio is not
    /// uptodate after write-begin and the short copy is rejected; the retry with what did
    /// copy then lands in a block write-begin already marked uptodate, and is accepted.
    case hole1k = "1k-hole"
    /// A 64 KiB write at a 64 KiB boundary, for which XFS takes a 64 KiB folio.
    case largeFolio = "large-folio"
    /// As 4k-hole, over fallocated (unwritten) space.
    case unwritten
    /// 4k-hole (1k-hole on a file system with smaller blocks) written by an unprivileged user.
    case unprivileged

    static let hole4kWrite = ShortCopyWrite(fileSize: 64 << 10, offset: 8492, length: 300, readable: 100)
    static let hole1kWrite = ShortCopyWrite(fileSize: 64 << 10, offset: 8492, length: 3000, readable: 200)

    /// The case's write on a file system of `blockSize`-byte blocks.
    public func write(blockSize: Int) -> ShortCopyWrite {
        switch self {
        case .hole4k: return Self.hole4kWrite
        case .hole1k: return Self.hole1kWrite
        case .largeFolio: return ShortCopyWrite(fileSize: 256 << 10, offset: 64 << 10, length: 64 << 10, readable: 200)
        case .unwritten:
            var w = Self.hole4kWrite
            w.unwritten = true
            return w
        case .unprivileged: return blockSize < pageSize ? Self.hole1kWrite : Self.hole4kWrite
        }
    }

    /// Whether the case is meant for a file system of `blockSize`-byte blocks.
    public func fits(blockSize: Int) -> Bool {
        switch self {
        case .hole4k, .largeFolio, .unwritten: return blockSize == pageSize
        case .hole1k: return blockSize < pageSize
        case .unprivileged: return true
        }
    }

    /// What a file system must offer for the case, for the note that it was skipped.
    var needs: String {
        switch self {
        case .hole4k, .largeFolio, .unwritten: return "needs \(pageSize)-byte blocks"
        case .hole1k: return "needs blocks smaller than \(pageSize) bytes (a 1024-byte-block image)"
        case .unprivileged: return "runs on the first file system probed"
        }
    }
}

public struct ShortCopyProbeConfig: Sendable {
    /// A directory on the file system to probe; nil: new XFS images, loop-mounted.
    public var directory: String?
    /// Attempts per case and per control write.
    public var attempts = 20
    /// The block size of the one XFS image to make; nil: a 4096-byte and a 1024-byte image.
    public var blockSize: Int?
    /// The uid of the unprivileged case; nil: 65534 (nobody) when root, else the caller.
    public var user: Int?
    /// Set for the FUSE variant (`--fs fuse`): our own mount, in both cache modes, instead of
    /// XFS (ShortCopyProbe+FUSE.swift).
    public var fuse: FUSEProbeTools?
    /// What the FUSE variant covers, and its canary.
    public var fusePlan = FUSEProbePlan()
    public init() {}

    /// The block sizes of the XFS images to make.
    public var imageBlockSizes: [Int] { blockSize.map { [$0] } ?? [4096, 1024] }

    /// What is wrong with these settings, if anything.
    public var problem: String? {
        if attempts < 1 { return "--attempts must be at least 1, got \(attempts)" }
        if attempts > 100_000 { return "--attempts must be at most 100000, got \(attempts)" }
        if let blockSize {
            if ![1024, 4096].contains(blockSize) { return "--block-size must be 1024 or 4096, got \(blockSize)" }
            if directory != nil {
                return "--block-size chooses the image to make; with --dir the probe uses that directory's block size"
            }
        }
        if fusePlan.planted < 0 || fusePlan.planted > 4096 { return "--canary-plant must be 0 to 4096, got \(fusePlan.planted)" }
        if fusePlan.planted > 0 && fuse == nil { return "--canary-plant is the FUSE variant's canary; it needs --fs fuse" }
        if fuse != nil {
            if directory != nil { return "--dir is for XFS; --fs fuse mounts volumes of its own" }
            if blockSize != nil { return "--block-size chooses an XFS image; --fs fuse mounts volumes of 4096-byte blocks" }
            if user != nil { return "--user is for the XFS probe's unprivileged case; --fs fuse has none" }
        }
        if let user {
            if user == 0 { return "--user 0 is root; the unprivileged case needs an unprivileged uid" }
            if user < 0 || user > Int(UInt32.max - 1) { return "--user must be a uid, got \(user)" }
        }
        return nil
    }
}

/// What attempts found in one of the two places the probe reads back: the page cache, right
/// after the write, or the disk, after fsync and a cache drop.
public struct ShortCopyFindings: Sendable {
    /// Stale bytes, summed over the attempts, and the most that one attempt found.
    public var stale = 0
    public var maxStale = 0
    /// Of the stale bytes, those equal to the marker freed memory was filled with.
    public var marker = 0
    public init() {}

    /// One attempt's.
    init(stale: Int64, marker: Int64) {
        self.stale = Int(stale)
        maxStale = Int(stale)
        self.marker = Int(marker)
    }

    mutating func add(_ other: ShortCopyFindings) {
        stale += other.stale
        maxStale = max(maxStale, other.maxStale)
        marker += other.marker
    }
}

/// The sums over a case's or a control's attempts.
public struct ShortCopyTally: Sendable {
    public var attempts = 0
    public var inCache = ShortCopyFindings()
    public var onDisk = ShortCopyFindings()
    /// Attempts whose page-cache page under the write was one the marker was freed from, and
    /// attempts where that could be told at all.
    public var recycled = 0
    public var recycledKnown = 0
    /// What pwrite returned, each value once.
    public var writeReturned: [Int] = []
    public init() {}

    /// One attempt's.
    init(_ a: cks_short_copy_attempt) {
        attempts = 1
        inCache = ShortCopyFindings(stale: a.stale_in_cache, marker: a.marker_in_cache)
        onDisk = ShortCopyFindings(stale: a.stale_on_disk, marker: a.marker_on_disk)
        recycled = a.recycled == 1 ? 1 : 0
        recycledKnown = a.recycled >= 0 ? 1 : 0
        writeReturned = [Int(a.write_result)]
    }

    public var stale: Int { inCache.stale + onDisk.stale }

    // The findings by their flat names, as the report and the JSON print them.
    public var staleInCache: Int { inCache.stale }
    public var staleOnDisk: Int { onDisk.stale }
    public var maxStaleInCache: Int { inCache.maxStale }
    public var maxStaleOnDisk: Int { onDisk.maxStale }
    public var markerInCache: Int { inCache.marker }
    public var markerOnDisk: Int { onDisk.marker }

    mutating func add(_ a: cks_short_copy_attempt) { add(ShortCopyTally(a)) }

    mutating func add(_ other: ShortCopyTally) {
        attempts += other.attempts
        inCache.add(other.inCache)
        onDisk.add(other.onDisk)
        recycled += other.recycled
        recycledKnown += other.recycledKnown
        writeReturned = Array(Set(writeReturned + other.writeReturned)).sorted()
    }
}

public struct ShortCopyCaseResult: Sendable {
    public var name: String
    public var fs: String
    public var blockSize: Int
    public var write: ShortCopyWrite
    /// The uid the write ran as, for the unprivileged case.
    public var uid: Int?
    public var tally: ShortCopyTally
}

public struct ShortCopyControlResult: Sendable {
    public var name: String
    /// What the control ran on, for the report.
    public var detail: String
    public var tally: ShortCopyTally
}

/// A case or a control that did not run, and why.
public struct ShortCopySkip: Sendable {
    public var name: String
    public var reason: String
}

public struct ShortCopyProbeReport: Sendable {
    public var kernel = ""
    public var fs = ""
    public var blockSizes: [Int] = []
    public var initOnAlloc = InitOnAllocState(value: "unknown", source: "not looked at")
    public var cases: [ShortCopyCaseResult] = []
    public var controls: [ShortCopyControlResult] = []
    public var skipped: [ShortCopySkip] = []
    public var engine: [ShortCopyEngineResult] = []
    /// Things the report's reader should know (which uid stood in for the unprivileged user).
    public var notes: [String] = []
    public var seconds = 0.0
    /// The FUSE variant's findings, when it was the one run.
    public var fuse: FUSEShortCopyReport?

    /// Whether any case found stale bytes, in the cache or on disk.
    public var affected: Bool { fuse?.affected ?? cases.contains { $0.tally.stale > 0 } }
    /// Stale bytes the engine left, over all its writes, in the cache and on disk.
    public var engineStale: Int { engine.reduce(0) { $0 + $1.staleInCache + $1.staleOnDisk } }
}
