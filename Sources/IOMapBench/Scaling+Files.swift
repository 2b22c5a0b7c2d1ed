// Counterpart: none in the kernel; the files curve of `iomap bench`: a lookup, an open, a
// 4 KiB write and a close of a random file among 10, 10^4 and 10^5 in one directory of a
// volume, against openat + pwrite + close of files in one tmpfs directory, as a mail
// spool or an object store touches its files. See Scaling.swift for how curves are measured.
//
// Why it is built this way:
// - Every file holds 4 KiB before the clock starts, so every timed write is an overwrite of
//   a cached block whatever the size: what grows with the files is finding and opening one.
// - 10^6 files cost both sides gigabytes and the set-up minutes; the default run stops at
//   10^5 (README "Benchmarks" has the figures behind that).
// - The names are made before the clock starts (the volume's as byte arrays, tmpfs's as one
//   buffer of C strings), so the timed loops build no string.

import ExtentFS
import IOMap
import IOMapBase
import IOMapKernelSide
import IOMapTesting
import Volume

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The bytes file `k` is written with: the source at offset 4096 k, so neighbouring files
/// hold different bytes.
@inline(__always)
func fileBytes(_ src: PatternBuffer, _ k: Int) -> UnsafeRawBufferPointer { src.bytes(forFileOffset: k * 4096, length: 4096) }

/// The volume's side: `files` files of 4 KiB in one directory of a volume on an in-memory
/// device.
final class VolumeFilesSide {
    let volume: Volume
    let dir: InodeNumber
    let names: [[UInt8]]
    private(set) var inodes: [InodeNumber] = []

    init(files: Int, _ src: PatternBuffer, progress: (String) -> Void) throws {
        let device = MemoryBlockDevice(blockSize: 4096, blockCount: (GiB + files * 8 * KiB) / 4096)
        volume = try makeBenchVolume(device)
        let v = volume
        dir = try volumeCall("mkdir") { () throws(Errno) in try v.mkdir(in: .root, "files", permissions: 0o755) }
        names = (0..<files).map { Array("file-\($0)".utf8) }
        inodes.reserveCapacity(files)
        let start = monotonicNs()
        for k in 0..<files {
            let ino = try volumeCall("create") { () throws(Errno) in try v.create(in: dir, name: names[k], permissions: 0o644).inode }
            let h = try volumeCall("open") { () throws(Errno) in try v.open(ino) }
            let n = try volumeCall("write") { () throws(Errno) in try h.write(fileBytes(src, k), at: 0) }
            if n != 4096 { throw BenchFailure("volume write of file \(k) wrote \(n) of 4096 bytes") }
            try volumeCall("close") { () throws(Errno) in try h.close() }
            inodes.append(ino)
            // The log is forced as a background force would, so it never holds more than a
            // slice of the creates.
            if (k + 1) % 10_000 == 0 { try force() }
            if files >= 100_000 && (k + 1) % (files / 10) == 0 {
                progress("scaling-files: volume \(k + 1)/\(files) files, \(formatFixed(Double(monotonicNs() &- start) / 1e9, digits: 1)) s")
            }
        }
        try force()
    }

    func force() throws {
        let v = volume
        try volumeCall("force") { () throws(Errno) in try v.journal.forceAll() }
    }

    /// The 16 bytes at the start of file `k`.
    func readBack(_ k: Int) throws -> [UInt8] {
        let v = volume
        let ino = inodes[k]
        return try volumeCall("read back") { () throws(Errno) in
            let h = try v.open(ino)
            defer { try? h.close() }
            return try h.read(count: 16, at: 0)
        }
    }
}

/// The kernel's side: `files` files of 4 KiB in a new directory on tmpfs, opened by name
/// relative to it.
final class KernelFilesSide {
    let path: String
    let dirfd: Int32
    /// Every name as a C string, `stride` bytes apart.
    let names: UnsafeMutablePointer<CChar>
    static let stride = 16

    init(directory: String, files: Int, _ src: PatternBuffer, progress: (String) -> Void) throws {
        switch HostFiles.makeUniqueDirectory(in: directory, prefix: benchFileName("files")) {
        case .success(let p): path = p
        case .failure(let e): throw BenchFailure("scaling-files: \(e)")
        }
        names = .allocate(capacity: files * Self.stride)
        dirfd = open(path, O_RDONLY | O_DIRECTORY)
        if dirfd < 0 { throw BenchFailure("open(\(path)): \(Errno(rawValue: errno).symbolicName)") }
        let start = monotonicNs()
        for k in 0..<files {
            let name = Array("file-\(k)".utf8)
            for (i, c) in name.enumerated() { names[k * Self.stride + i] = CChar(bitPattern: c) }
            names[k * Self.stride + name.count] = 0
            let fd = openat(dirfd, self.name(k), O_CREAT | O_EXCL | O_WRONLY, 0o644)
            if fd < 0 { throw BenchFailure("openat(\(path)/file-\(k), O_CREAT): \(Errno(rawValue: errno).symbolicName)") }
            let n = pwrite(fd, fileBytes(src, k).baseAddress, 4096, 0)
            close(fd)
            if n != 4096 { throw BenchFailure("pwrite of \(path)/file-\(k) wrote \(n) of 4096 bytes") }
            if files >= 100_000 && (k + 1) % (files / 10) == 0 {
                progress("scaling-files: tmpfs \(k + 1)/\(files) files, \(formatFixed(Double(monotonicNs() &- start) / 1e9, digits: 1)) s")
            }
        }
    }

    deinit {
        if dirfd >= 0 { close(dirfd) }
        names.deallocate()
        HostFiles.remove(path)
    }

    @inline(__always)
    func name(_ k: Int) -> UnsafePointer<CChar> { UnsafePointer(names + k * Self.stride) }

    /// The 16 bytes at the start of file `k`.
    func readBack(_ k: Int) throws -> [UInt8] {
        let fd = openat(dirfd, name(k), O_RDONLY)
        if fd < 0 { throw BenchFailure("openat(\(path)/file-\(k)): \(Errno(rawValue: errno).symbolicName)") }
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: 16)
        let n = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 16, 0) }
        if n != 16 { throw BenchFailure("pread of \(path)/file-\(k) returned \(n)") }
        return out
    }
}

/// The volume's timed loop: lookup, open, write 4 KiB at 0, close, for each index; returns the
/// inode numbers looked up, summed.
@inline(never)
func volumeOpenWrites(_ side: VolumeFilesSide, _ src: PatternBuffer, _ indices: [Int]) throws -> UInt64 {
    let v = side.volume
    let dir = side.dir
    var sum: UInt64 = 0
    for k in indices {
        let ino = try v.lookup(dir, side.names[k])
        let h = try v.open(ino)
        let n = try h.write(fileBytes(src, k), at: 0)
        try h.close()
        if n != 4096 { throw BenchFailure("volume write of file \(k) wrote \(n) of 4096 bytes") }
        sum &+= ino.rawValue
    }
    return sum
}

/// The kernel's timed loop: openat, pwrite 4 KiB at 0, close; returns the bytes written.
@inline(never)
func kernelOpenWrites(_ side: KernelFilesSide, _ src: PatternBuffer, _ indices: [Int]) throws -> Int {
    let dirfd = side.dirfd
    var sum = 0
    for k in indices {
        let fd = openat(dirfd, side.name(k), O_WRONLY)
        if fd < 0 { throw BenchFailure("openat(file-\(k)): \(Errno(rawValue: errno).symbolicName)") }
        let n = pwrite(fd, fileBytes(src, k).baseAddress, 4096, 0)
        close(fd)
        if n != 4096 { throw BenchFailure("pwrite of file-\(k) wrote \(n) of 4096 bytes") }
        sum &+= n
    }
    return sum
}

extension BenchContext {
    /// files-open-write-4k over 10, 10^4 and 10^5 files (quick: 10, 10^3 and 10^4), 10,000
    /// random files (fixed seed; quick 2,000) per run, each size made, measured and freed
    /// before the next.
    func scalingFiles() throws -> BenchScaling {
        let name = "files-open-write-4k"
        let counts = scale > 1 ? [10, 1_000, 10_000] : [10, 10_000, 100_000]
        let ops = scale > 1 ? 2_000 : 10_000
        var points: [BenchScalingPoint] = []
        var setup: [String: Double] = [:]
        for n in counts {
            let (samples, seconds) = try filesPoint(name, files: n, ops: ops)
            points.append(point(Double(n), "\(n) files", samples))
            setup["volume_setup_s_\(n)"] = seconds.volume
            setup["kernel_setup_s_\(n)"] = seconds.kernel
        }
        var c = growthCurve(name, points, bound: nil)
        c.detail.merge(setup) { a, _ in a }
        c.detail["ops_per_run"] = Double(ops)
        c.detail["seed"] = Double(ScalingLCG.seed)
        return c
    }

    /// One size of files-open-write-4k: both directories made (timed, as detail), then the
    /// random opens and writes alternated; the last 64 files written are read back.
    func filesPoint(_ name: String, files n: Int, ops: Int) throws -> (samples: [[Double]], setup: (volume: Double, kernel: Double)) {
        let label = "\(name) \(n) files"
        progress("\(label): making the files on both sides")
        let src = sourceBuffer(opSize: 4096)
        var t0 = monotonicNs()
        let volume = try VolumeFilesSide(files: n, src, progress: progress)
        let volumeSetup = Double(monotonicNs() &- t0) / 1e9
        t0 = monotonicNs()
        let kernel = try KernelFilesSide(directory: kernelDir, files: n, src, progress: progress)
        let kernelSetup = Double(monotonicNs() &- t0) / 1e9
        let indices = scalingIndices(ops, below: n)
        let inodeSum = indices.reduce(UInt64(canary)) { $0 &+ volume.inodes[$1].rawValue }
        let checked = indices.suffix(64)
        func check(_ side: String, _ read: (Int) throws -> [UInt8]) throws {
            for k in checked {
                let got = try read(k)
                if got != (0..<16).map({ src.expected(atFileOffset: k * 4096 + $0) }) {
                    throw BenchFailure("\(side) \(label): data check failed: file-\(k) holds \(hex(got))")
                }
            }
        }
        let samples = try alternate(
            label,
            [
                { round in
                    src.fill(tag: round + 1)
                    var sum: UInt64 = 0
                    let ns = try timed { sum = try volumeOpenWrites(volume, src, indices) }
                    if sum != inodeSum { throw BenchFailure("volume \(label): the inodes looked up sum to \(sum), expected \(inodeSum)") }
                    try check("volume", volume.readBack)
                    try volume.force()
                    return ns / Double(ops)
                },
                { round in
                    src.fill(tag: round + 1)
                    var sum = 0
                    let ns = try timed { sum = try kernelOpenWrites(kernel, src, indices) }
                    if sum != 4096 * ops { throw BenchFailure("kernel \(label): \(sum) bytes written, expected \(4096 * ops)") }
                    try check("kernel", kernel.readBack)
                    return ns / Double(ops)
                },
            ])
        return (samples, (volumeSetup, kernelSetup))
    }
}
