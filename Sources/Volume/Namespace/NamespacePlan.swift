// Counterpart: the transaction a directory operation of XFS builds (xfs_trans_alloc ...
// xfs_trans_commit in fs/xfs/xfs_inode.c: xfs_create, xfs_link, xfs_remove, xfs_rename),
// and the last-link handling of xfs_droplink and xfs_iunlink (the unlinked list).
//
// A namespace operation is a plan: a pure function of the metadata that checks the request
// as Linux does and returns the records of its transaction, without changing anything. The
// volume applies the records with MetadataState.apply and logs them under its metadata lock
// (docs/VOLUME.md "One state, one apply"), so the checks and the change see the same state.

import IOMapBase

/// The records of one transaction, and what the operation gives its caller.
public struct NamespacePlan<Value: Sendable>: Sendable {
    /// To apply in order and log as one transaction. Empty for an operation that changes
    /// nothing (a rename onto a hard link of itself).
    public var records: [LogRecord]
    public var value: Value

    public init(records: [LogRecord], value: Value) {
        self.records = records
        self.value = value
    }
}

/// Limits the namespace enforces, and the fs.protected_* policies of Linux (sysctls there;
/// the defaults are what systemd sets on most distributions, the kernel's own being off).
public struct NamespaceLimits: Hashable, Sendable {
    /// The most hard links an inode may have (the superblock's s_max_links): link fails with
    /// EMLINK at this count, and so do mkdir and a rename that would give a directory more
    /// subdirectories. 65,000 is ext4's limit; XFS's is 2^31 - 1. Configurable so that tests
    /// reach it.
    public var maxLinks: UInt32
    /// fs.protected_hardlinks: a caller may link only what it owns, or a regular file it
    /// may read and write that is not set-user-id or executable set-group-id (EPERM).
    public var protectedHardlinks: Bool
    /// fs.protected_symlinks: a symlink in a sticky world-writable directory is followed
    /// only by its owner, or when the directory's owner owns it too (EACCES).
    public var protectedSymlinks: Bool
    /// fs.protected_regular and fs.protected_fifos (0, 1 or 2): open(O_CREAT) of an existing
    /// regular file or fifo in a sticky directory owned by someone else, the file owned by
    /// neither the caller nor the directory's owner, is EACCES when the directory is
    /// world-writable (1), or group-writable too (2). Other types are refused so whatever
    /// these say.
    public var protectedRegular: UInt8
    public var protectedFifos: UInt8

    public init(
        maxLinks: UInt32 = 65_000, protectedHardlinks: Bool = true, protectedSymlinks: Bool = true, protectedRegular: UInt8 = 1,
        protectedFifos: UInt8 = 1
    ) {
        precondition(maxLinks >= 2, "a directory needs two links")
        self.maxLinks = maxLinks
        self.protectedHardlinks = protectedHardlinks
        self.protectedSymlinks = protectedSymlinks
        self.protectedRegular = protectedRegular
        self.protectedFifos = protectedFifos
    }

    public static let standard = NamespaceLimits()
}

/// What became of an inode whose last name a transaction removed.
public enum Unreferenced: Hashable, Sendable {
    /// Freed in the same transaction: it was not open and had no recorded blocks (a
    /// directory, a symlink, a device node, an empty regular file).
    case freed(InodeNumber)
    /// Its link count is 0 and it is on the orphan list (addOrphan in the same transaction):
    /// it is open, or it still maps blocks. When it is not open (now, if `isOpen` said so),
    /// the volume unmaps its blocks (unmapAndIntendFree, freeDone) and then logs
    /// `planFreeInode`. Orphaning a closed file that has blocks, rather than leaving it
    /// unnamed off the list, is what lets recovery finish the free after a crash between the
    /// two transactions, as XFS's unlinked list does.
    case orphaned(InodeNumber)

    public var inode: InodeNumber {
        switch self {
        case .freed(let i), .orphaned(let i): return i
        }
    }
}

/// The last component of a path, classified as the VFS does (LAST_ROOT, LAST_DOT,
/// LAST_DOTDOT, LAST_NORM): each operation turns the three odd kinds into its own errno.
/// Slashes after the name ("a/", from a path that ended in one) are not part of it: each
/// operation applies Linux's rule for them (trailingSlash).
enum LastComponent: Equatable {
    /// No last component: the path was "/" (an empty name stands for it).
    case root
    case dot
    case dotDot
    /// Checked later, where Linux checks it (after the parent's search permission).
    case name([UInt8])

    init(_ raw: [UInt8]) {
        // Every plan classifies its names, on every call: the usual name, without trailing
        // slashes, is passed on as it is, not copied.
        var end = raw.count
        while end > 0 && raw[end - 1] == 0x2F { end -= 1 }
        if end == 0 {
            self = .root
        } else if raw[0] == 0x2E && (end == 1 || end == 2 && raw[1] == 0x2E) {
            self = end == 1 ? .dot : .dotDot
        } else {
            self = .name(end == raw.count ? raw : Array(raw[0..<end]))
        }
    }

    /// Whether `raw` names no entry (it is empty or all slashes: the path "/").
    static func isRoot(_ raw: [UInt8]) -> Bool { raw.allSatisfy { $0 == 0x2F } }

    /// Whether the name came with slashes after it: Linux then wants a directory, and
    /// refuses to create anything else (mkdir alone takes "a/").
    static func trailingSlash(_ raw: [UInt8]) -> Bool { raw.count > 1 && raw.last == 0x2F }

    /// An ordinary name as a FileName: ENAMETOOLONG past 255 bytes, EINVAL for "/" or NUL
    /// inside (no path can give those).
    static func fileName(_ bytes: [UInt8]) throws(Errno) -> FileName {
        do throws(NameError) {
            return try FileName(validating: bytes)
        } catch {
            throw error.errno
        }
    }
}

/// Builds one transaction: structural records in order, then one setAttributes per inode
/// whose attributes changed (coalesced, so a directory that is both parents of a rename is
/// logged once), then the frees and orphans of inodes that lost their last name.
///
/// A transaction touches at most four inodes, so the working attributes are a short array
/// searched in order, not a dictionary, and the records are one array: a plan runs under
/// the metadata lock on every namespace call, and hashing, and making arrays (each one an
/// allocation and a look-up of its storage's generic metadata), cost more there than the
/// plan's own checks.
struct PlanBuilder {
    let state: MetadataState
    /// The structural records (the first `structuralCount`), then the releases; the
    /// attribute updates go between them when the plan is made.
    private var records: [LogRecord] = []
    private var structuralCount = 0
    /// The inodes whose attributes changed, in the order of their first change, with their
    /// attributes as the transaction has made them, and whether the transaction frees them
    /// (no update is logged for those).
    private var working: [(inode: InodeNumber, attributes: InodeAttributes, freed: Bool)] = []

    init(_ state: MetadataState) {
        self.state = state
        records.reserveCapacity(8)
        working.reserveCapacity(4)
    }

    /// The attributes of an existing inode as the transaction has made them so far.
    func attributes(of inode: InodeNumber) -> InodeAttributes {
        if let i = working.firstIndex(where: { $0.inode == inode }) { return working[i].attributes }
        return state.inodes[inode]!.attributes
    }

    mutating func append(_ record: LogRecord) {
        put(record, at: structuralCount)
        structuralCount += 1
    }

    /// Inserts at `at`, appending when that is the end (the usual case, and the cheaper).
    private mutating func put(_ record: LogRecord, at: Int) {
        if at == records.count { records.append(record) } else { records.insert(record, at: at) }
    }

    /// `current`, when the caller has them, are `inode`'s attributes in the state: reading
    /// them again out of the inode table would copy its whole record.
    mutating func update(_ inode: InodeNumber, current: InodeAttributes? = nil, _ change: (inout InodeAttributes) -> Void) {
        if let i = working.firstIndex(where: { $0.inode == inode }) {
            change(&working[i].attributes)
        } else {
            var a = current ?? state.inodes[inode]!.attributes
            change(&a)
            working.append((inode, a, false))
        }
    }

    /// A directory's entries changed: its mtime and ctime.
    mutating func touchEntries(_ directory: InodeNumber, _ now: Timestamp, current: InodeAttributes? = nil) {
        update(directory, current: current) {
            $0.mtime = now
            $0.ctime = now
        }
    }

    /// An inode's metadata changed: its ctime.
    mutating func touchChange(_ inode: InodeNumber, _ now: Timestamp, current: InodeAttributes? = nil) {
        update(inode, current: current) { $0.ctime = now }
    }

    mutating func addLinks(_ inode: InodeNumber, _ delta: Int32) {
        update(inode) { $0.nlink = UInt32(Int64($0.nlink) + Int64(delta)) }
    }

    /// Disposes of an inode whose link count the transaction brought to 0: orphaned when it
    /// is open or maps blocks, freed otherwise.
    mutating func release(_ inode: InodeNumber, isOpen: (InodeNumber) -> Bool) -> Unreferenced {
        precondition(attributes(of: inode).nlink == 0)
        if isOpen(inode) || !state.inodes[inode]!.extents.isEmpty {
            records.append(.addOrphan(inode))
            return .orphaned(inode)
        }
        records.append(.freeInode(inode))
        if let i = working.firstIndex(where: { $0.inode == inode }) { working[i].freed = true }
        return .freed(inode)
    }

    /// The transaction's records: the structural ones, the updates, the releases. The
    /// builder is used up.
    mutating func plan<Value: Sendable>(_ value: Value) -> NamespacePlan<Value> {
        var at = structuralCount
        for w in working where !w.freed {
            put(.setAttributes(w.inode, w.attributes), at: at)
            at += 1
        }
        return NamespacePlan(records: records, value: value)
    }
}
