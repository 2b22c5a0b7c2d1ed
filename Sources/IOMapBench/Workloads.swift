// Counterpart: none in the kernel; the workloads of `iomap bench`, each shaped like an fio
// job (sequential psync writes and reads of a fixed block size, a new file for appends,
// an fsync at the end for writeback) and run against the engine and a real file with the
// same sizes and bytes. See Bench.swift for how runs are alternated, timed and checked.

import ExtentFS
import IOMap
import IOMapBase
import IOMapKernelSide
import IOMapTesting
import PageCache

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// An interleaver that decides nothing: every yield returns at once. Installed in the
/// environment it is what live-hooks measures; bound to the timing thread as well, it sends
/// every lock operation and hook point down the explorer's path, reported beside it.
final class NoOpInterleaver: Interleaver {
    func yield(_ site: YieldSite, actor: Int) {}
    func block(on key: ObjectIdentifier, _ site: YieldSite, actor: Int) {}
    func signal(_ key: ObjectIdentifier) {}
}

/// An engine on a sparse memory device: the device is a dictionary of chunks filled only by
/// writeback, so a device as large as the biggest reservation costs nothing.
func makeEngine(deviceBytes: Int, maxFolioSize: Int = 2 * MiB, environment: IOMapEnvironment = .live) -> ExtentFS {
    ExtentFS(
        memoryBytes: deviceBytes,
        config: ExtentFSConfig(blockSize: 4096, maxFolioSize: maxFolioSize, environment: environment))
}

/// A source buffer for operations of `opSize`: a multiple of the operation size, and large
/// enough that neighbouring operations carry different bytes.
func sourceBuffer(opSize: Int) -> PatternBuffer { PatternBuffer(count: max(MiB, 3 * opSize)) }

// MARK: - Timed loops
//
// Each loop is the whole timed region: no allocation, no array bridging, one call per
// operation, so what is measured is the path under test and a loop counter.

/// Times `body` at every offset from 0 to `size` in steps of `opSize`. Inlined into each
/// loop below, so the loop is still one call per operation and a counter.
@inline(__always)
private func timedOps(size: Int, opSize: Int, _ body: (Int) throws -> Void) rethrows -> Double {
    try timed {
        var off = 0
        while off < size {
            try body(off)
            off += opSize
        }
    }
}

@inline(never)
func engineWrites(_ file: ExtentFile, _ src: PatternBuffer, size: Int, opSize: Int) throws -> Double {
    try timedOps(size: size, opSize: opSize) { off in
        let n = try file.write(src.bytes(forFileOffset: off, length: opSize), at: off)
        if n != opSize { throw BenchFailure("engine write at \(off) wrote \(n) of \(opSize) bytes") }
    }
}

@inline(never)
func kernelWrites(_ file: KernelFile, _ src: PatternBuffer, size: Int, opSize: Int) throws -> Double {
    try timedOps(size: size, opSize: opSize) { off in
        let n = try file.pwriteAll(src.bytes(forFileOffset: off, length: opSize), at: off)
        if n != opSize { throw BenchFailure("pwrite at \(off) wrote \(n) of \(opSize) bytes") }
    }
}

@inline(never)
private func memcpyWrites(into dest: UnsafeMutableRawPointer, _ src: PatternBuffer, size: Int, opSize: Int) -> Double {
    timedOps(size: size, opSize: opSize) { off in _ = memcpy(dest + off, src.base + off % src.count, opSize) }
}

// MARK: - Checks

func checkEngine(_ what: String, _ file: ExtentFile, _ src: PatternBuffer, size: Int) throws {
    try checkSamples(what, size: size, expected: src.expected(atFileOffset:)) { offset, count in
        try file.read(count: count, at: offset)
    }
}

func checkKernel(_ what: String, _ file: KernelFile, _ src: PatternBuffer, size: Int) throws {
    try checkSamples(what, size: size, expected: src.expected(atFileOffset:)) { offset, count in
        try file.check("pread", file.read(count: count, at: offset))
    }
}

private func checkMemory(_ what: String, _ dest: UnsafeMutableRawPointer, _ src: PatternBuffer, size: Int) throws {
    try checkSamples(what, size: size, expected: src.expected(atFileOffset:)) { offset, count in
        [UInt8](UnsafeRawBufferPointer(start: dest + offset, count: count))
    }
}

/// A destination buffer of `size` bytes, every page already touched, for memcpy baselines of
/// workloads whose target is already cached.
private func touchedBuffer(_ size: Int) -> UnsafeMutableRawPointer {
    var p: UnsafeMutableRawPointer?
    precondition(posix_memalign(&p, 4096, size) == 0 && p != nil, "cannot allocate \(size) bytes")
    memset(p!, 0, size)
    return p!
}

/// A buffer of `size` bytes holding the file's content, every page touched: what a memcpy
/// baseline copies from when the file it stands for is cached.
private func filledBuffer(_ src: PatternBuffer, size: Int) -> UnsafeMutableRawPointer {
    let buffer = touchedBuffer(size)
    for off in stride(from: 0, to: size, by: src.count) {
        memcpy(buffer + off, src.base, min(src.count, size - off))
    }
    return buffer
}

/// What the file holds in the little-endian word at `probe(k)` of each of `ops` blocks of
/// `opSize` bytes, summed: what the reads' check words must sum to.
private func probedSum(_ src: PatternBuffer, ops: Int, opSize: Int, probe: (Int) -> Int) -> UInt64 {
    var sum: UInt64 = 0
    for k in 0..<ops {
        var word: UInt64 = 0
        for b in 0..<8 { word |= UInt64(src.expected(atFileOffset: k * opSize + probe(k) + b)) << (8 * b) }
        sum &+= word
    }
    return sum
}

/// The device on the image file at `path`, made new (`create`) or as it is.
func makeFileDevice(path: String, bytes: Int, create: Bool = true) throws -> FileBlockDevice {
    do {
        return try FileBlockDevice(path: path, blockSize: 4096, blockCount: bytes / 4096, create: create)
    } catch {
        throw BenchFailure("cannot \(create ? "create" : "open") the device image \(path): \(error.symbolicName)")
    }
}

func sizeLabel(_ bytes: Int) -> String {
    if bytes >= TiB && bytes % TiB == 0 { return "\(bytes / TiB)TiB" }
    if bytes >= GiB && bytes % GiB == 0 { return "\(bytes / GiB)GiB" }
    if bytes >= MiB && bytes % MiB == 0 { return "\(bytes / MiB)MiB" }
    return "\(bytes / KiB)KiB"
}

/// A row comparing the engine with the kernel: medians of the first two sides (and of the
/// memcpy baseline when there is a third), ratio kernel / engine, held when at least
/// `minimum`.
private func kernelRatioRow(_ name: String, _ samples: [[Double]], minimum: Double, bytes: Int? = nil) -> BenchResult {
    var r = BenchResult(name: name, goal: goalText(name))
    if let bytes { r.detail["bytes"] = Double(bytes) }
    let (e, k) = (median(samples[0]), median(samples[1]))
    r.engineNsPerOp = e
    r.kernelNsPerOp = k
    r.ratio = k / e
    r.attainment = k / e / minimum
    r.holds = k / e >= minimum
    if samples.count > 2 {
        let m = median(samples[2])
        r.memcpyNsPerOp = m
        r.ownWork = ownWork(engine: e, kernel: k, memcpy: m)
    }
    return r
}

/// The engine's own work beside the kernel's, the copy taken out of both:
/// (engine - memcpy) / (kernel - memcpy). Nil when the kernel is no slower than the copy
/// (nothing to compare with); an engine faster than the copy counts as no work.
func ownWork(engine e: Double, kernel k: Double, memcpy m: Double) -> Double? {
    guard k > m else { return nil }
    return max(0, e - m) / (k - m)
}

/// How far a figure held to an upper bound is toward it: bound / figure, a figure at or
/// under a thousandth of the bound (or below zero) counting as 1,000 times the goal.
func upperBoundAttainment(_ value: Double, bound: Double) -> Double {
    bound / max(value, bound / 1_000)
}

/// The most own work (ownWork) the own-work goals accept.
let ownWorkGoal = 0.25

/// A row held to the own-work goal: the engine's work beyond the copy at most a quarter of
/// the kernel's (the copy is the floor both pay).
func ownWorkRow(_ name: String, _ samples: [[Double]], bytes: Int? = nil) -> BenchResult {
    var r = kernelRatioRow(name, samples, minimum: 1, bytes: bytes)
    if let own = r.ownWork {
        // An engine at or under the copy counts as 1,000 times the goal, not infinity (JSON).
        r.attainment = ownWorkGoal / max(own, ownWorkGoal / 1_000)
        r.holds = own <= ownWorkGoal
    } else {
        r.attainment = nil
        r.holds = false
    }
    return r
}

/// The memcpy baseline of a workload whose target memory is new: untouched memory, faulted
/// in as the copy goes, as cache memory is allocated as an append goes.
private func freshMemcpySide(_ name: String, _ src: PatternBuffer, size: Int, opSize: Int, ops: Double) -> (Int) throws -> Double {
    { round in
        src.fill(tag: round + 1)
        guard let dest = malloc(size) else { throw BenchFailure("cannot allocate \(size) bytes") }
        defer { free(dest) }
        let ns = memcpyWrites(into: dest, src, size: size, opSize: opSize)
        try checkMemory("memcpy \(name)", dest, src, size: size)
        return ns / ops
    }
}

/// A file a workload writes again and again, the engine's or the kernel's: its timed writes
/// and its check.
protocol RewriteTarget {
    func timedWrites(_ src: PatternBuffer, size: Int, opSize: Int) throws -> Double
    func checkContents(_ label: String, _ src: PatternBuffer, size: Int) throws
}

extension ExtentFile: RewriteTarget {
    func timedWrites(_ src: PatternBuffer, size: Int, opSize: Int) throws -> Double {
        try engineWrites(self, src, size: size, opSize: opSize)
    }
    func checkContents(_ label: String, _ src: PatternBuffer, size: Int) throws { try checkEngine(label, self, src, size: size) }
}

extension KernelFile: RewriteTarget {
    func timedWrites(_ src: PatternBuffer, size: Int, opSize: Int) throws -> Double {
        try kernelWrites(self, src, size: size, opSize: opSize)
    }
    func checkContents(_ label: String, _ src: PatternBuffer, size: Int) throws { try checkKernel(label, self, src, size: size) }
}

/// Rewrites of a cached file, checked after each run.
func rewriteSide(_ label: String, _ file: some RewriteTarget, _ src: PatternBuffer, size: Int, opSize: Int, ops: Double)
    -> (Int) throws -> Double
{
    { round in
        src.fill(tag: round + 1)
        let ns = try file.timedWrites(src, size: size, opSize: opSize)
        try file.checkContents(label, src, size: size)
        return ns / ops
    }
}

/// The memcpy baseline of a workload whose target is already cached: copies into `dest`,
/// every page of it already touched.
private func touchedMemcpySide(_ name: String, _ dest: UnsafeMutableRawPointer, _ src: PatternBuffer, size: Int, opSize: Int, ops: Double)
    -> (Int) throws -> Double
{
    { round in
        src.fill(tag: round + 1)
        let ns = memcpyWrites(into: dest, src, size: size, opSize: opSize)
        try checkMemory("memcpy \(name)", dest, src, size: size)
        return ns / ops
    }
}

extension BenchContext {
    /// overwrite-4k's sizes, which the workloads measured against it share: 64 MiB (scaled)
    /// in operations of 4 KiB, and a source buffer for them.
    func overwrite4kSizes() -> (size: Int, opSize: Int, ops: Double, src: PatternBuffer) {
        let size = 64 * MiB / scale
        let opSize = 4 * KiB
        return (size, opSize, Double(size / opSize), sourceBuffer(opSize: opSize))
    }

    /// `size` bytes of `src` cached in an engine file and in a kernel file named after
    /// `kernelName`, which the caller unlinks: what the overwrite and read workloads start from.
    func cachedFiles(_ kernelName: String, _ src: PatternBuffer, size: Int) throws -> (ExtentFile, KernelFile) {
        let file = makeEngine(deviceBytes: size + 16 * MiB).createFile()
        _ = try engineWrites(file, src, size: size, opSize: MiB)
        let kfile = try KernelFile(directory: kernelDir, name: benchFileName(kernelName))
        do {
            _ = try kernelWrites(kfile, src, size: size, opSize: MiB)
        } catch {
            kfile.unlink()
            throw error
        }
        return (file, kfile)
    }

    /// The kernel's side of a workload that writes a new file each time, in `directory`, with
    /// an fsync at the end when `fsync` is set (inside the timed region).
    func freshKernelSide(
        _ name: String, directory: String, fileName: String, _ src: PatternBuffer, size: Int, opSize: Int, ops: Double,
        fsync: Bool
    ) -> (Int) throws -> Double {
        { round in
            src.fill(tag: round + 1)
            let kfile = try KernelFile(directory: directory, name: fileName)
            // Unlinking frees tmpfs pages as soon as the descriptor closes.
            defer { kfile.unlink() }
            let ns: Double
            if fsync {
                ns = try timed {
                    _ = try kernelWrites(kfile, src, size: size, opSize: opSize)
                    try kfile.check("fsync", kfile.fsync())
                }
            } else {
                ns = try kernelWrites(kfile, src, size: size, opSize: opSize)
            }
            try checkKernel("kernel \(name)", kfile, src, size: size)
            return ns / ops
        }
    }

    // MARK: overwrite-4k

    func overwrite4k() throws -> BenchResult {
        let name = BenchWorkload.overwrite4k.rawValue
        let (size, opSize, ops, src) = overwrite4kSizes()
        let (file, kfile) = try cachedFiles("overwrite", src, size: size)
        defer { kfile.unlink() }
        let dest = touchedBuffer(size)
        defer { free(dest) }

        let samples = try alternate(
            name,
            [
                rewriteSide("engine \(name)", file, src, size: size, opSize: opSize, ops: ops),
                rewriteSide("kernel \(name)", kfile, src, size: size, opSize: opSize, ops: ops),
                touchedMemcpySide(name, dest, src, size: size, opSize: opSize, ops: ops),
            ])
        var r = ownWorkRow(name, samples, bytes: size)
        r.detail["engine_over_memcpy"] = r.engineNsPerOp! / r.memcpyNsPerOp!
        return r
    }

    // MARK: append-4k, append-1m

    func append(opSize: Int, name: String) throws -> BenchResult {
        let size = GiB / scale
        let ops = Double(size / opSize)
        let src = sourceBuffer(opSize: opSize)
        // The whole append is reserved as delalloc, so the device must hold it; being sparse
        // and never written back here, it costs no memory.
        let fs = makeEngine(deviceBytes: size + 64 * MiB)
        let kernelName = benchFileName(name)

        /// The engine's side with new folios holding `fill`.
        func engineSide(_ fill: FolioFill?) -> (Int) throws -> Double {
            { round in
                src.fill(tag: round + 1)
                let saved = FolioMemory.fill
                if let fill { FolioMemory.fill = fill }
                defer { FolioMemory.fill = saved }
                // A new file each time; the old one, and its cache, went when its last
                // reference did at the end of the previous run.
                let file = fs.createFile()
                let ns = try engineWrites(file, src, size: size, opSize: opSize)
                try checkEngine("engine \(name)", file, src, size: size)
                return ns / ops
            }
        }
        // The fourth side decides whether new folios should be zeroed (init_on_alloc): the
        // same appends with every recycled block zeroed before use.
        let samples = try alternate(
            name,
            [
                engineSide(nil),
                freshKernelSide(
                    name, directory: kernelDir, fileName: kernelName, src, size: size, opSize: opSize, ops: ops, fsync: false),
                freshMemcpySide(name, src, size: size, opSize: opSize, ops: ops),
                engineSide(.zero),
            ])
        var r = kernelRatioRow(name, Array(samples[0..<3]), minimum: opSize == 4 * KiB ? 1.5 : 1.0, bytes: size)
        r.detail["zeroing_engine_ns_per_op"] = median(samples[3])
        r.detail["zeroing_cost"] = median(samples[3]) / r.engineNsPerOp! - 1
        return r
    }

    // MARK: read-4k

    func read4k() throws -> BenchResult {
        let name = BenchWorkload.read4k.rawValue
        let size = 64 * MiB / scale
        let opSize = 4 * KiB
        let ops = size / opSize
        let src = sourceBuffer(opSize: opSize)
        let (file, kfile) = try cachedFiles("read", src, size: size)
        defer { kfile.unlink() }
        // The memcpy baseline reads from a cache-sized source into the same small user
        // buffer the reads fill.
        let cache = filledBuffer(src, size: size)
        defer { free(cache) }
        let buffer = touchedBuffer(opSize)
        defer { free(buffer) }
        let user = UnsafeMutableRawBufferPointer(start: buffer, count: opSize)

        // Every read is checked cheaply: one word at a position that moves with the
        // operation is summed, and the sum compared with what the file holds there.
        @inline(__always) func probe(_ k: Int) -> Int { (k &* 8) & (opSize - 8) }
        let expectedSum = probedSum(src, ops: ops, opSize: opSize, probe: probe)
        func checkSum(_ side: String, _ sum: UInt64) throws {
            if sum != expectedSum {
                throw BenchFailure("\(side) \(name): data check failed: the read data sums to \(sum), the file to \(expectedSum)")
            }
        }

        /// One side's timed reads: `read(k)` fills the buffer with block k; the check word of
        /// each is summed and compared. Inlined, so the loop is one call per read and the sum.
        @inline(__always)
        func side(_ what: String, _ read: (Int) throws -> Void) throws -> Double {
            memset(buffer, 0, opSize)
            var sum: UInt64 = 0
            let ns = try timed {
                for k in 0..<ops {
                    try read(k)
                    sum &+= buffer.loadUnaligned(fromByteOffset: probe(k), as: UInt64.self)
                }
            }
            try checkSum(what, sum)
            return ns / Double(ops)
        }
        let samples = try alternate(
            name,
            [
                { _ in
                    try side("engine") { k in
                        let n = try file.read(into: user, at: k * opSize)
                        if n != opSize { throw BenchFailure("engine read at \(k * opSize) returned \(n) bytes") }
                    }
                },
                { _ in
                    try side("kernel") { k in
                        let n = try kfile.preadAll(user, at: k * opSize)
                        if n != opSize { throw BenchFailure("pread at \(k * opSize) returned \(n) bytes") }
                    }
                },
                { _ in try side("memcpy") { k in _ = memcpy(buffer, cache + k * opSize, opSize) } },
            ])
        return ownWorkRow(name, samples, bytes: size)
    }

    // MARK: seek-data, seek-hole

    /// SEEK_DATA from the hole before every data run, or SEEK_HOLE from inside every run, on
    /// a sparse file of 1,000 runs of 64 KiB spread over 1 GiB (quick: 62 runs over 64 MiB).
    func seek(data: Bool) throws -> BenchResult {
        let name = data ? BenchWorkload.seekData.rawValue : BenchWorkload.seekHole.rawValue
        let size = GiB / scale
        let runs = 1000 / scale
        let runLength = 64 * KiB
        let spacing = size / runs / runLength * runLength
        let runStarts = (0..<runs).map { $0 * spacing + spacing / 2 / runLength * runLength }
        // Enough passes over the probes that one repetition is long against the clock.
        let passes = 100
        let probes = data ? runStarts.map { $0 - spacing / 4 } : runStarts.map { $0 + 4 * KiB }
        let answers = data ? runStarts : runStarts.map { $0 + runLength }
        let expectedSum = answers.reduce(0, &+) &* passes
        let src = sourceBuffer(opSize: runLength)

        let fs = makeEngine(deviceBytes: max(16 * MiB, 2 * runs * runLength))
        let file = fs.createFile()
        try file.truncate(to: size)
        for start in runStarts {
            let n = try file.write(src.bytes(forFileOffset: start, length: runLength), at: start)
            if n != runLength { throw BenchFailure("engine write at \(start) wrote \(n) bytes") }
        }
        try file.fsync()
        let kfile = try KernelFile(directory: kernelDir, name: benchFileName(name))
        defer { kfile.unlink() }
        try kfile.check("ftruncate", kfile.truncate(to: size))
        for start in runStarts {
            _ = try kfile.pwriteAll(src.bytes(forFileOffset: start, length: runLength), at: start)
        }
        try kfile.check("fsync", kfile.fsync())

        let engineSeek: (Int) throws -> Int = data ? file.seekData(from:) : file.seekHole(from:)
        let kernelSeek: (Int) -> Int64 = { kfile.seekRaw(data: data, from: $0) }
        func check(_ side: String, _ sum: Int, _ answer: (Int) throws -> Int) throws {
            for (i, p) in probes.enumerated() {
                let got = try answer(p)
                if got != answers[i] {
                    throw BenchFailure("\(side) \(name) from \(p) answered \(got), expected \(answers[i])")
                }
            }
            if sum != expectedSum { throw BenchFailure("\(side) \(name): the answers sum to \(sum), expected \(expectedSum)") }
        }
        let ops = Double(passes * runs)

        let samples = try alternate(
            name,
            [
                { _ in
                    var sum = 0
                    let ns = try timed {
                        for _ in 0..<passes {
                            for p in probes { sum &+= try engineSeek(p) }
                        }
                    }
                    try check("engine", sum, engineSeek)
                    return ns / ops
                },
                { _ in
                    var sum = 0
                    let ns = try timed {
                        for _ in 0..<passes {
                            for p in probes {
                                let rc = kernelSeek(p)
                                if rc < 0 { throw BenchFailure("lseek from \(p): \(Errno(rawValue: Int32(-rc)).symbolicName)") }
                                sum &+= Int(rc)
                            }
                        }
                    }
                    try check("kernel", sum) { p in
                        let rc = kernelSeek(p)
                        if rc < 0 { throw BenchFailure("lseek from \(p): \(Errno(rawValue: Int32(-rc)).symbolicName)") }
                        return Int(rc)
                    }
                    return ns / ops
                },
            ])
        var r = kernelRatioRow(name, samples, minimum: 5.0)
        r.detail["data_runs"] = Double(runs)
        r.detail["file_bytes"] = Double(size)
        return r
    }

    // MARK: cleanup

    /// The failure cleanup of a write that reserved NEW delalloc over a whole range and copied
    /// nothing, with 8 folios dirtied through a mapping inside the range after the
    /// reservation (the seed's race). A real write reserves at most
    /// `ExtentFile.maxReservationBytes` per mapping, so the range is reserved and handed to
    /// iomapEnd as that write's iomapBegin would have if it were not capped: what is timed
    /// is iomapEnd and nothing else.
    func cleanup() throws -> BenchResult {
        let name = BenchWorkload.cleanup.rawValue
        let sizes = [MiB / scale, GiB / scale, TiB / scale]
        let iterations = scale == 1 ? 200 : 16
        let dirtyFolios = 8
        let bs = 4096
        var punchesSeen = 0
        var keptBlocks = 0

        let sides: [(Int) throws -> Double] = sizes.map { size in
            let fs = makeEngine(deviceBytes: size + 64 * MiB)
            let blocks = size / bs
            let offsets = (0..<dirtyFolios).map { k in (k * (size / dirtyFolios) + size / (2 * dirtyFolios)) / pageSize * pageSize }
            return { round in
                var total = 0.0
                for it in 0..<iterations {
                    let file = fs.createFile()
                    try file.truncate(to: size)
                    try file._reserveDelalloc(fromBlock: 0, toBlock: blocks)
                    let m = file._newDelallocMapping(fromBlock: 0, toBlock: blocks)
                    let stamps = (0..<dirtyFolios).map { k in
                        (0..<8).map { b in UInt8(truncatingIfNeeded: k &* 37 &+ b &+ it &* 3 &+ round) }
                    }
                    for (k, offset) in offsets.enumerated() { try file.mappedStore(stamps[k], at: offset + 100) }
                    total += timed { file._failWrite(pos: 0, length: size, written: 0, mapping: m) }
                    // The cleanup ran, kept the reservation under exactly the dirty folios,
                    // and left their bytes alone.
                    var kept = 0
                    for offset in offsets {
                        guard let folio = file._folio(at: offset), folio.isDirty else {
                            throw BenchFailure("cleanup over \(sizeLabel(size)): the dirty folio at \(offset) is gone")
                        }
                        kept += folio.size / bs
                    }
                    if file.inode.stats.cleanups != 1 || file.delallocBlocks != kept {
                        throw BenchFailure(
                            "cleanup over \(sizeLabel(size)): \(file.inode.stats.cleanups) cleanups left \(file.delallocBlocks) delalloc blocks, expected 1 leaving \(kept)"
                        )
                    }
                    for (k, offset) in offsets.enumerated() where try file.mappedLoad(count: 8, at: offset + 100) != stamps[k] {
                        throw BenchFailure("cleanup over \(sizeLabel(size)): the bytes stored at \(offset + 100) changed")
                    }
                    if let problem = fs.checkSpaceAccounting() { throw BenchFailure("cleanup over \(sizeLabel(size)): \(problem)") }
                    punchesSeen = file.inode.stats.punches
                    keptBlocks = kept
                }
                return total / Double(iterations)
            }
        }
        let samples = try alternate(name, sides)
        let times = samples.map(median)
        var r = BenchResult(name: name, goal: goalText(name))
        r.engineNsPerOp = times[2]
        r.ratio = times[2] / times[0]
        r.holds = times[2] <= 2 * times[0]
        r.attainment = 2 * times[0] / times[2]
        for (size, t) in zip(sizes, times) { r.detail["ns_per_op_\(sizeLabel(size))"] = t }
        r.detail["punches_per_cleanup"] = Double(punchesSeen)
        r.detail["dirty_folios"] = Double(dirtyFolios)
        r.detail["kept_delalloc_blocks"] = Double(keptBlocks)
        r.detail["reserved_bytes_largest"] = Double(sizes[2])
        return r
    }

    // MARK: writeback-fsync

    func writebackFsync() throws -> BenchResult {
        let name = BenchWorkload.writebackFsync.rawValue
        let size = 256 * MiB / scale
        let opSize = MiB
        let ops = Double(size / opSize)
        let src = sourceBuffer(opSize: opSize)
        let devicePath = diskDir + "/" + benchFileName("device.img")
        let kernelName = benchFileName("writeback")
        defer {
            HostFiles.remove(devicePath)
            HostFiles.remove(diskDir + "/" + kernelName)
        }

        let samples = try alternate(
            name,
            [
                { round in
                    src.fill(tag: round + 1)
                    defer { HostFiles.remove(devicePath) }
                    let device = try makeFileDevice(path: devicePath, bytes: size + 16 * MiB)
                    let fs = ExtentFS(device: device, config: ExtentFSConfig(blockSize: 4096))
                    let file = fs.createFile()
                    let ns = try timed {
                        _ = try engineWrites(file, src, size: size, opSize: opSize)
                        try file.fsync()
                    }
                    // Read back from the device, not the cache: the check is of what writeback
                    // wrote.
                    file.dropCaches()
                    if file.mapping.folioCount != 0 {
                        throw BenchFailure("engine \(name): \(file.mapping.folioCount) folios still cached after fsync and a cache drop")
                    }
                    try checkEngine("engine \(name)", file, src, size: size)
                    return ns / ops
                },
                freshKernelSide(name, directory: diskDir, fileName: kernelName, src, size: size, opSize: opSize, ops: ops, fsync: true),
                freshMemcpySide(name, src, size: size, opSize: opSize, ops: ops),
            ])
        return kernelRatioRow(name, samples, minimum: 0.9, bytes: size)
    }

    // MARK: live-hooks

    /// overwrite-4k with the explorer's machinery switched on but deciding nothing, against
    /// the live environment. The ratio is the cost: hooked / live - 1. Hooked means both
    /// halves of the explorer's reach: the interleaver in the environment (the hook points)
    /// and bound to the timing thread (every sleeping lock). A third engine has it in the
    /// environment only, which is what a file system configured for exploration costs a
    /// thread the explorer does not run; it is reported as detail.
    func liveHooks() throws -> BenchResult {
        let name = BenchWorkload.liveHooks.rawValue
        let (size, opSize, ops, src) = overwrite4kSizes()
        let interleaver = NoOpInterleaver()
        let environment = IOMapEnvironment(interleaver: interleaver)
        let liveFS = makeEngine(deviceBytes: size + 16 * MiB)
        let hookedFS = makeEngine(deviceBytes: size + 16 * MiB, environment: environment)
        let envOnlyFS = makeEngine(deviceBytes: size + 16 * MiB, environment: environment)
        let live = liveFS.createFile()
        let hooked = hookedFS.createFile()
        let envOnly = envOnlyFS.createFile()
        for file in [live, hooked, envOnly] { _ = try engineWrites(file, src, size: size, opSize: MiB) }
        let dest = touchedBuffer(size)
        defer { free(dest) }

        let samples = try alternate(
            name,
            [
                { round in
                    src.fill(tag: round + 1)
                    let ns = try Interleaving.bound(to: interleaver, actor: 0) {
                        try engineWrites(hooked, src, size: size, opSize: opSize)
                    }
                    try checkEngine("hooked engine \(name)", hooked, src, size: size)
                    return ns / ops
                },
                rewriteSide("live engine \(name)", live, src, size: size, opSize: opSize, ops: ops),
                rewriteSide("environment-only engine \(name)", envOnly, src, size: size, opSize: opSize, ops: ops),
                touchedMemcpySide(name, dest, src, size: size, opSize: opSize, ops: ops),
            ])
        var r = BenchResult(name: name, goal: goalText(name))
        let (h, l, env, m) = (median(samples[0]), median(samples[1]), median(samples[2]), median(samples[3]))
        // The goal is about the hook installed and doing nothing: the interleaver in the
        // environment, consulted at every hook point and lock operation of a thread it does
        // not run. A thread bound to it takes the explorer's scheduling path at every yield
        // point; that cost is reported beside it.
        r.engineNsPerOp = env
        r.memcpyNsPerOp = m
        r.ratio = env / l - 1
        r.holds = env / l - 1 <= 0.02
        r.attainment = upperBoundAttainment(env / l - 1, bound: 0.02)
        r.detail["live_ns_per_op"] = l
        r.detail["bound_thread_ns_per_op"] = h
        r.detail["bound_thread_cost"] = h / l - 1
        return r
    }

    // MARK: memory

    /// Peak resident memory while caching 1 GiB (quick: 64 MiB) of written data, with 4 KiB
    /// folios and with 2 MiB folios, over the bytes cached. Each measurement runs in a fresh
    /// process when the caller can start one (`BenchConfig.memoryProbe`): the folio allocator
    /// keeps freed blocks for reuse, so in a process that has cached data before, caching
    /// again reuses resident memory and the growth measured would be far too small.
    func memory() throws -> [BenchResult] {
        let size = GiB / scale
        let folioSizes = [4 * KiB, 2 * MiB]
        let names = BenchWorkload.memory.rowNames
        var overheads = Array(repeating: [Double](), count: folioSizes.count)
        var deltas = Array(repeating: [Double](), count: folioSizes.count)
        var peakMeasured = true
        for round in 0...repetitions {
            progress("memory: \(round == 0 ? "warm-up" : "repetition \(round)/\(repetitions)")")
            for k in 0..<folioSizes.count {
                let i = (k + round) % folioSizes.count
                let probe = BenchMemoryProbe(folioSize: folioSizes[i], bytes: size, tag: round + 1)
                let sample = try memoryProbe.map { try $0(probe) } ?? runBenchMemoryProbe(probe)
                if sample.cachedBytes != size {
                    throw BenchFailure("\(names[i]): \(sample.cachedBytes) bytes cached, expected \(size)")
                }
                peakMeasured = peakMeasured && sample.peakMeasured
                if round > 0 {
                    let delta = sample.peakRSS - sample.baselineRSS
                    deltas[i].append(Double(delta))
                    overheads[i].append(Double(delta - size) / Double(size))
                }
            }
        }
        return folioSizes.indices.map { i in
            var r = BenchResult(name: names[i], goal: goalText(names[i]))
            let overhead = median(overheads[i])
            r.ratio = overhead
            r.holds = overhead <= (folioSizes[i] == 4 * KiB ? 0.03 : 0.005)
            r.attainment = upperBoundAttainment(overhead, bound: folioSizes[i] == 4 * KiB ? 0.03 : 0.005)
            r.detail["cached_bytes"] = Double(size)
            r.detail["rss_delta_bytes"] = median(deltas[i])
            r.detail["overhead_bytes"] = overhead * Double(size)
            r.detail["folio_bytes"] = Double(folioSizes[i])
            r.detail["peak_rss_measured"] = peakMeasured ? 1 : 0
            r.detail["separate_process"] = memoryProbe == nil ? 0 : 1
            return r
        }
    }
}

/// One memory measurement: cache `bytes` of written data with folios of at most `folioSize`.
public struct BenchMemoryProbe: Sendable {
    public var folioSize: Int
    public var bytes: Int
    /// Selects the data written (a different tag writes different bytes).
    public var tag: Int

    public init(folioSize: Int, bytes: Int, tag: Int) {
        self.folioSize = folioSize
        self.bytes = bytes
        self.tag = tag
    }

    /// A problem with the values, or nil.
    public var problem: String? {
        if folioSize < 4 * KiB || folioSize > 2 * MiB || folioSize & (folioSize - 1) != 0 {
            return "folio size must be a power of two from 4096 to 2097152, got \(folioSize)"
        }
        if bytes <= 0 || bytes % MiB != 0 { return "bytes must be a positive multiple of 1 MiB, got \(bytes)" }
        return nil
    }
}

/// What one memory measurement saw, in bytes. Codable because `iomap bench` measures in a
/// child process, which prints it as one JSON object for the parent to read back.
public struct BenchMemorySample: Sendable, Codable {
    /// Resident memory just before the file system was made.
    public var baselineRSS: Int
    /// Peak resident memory while caching (current resident memory where the peak could not
    /// be reset).
    public var peakRSS: Int
    /// Bytes the page cache held at the end.
    public var cachedBytes: Int
    public var peakMeasured: Bool

    enum CodingKeys: String, CodingKey {
        case baselineRSS = "baseline_rss"
        case peakRSS = "peak_rss"
        case cachedBytes = "cached_bytes"
        case peakMeasured = "peak_measured"
    }
}

/// Runs one memory measurement in this process. Meaningful in a process that has cached
/// nothing before (see `BenchContext.memory`); `iomap bench` runs it in a child process.
public func runBenchMemoryProbe(_ probe: BenchMemoryProbe) throws -> BenchMemorySample {
    if let problem = probe.problem { throw BenchFailure("memory probe: \(problem)") }
    let opSize = MiB
    // The source buffer is allocated, and its pages touched, before the baseline.
    let src = sourceBuffer(opSize: opSize)
    src.fill(tag: probe.tag)
    HostFiles.releaseFreeHeapMemory()
    let reset = resetPeakRSS()
    guard let before = procStatusBytes("VmRSS") else { throw BenchFailure("cannot read VmRSS from /proc/self/status") }
    let fs = makeEngine(deviceBytes: probe.bytes + 64 * MiB, maxFolioSize: probe.folioSize)
    let file = fs.createFile()
    _ = try engineWrites(file, src, size: probe.bytes, opSize: opSize)
    guard let peak = procStatusBytes(reset ? "VmHWM" : "VmRSS") else {
        throw BenchFailure("cannot read resident memory from /proc/self/status")
    }
    try checkEngine("engine memory (folios of \(probe.folioSize) bytes)", file, src, size: probe.bytes)
    return BenchMemorySample(baselineRSS: before, peakRSS: peak, cachedBytes: file.mapping.cachedBytes, peakMeasured: reset)
}
