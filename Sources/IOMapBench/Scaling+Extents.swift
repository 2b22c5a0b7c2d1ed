// Counterpart: none in the kernel; the extents curves of `iomap bench`: a read mapping
// (->iomap_begin, what every read and seek of the engine starts from) and SEEK_DATA at random
// positions of files of 10^3, 10^5 and 10^6 separate extents, against SEEK_DATA and a 1-byte
// pread on a tmpfs file with the same layout. See Scaling.swift for how curves are measured.
//
// Why it is built this way:
// - The layout is 4 KiB written at every other 8 KiB, so no two extents can merge and a file
//   of n extents has exactly n records; the engine's is fsync'd every 4,096 writes, so the
//   records written back are always the last ones (converting a delalloc record in the
//   middle of a million would shift the rest) and the cache is dropped as it goes.
// - The engine's file lives on a device that keeps nothing: what is timed is the extent map,
//   and a million 4 KiB blocks kept in memory would be 4 GiB measuring nothing.
// - tmpfs has no extents: its counterpart of a mapping lookup is the page-cache lookup a
//   1-byte pread does (a page or a hole), and SEEK_DATA walks the same cache.

import ExtentFS
import IOMap
import IOMapBase
import IOMapKernelSide
import IOMapTesting

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// A device that keeps nothing and reads zeros: for the extents curves, whose files must be
/// written back (so that their records are written extents) but whose bytes are never read.
final class DiscardBlockDevice: BlockDevice {
    let blockSize: Int
    let blockCount: Int

    init(blockSize: Int, blockCount: Int) {
        self.blockSize = blockSize
        self.blockCount = blockCount
    }

    func read(block: Int, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) {
        if let base = buffer.baseAddress { memset(base, 0, buffer.count) }
    }

    func write(block: Int, count: Int, from buffer: UnsafeRawBufferPointer) throws(Errno) {}
    func write(block: Int, count: Int, from buffers: [UnsafeRawBufferPointer]) throws(Errno) {}
    func flush() throws(Errno) {}
}

/// The answers a layout of 4 KiB of data at every other 8 KiB gives at `p`: the block holding
/// it is data when its index is even, a hole of one block when odd.
@inline(__always)
func isDataBlock(_ p: Int) -> Bool { (p >> 12) & 1 == 0 }

/// What the probes of one run must sum to on each side.
struct ExtentAnswers {
    /// iomapBegin: offset + length of every mapping, and how many were mapped.
    var mappingSum = 0
    var mapped = 0
    /// SEEK_DATA: the offsets answered.
    var seekSum = 0
    /// pread of 1 byte: the bytes read.
    var byteSum = 0

    init(_ probes: [Int], _ src: PatternBuffer, passes: Int) {
        for p in probes {
            let block = p & ~4095
            mappingSum &+= block &+ 4096
            if isDataBlock(p) {
                mapped += 1
                seekSum &+= p
                byteSum &+= Int(src.expected(atFileOffset: p))
            } else {
                seekSum &+= block + 4096
            }
        }
        mappingSum &*= passes
        mapped *= passes
        seekSum &*= passes
        byteSum &*= passes
    }
}

@inline(never)
func engineMappings(_ file: ExtentFile, _ probes: [Int], passes: Int) throws -> (sum: Int, mapped: Int) {
    var sum = 0
    var mapped = 0
    let inode = file.inode
    for _ in 0..<passes {
        for p in probes {
            let (m, _) = try file.iomapBegin(inode, pos: p, length: 1, flags: [])
            sum &+= m.offset &+ m.length
            if m.kind == .mapped { mapped += 1 }
        }
    }
    return (sum, mapped)
}

@inline(never)
func engineSeeks(_ file: ExtentFile, _ probes: [Int], passes: Int) throws -> Int {
    var sum = 0
    for _ in 0..<passes {
        for p in probes { sum &+= try file.seekData(from: p) }
    }
    return sum
}

@inline(never)
func kernelSeeks(_ file: KernelFile, _ probes: [Int], passes: Int) throws -> Int {
    var sum = 0
    for _ in 0..<passes {
        for p in probes {
            let rc = file.seekRaw(data: true, from: p)
            if rc < 0 { throw BenchFailure("lseek(SEEK_DATA) from \(p): \(Errno(rawValue: Int32(-rc)).symbolicName)") }
            sum &+= Int(rc)
        }
    }
    return sum
}

@inline(never)
func kernelBytes(_ file: KernelFile, _ probes: [Int], passes: Int, _ byte: UnsafeMutableRawBufferPointer) throws -> Int {
    var sum = 0
    for _ in 0..<passes {
        for p in probes {
            let n = try file.preadAll(byte, at: p)
            if n != 1 { throw BenchFailure("pread of 1 byte at \(p) returned \(n)") }
            sum &+= Int(byte[0])
        }
    }
    return sum
}

extension BenchContext {
    /// extents-iomap-begin and extents-seek-data over 10^3, 10^5 and 10^6 extents (quick:
    /// 10^2, 10^3 and 10^4), 4,096 random probes (fixed seed) per pass.
    func scalingExtents() throws -> [BenchScaling] {
        let counts = scale > 1 ? [100, 1_000, 10_000] : [1_000, 100_000, 1_000_000]
        let passes = scale > 1 ? 4 : 25
        var mapping: [BenchScalingPoint] = []
        var seek: [BenchScalingPoint] = []
        for n in counts {
            let samples = try extentsPoint(extents: n, passes: passes)
            mapping.append(point(Double(n), "\(n) extents", samples, engine: 0, kernel: 1))
            seek.append(point(Double(n), "\(n) extents", samples, engine: 2, kernel: 3))
        }
        return [mapping, seek].enumerated().map { i, points in
            var c = growthCurve(BenchWorkload.scalingExtents.curveNames[i], points, bound: 2)
            c.detail["probes_per_run"] = Double(4096 * passes)
            c.detail["seed"] = Double(ScalingLCG.seed)
            return c
        }
    }

    /// Builds the engine's file of `n` extents: 4 KiB at every other 8 KiB, fsync'd and its
    /// cache dropped every 4,096 writes; checks that it has exactly the n records expected.
    func extentsEngineFile(extents n: Int, _ src: PatternBuffer) throws -> ExtentFile {
        let fs = ExtentFS(device: DiscardBlockDevice(blockSize: 4096, blockCount: n + 65_536), config: ExtentFSConfig(blockSize: 4096))
        let file = fs.createFile()
        for k in 0..<n {
            let wrote = try file.write(src.bytes(forFileOffset: k * 8192, length: 4096), at: k * 8192)
            if wrote != 4096 { throw BenchFailure("engine write at \(k * 8192) wrote \(wrote) of 4096 bytes") }
            if (k + 1) % 4096 == 0 {
                try file.fsync()
                file.dropCaches()
            }
            if (k + 1) % 100_000 == 0 { progress("scaling-extents: engine file \(k + 1)/\(n) extents") }
        }
        try file.fsync()
        file.dropCaches()
        let records = file.extentRecords
        let wrong = records.indices.first { i in
            let r = records[i]
            return r.startBlock != 2 * i || r.blockCount != 1 || r.state != .written
        }
        if records.count != n || wrong != nil {
            let what = wrong.map { "record \($0) is \(records[$0])" } ?? "\(records.count) records"
            throw BenchFailure("scaling-extents: the engine's file of \(n) extents has \(what)")
        }
        return file
    }

    /// One size of the extents curves; the samples are engine iomapBegin, kernel pread,
    /// engine SEEK_DATA, kernel SEEK_DATA.
    func extentsPoint(extents n: Int, passes: Int) throws -> [[Double]] {
        let label = "scaling-extents \(n) extents"
        progress("\(label): laying out both files")
        let src = sourceBuffer(opSize: 4096)
        let file = try extentsEngineFile(extents: n, src)
        let kfile = try KernelFile(directory: kernelDir, name: benchFileName("extents-\(n)"))
        defer { kfile.unlink() }
        for k in 0..<n { _ = try kfile.pwriteAll(src.bytes(forFileOffset: k * 8192, length: 4096), at: k * 8192) }
        let size = (n - 1) * 8192 + 4096
        if file.size != size || kfile.size != size {
            throw BenchFailure("\(label): the files are \(file.size) and \(kfile.size) bytes, expected \(size)")
        }
        let probes = scalingIndices(4096, below: size)
        var want = ExtentAnswers(probes, src, passes: passes)
        want.mappingSum &+= canary
        let ops = Double(probes.count * passes)
        let byte = UnsafeMutableRawBufferPointer.allocate(byteCount: 1, alignment: 1)
        defer { byte.deallocate() }
        func checked(_ what: String, _ got: Int, _ expected: Int) throws {
            if got != expected { throw BenchFailure("\(label): \(what): the answers sum to \(got), expected \(expected)") }
        }
        return try alternate(
            label,
            [
                { _ in
                    var got = (sum: 0, mapped: 0)
                    let ns = try timed { got = try engineMappings(file, probes, passes: passes) }
                    try checked("engine iomapBegin", got.sum, want.mappingSum)
                    try checked("engine iomapBegin (mapped)", got.mapped, want.mapped)
                    return ns / ops
                },
                { _ in
                    var got = 0
                    let ns = try timed { got = try kernelBytes(kfile, probes, passes: passes, byte) }
                    try checked("kernel pread", got, want.byteSum)
                    return ns / ops
                },
                { _ in
                    var got = 0
                    let ns = try timed { got = try engineSeeks(file, probes, passes: passes) }
                    try checked("engine SEEK_DATA", got, want.seekSum)
                    return ns / ops
                },
                { _ in
                    var got = 0
                    let ns = try timed { got = try kernelSeeks(kfile, probes, passes: passes) }
                    try checked("kernel SEEK_DATA", got, want.seekSum)
                    return ns / ops
                },
            ])
    }
}
