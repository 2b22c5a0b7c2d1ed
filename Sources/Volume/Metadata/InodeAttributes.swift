// Counterpart: struct xfs_dinode's core fields (fs/xfs/libxfs/xfs_format.h) and the VFS's
// struct kstat: what an inode is, apart from its data.
//
// The volume keeps every inode's attributes in memory (MetadataState) and logs changes to
// them; on disk they live in the snapshot's inode blocks (docs/FORMAT.md).

/// An inode number. 1 is the root directory; 0 is never used.
public struct InodeNumber: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { rawValue = value }

    /// The root directory.
    public static let root = InodeNumber(1)

    public static func < (l: Self, r: Self) -> Bool { l.rawValue < r.rawValue }
    public var description: String { "inode \(rawValue)" }

    /// What hash tables hash an inode number with: splitmix64's finalizer over the number
    /// and the table's seed. Inode numbers key the metadata's tables, and every namespace
    /// call and every replayed record looks several up; the default, a full SipHash with
    /// its hasher set up and finalized per lookup, was a tenth of a create's instructions.
    /// The mix is a bijection whose every output bit depends on every input bit, so the
    /// low bits a table uses spread sequential numbers, and the seed (random per process
    /// and per table) keeps a crafted log from choosing colliding ones.
    public func _rawHashValue(seed: Int) -> Int { seededMix(rawValue, seed: seed) }
}

/// splitmix64's finalizer over `value` and a hash table's seed: what the metadata's keys
/// (inode numbers, names' digests) are hashed with.
@inline(__always)
func seededMix(_ value: UInt64, seed: Int) -> Int {
    var x = value ^ UInt64(UInt(bitPattern: seed))
    x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
    x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
    return Int(truncatingIfNeeded: x ^ (x >> 31))
}

/// What an inode is. The raw values are Linux's DT_* directory-entry types (dirent.h), which
/// readdir reports and the on-disk directory entries store.
public enum FileType: UInt8, CaseIterable, Sendable {
    case fifo = 1
    case characterDevice = 2
    case directory = 4
    case blockDevice = 6
    case regular = 8
    case symlink = 10
    case socket = 12

    /// The S_IFMT bits of st_mode for this type.
    public var modeBits: UInt32 {
        switch self {
        case .fifo: return 0o010000
        case .characterDevice: return 0o020000
        case .directory: return 0o040000
        case .blockDevice: return 0o060000
        case .regular: return 0o100000
        case .symlink: return 0o120000
        case .socket: return 0o140000
        }
    }

    /// The type whose S_IFMT bits `mode` carries, or nil.
    public init?(mode: UInt32) {
        guard let t = FileType.allCases.first(where: { $0.modeBits == mode & 0o170000 }) else { return nil }
        self = t
    }

    /// Whether inodes of this type hold data blocks (only regular files do; a symlink's
    /// target is kept with the inode).
    public var hasData: Bool { self == .regular }
}

/// A time in nanoseconds since the epoch, as struct timespec.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var seconds: Int64
    /// 0 to 999,999,999.
    public var nanoseconds: UInt32

    public init(seconds: Int64, nanoseconds: UInt32 = 0) {
        precondition(nanoseconds < 1_000_000_000, "nanoseconds out of range: \(nanoseconds)")
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    public static let zero = Timestamp(seconds: 0)

    public static func < (l: Self, r: Self) -> Bool { (l.seconds, l.nanoseconds) < (r.seconds, r.nanoseconds) }
    public var description: String { "\(seconds).\(String(nanoseconds + 1_000_000_000).dropFirst())" }
}

/// The attributes of one inode: everything stat reports except the block count, which the
/// data fork gives.
public struct InodeAttributes: Hashable, Sendable {
    public var type: FileType
    /// The permission bits with setuid, setgid and sticky (0o7777); the type is `type`.
    /// Other bits are dropped on assignment, so a state never holds what the snapshot
    /// reader refuses.
    public var permissions: UInt16 { didSet { if permissions & ~0o7777 != 0 { permissions &= 0o7777 } } }
    public var uid: UInt32
    public var gid: UInt32
    /// Hard links: directory entries naming the inode (a directory counts its "." and each
    /// subdirectory's "..").
    public var nlink: UInt32
    /// The size the log has recorded: for a regular file, never past data that is on disk
    /// (docs/VOLUME.md, ordering rule 1); the live size of an open file is its inode's.
    public var size: Int64
    /// The device number of a character or block device node.
    public var rdev: UInt64
    public var atime: Timestamp
    public var mtime: Timestamp
    public var ctime: Timestamp
    /// Creation time (statx's btime).
    public var btime: Timestamp
    /// Bumped each time the inode number is reused, so that an old handle (NFS, FUSE) can
    /// be told from a new file.
    public var generation: UInt32

    public init(
        type: FileType, permissions: UInt16, uid: UInt32 = 0, gid: UInt32 = 0, nlink: UInt32 = 0, size: Int64 = 0,
        rdev: UInt64 = 0, time: Timestamp = .zero, generation: UInt32 = 0
    ) {
        self.type = type
        self.permissions = permissions & 0o7777
        self.uid = uid
        self.gid = gid
        self.nlink = nlink
        self.size = size
        self.rdev = rdev
        self.atime = time
        self.mtime = time
        self.ctime = time
        self.btime = time
        self.generation = generation
    }

    /// st_mode: the type bits and the permission bits.
    public var mode: UInt32 { type.modeBits | UInt32(permissions) }
}
