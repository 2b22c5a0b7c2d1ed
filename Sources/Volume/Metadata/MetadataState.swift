// Counterpart: the in-core metadata of an XFS mount taken as a whole: the inodes (struct
// xfs_inode, their data forks and attribute forks), the directories' entries (the xfs_dir2
// blocks) and the unlinked-inode lists (the AGI's buckets), as one value.
//
// The volume's metadata is this value. A transaction is a list of LogRecords applied to it
// (MetadataState+Apply.swift); recovery applies the same records to the last snapshot, so a
// replayed volume is the same value the running one was (docs/VOLUME.md "One state, one
// apply"). Free space is not stored: it is the complement of what the inodes and the
// metadata own.

import IOMapBase

/// A directory-entry name: 1 to 255 bytes, with neither "/" nor NUL, and not "." or "..".
public struct FileName: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// The longest name, in bytes (NAME_MAX).
    public static let maxLength = 255

    /// Checks a name as the VFS does: empty, "/" or NUL inside, "." or ".." are EINVAL (the
    /// caller maps "." and ".." to its own errno where Linux gives another), longer than
    /// NAME_MAX is ENAMETOOLONG.
    public init(validating bytes: [UInt8]) throws(NameError) {
        if bytes.isEmpty { throw .empty }
        if bytes.count > Self.maxLength { throw .tooLong(bytes.count) }
        if bytes.contains(0x2F) { throw .containsSlash }
        if bytes.contains(0) { throw .containsNUL }
        if bytes.count <= 2 && bytes.allSatisfy({ $0 == 0x2E }) { throw .dotOrDotDot }
        self.init(unchecked: bytes)
    }

    public init(validating string: String) throws(NameError) { try self.init(validating: Array(string.utf8)) }

    /// A name known to be valid (decoded from a checked block, or a literal in a test).
    public init(unchecked bytes: [UInt8]) {
        self.bytes = bytes
        var h = Hasher()
        bytes.withUnsafeBytes { h.combine(bytes: $0) }
        digest = UInt64(UInt(bitPattern: h.finalize()))
    }

    /// The name's SipHash, keyed by the process's hashing seed (deterministic where
    /// SWIFT_DETERMINISTIC_HASHING asks), taken once when the name is made. Every directory
    /// lookup, insert and removal hashes names, and a removal rehashes the entries after it
    /// in the table: a full hash of the bytes each time (the hasher set up, fed and
    /// finalized) was a fifth of a rename's instructions. Names that collide here collide
    /// in every table, but finding such a pair means breaking SipHash under a random key,
    /// as before.
    private let digest: UInt64

    public static func < (l: Self, r: Self) -> Bool { l.bytes.lexicographicallyPrecedes(r.bytes) }
    /// The digests first: a table's probe compares the names it meets, and most differ there.
    public static func == (l: Self, r: Self) -> Bool { l.digest == r.digest && l.bytes == r.bytes }

    public func hash(into hasher: inout Hasher) { hasher.combine(digest) }

    /// What hash tables hash a name with: the digest mixed with the table's seed, so that
    /// each table still places names its own way.
    public func _rawHashValue(seed: Int) -> Int { seededMix(digest, seed: seed) }
    public var description: String { String(decoding: bytes, as: UTF8.self) }
}

/// Why a name is not a valid directory-entry name.
public enum NameError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty, containsSlash, containsNUL, dotOrDotDot
    case tooLong(Int)

    /// The errno Linux gives for such a name in a create or a lookup.
    public var errno: Errno {
        switch self {
        case .tooLong: return .fileNameTooLong
        case .empty: return .noSuchFileOrDirectory
        case .containsSlash, .containsNUL, .dotOrDotDot: return .invalidArgument
        }
    }

    public var description: String {
        switch self {
        case .empty: return "the name is empty"
        case .containsSlash: return "the name contains \"/\""
        case .containsNUL: return "the name contains a NUL byte"
        case .dotOrDotDot: return "\".\" and \"..\" cannot be created, removed or renamed"
        case .tooLong(let n): return "the name is \(n) bytes, longer than 255"
        }
    }
}

/// One entry of a directory: the inode it names, its type (d_type) and its readdir cookie.
public struct DirectoryEntry: Hashable, Sendable {
    public var inode: InodeNumber
    public var type: FileType
    /// The entry's place in readdir order; unique in the directory and never reused.
    public var cookie: UInt64
}

/// A directory's entries, by name and in cookie order. Cookies 1 and 2 stand for "." and
/// ".." (made up by readdir, not stored); entries get 3, 4, ... as they are added, so that a
/// readdir resumed from a cookie neither repeats nor skips an entry that stayed, whatever
/// was added or removed meanwhile (the property telldir/seekdir and NFS need).
public struct Directory: Equatable, Sendable {
    public private(set) var entries: [FileName: DirectoryEntry] = [:]
    /// (cookie, name), sorted by cookie: cookies only grow, so adding appends. A removed
    /// entry leaves a hole (nil) that a later compaction drops, so that removing is a binary
    /// search, not a shift of every later entry.
    private var slots: [(cookie: UInt64, name: FileName?)] = []
    private var holes = 0
    /// The directory holding this one ("..").
    public var parent: InodeNumber
    /// The cookie the next entry gets.
    public private(set) var nextCookie: UInt64 = Self.firstCookie

    /// The first cookie of a stored entry ("." is 1, ".." is 2).
    public static let firstCookie: UInt64 = 3

    public init(parent: InodeNumber) { self.parent = parent }

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }

    /// The entries in cookie order.
    public var order: [(cookie: UInt64, name: FileName)] { slots.compactMap { s in s.name.map { (s.cookie, $0) } } }

    public subscript(name: FileName) -> DirectoryEntry? { entries[name] }

    /// Adds an entry with the given cookie, which must be the directory's next one or later
    /// (replay passes the cookie the running volume chose).
    mutating func add(_ name: FileName, _ entry: DirectoryEntry) {
        precondition(entry.cookie >= nextCookie)
        let old = entries.updateValue(entry, forKey: name)
        precondition(old == nil, "\(name) is in the directory already")
        slots.append((entry.cookie, name))
        nextCookie = entry.cookie + 1
    }

    /// Removes the entry `name`, returning it.
    @discardableResult
    mutating func remove(_ name: FileName) -> DirectoryEntry? {
        guard let e = entries.removeValue(forKey: name) else { return nil }
        slots[Self.index(in: slots, ofCookie: e.cookie)].name = nil
        holes += 1
        if holes > 32 && holes * 2 > slots.count {
            slots.removeAll { $0.name == nil }
            holes = 0
        }
        return e
    }

    /// Points the existing entry `name` at another inode, keeping its cookie (a rename over
    /// an existing name, RENAME_EXCHANGE).
    mutating func retarget(_ name: FileName, to inode: InodeNumber, type: FileType) {
        entries[name]!.inode = inode
        entries[name]!.type = type
    }

    /// The entries whose cookie is greater than `cookie`, in cookie order, at most `limit`.
    public func entries(after cookie: UInt64, limit: Int = Int.max) -> [(name: FileName, entry: DirectoryEntry)] {
        var i = Self.index(in: slots, ofCookie: cookie + 1)
        var out: [(FileName, DirectoryEntry)] = []
        while i < slots.count && out.count < limit {
            if let name = slots[i].name { out.append((name, entries[name]!)) }
            i += 1
        }
        return out
    }

    /// The first index of `slots` whose cookie is at least `cookie`.
    static func index(in slots: [(cookie: UInt64, name: FileName?)], ofCookie cookie: UInt64) -> Int {
        var lo = 0
        var hi = slots.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if slots[mid].cookie < cookie { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Rebuilds a directory from decoded entries (a snapshot), checking what decoding cannot.
    init(parent: InodeNumber, nextCookie: UInt64, entries list: [(FileName, DirectoryEntry)]) {
        self.parent = parent
        for (name, entry) in list.sorted(by: { $0.1.cookie < $1.1.cookie }) { add(name, entry) }
        self.nextCookie = max(self.nextCookie, nextCookie)
    }

    public static func == (l: Self, r: Self) -> Bool {
        l.entries == r.entries && l.parent == r.parent && l.nextCookie == r.nextCookie
    }
}

/// A run of a regular file's blocks as the log and the snapshot record it: written, or
/// allocated unwritten (reads as zeroes). Delalloc is never recorded (it has no blocks).
public struct DiskExtent: Hashable, Sendable, CustomStringConvertible {
    public var fileBlock: Int64
    public var diskBlock: Int64
    public var count: Int64
    public var unwritten: Bool

    public init(fileBlock: Int64, diskBlock: Int64, count: Int64, unwritten: Bool) {
        self.fileBlock = fileBlock
        self.diskBlock = diskBlock
        self.count = count
        self.unwritten = unwritten
    }

    public var fileEnd: Int64 { fileBlock + count }
    public var diskEnd: Int64 { diskBlock + count }

    public var description: String {
        "file blocks [\(fileBlock), \(fileEnd)) at disk \(diskBlock)\(unwritten ? " unwritten" : "")"
    }
}

/// Everything the volume knows of one inode.
public struct InodeRecord: Equatable, Sendable {
    public var attributes: InodeAttributes
    /// The entries, for a directory.
    public var directory: Directory?
    /// The target, for a symlink (1 to 4095 bytes).
    public var symlinkTarget: [UInt8]?
    /// Extended attributes by full name ("user.x", "trusted.y", "security.z").
    public var xattrs: [[UInt8]: [UInt8]] = [:]
    /// A regular file's recorded extents, sorted by file block, disjoint.
    public var extents: [DiskExtent] = []

    public init(attributes: InodeAttributes) {
        self.attributes = attributes
    }

    /// The blocks the inode's extents cover.
    public var blockCount: Int64 { extents.reduce(0) { $0 + $1.count } }
}

/// A free in progress (XFS's extent-free intent, EFI): blocks an inode no longer maps and
/// that are not free until the matching done record commits.
public struct FreeIntent: Hashable, Sendable {
    public var id: UInt64
    /// Device blocks, as (start, count).
    public var extents: [DiskExtent]

    public init(id: UInt64, extents: [DiskExtent]) {
        self.id = id
        self.extents = extents
    }
}

/// The whole of a volume's metadata.
public struct MetadataState: Equatable, Sendable {
    public var inodes: [InodeNumber: InodeRecord] = [:]
    /// The number the next new inode gets (numbers are not reused, so a generation of 0
    /// serves; the generation still changes if a later format reuses them).
    public var nextInode: UInt64 = 2
    /// Inodes with no name left that are still open, or were when the volume went down:
    /// freed at last close, or at the next mount (the AGI unlinked lists).
    public var orphans: Set<InodeNumber> = []
    /// Frees logged but not yet done.
    public var intents: [UInt64: FreeIntent] = [:]
    /// The id the next free intent gets.
    public var nextIntent: UInt64 = 1

    public init() {}

    /// A new volume's metadata: the root directory alone, owned by `uid`/`gid`, mode 0755.
    public static func newVolume(time: Timestamp, uid: UInt32 = 0, gid: UInt32 = 0) -> MetadataState {
        var s = MetadataState()
        var root = InodeRecord(
            attributes: InodeAttributes(type: .directory, permissions: 0o755, uid: uid, gid: gid, nlink: 2, time: time))
        root.directory = Directory(parent: .root)
        s.inodes[.root] = root
        return s
    }

    public subscript(inode: InodeNumber) -> InodeRecord? { inodes[inode] }
}
