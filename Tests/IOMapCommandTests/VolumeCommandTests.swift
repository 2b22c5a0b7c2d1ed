// Counterpart: none in the kernel; `iomap mkfs`, `iomap fsck` and `iomap vol` run as a user
// runs them, each command a new process on an image in a temporary directory: exit statuses,
// refusals that leave the image byte for byte as it was, a host tree copied in and out with
// what cp -a keeps, each verb's happy path and a failure naming its errno, and fsck clean
// after every command.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A new temporary directory, removed with what it holds by `remove()`.
struct ScratchDirectory {
    let path: String

    init(_ name: String) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("iomap-\(name)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// FNV-1a of a file's bytes: enough to tell an image before a command from after it.
func fingerprint(_ path: String) throws -> UInt64 {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    return data.withUnsafeBytes { bytes in
        bytes.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
    }
}

/// Runs `iomap arguments` and expects exit status `status`, showing stderr if not.
@discardableResult
func iomapExpecting(_ status: Int32, _ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> CommandResult {
    let r = try runIOMap(arguments)
    #expect(r.status == status, "iomap \(arguments.joined(separator: " ")): exit \(r.status)\n\(r.stderr)", sourceLocation: sourceLocation)
    return r
}

/// `iomap fsck IMAGE --json` exits 0 and says clean, with every check run.
func expectFsckClean(_ image: String, after what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let r = try runIOMap(["fsck", image, "--json"])
    #expect(r.status == 0, "fsck after \(what): exit \(r.status)\n\(r.stdout)\(r.stderr)", sourceLocation: sourceLocation)
    let j = try r.json()
    #expect(j["clean"] as? Bool == true, "fsck after \(what): \(r.stdout)", sourceLocation: sourceLocation)
    #expect((j["checks"] as? [Any])?.count == 12, "fsck after \(what): the twelve checks", sourceLocation: sourceLocation)
}

/// `iomap vol IMAGE arguments`, expecting `status`; then fsck must find the image clean.
@discardableResult
func vol(_ image: String, _ arguments: [String], status: Int32 = 0, sourceLocation: SourceLocation = #_sourceLocation) throws
    -> CommandResult
{
    let r = try iomapExpecting(status, ["vol", image] + arguments, sourceLocation: sourceLocation)
    try expectFsckClean(image, after: "vol \(arguments.joined(separator: " "))", sourceLocation: sourceLocation)
    return r
}

/// A scratch directory with a new 16 MiB volume in it.
func scratchVolume(_ name: String) throws -> (ScratchDirectory, String) {
    let dir = try ScratchDirectory(name)
    let image = dir.path + "/volume.img"
    try iomapExpecting(0, ["mkfs", image, "--size", "16M"])
    return (dir, image)
}

@Suite("iomap mkfs and fsck, as commands")
struct VolumeCommandTests {
    @Test("mkfs makes a volume; again without --force it exits 2 and changes no byte; with --force it makes a new one")
    func mkfsRefusesWithoutForce() throws {
        let dir = try ScratchDirectory("mkfs")
        defer { dir.remove() }
        let image = dir.path + "/volume.img"
        let first = try iomapExpecting(0, ["mkfs", image, "--size", "64M", "--json"]).json()
        #expect(first["blocks"] as? Int == 16384 && first["block_size"] as? Int == 4096, "\(first)")
        #expect(try FileManager.default.attributesOfItem(atPath: image)[.size] as? Int == 64 << 20)
        try expectFsckClean(image, after: "mkfs")
        let before = try fingerprint(image)
        for size in ["64M", "32M"] {
            let again = try iomapExpecting(2, ["mkfs", image, "--size", size])
            #expect(again.stderr.contains("--force"), "\(again.stderr)")
            #expect(try fingerprint(image) == before, "mkfs --size \(size) without --force changed the image")
        }
        let forced = try iomapExpecting(0, ["mkfs", image, "--size", "64M", "--force", "--json"]).json()
        #expect(forced["uuid"] as? String != first["uuid"] as? String, "a new volume has a new UUID")
        #expect(try fingerprint(image) != before)
        try expectFsckClean(image, after: "mkfs --force")
        let text = try iomapExpecting(0, ["fsck", image])
        #expect(text.stdout.contains("clean") && text.stdout.contains("S superblocks: 2 checked, ok"), "\(text.stdout)")
    }

    @Test(
        "mkfs with a bad size or block size exits 2 naming the flag, and makes no image",
        arguments: [
            (["--size", "12345"], "--size"), (["--size", "abc"], "--size"), (["--size", "64M", "--block-size", "3000"], "--block-size"),
        ])
    func mkfsBadUsage(arguments: [String], named: String) throws {
        let dir = try ScratchDirectory("mkfs-usage")
        defer { dir.remove() }
        let image = dir.path + "/volume.img"
        let r = try iomapExpecting(2, ["mkfs", image] + arguments)
        #expect(r.stderr.contains(named), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: image))
    }

    @Test("fsck of a file that is not a volume, or of no file, exits 8")
    func fsckNotAVolume() throws {
        let dir = try ScratchDirectory("fsck-none")
        defer { dir.remove() }
        let path = dir.path + "/not-a-volume"
        try Data(repeating: 0x5A, count: 1 << 20).write(to: URL(fileURLWithPath: path))
        for p in [path, dir.path + "/missing"] {
            let r = try iomapExpecting(8, ["fsck", p])
            #expect(r.stderr.contains(p), "\(r.stderr)")
        }
    }

    @Test("fsck of an image with a flipped byte in a snapshot block exits 4 and prints the block's kind and address")
    func fsckFlippedSnapshotBlock() throws {
        let (dir, image) = try scratchVolume("fsck-flip")
        defer { dir.remove() }
        try vol(image, ["mkdir", "-p", "/a/b/c"])
        let blocks = try SnapshotBlocks(image)
        for (address, kind) in [(blocks.root, "snapshot root block"), (blocks.second, blocks.secondKind)] {
            let copy = dir.path + "/flipped.img"
            try? FileManager.default.removeItem(atPath: copy)
            try FileManager.default.copyItem(atPath: image, toPath: copy)
            try flipByte(copy, at: address * 4096 + 300)
            let expected = "\(kind) \(address): bad CRC"
            let text = try iomapExpecting(4, ["fsck", copy])
            #expect(text.stdout.contains(expected), "\(text.stdout)")
            let json = try iomapExpecting(4, ["fsck", copy, "--json"]).json()
            #expect(json["clean"] as? Bool == false && (json["errors"] as? Int ?? 0) >= 1)
            let c = (json["checks"] as? [[String: Any]])?.first { $0["code"] as? String == "C" }
            #expect((c?["errors"] as? [String])?.first?.hasPrefix(expected) == true, "\(String(describing: c))")
            // The mount refuses the same image, naming the same block (exit 2: no volume to use).
            let ls = try iomapExpecting(2, ["vol", copy, "ls", "/"])
            #expect(ls.stderr.contains(expected), "\(ls.stderr)")
        }
    }
}

/// Where an image's current snapshot is, read as docs/FORMAT.md lays it out: the newest
/// superblock copy (by the generation at byte 40) names the root (byte 112); the root's first
/// run (bytes 208 ..< 220) lists the blocks after it.
struct SnapshotBlocks {
    let root: Int
    let second: Int
    let secondKind: String

    static let kinds = [
        "IMSM": "snapshot map block", "IMIN": "inode block", "IMDR": "directory block", "IMEX": "extent block",
        "IMXA": "xattr block", "IMSL": "symlink block", "IMOR": "orphan block", "IMFI": "intent block",
    ]

    init(_ image: String) throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: image)))
        func u64(_ at: Int) -> Int { (0..<8).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        func u32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        let copy = u64(4096 + 40) > u64(40) ? 1 : 0
        root = u64(copy * 4096 + 112)
        let start = u64(root * 4096 + 208)
        let count = u32(root * 4096 + 216)
        #expect(start == root, "the root's first run starts at the root")
        // The block after the root in the list: the next of the first run, or the start of
        // the second run.
        second = count > 1 ? root + 1 : u64(root * 4096 + 220)
        let magic = String(decoding: bytes[(second * 4096)..<(second * 4096 + 4)], as: UTF8.self)
        secondKind = Self.kinds[magic] ?? "unknown \(magic)"
    }
}

/// XORs one byte of a file.
func flipByte(_ path: String, at offset: Int) throws {
    let handle = try Foundation.FileHandle(forUpdating: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    let old = try handle.read(upToCount: 1) ?? Data([0])
    try handle.seek(toOffset: UInt64(offset))
    try handle.write(contentsOf: Data([old[0] ^ 0x20]))
}

// MARK: - put and get

/// SEEK_DATA and SEEK_HOLE (include/uapi/linux/fs.h), which Glibc's module does not export.
let seekData: Int32 = 3
let seekHole: Int32 = 4

/// The extended-attribute calls of <sys/xattr.h>, which Glibc's Swift module does not
/// export, looked up by name in the C library.
enum Xattr {
    typealias SetCall = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeRawPointer?, Int, Int32) -> Int32
    typealias ListCall = @convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<CChar>?, Int) -> Int
    typealias GetCall = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafeMutableRawPointer?, Int) -> Int

    static func call<T>(_ name: String, _ type: T.Type) -> T { unsafeBitCast(dlsym(nil, name)!, to: T.self) }
    static var lset: SetCall { call("lsetxattr", SetCall.self) }
    static var llist: ListCall { call("llistxattr", ListCall.self) }
    static var lget: GetCall { call("lgetxattr", GetCall.self) }
}

/// A host tree with every kind of thing `put` and `get` must keep.
enum HostTree {
    /// Writes `bytes` at `offset` of `path` (created with `mode`), then fsyncs, so that
    /// SEEK_DATA sees allocated blocks.
    static func write(_ path: String, _ bytes: [UInt8], at offset: Int = 0, mode: mode_t = 0o644) throws {
        let fd = open(path, O_WRONLY | O_CREAT, mode)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno)!) }
        defer { close(fd) }
        let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
        guard n == bytes.count, fsync(fd) == 0 else { throw POSIXError(.EIO) }
    }

    static func check(_ rc: Int32, _ what: String) throws {
        guard rc == 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO, userInfo: [NSLocalizedDescriptionKey: what]) }
    }

    /// Bytes from a seed, different for each file.
    static func bytes(_ n: Int, seed: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13 &+ seed) } }

    /// src/{top.txt, sparse, falloc, hard2, rel, dangling, fifo, sub/{hard1, deeper/leaf.bin}}.
    static func make(_ src: String) throws {
        for d in [src, src + "/sub", src + "/sub/deeper"] { try check(mkdir(d, 0o755), d) }
        try write(src + "/top.txt", Array("the top file\n".utf8))
        try write(src + "/sub/deeper/leaf.bin", bytes(2_500_000, seed: 1))
        // Data, a hole, data, and a hole at the end (the size set past the last data).
        try write(src + "/sparse", bytes(5000, seed: 2))
        try write(src + "/sparse", bytes(10000, seed: 3), at: 1 << 20)
        try check(truncate(src + "/sparse", 3 << 20), "truncate sparse")
        // Allocated but unwritten (read as zeroes, a hole to SEEK_DATA), with data in the middle.
        let fd = open(src + "/falloc", O_WRONLY | O_CREAT, 0o644)
        try check(fd >= 0 ? posix_fallocate(fd, 0, 65536) : -1, "fallocate")
        close(fd)
        try write(src + "/falloc", bytes(4096, seed: 4), at: 16384)
        try write(src + "/sub/hard1", bytes(7000, seed: 5))
        try check(link(src + "/sub/hard1", src + "/hard2"), "link")
        try check(symlink("sub/deeper/leaf.bin", src + "/rel"), "symlink")
        try check(symlink("nowhere/at/all", src + "/dangling"), "dangling symlink")
        try check(mkfifo(src + "/fifo", 0o600), "mkfifo")
        let xattrs: [(String, String, [UInt8])] = [
            ("top.txt", "user.a", Array("1".utf8)), ("top.txt", "user.binary", [0, 255, 10, 0]), ("top.txt", "user.empty", []),
            ("sub", "user.dir", Array("a directory".utf8)), ("sparse", "user.big", bytes(3000, seed: 6)),
        ]
        for (file, name, value) in xattrs {
            try check(value.withUnsafeBytes { Xattr.lset(src + "/" + file, name, $0.baseAddress, $0.count, 0) }, "setxattr \(name)")
        }
        let modes: [(String, mode_t)] = [("top.txt", 0o640), ("sub", 0o750), ("sparse", 0o604), ("sub/hard1", 0o600), ("falloc", 0o2755)]
        for (file, mode) in modes { try check(chmod(src + "/" + file, mode), "chmod \(file)") }
        // Times to the nanosecond, children before their directories.
        let order = ["top.txt", "sparse", "falloc", "sub/hard1", "rel", "dangling", "fifo", "sub/deeper/leaf.bin", "sub/deeper", "sub", ""]
        for (i, name) in order.enumerated() {
            var times = [
                timespec(tv_sec: 1_600_000_000 + i, tv_nsec: 111_111_111 + i),
                timespec(tv_sec: 1_500_000_000 + i, tv_nsec: 123_456_789 + i),
            ]
            try check(utimensat(AT_FDCWD, name.isEmpty ? src : src + "/" + name, &times, AT_SYMLINK_NOFOLLOW), "utimensat \(name)")
        }
    }
}

/// What `get` must have kept of one host file, as lstat and the xattr calls see it.
struct HostEntry: Equatable, CustomStringConvertible {
    var type: mode_t
    var mode: mode_t
    var size: Int
    var nlink: Int
    var mtime: [Int]
    var target: String?
    var xattrs: [String: [UInt8]]
    /// Data segments by SEEK_DATA/SEEK_HOLE, widened to 4 KiB blocks.
    var layout: [[Int]]

    var description: String {
        "type 0o\(String(type, radix: 8)) mode 0o\(String(mode, radix: 8)) size \(size) nlink \(nlink) mtime \(mtime) "
            + "target \(target ?? "-") xattrs \(xattrs.keys.sorted()) layout \(layout)"
    }

    init(_ path: String) throws {
        var st = stat()
        try HostTree.check(lstat(path, &st), path)
        type = st.st_mode & S_IFMT
        mode = st.st_mode & 0o7777
        nlink = Int(st.st_nlink)
        mtime = [st.st_mtim.tv_sec, st.st_mtim.tv_nsec]
        // Directory sizes are the host file system's own; symlinks have no mode of their own.
        size = type == S_IFDIR ? 0 : Int(st.st_size)
        if type == S_IFLNK { mode = 0 }
        target = type == S_IFLNK ? (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) : nil
        xattrs = Self.userXattrs(path)
        layout = type == S_IFREG ? Self.layout(path, size: size) : []
    }

    static func userXattrs(_ path: String) -> [String: [UInt8]] {
        var names = [CChar](repeating: 0, count: 4096)
        let n = Xattr.llist(path, &names, names.count)
        guard n > 0 else { return [:] }
        var out: [String: [UInt8]] = [:]
        for raw in names[0..<n].split(separator: 0) {
            let name = String(decoding: raw.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard name.hasPrefix("user.") else { continue }
            var value = [UInt8](repeating: 0, count: 65536)
            let m = value.withUnsafeMutableBytes { Xattr.lget(path, name, $0.baseAddress, $0.count) }
            out[name] = m >= 0 ? Array(value[0..<m]) : nil
        }
        return out
    }

    /// The data segments of a file, each widened to whole 4 KiB blocks (the volume's block
    /// size: the host may end a segment mid-block, the volume at its end).
    static func layout(_ path: String, size: Int) -> [[Int]] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return [[-1]] }
        defer { close(fd) }
        var segments: [[Int]] = []
        var offset = 0
        while offset < size {
            let data = Int(lseek(fd, off_t(offset), seekData))
            if data < 0 { break }
            let hole = Int(lseek(fd, off_t(data), seekHole))
            segments.append([data / 4096 * 4096, (hole + 4095) / 4096 * 4096])
            offset = hole
        }
        return segments
    }
}

/// Every file under `root` (relative paths, "" for the root itself), walked with lstat.
func walk(_ root: String) throws -> [String] {
    var out = [""]
    for name in try FileManager.default.subpathsOfDirectory(atPath: root) { out.append(name) }
    return out.sorted()
}

// The verbs, nested so that a filter on VolumeCommandTests runs them too.
extension VolumeCommandTests {
    @Suite("iomap vol, as a command")
    struct Vol {
        @Test("put a host tree, get it back in another process: names, types, bytes, modes, sizes, links, targets, xattrs, mtimes, holes")
        func putGetRoundTrip() throws {
            let (dir, image) = try scratchVolume("putget")
            defer { dir.remove() }
            let src = dir.path + "/src"
            try HostTree.make(src)
            try vol(image, ["put", src, "/"])
            let out = dir.path + "/out"
            try vol(image, ["get", "/src", out])
            let names = try walk(src)
            #expect(try walk(out) == names)
            for name in names {
                let (a, b) = (src + "/" + name, out + "/" + name)
                let (x, y) = (try HostEntry(a), try HostEntry(b))
                #expect(x == y, "\(name.isEmpty ? "the root" : name):\n  host \(x)\n  back \(y)")
                if x.type == S_IFREG {
                    let same = FileManager.default.contentsEqual(atPath: a, andPath: b)
                    #expect(same, "\(name): the bytes differ")
                }
            }
            // Hard links are links again, not copies.
            var one = stat()
            var two = stat()
            try HostTree.check(lstat(out + "/hard2", &one), "hard2")
            try HostTree.check(lstat(out + "/sub/hard1", &two), "hard1")
            #expect(one.st_ino == two.st_ino && one.st_nlink == 2)
            // The sparse file really is sparse on both sides: two data segments, a hole at the end.
            #expect(try HostEntry(out + "/sparse").layout == [[0, 8192], [1 << 20, (1 << 20) + 12288]])
            #expect(try vol(image, ["getfattr", "/src/top.txt"]).stdout.contains("user.a=\"1\""))
        }

        @Test("ls and stat --json: a listing and an inode's attributes; a missing path exits 1 naming ENOENT")
        func lsAndStat() throws {
            let (dir, image) = try scratchVolume("ls")
            defer { dir.remove() }
            try vol(image, ["mkdir", "-p", "/a/b"])
            try vol(image, ["ln", "-s", "b", "/a/s"])
            #expect(try vol(image, ["ls", "/a"]).stdout == "b\ns\n")
            let long = try vol(image, ["ls", "-l", "/a"]).stdout.split(separator: "\n")
            #expect(
                long.count == 2 && long[0].hasPrefix("drwxr-xr-x 2 ") && long[1].hasPrefix("lrwxrwxrwx 1 ") && long[1].hasSuffix("s -> b"),
                "\(long)")
            let st = try vol(image, ["stat", "--json", "/a"]).json()
            #expect(st["type"] as? String == "directory" && st["nlink"] as? Int == 3 && st["mode"] as? String == "040755", "\(st)")
            #expect((st["inode"] as? Int ?? 0) > 1 && st["mtime"] is String)
            for verb in ["ls", "stat"] {
                let r = try vol(image, [verb, "/nope"], status: 1)
                #expect(r.stderr.contains("/nope") && r.stderr.contains("ENOENT"), "\(verb): \(r.stderr)")
            }
        }

        @Test("cat prints a file's bytes; cat of a missing path exits 1 naming ENOENT, of a directory EISDIR")
        func cat() throws {
            let (dir, image) = try scratchVolume("cat")
            defer { dir.remove() }
            let host = dir.path + "/hello.txt"
            let text = String(repeating: "hello, volume\n", count: 10000)
            try text.write(toFile: host, atomically: false, encoding: .utf8)
            try vol(image, ["put", host, "/"])
            #expect(try vol(image, ["cat", "/hello.txt"]).stdout == text)
            #expect(try vol(image, ["cat", "/nope"], status: 1).stderr.contains("ENOENT"))
            try vol(image, ["mkdir", "/d"])
            #expect(try vol(image, ["cat", "/d"], status: 1).stderr.contains("EISDIR"))
        }

        @Test("mkdir -p makes every missing parent and finds existing ones; mkdir of an existing name EEXIST, under a missing one ENOENT")
        func mkdir() throws {
            let (dir, image) = try scratchVolume("mkdir")
            defer { dir.remove() }
            try vol(image, ["mkdir", "-p", "/x/y/z"])
            try vol(image, ["mkdir", "-p", "/x/y/w"])
            #expect(try vol(image, ["ls", "/x/y"]).stdout == "w\nz\n")
            #expect(try vol(image, ["mkdir", "/x"], status: 1).stderr.contains("EEXIST"))
            #expect(try vol(image, ["mkdir", "/q/r"], status: 1).stderr.contains("ENOENT"))
        }

        @Test("mv renames across directories; mv of a missing name exits 1 naming ENOENT, of a directory into itself EINVAL")
        func mv() throws {
            let (dir, image) = try scratchVolume("mv")
            defer { dir.remove() }
            try vol(image, ["mkdir", "-p", "/x/y"])
            try vol(image, ["mv", "/x/y", "/y2"])
            #expect(try vol(image, ["ls", "/"]).stdout == "x\ny2\n")
            #expect(try vol(image, ["ls", "/x"]).stdout == "")
            #expect(try vol(image, ["mv", "/nope", "/z"], status: 1).stderr.contains("ENOENT"))
            #expect(try vol(image, ["mv", "/x", "/x/inside"], status: 1).stderr.contains("EINVAL"))
        }

        @Test("ln makes a hard link (two links); ln of a directory exits 1 naming EPERM")
        func hardLink() throws {
            let (dir, image) = try scratchVolume("ln")
            defer { dir.remove() }
            let host = dir.path + "/f"
            try "data".write(toFile: host, atomically: false, encoding: .utf8)
            try vol(image, ["put", host, "/"])
            try vol(image, ["ln", "/f", "/g"])
            #expect(try vol(image, ["stat", "--json", "/g"]).json()["nlink"] as? Int == 2)
            #expect(try vol(image, ["cat", "/g"]).stdout == "data")
            try vol(image, ["mkdir", "/d"])
            #expect(try vol(image, ["ln", "/d", "/d2"], status: 1).stderr.contains("EPERM"))
        }

        @Test("ln -s makes a symlink with the target as given; over an existing name it exits 1 naming EEXIST")
        func symbolicLink() throws {
            let (dir, image) = try scratchVolume("ln-s")
            defer { dir.remove() }
            try vol(image, ["ln", "-s", "../some/where", "/s"])
            #expect(try vol(image, ["stat", "--json", "/s"]).json()["type"] as? String == "symlink")
            #expect(try vol(image, ["ls", "-l", "/"]).stdout.contains("s -> ../some/where"))
            #expect(try vol(image, ["ln", "-s", "x", "/s"], status: 1).stderr.contains("EEXIST"))
        }

        @Test("rm removes a file and rm -r a tree; rm of a directory without -r exits 1 naming EISDIR, of a missing name ENOENT")
        func rm() throws {
            let (dir, image) = try scratchVolume("rm")
            defer { dir.remove() }
            try vol(image, ["mkdir", "-p", "/t/u/v"])
            try vol(image, ["ln", "-s", "x", "/t/u/link"])
            let r = try vol(image, ["rm", "/t"], status: 1)
            #expect(r.stderr.contains("EISDIR") || r.stderr.contains("ENOTEMPTY"), "\(r.stderr)")
            try vol(image, ["rm", "/t/u/link"])
            try vol(image, ["rm", "-r", "/t"])
            #expect(try vol(image, ["ls", "/"]).stdout == "")
            #expect(try vol(image, ["rm", "/t"], status: 1).stderr.contains("ENOENT"))
        }

        @Test("setfattr -n/-v sets and getfattr shows; setfattr -x removes; a missing attribute exits 1 naming ENODATA")
        func xattrs() throws {
            let (dir, image) = try scratchVolume("xattr")
            defer { dir.remove() }
            try vol(image, ["mkdir", "/d"])
            try vol(image, ["setfattr", "-n", "user.colour", "-v", "blue", "/d"])
            try vol(image, ["setfattr", "-n", "user.empty", "/d"])
            #expect(try vol(image, ["getfattr", "/d"]).stdout == "user.colour=\"blue\"\nuser.empty=\"\"\n")
            #expect(try vol(image, ["getfattr", "-n", "user.colour", "/d"]).stdout == "user.colour=\"blue\"\n")
            #expect(try vol(image, ["getfattr", "-n", "user.nope", "/d"], status: 1).stderr.contains("ENODATA"))
            try vol(image, ["setfattr", "-x", "user.colour", "/d"])
            #expect(try vol(image, ["getfattr", "/d"]).stdout == "user.empty=\"\"\n")
            #expect(try vol(image, ["setfattr", "-x", "user.colour", "/d"], status: 1).stderr.contains("ENODATA"))
        }
    }
}
