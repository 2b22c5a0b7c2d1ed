// Counterpart: include/uapi/linux/fuse.h: the opcodes, flags and constants of the protocol
// the kernel's fs/fuse speaks over /dev/fuse.
//
// The structures themselves come from the C header (CFUSE imports <linux/fuse.h>), so their
// layout is the kernel's by construction. The numbers are here, in Swift, because the
// header spells many of them as macros Swift imports unevenly (shifts of 1ULL, function-like
// macros) and because the installed header is protocol 7.38 while the kernel speaks 7.45:
// the few newer bits this daemon uses are named here with the kernel's values. A unit test
// checks the ones the header has against it.

/// The protocol version this daemon answers INIT with. 7.38 is what the installed header
/// describes; every structure the daemon sends has its 7.38 size. Newer capability bits
/// (ALLOW_MMAP) are honoured by the kernel whatever minor the daemon states.
public enum FUSEVersion {
    public static let major: UInt32 = 7
    public static let minor: UInt32 = 38
}

/// The request opcodes (enum fuse_opcode).
public enum Opcode: UInt32, CaseIterable, Sendable {
    case lookup = 1
    case forget = 2
    case getattr = 3
    case setattr = 4
    case readlink = 5
    case symlink = 6
    case mknod = 8
    case mkdir = 9
    case unlink = 10
    case rmdir = 11
    case rename = 12
    case link = 13
    case open = 14
    case read = 15
    case write = 16
    case statfs = 17
    case release = 18
    case fsync = 20
    case setxattr = 21
    case getxattr = 22
    case listxattr = 23
    case removexattr = 24
    case flush = 25
    case initialize = 26
    case opendir = 27
    case readdir = 28
    case releasedir = 29
    case fsyncdir = 30
    case getlk = 31
    case setlk = 32
    case setlkw = 33
    case access = 34
    case create = 35
    case interrupt = 36
    case bmap = 37
    case destroy = 38
    case ioctl = 39
    case poll = 40
    case notifyReply = 41
    case batchForget = 42
    case fallocate = 43
    case readdirplus = 44
    case rename2 = 45
    case lseek = 46
    case copyFileRange = 47
    case setupMapping = 48
    case removeMapping = 49
    case syncfs = 50
    case tmpfile = 51
    case statx = 52
    /// Linux 6.18's copy_file_range with a 64-bit count, tried before COPY_FILE_RANGE (not in
    /// the installed 7.38 header; the kernel's value). Answered ENOSYS like it.
    case copyFileRange64 = 53

    /// The kernel's name without the FUSE_ prefix, lower case: the stats' keys.
    public var name: String {
        switch self {
        case .initialize: return "init"
        case .batchForget: return "batch_forget"
        case .notifyReply: return "notify_reply"
        case .copyFileRange: return "copy_file_range"
        case .copyFileRange64: return "copy_file_range_64"
        case .setupMapping: return "setupmapping"
        case .removeMapping: return "removemapping"
        default: return "\(self)"
        }
    }
}

/// INIT capability bits (FUSE_* in fuse.h), as one 64-bit word: the low half travels in
/// `flags`, the high half in `flags2` when FUSE_INIT_EXT is set.
public struct InitFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public static let asyncRead = InitFlags(rawValue: 1 << 0)
    public static let posixLocks = InitFlags(rawValue: 1 << 1)
    public static let atomicOTrunc = InitFlags(rawValue: 1 << 3)
    public static let exportSupport = InitFlags(rawValue: 1 << 4)
    public static let bigWrites = InitFlags(rawValue: 1 << 5)
    public static let dontMask = InitFlags(rawValue: 1 << 6)
    public static let flockLocks = InitFlags(rawValue: 1 << 10)
    public static let autoInvalData = InitFlags(rawValue: 1 << 12)
    public static let doReaddirplus = InitFlags(rawValue: 1 << 13)
    public static let readdirplusAuto = InitFlags(rawValue: 1 << 14)
    public static let asyncDIO = InitFlags(rawValue: 1 << 15)
    public static let writebackCache = InitFlags(rawValue: 1 << 16)
    public static let parallelDirops = InitFlags(rawValue: 1 << 18)
    public static let handleKillpriv = InitFlags(rawValue: 1 << 19)
    public static let posixACL = InitFlags(rawValue: 1 << 20)
    public static let maxPages = InitFlags(rawValue: 1 << 22)
    public static let explicitInvalData = InitFlags(rawValue: 1 << 25)
    public static let handleKillprivV2 = InitFlags(rawValue: 1 << 28)
    public static let initExt = InitFlags(rawValue: 1 << 30)
    /// FUSE_DIRECT_IO_ALLOW_MMAP (7.39, kernel 6.6): shared mappings of FOPEN_DIRECT_IO files.
    public static let directIOAllowMmap = InitFlags(rawValue: 1 << 36)
}

/// fuse_open_out.open_flags (FOPEN_*).
public enum OpenReplyFlags {
    public static let directIO: UInt32 = 1 << 0
    public static let keepCache: UInt32 = 1 << 1
}

/// fuse_setattr_in.valid (FATTR_*).
public enum SetattrValid {
    public static let mode: UInt32 = 1 << 0
    public static let uid: UInt32 = 1 << 1
    public static let gid: UInt32 = 1 << 2
    public static let size: UInt32 = 1 << 3
    public static let atime: UInt32 = 1 << 4
    public static let mtime: UInt32 = 1 << 5
    public static let fh: UInt32 = 1 << 6
    public static let atimeNow: UInt32 = 1 << 7
    public static let mtimeNow: UInt32 = 1 << 8
    public static let lockOwner: UInt32 = 1 << 9
    public static let ctime: UInt32 = 1 << 10
    public static let killSUIDGID: UInt32 = 1 << 11
}

/// Other flag words.
public enum ProtocolFlags {
    /// fuse_getattr_in.getattr_flags: `fh` is valid.
    public static let getattrFH: UInt32 = 1 << 0
    /// fuse_write_in.write_flags: a write of dirty page-cache pages (mmap writeback).
    public static let writeCache: UInt32 = 1 << 0
    /// fuse_write_in.write_flags: the kernel asks the daemon to clear set-id bits.
    public static let writeKillSUIDGID: UInt32 = 1 << 2
    /// fuse_read_in.read_flags: `lock_owner` is valid (a read(2), not a page fault).
    public static let readLockOwner: UInt32 = 1 << 1
    /// fuse_fsync_in.fsync_flags: fdatasync.
    public static let fsyncDatasync: UInt32 = 1 << 0
    /// The root's node id (FUSE_ROOT_ID).
    public static let rootID: UInt64 = 1
}

/// Linux ABI values Swift's Glibc module hides behind _GNU_SOURCE.
public enum LinuxABI {
    public static let seekData: UInt32 = 3
    public static let seekHole: UInt32 = 4
    public static let fallocKeepSize: UInt32 = 0x01
    public static let fallocPunchHole: UInt32 = 0x02
    public static let fallocZeroRange: UInt32 = 0x10
    public static let renameNoReplace: UInt32 = 1
    public static let renameExchange: UInt32 = 2
    public static let renameWhiteout: UInt32 = 4
}
