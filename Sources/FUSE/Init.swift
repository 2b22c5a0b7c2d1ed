// Counterpart: fs/fuse/inode.c's fuse_send_init and process_init_reply: what the kernel
// offers in FUSE_INIT and what it does with the daemon's answer.
//
// The negotiation is a pure function of the INIT request and the mount's cache mode, so a
// test can feed it what a kernel offers and check the answer without a mount. What is asked
// for, and why (docs/FUSE.md "Caching"):
// - direct I/O with shared mappings (FUSE_DIRECT_IO_ALLOW_MMAP, asked only when offered:
//   the kernel does not acknowledge it), so that read(2)/write(2) go straight to the
//   engine's page cache and only mmap faults leave pages in the kernel's;
// - or, with `cache=writeback`, the kernel's writeback cache (FUSE_WRITEBACK_CACHE);
// - FUSE_ATOMIC_O_TRUNC (open truncates in one request), FUSE_BIG_WRITES and
//   FUSE_MAX_PAGES (1 MiB WRITEs), FUSE_ASYNC_READ and FUSE_ASYNC_DIO (several requests of
//   one file in flight: the engine's locks order them), FUSE_PARALLEL_DIROPS (lookups and
//   readdirs in parallel: the volume's namespace lock orders them), READDIRPLUS (an ls -l is
//   one request per 4 KiB of entries, not one per name), FUSE_HANDLE_KILLPRIV and
//   FUSE_HANDLE_KILLPRIV_V2 (the volume clears set-id bits on write, truncate and chown, by
//   the sender's privilege, as Linux's file systems do; v2 also lets the kernel mark an inode
//   it has checked as having no security.capability, so that a writeback-cache write no
//   longer costs a GETXATTR round trip each, until the attributes are next refreshed),
//   FUSE_EXPLICIT_INVAL_DATA (the kernel never drops mmap pages because an mtime moved);
// - not the locks (POSIX and flock stay in the kernel, local to this machine, which is all a
//   single-host volume needs), not splice (the kernel copies user pages anyway), not
//   FUSE_DONT_MASK (the kernel applies the umask, as for any file system without ACLs).

import CFUSE
import IOMapBase

/// Where file data is cached.
public enum CacheMode: String, Sendable, CaseIterable {
    /// FOPEN_DIRECT_IO on every regular file, with shared mappings allowed: the engine's
    /// cache is the only cache for read(2) and write(2).
    case direct
    /// The kernel's writeback cache in front of the engine: double caching, SEEK_DATA blind
    /// to unflushed writes; for comparison.
    case writeback
}

/// What INIT settled.
public struct Negotiated: Sendable, Hashable {
    public var kernelMajor: UInt32
    public var kernelMinor: UInt32
    public var offered: InitFlags
    public var accepted: InitFlags
    public var maxWrite: Int
    public var maxPages: Int
    /// Whether shared writable mappings of direct-I/O files work on this mount.
    public var allowsSharedMmap: Bool { accepted.contains(.directIOAllowMmap) }
}

public enum Negotiation {
    /// The largest WRITE (and READ) the daemon takes: 256 pages, the kernel's default
    /// `fs.fuse.max_pages_limit`.
    public static let maxWrite = 1 << 20
    /// The pages a request may hold: a write of `maxWrite` bytes from a buffer that does not
    /// start on a page boundary spans one page more than `maxWrite` holds. The kernel takes
    /// at most `fs.fuse.max_pages_limit` (256 by default, which cuts such a write into
    /// `maxWrite` - x and x bytes: two round trips); docs/FUSE.md says how to raise it.
    public static let maxPages = maxWrite / 4096 + 1
    /// The oldest kernel protocol served: 7.27 (Linux 4.16) has every structure at the
    /// size this daemon reads.
    public static let minimumMinor: UInt32 = 27

    /// The flags asked for in `mode`, before they meet what is offered.
    public static func wanted(_ mode: CacheMode) -> InitFlags {
        var w: InitFlags = [
            .asyncRead, .atomicOTrunc, .bigWrites, .maxPages, .asyncDIO, .parallelDirops, .doReaddirplus, .readdirplusAuto,
            .handleKillpriv, .handleKillprivV2, .explicitInvalData, .initExt,
        ]
        switch mode {
        case .direct: w.insert(.directIOAllowMmap)
        case .writeback: w.insert(.writebackCache)
        }
        return w
    }

    /// The INIT reply for a kernel offering `offered` at protocol `major.minor`, or the errno
    /// that refuses it (EPROTO for a major other than 7 or a minor too old).
    public static func reply(
        major: UInt32, minor: UInt32, maxReadahead: UInt32, offered: InitFlags, mode: CacheMode
    ) throws(Errno) -> (fuse_init_out, Negotiated) {
        guard major == FUSEVersion.major, minor >= minimumMinor else { throw .protocolError }
        var accepted = wanted(mode).intersection(offered)
        // flags2 exists only with FUSE_INIT_EXT: without it, the high bits cannot be asked.
        if !offered.contains(.initExt) { accepted = InitFlags(rawValue: accepted.rawValue & 0xFFFF_FFFF) }
        var out = fuse_init_out()
        out.major = FUSEVersion.major
        out.minor = min(minor, FUSEVersion.minor)
        out.max_readahead = maxReadahead
        out.flags = UInt32(truncatingIfNeeded: accepted.rawValue)
        out.flags2 = UInt32(truncatingIfNeeded: accepted.rawValue >> 32)
        out.max_background = 64
        out.congestion_threshold = 48
        out.max_write = UInt32(maxWrite)
        out.time_gran = 1
        out.max_pages = UInt16(Self.maxPages)
        let n = Negotiated(
            kernelMajor: major, kernelMinor: minor, offered: offered, accepted: accepted, maxWrite: maxWrite,
            maxPages: Self.maxPages)
        return (out, n)
    }
}
