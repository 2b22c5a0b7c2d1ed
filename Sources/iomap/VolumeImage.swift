// Opening an image file as a volume's device, for `iomap mkfs`, `iomap fsck` and
// `iomap vol`: the geometry comes from the image's own superblock, so that a tool needs
// nothing but the path.

import ExtentFS
import IOMapBase
import Volume

#if canImport(Glibc)
    import Glibc
#endif

/// Why a volume tool could not do its job, in words (exit 2 for usage, else the tool's own).
struct ToolError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum VolumeImage {
    /// The image at `path`, opened with the block size its superblock gives and as many
    /// blocks as the file holds (a truncated image then fails the geometry check by name).
    static func open(_ path: String) throws(ToolError) -> FileBlockDevice {
        var st = stat()
        guard stat(path, &st) == 0 else { throw ToolError("\(path): \(Errno(rawValue: errno).symbolicName)") }
        guard (st.st_mode & S_IFMT) == S_IFREG || (st.st_mode & S_IFMT) == S_IFBLK else {
            throw ToolError("\(path) is neither a regular file nor a block device")
        }
        let size = (st.st_mode & S_IFMT) == S_IFBLK ? blockDeviceSize(path) : Int(st.st_size)
        guard let first = readPrefix(path), let bs = Volume.peekBlockSize(first) else {
            throw ToolError("\(path): no volume here (block 0 is not a superblock; made by `iomap mkfs`?)")
        }
        do throws(Errno) {
            return try FileBlockDevice(path: path, blockSize: bs, blockCount: size / bs, create: false)
        } catch {
            throw ToolError("\(path): cannot open: \(error.symbolicName)")
        }
    }

    /// The first 4 KiB of a file or device, or nil.
    static func readPrefix(_ path: String) -> [UInt8]? {
        let fd = Glibc.open(path, O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 4096)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4096, 0) }
        return n > 0 ? Array(bytes[0..<n]) : nil
    }

    /// A block device's size in bytes (its end, by lseek).
    static func blockDeviceSize(_ path: String) -> Int {
        let fd = Glibc.open(path, O_RDONLY)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        return Int(lseek(fd, 0, SEEK_END))
    }

    /// Parses a size: bytes, or with a suffix K, M, G or T (powers of 1024; KiB etc. too).
    static func parseSize(_ text: String) -> Int? {
        let units: [(String, Int)] = [
            ("TIB", 1 << 40), ("GIB", 1 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10), ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20),
            ("K", 1 << 10), ("B", 1),
        ]
        let upper = text.uppercased()
        for (suffix, factor) in units where upper.hasSuffix(suffix) {
            guard let n = Int(upper.dropLast(suffix.count)), n >= 0 else { return nil }
            let (v, overflow) = n.multipliedReportingOverflow(by: factor)
            return overflow ? nil : v
        }
        return Int(text).flatMap { $0 >= 0 ? $0 : nil }
    }
}
