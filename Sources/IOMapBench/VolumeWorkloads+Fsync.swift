// Counterpart: none in the kernel; the volume's fsync rows of `iomap bench`: the cache
// flushes of xfs_file_fsync's log force (one for an overwrite, two for an allocating write,
// none for a clean file) and group commit (xlog_cil_force_seq, where a force finds its
// sequence pushed by another and waits instead of writing), each against pwrite + fsync of
// a file in the same host directory.
//
// Why it is built this way:
// - The volume is on a FileBlockDevice over an image file in the disk directory, so that a
//   device flush is an fsync of a real file and costs what it costs there; the same volume
//   on an in-memory device, whose flush is free, is reported beside it: the CPU's share.
// - Flushes are counted per fsync (JournalStats.flushes before and after each call), so a
//   goal of "one per fsync" is checked call by call, not on average.
// - A batch is a log force that did work: every fsync makes one force, and a force that
//   found its checkpoint and its data durable already (another thread's force covered it)
//   is counted in JournalStats.sharedForces; so batches = fsyncs - sharedForces, and flushes
//   per batch is what group commit keeps at most 2.

import ExtentFS
import IOMap
import IOMapBase
import IOMapKernelSide
import IOMapTesting
import PageCache
import Synchronization
import Volume

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

private let blockBytes = 4096

/// The single-thread fsync rows.
enum FsyncCase: Int, CaseIterable {
    /// 4 KiB over written blocks, then fsync.
    case overwrite
    /// 4 KiB past the end (allocating and size-changing), then fsync.
    case append
    /// fsync of a file with nothing dirty.
    case clean

    var row: String { "volume-fsync-\(self)" }

    /// Whether the flush counts seen meet the goal.
    func holds(_ t: FlushTally) -> Bool {
        switch self {
        case .overwrite: return t.least == 1 && t.most == 1
        case .append: return t.most <= 2
        case .clean: return t.most == 0
        }
    }
}

/// Flushes per fsync over the counted rounds. An fsync whose force found the log full wrote
/// a snapshot instead of a checkpoint (two flushes more: the snapshot's, then one after each
/// superblock copy);
/// those are counted apart, so that the report says which fsyncs went over and why.
final class FlushTally {
    var fsyncs = 0
    var flushes = 0
    var least = Int.max
    var most = 0
    var snapshotFsyncs = 0
    var mostWithoutSnapshot = 0

    func add(_ perFsync: [Int], snapshots: [Bool]) {
        fsyncs += perFsync.count
        flushes += perFsync.reduce(0, +)
        least = min(least, perFsync.min() ?? least)
        most = max(most, perFsync.max() ?? most)
        for (n, snapshot) in zip(perFsync, snapshots) {
            if snapshot { snapshotFsyncs += 1 } else { mostWithoutSnapshot = max(mostWithoutSnapshot, n) }
        }
    }

    var mean: Double { fsyncs == 0 ? 0 : Double(flushes) / Double(fsyncs) }
}

/// A volume with the files the single-thread rows use: `overwrite` and `clean` written and
/// fsync'd, `ops` blocks each.
final class FsyncVolume {
    let volume: Volume
    let overwrite: FileHandle
    let clean: FileHandle

    init(_ device: any BlockDevice, ops: Int, src: PatternBuffer) throws {
        let v = try makeBenchVolume(device)
        volume = v
        func written(_ name: String) throws -> FileHandle {
            let h = try volumeCall("create \(name)") { () throws(Errno) in
                try v.open(try v.create(in: .root, name, permissions: 0o644).inode)
            }
            _ = try volumeWrites(h, src, size: ops * blockBytes, opSize: blockBytes)
            try volumeCall("fsync") { () throws(Errno) in try h.fsync() }
            return h
        }
        overwrite = try written("overwrite")
        clean = try written("clean")
    }

    /// One round of `c`: `ops` fsyncs (after a 4 KiB write but for `clean`), each one's
    /// flushes recorded in `tally` when counted; the data checked from the device after.
    func run(_ c: FsyncCase, ops: Int, src: PatternBuffer, round: Int, tally: FlushTally) throws -> Double {
        let v = volume
        src.fill(tag: round + 1)
        let h: FileHandle
        switch c {
        case .overwrite: h = overwrite
        case .clean: h = clean
        case .append:
            h = try volumeCall("create") { () throws(Errno) in
                try v.open(try v.create(in: .root, "append-\(round)", permissions: 0o644).inode)
            }
        }
        var flushes = [Int](repeating: 0, count: ops)
        var snapshots = [Bool](repeating: false, count: ops)
        let journal = v.journal
        let ns = try timed {
            for i in 0..<ops {
                let before = journal.stats
                if c != .clean { try h.write(src.bytes(forFileOffset: i * blockBytes, length: blockBytes), at: i * blockBytes) }
                try h.fsync()
                let after = journal.stats
                flushes[i] = after.flushes - before.flushes
                snapshots[i] = after.snapshots != before.snapshots
            }
        }
        if round > 0 { tally.add(flushes, snapshots: snapshots) }
        if c != .clean {
            // From the device, not the cache: what the fsyncs made durable.
            h.file.dropCaches()
            try checkEngine("volume \(c.row)", h.file, src, size: ops * blockBytes)
        }
        if c == .append {
            try volumeCall("unlink") { () throws(Errno) in
                try h.close()
                try v.unlink(in: .root, "append-\(round)")
                try v.journal.forceAll()
            }
        }
        return ns / Double(ops)
    }
}

/// The kernel's side of the single-thread rows: the same calls on files in `directory`.
final class KernelFsyncFiles {
    let directory: String
    let overwrite: KernelFile
    let clean: KernelFile

    init(directory: String, ops: Int, src: PatternBuffer) throws {
        self.directory = directory
        overwrite = try KernelFile(directory: directory, name: benchFileName("volume-fsync-overwrite"))
        clean = try KernelFile(directory: directory, name: benchFileName("volume-fsync-clean"))
        for f in [overwrite, clean] {
            _ = try kernelWrites(f, src, size: ops * blockBytes, opSize: blockBytes)
            try f.check("fsync", f.fsync())
        }
    }

    deinit {
        overwrite.unlink()
        clean.unlink()
    }

    func run(_ c: FsyncCase, ops: Int, src: PatternBuffer, round: Int) throws -> Double {
        src.fill(tag: round + 1)
        let f: KernelFile
        switch c {
        case .overwrite: f = overwrite
        case .clean: f = clean
        case .append: f = try KernelFile(directory: directory, name: benchFileName("volume-fsync-append"))
        }
        defer { if c == .append { f.unlink() } }
        let ns = try timed {
            for i in 0..<ops {
                if c != .clean { _ = try f.pwriteAll(src.bytes(forFileOffset: i * blockBytes, length: blockBytes), at: i * blockBytes) }
                try f.check("fsync", f.fsync())
            }
        }
        if c != .clean { try checkKernel("kernel \(c.row)", f, src, size: ops * blockBytes) }
        return ns / Double(ops)
    }
}

// MARK: - Threads

/// The first failure of the threads of a run.
final class ThreadFailures: Sendable {
    let first = Mutex<String?>(nil)
    func record(_ error: any Error) { first.withLock { $0 = $0 ?? "\(error)" } }
}

/// Runs `body(t)` on `count` threads released together; returns the nanoseconds from their
/// release to the last one's end, or throws the first failure. The clock is read once every
/// thread is running (the first barrier) and before they are let go (the second): read after
/// the release, a descheduled main thread could start it when the work is done.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws -> Double {
    let (ready, go) = (ThreadBarrier(count: count + 1), ThreadBarrier(count: count + 1))
    let failures = ThreadFailures()
    let threads = (0..<count).map { t in
        JoinableThread {
            ready.wait()
            go.wait()
            do { try body(t) } catch { failures.record(error) }
        }
    }
    ready.wait()
    let start = monotonicNs()
    go.wait()
    for thread in threads { thread.join() }
    let ns = Double(monotonicNs() &- start)
    if let failure = failures.first.withLock({ $0 }) { throw BenchFailure(failure) }
    return ns
}

/// Each thread's bytes for a round: `ops` blocks, different per thread and per round.
func threadData(threads: Int, ops: Int, tag: Int) -> [[UInt8]] {
    (0..<threads).map { t in (0..<ops * blockBytes).map { PatternBuffer.byte($0 &+ t &* 7919, tag: tag) } }
}

/// What group commit did over the counted rounds of one device.
final class BatchTally {
    var fsyncs = 0
    var batches = 0
    var flushes = 0

    var flushesPerBatch: Double { batches == 0 ? 0 : Double(flushes) / Double(batches) }
}

/// A volume with one written and fsync'd file per thread.
final class ThreadedFsyncVolume {
    let volume: Volume
    let handles: [FileHandle]

    init(_ device: any BlockDevice, threads: Int, ops: Int) throws {
        let v = try makeBenchVolume(device)
        volume = v
        let data = threadData(threads: threads, ops: ops, tag: 0)
        handles = try (0..<threads).map { t in
            try volumeCall("create") { () throws(Errno) in
                let h = try v.open(try v.create(in: .root, "thread-\(t)", permissions: 0o644).inode)
                try h.write(data[t], at: 0)
                try h.fsync()
                return h
            }
        }
    }

    /// `threads` threads, each overwriting its file block by block with an fsync after each
    /// block; returns nanoseconds per fsync (wall time over all fsyncs), with what group
    /// commit did added to `tally` when counted.
    func run(threads: Int, ops: Int, round: Int, tally: BatchTally?) throws -> Double {
        let data = threadData(threads: threads, ops: ops, tag: round + 1)
        let handles = self.handles
        let before = volume.journal.stats
        let ns = try onThreads(threads) { t in
            try data[t].withUnsafeBytes { p in
                for i in 0..<ops {
                    try handles[t].write(UnsafeRawBufferPointer(rebasing: p[i * blockBytes..<(i + 1) * blockBytes]), at: i * blockBytes)
                    try handles[t].fsync()
                }
            }
        }
        let after = volume.journal.stats
        if let tally {
            tally.fsyncs += threads * ops
            tally.batches += threads * ops - (after.sharedForces - before.sharedForces)
            tally.flushes += after.flushes - before.flushes
        }
        for t in 0..<threads {
            handles[t].file.dropCaches()
            try checkSamples("volume-fsync-8t thread \(t)", size: ops * blockBytes, expected: { data[t][$0] }) { offset, count in
                try handles[t].read(count: count, at: offset)
            }
        }
        return ns / Double(threads * ops)
    }
}

/// The kernel's side of the threaded row: one written and fsync'd file per thread.
final class ThreadedKernelFiles {
    let files: [KernelFile]

    init(directory: String, threads: Int, ops: Int) throws {
        let data = threadData(threads: threads, ops: ops, tag: 0)
        files = try (0..<threads).map { t in
            let f = try KernelFile(directory: directory, name: benchFileName("volume-fsync-thread-\(t)"))
            _ = try f.check("pwrite", f.write(data[t], at: 0))
            try f.check("fsync", f.fsync())
            return f
        }
    }

    deinit { for f in files { f.unlink() } }

    func run(threads: Int, ops: Int, round: Int) throws -> Double {
        let data = threadData(threads: threads, ops: ops, tag: round + 1)
        let files = self.files
        let ns = try onThreads(threads) { t in
            try data[t].withUnsafeBytes { p in
                for i in 0..<ops {
                    _ = try files[t].pwriteAll(
                        UnsafeRawBufferPointer(rebasing: p[i * blockBytes..<(i + 1) * blockBytes]), at: i * blockBytes)
                    try files[t].check("fsync", files[t].fsync())
                }
            }
        }
        for t in 0..<threads {
            try checkSamples("kernel volume-fsync-8t thread \(t)", size: ops * blockBytes, expected: { data[t][$0] }) { offset, count in
                try files[t].check("pread", files[t].read(count: count, at: offset))
            }
        }
        return ns / Double(threads * ops)
    }
}

// MARK: - The rows

extension BenchContext {
    /// The image file of a volume row in the disk directory.
    func volumeImage(_ role: String, bytes: Int) throws -> FileBlockDevice {
        try makeFileDevice(path: diskDir + "/" + benchFileName(role), bytes: bytes)
    }

    // MARK: volume-fsync

    /// The single-thread fsync rows: 128 fsyncs per repetition (quick: 1/16, at least 4) on
    /// the file-backed volume, the kernel and the in-memory volume. The volumes are of 256 MiB
    /// with mkfs's log for that size (4 MiB), which the three rows' checkpoints fill about
    /// once in a full run: the fsync that meets the full log writes a snapshot, and the
    /// report counts it.
    func volumeFsync() throws -> [BenchResult] {
        let ops = max(4, 128 / scale)
        let src = sourceBuffer(opSize: blockBytes)
        let imageBytes = 256 << 20
        defer { HostFiles.remove(diskDir + "/" + benchFileName("volume-fsync.img")) }
        let disk = try FsyncVolume(try volumeImage("volume-fsync.img", bytes: imageBytes), ops: ops, src: src)
        let memory = try FsyncVolume(MemoryBlockDevice(blockSize: blockBytes, blockCount: imageBytes / blockBytes), ops: ops, src: src)
        let kernel = try KernelFsyncFiles(directory: diskDir, ops: ops, src: src)
        return try FsyncCase.allCases.map { c in
            let (diskTally, memoryTally) = (FlushTally(), FlushTally())
            let samples = try alternate(
                c.row,
                [
                    { round in try disk.run(c, ops: ops, src: src, round: round, tally: diskTally) },
                    { round in try kernel.run(c, ops: ops, src: src, round: round) },
                    { round in try memory.run(c, ops: ops, src: src, round: round, tally: memoryTally) },
                ])
            var r = BenchResult(name: c.row, goal: goalText(c.row))
            let (e, k) = (median(samples[0]), median(samples[1]))
            r.engineNsPerOp = e
            r.kernelNsPerOp = k
            r.ratio = k / e
            r.holds = c.holds(diskTally)
            r.detail["flushes_per_fsync"] = diskTally.mean
            r.detail["min_flushes_per_fsync"] = Double(diskTally.least)
            r.detail["max_flushes_per_fsync"] = Double(diskTally.most)
            r.detail["snapshot_fsyncs"] = Double(diskTally.snapshotFsyncs)
            r.detail["max_flushes_per_fsync_without_snapshot"] = Double(diskTally.mostWithoutSnapshot)
            r.detail["memory_ns_per_op"] = median(samples[2])
            r.detail["memory_flushes_per_fsync"] = memoryTally.mean
            r.detail["fsyncs_per_repetition"] = Double(ops)
            r.detail["fsyncs_counted"] = Double(diskTally.fsyncs)
            return r
        }
    }

    // MARK: volume-fsync-8t

    /// 8 threads each overwriting and fsyncing its own file, against one thread doing the
    /// same: 100 fsyncs per thread per repetition (quick: 1/16, at least 4), on the
    /// file-backed volume, the kernel and the in-memory volume.
    func volumeFsync8t() throws -> BenchResult {
        let name = BenchWorkload.volumeFsync8t.rawValue
        let threads = 8
        let ops = max(4, 100 / scale)
        let imageBytes = 256 << 20
        defer { HostFiles.remove(diskDir + "/" + benchFileName("volume-fsync-8t.img")) }
        let disk = try ThreadedFsyncVolume(try volumeImage("volume-fsync-8t.img", bytes: imageBytes), threads: threads, ops: ops)
        let memory = try ThreadedFsyncVolume(
            MemoryBlockDevice(blockSize: blockBytes, blockCount: imageBytes / blockBytes), threads: threads, ops: ops)
        let kernel = try ThreadedKernelFiles(directory: diskDir, threads: threads, ops: ops)
        let (diskTally, memoryTally) = (BatchTally(), BatchTally())
        let samples = try alternate(
            name,
            [
                { round in try disk.run(threads: 1, ops: ops, round: round, tally: nil) },
                { round in try disk.run(threads: threads, ops: ops, round: round, tally: round > 0 ? diskTally : nil) },
                { round in try kernel.run(threads: 1, ops: ops, round: round) },
                { round in try kernel.run(threads: threads, ops: ops, round: round) },
                { round in try memory.run(threads: 1, ops: ops, round: round, tally: nil) },
                { round in try memory.run(threads: threads, ops: ops, round: round, tally: round > 0 ? memoryTally : nil) },
            ])
        let t = samples.map(median)
        var r = BenchResult(name: name, goal: goalText(name))
        r.engineNsPerOp = t[1]
        r.ratio = t[0] / t[1]
        r.holds = t[0] / t[1] >= 4 && diskTally.flushesPerBatch <= 2
        r.attainment = diskTally.flushesPerBatch <= 2 ? t[0] / t[1] / 4 : 0
        r.detail["fsyncs_per_s_1_thread"] = 1e9 / t[0]
        r.detail["fsyncs_per_s_8_threads"] = 1e9 / t[1]
        r.detail["flushes_per_batch"] = diskTally.flushesPerBatch
        r.detail["fsyncs_per_batch"] = diskTally.batches == 0 ? 0 : Double(diskTally.fsyncs) / Double(diskTally.batches)
        r.detail["kernel_fsyncs_per_s_1_thread"] = 1e9 / t[2]
        r.detail["kernel_fsyncs_per_s_8_threads"] = 1e9 / t[3]
        r.detail["kernel_scaling"] = t[2] / t[3]
        r.detail["memory_fsyncs_per_s_1_thread"] = 1e9 / t[4]
        r.detail["memory_fsyncs_per_s_8_threads"] = 1e9 / t[5]
        r.detail["memory_scaling"] = t[4] / t[5]
        r.detail["memory_flushes_per_batch"] = memoryTally.flushesPerBatch
        r.detail["fsyncs_per_thread"] = Double(ops)
        return r
    }
}
