// Counterpart: xfs_repair -n's phases and e2fsck -n's passes (superblock, log, inodes,
// duplicate blocks, free space, directories, connectivity, link counts), and XFS online
// scrub's per-structure checks (fs/xfs/scrub: sb, inode, bmap, dir, parent, nlinks,
// dirtree, fscounters), on the volume's metadata as recovery rebuilds it.
//
// fsck never writes. It reads the superblocks, the snapshot and the log through a LogStore,
// replays the log in memory as a mount would, and runs each named check over the result,
// counting what it looked at and listing what is wrong. The codes are those of docs/VOLUME.md "fsck".

import ExtentFS
import IOMapBase

/// One named check: what it looked at and what it found wrong.
public struct FsckCheck: Sendable, Equatable {
    /// The one-letter code (S, L, C, I, E, D, F, N, T, K, O, U).
    public var code: String
    public var name: String
    /// How many items the check looked at.
    public var checked = 0
    public var errors: [String] = []
    /// Whether the check could run (false when an earlier failure left nothing to check).
    public var ran = true

    public init(_ code: String, _ name: String) {
        self.code = code
        self.name = name
    }
}

/// What fsck found.
public struct FsckReport: Sendable, Equatable {
    public var checks: [FsckCheck] = []
    /// The log held checkpoints past the snapshot, which recovery (in memory) replayed.
    public var replayedCheckpoints = 0
    /// Why the log ended where it did.
    public var logEnd = ""
    public var inodes = 0
    public var usedBlocks = 0
    public var deviceBlocks = 0

    public init() {}

    public var errorCount: Int { checks.reduce(0) { $0 + $1.errors.count } }
    public var clean: Bool { errorCount == 0 }
    /// fsck(8)'s exit status: 0 clean, 4 errors left uncorrected.
    public var exitStatus: Int32 { clean ? 0 : 4 }
}

/// The names of the checks, in the order they run.
public let fsckChecks: [(code: String, name: String)] = [
    ("S", "superblocks"), ("L", "log"), ("C", "snapshot"), ("I", "inodes"), ("E", "extents"), ("D", "blocks owned twice"),
    ("F", "free space"), ("N", "directory entries"), ("T", "tree connectivity"), ("K", "link counts"), ("O", "orphans"),
    ("U", "summary counters"),
]

/// Checks the volume `store` reads from a device of `deviceBlocks` blocks, changing nothing.
public func checkVolume(_ store: any LogStore, deviceBlocks: Int) -> FsckReport {
    checkVolume(store, deviceBlocks: deviceBlocks, recovered: Result { () throws(VolumeError) in try recoverLog(store) })
}

/// Checks the volume as `recovered`, the outcome of recoverLog(store), found it: for a caller
/// that recovers an image once for both a check and a mount of it (the crash explorer).
/// Recovery is a function of the device's bytes and writes nothing, so the outcome is the one
/// the check would compute, as long as nothing wrote to the device in between.
public func checkVolume(_ store: any LogStore, deviceBlocks: Int, recovered outcome: Result<RecoveredLog, VolumeError>) -> FsckReport {
    var report = FsckReport()
    report.deviceBlocks = deviceBlocks
    var checks = fsckChecks.map { FsckCheck($0.code, $0.name) }
    func index(_ code: String) -> Int { checks.firstIndex { $0.code == code }! }
    // The checks are stored before each return, not by a defer: a defer runs after the
    // returned copy of the report is taken, so its checks would be lost.
    let recovered: RecoveredLog
    do throws(VolumeError) {
        recovered = try outcome.get()
    } catch {
        let text = error.description
        let code = text.hasPrefix("superblock") ? "S" : text.hasPrefix("log") ? "L" : "C"
        checks[index(code)].errors.append(text)
        for i in checks.indices where i > index(code) { checks[i].ran = false }
        report.checks = checks
        return report
    }
    checks[index("S")].checked = 2
    // One damaged copy mounts (the other is used), but it is damage all the same.
    if let damaged = store.damagedSuperblock { checks[index("S")].errors.append(damaged.description) }
    checks[index("L")].checked = recovered.checkpoints
    checks[index("C")].checked = recovered.snapshotBlocks.reduce(0) { $0 + $1.count }
    report.replayedCheckpoints = recovered.checkpoints
    report.logEnd = recovered.end
    let state = recovered.state
    report.inodes = state.inodes.count
    var checker = StateChecker(
        state: state, snapshotBlocks: recovered.snapshotBlocks, metadataBlocks: store.metadataBlocks, deviceBlocks: deviceBlocks)
    checker.run()
    for c in checker.checks { checks[index(c.code)].checked += c.checked; checks[index(c.code)].errors += c.errors }
    report.usedBlocks = checker.usedBlocks
    report.checks = checks
    return report
}

/// The checks that look at the metadata state alone (I, E, D, F, N, T, K, O, U).
public struct StateChecker {
    public let state: MetadataState
    let snapshotBlocks: [BlockExtent]
    let metadataBlocks: Int
    let deviceBlocks: Int
    public private(set) var checks: [FsckCheck] = fsckChecks.dropFirst(3).map { FsckCheck($0.code, $0.name) }
    public private(set) var usedBlocks = 0

    public init(state: MetadataState, snapshotBlocks: [BlockExtent], metadataBlocks: Int, deviceBlocks: Int) {
        self.state = state
        self.snapshotBlocks = snapshotBlocks
        self.metadataBlocks = metadataBlocks
        self.deviceBlocks = deviceBlocks
    }

    mutating func count(_ code: String, _ n: Int = 1) { checks[checks.firstIndex { $0.code == code }!].checked += n }
    mutating func error(_ code: String, _ text: String) { checks[checks.firstIndex { $0.code == code }!].errors.append(text) }

    public mutating func run() {
        let sorted = state.inodes.keys.sorted()
        for ino in sorted { checkInode(ino, state.inodes[ino]!) }
        checkOwnership()
        let names = checkEntries(sorted)
        checkTree()
        checkLinks(sorted, names: names)
        checkOrphans()
        checkCounters(sorted)
    }

    // I and E: each inode by itself.
    mutating func checkInode(_ ino: InodeNumber, _ rec: InodeRecord) {
        count("I")
        let a = rec.attributes
        if ino.rawValue == 0 { error("I", "inode 0 exists") }
        if a.permissions & ~0o7777 != 0 { error("I", "\(ino): permission bits 0o\(String(a.permissions, radix: 8)) out of range") }
        if (a.type == .directory) != (rec.directory != nil) {
            error("I", "\(ino): a \(a.type) \(rec.directory == nil ? "without" : "with") entries")
        }
        if (a.type == .symlink) != (rec.symlinkTarget != nil) {
            error("I", "\(ino): a \(a.type) \(rec.symlinkTarget == nil ? "without" : "with") a target")
        }
        if let t = rec.symlinkTarget, t.isEmpty || t.count > 4095 { error("I", "\(ino): symlink target of \(t.count) bytes") }
        if a.type != .regular && !rec.extents.isEmpty { error("E", "\(ino): a \(a.type) maps \(rec.blockCount) blocks") }
        if a.size < 0 { error("I", "\(ino): negative size \(a.size)") }
        if a.nlink == 0 && !state.orphans.contains(ino) { error("I", "\(ino): no links and not on the orphan list") }
        var last: DiskExtent?
        for e in rec.extents {
            count("E")
            if e.count <= 0 || e.fileBlock < 0 || e.diskBlock < 0 { error("E", "\(ino): bad extent \(e)") }
            if e.diskEnd > Int64(deviceBlocks) { error("E", "\(ino): \(e) past the device's \(deviceBlocks) blocks") }
            if e.diskBlock < Int64(metadataBlocks) { error("E", "\(ino): \(e) inside the superblocks and the log") }
            if let l = last, l.fileEnd > e.fileBlock { error("E", "\(ino): \(e) not after \(l) (unsorted or overlapping)") }
            last = e
        }
    }

    // D and F: every block owned once; free space is what is left.
    mutating func checkOwnership() {
        var owned: [(start: Int64, end: Int64, who: String)] = [(0, Int64(metadataBlocks), "the superblocks and the log")]
        for b in snapshotBlocks { owned.append((Int64(b.start), Int64(b.end), "the snapshot")) }
        for (ino, rec) in state.inodes { for e in rec.extents { owned.append((e.diskBlock, e.diskEnd, "\(ino)")) } }
        for i in state.intents.values { for e in i.extents { owned.append((e.diskBlock, e.diskEnd, "free intent \(i.id)")) } }
        owned.sort { $0.start < $1.start }
        var end: Int64 = 0
        var endOwner = ""
        var used: Int64 = 0
        for o in owned {
            count("D")
            if o.start < end { error("D", "blocks [\(o.start), \(min(end, o.end))) owned by both \(endOwner) and \(o.who)") }
            if o.end > end {
                used += o.end - max(o.start, end)
                end = o.end
                endOwner = o.who
            }
        }
        usedBlocks = Int(used)
        count("F")
        if used > Int64(deviceBlocks) { error("F", "\(used) blocks in use on a device of \(deviceBlocks)") }
    }
}
