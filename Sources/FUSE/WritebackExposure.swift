// Counterpart: fs/fuse/file.c's buffered write path with FUSE_WRITEBACK_CACHE, which since
// Linux 6.17 goes through iomap (iomap_file_buffered_write with fuse's own iomap_begin that
// reports every range mapped, never IOMAP_F_NEW). When the copy from user memory comes up
// short in a block that write-begin zeroed around the write (one that starts at or past
// EOF), nothing zeroes the part the copy did not reach: those bytes lie past the new EOF,
// and become file content, read back and sent to the daemon in WRITE, as soon as the file
// grows before writeback zeroes the EOF page's tail. `iomap kernel-probe short-copy --fs
// fuse` shows it on the host; this is the rule `iomap mount -o cache=writeback` warns by
// (docs/FUSE.md "Caching").
//
// The rule is the kernel's version and init_on_alloc, because the daemon cannot tell a stale
// byte from data: whatever the kernel sends in WRITE is, to the daemon, what the file holds.

/// Whether the host kernel's writeback cache can hand the daemon stale memory, and why.
public struct WritebackCacheExposure: Sendable, Equatable {
    /// Whether a short copy can leave stale memory in the file.
    public var exposed: Bool
    /// Why, in words, for the warning and the probe's report.
    public var reason: String

    public init(exposed: Bool, reason: String) {
        self.exposed = exposed
        self.reason = reason
    }

    /// The verdict of the mount's self-test, which found `stale` stale bytes on `kernel`.
    public init(selfTest stale: Int, kernel: String) {
        exposed = stale > 0
        reason =
            stale > 0
            ? "the mount's self-test found \(stale) stale bytes after short copies on Linux \(kernel)"
            : "the mount's self-test found no stale bytes after short copies on Linux \(kernel)"
    }

    /// The first kernel whose writeback-cache writes go through iomap.
    public static let firstAffected = (major: 6, minor: 17)

    /// The rule: kernels from 6.17 on are exposed unless init_on_alloc is on (then the page
    /// allocator hands out zeroed pages, so the uncopied bytes read as zeroes). `release` is
    /// uname's release ("6.18.44-..."); `initOnAlloc` is "on", "off" or "unknown".
    public static func assess(release: String, initOnAlloc: String) -> WritebackCacheExposure {
        guard let (major, minor) = parseRelease(release) else {
            return WritebackCacheExposure(
                exposed: true, reason: "kernel release '\(release)' does not parse; assuming the writeback cache takes writes through iomap"
            )
        }
        if (major, minor) < firstAffected {
            return WritebackCacheExposure(
                exposed: false, reason: "Linux \(major).\(minor) zeroes a short-copied page in fuse_write_end (before 6.17)")
        }
        if initOnAlloc == "on" {
            return WritebackCacheExposure(
                exposed: false, reason: "init_on_alloc is on: the memory a short copy leaves behind is zeroed by the page allocator")
        }
        return WritebackCacheExposure(
            exposed: true,
            reason:
                "Linux \(major).\(minor) takes writeback-cache writes through iomap, which leaves a short copy's uncopied bytes unzeroed "
                + "(init_on_alloc \(initOnAlloc))")
    }

    /// The warning `iomap mount -o cache=writeback` prints on an exposed kernel.
    public var warning: String? {
        guard exposed else { return nil }
        return "cache=writeback on this kernel can store stale kernel memory as file data: \(reason). A write(2) whose buffer "
            + "turns unreadable part way through leaves up to a page of old memory past EOF, which becomes file content when "
            + "the file grows before writeback (see `iomap kernel-probe short-copy --fs fuse`); cache=direct, the default, is not affected"
    }

    /// "6.18.44-fc" → (6, 18).
    static func parseRelease(_ release: String) -> (Int, Int)? {
        let parts = release.split(separator: ".", maxSplits: 2)
        guard parts.count >= 2, let major = Int(parts[0]) else { return nil }
        let minorDigits = parts[1].prefix { $0.isASCII && $0.isNumber }
        guard let minor = Int(minorDigits) else { return nil }
        return (major, minor)
    }
}
