// Counterpart: none in the kernel; the volume's rows of `iomap bench`: the metadata calls
// timed as fs_mark or a create/unlink microbenchmark times them on tmpfs (open(O_CREAT |
// O_EXCL) + close, chmod, rename, unlink), the volume's data path against the plain engine's,
// and the whole-volume operations (a snapshot, mkfs, the mount of a full log) against the
// bounds docs/VOLUME.md "Speed" names. The fsync rows are in VolumeWorkloads+Fsync.swift.
//
// Why it is built this way:
// - The metadata calls run on a volume on a counting in-memory device with no background
//   force: the goal is that they do no synchronous I/O, so any write or flush during a timed
//   loop is a goal that does not hold, seen in the row rather than hidden in a time.
// - After each timed loop the log is forced (untimed), so the bytes one call puts in the log
//   are measured for every call, and a snapshot at the end of every round keeps the log from
//   wrapping (a wrapped force writes a snapshot, not a checkpoint, and its bytes are not the
//   calls').

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

/// A device that counts the writes and flushes reaching it: the journal counts its own
/// flushes, but only the device sees every write (writeback's included).
final class CountingBlockDevice: BlockDevice {
    let base: any BlockDevice
    let blockSize: Int
    let blockCount: Int
    let writes = Atomic<Int>(0)
    let flushes = Atomic<Int>(0)

    init(_ base: any BlockDevice) {
        self.base = base
        blockSize = base.blockSize
        blockCount = base.blockCount
    }

    func read(block: Int, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) {
        try base.read(block: block, count: count, into: buffer)
    }

    func write(block: Int, count: Int, from buffer: UnsafeRawBufferPointer) throws(Errno) {
        writes.add(1, ordering: .relaxed)
        try base.write(block: block, count: count, from: buffer)
    }

    func write(block: Int, count: Int, from buffers: [UnsafeRawBufferPointer]) throws(Errno) {
        writes.add(1, ordering: .relaxed)
        try base.write(block: block, count: count, from: buffers)
    }

    func flush() throws(Errno) {
        flushes.add(1, ordering: .relaxed)
        try base.flush()
    }

    /// Writes and flushes so far, together.
    var io: Int { writes.load(ordering: .relaxed) + flushes.load(ordering: .relaxed) }
}

/// Mount options for a benchmark volume: no background force, whose flush every 30 s would
/// land in whichever timed loop it fell in.
func benchVolumeOptions() -> VolumeOptions {
    var o = VolumeOptions()
    o.backgroundForce = nil
    return o
}

/// Formats `device` (with a log of `logBlocks`, or the default) and mounts it.
func makeBenchVolume(_ device: any BlockDevice, logBlocks: Int? = nil) throws -> Volume {
    var f = FormatOptions()
    f.logBlocks = logBlocks
    f.force = true
    do {
        try Volume.format(device: device, options: f)
        return try Volume.mount(device: device, options: benchVolumeOptions())
    } catch {
        throw BenchFailure("cannot make a volume: \(error)")
    }
}

/// A row held to an upper bound on a time or a size: the ratio is the figure over the bound
/// (at most 1 holds).
func boundRow(_ name: String, _ value: Double, bound: Double, engineNs: Double? = nil) -> BenchResult {
    var r = BenchResult(name: name, goal: goalText(name))
    r.engineNsPerOp = engineNs
    r.ratio = value / bound
    r.holds = value <= bound
    r.attainment = upperBoundAttainment(value, bound: bound)
    return r
}

// MARK: - The metadata calls

/// The phases of the namespace workload, in the order each round runs them: every phase
/// works on the files the one before left.
enum NamespacePhase: Int, CaseIterable {
    case create, setattr, rename, unlink

    var row: String { "volume-\(self)" }
}

/// What one side of the namespace workload measured, per phase, over the counted rounds.
struct NamespaceTally {
    var ns = Array(repeating: [Double](), count: NamespacePhase.allCases.count)
    /// Device writes and flushes (journal flushes too) seen during the timed loops.
    var io = Array(repeating: 0, count: NamespacePhase.allCases.count)
    /// Log bytes per call (payload) and per call in whole log blocks.
    var logBytes = Array(repeating: [Double](), count: NamespacePhase.allCases.count)
    var logBlockBytes = Array(repeating: [Double](), count: NamespacePhase.allCases.count)
}

/// The volume's side of the namespace workload: one round creates `names` in a new
/// directory, chmods them, renames each to its `renamed` name and unlinks them, each phase
/// one timed loop.
final class VolumeNamespaceSide {
    let device: CountingBlockDevice
    let volume: Volume
    let names: [String]
    let renamed: [String]
    var tally = NamespaceTally()

    init(files: Int) throws {
        // 1 GiB, sparse, with a 64 MiB log: room for every phase's checkpoint of a round.
        device = CountingBlockDevice(MemoryBlockDevice(blockSize: 4096, blockCount: GiB / 4096))
        volume = try makeBenchVolume(device, logBlocks: 64 * MiB / 4096)
        names = (0..<files).map { "file-\($0)" }
        renamed = (0..<files).map { "renamed-\($0)" }
    }

    /// Runs `body` as phase `phase`'s timed loop and records its time, the I/O it did and,
    /// from a force after it, the log bytes it wrote.
    func phase(_ phase: NamespacePhase, counted: Bool, _ body: () throws -> Void) throws {
        let journal = volume.journal
        let before = (device.io, journal.stats.flushes)
        let ns = try timed(body)
        let io = device.io - before.0 + journal.stats.flushes - before.1
        let stats = journal.stats
        try volumeCall("force", { () throws(Errno) in try journal.forceAll() })
        let after = journal.stats
        if after.snapshots != stats.snapshots { throw BenchFailure("\(phase.row): the log wrapped during the round") }
        guard counted else { return }
        let n = Double(names.count)
        let i = phase.rawValue
        tally.ns[i].append(ns / n)
        tally.io[i] += io
        tally.logBytes[i].append(Double(after.checkpointBytes - stats.checkpointBytes) / n)
        tally.logBlockBytes[i].append(Double((after.checkpointBlocks - stats.checkpointBlocks) * device.blockSize) / n)
    }

    func run(round: Int) throws -> Double {
        let v = volume
        let start = monotonicNs()
        let dir = try volumeCall("mkdir") { () throws(Errno) in try v.mkdir(in: .root, "round-\(round)", permissions: 0o755) }
        try volumeCall("force") { () throws(Errno) in try v.journal.forceAll() }
        var inodes: [InodeNumber] = []
        inodes.reserveCapacity(names.count)
        try phase(.create, counted: round > 0) {
            for name in names { inodes.append(try v.create(in: dir, name, permissions: 0o644).inode) }
        }
        try checkEntries(dir, names)
        try phase(.setattr, counted: round > 0) {
            for ino in inodes { try v.setAttributes(ino, .chmod(0o600)) }
        }
        for ino in [inodes[0], inodes[inodes.count / 2], inodes[inodes.count - 1]] {
            let p = try volumeCall("stat") { () throws(Errno) in try v.stat(ino).attributes.permissions }
            if p != 0o600 { throw BenchFailure("volume-setattr: \(ino) has mode \(String(p, radix: 8)) after chmod 600") }
        }
        try phase(.rename, counted: round > 0) {
            for (old, new) in zip(names, renamed) { try v.rename(from: dir, old, to: dir, new) }
        }
        try checkEntries(dir, renamed)
        try phase(.unlink, counted: round > 0) {
            for name in renamed { try v.unlink(in: dir, name) }
        }
        try checkEntries(dir, [])
        try volumeCall("rmdir") { () throws(Errno) in try v.rmdir(in: .root, "round-\(round)") }
        // A snapshot now, untimed, so that the next round's checkpoints find the log empty.
        try volumeCall("snapshot") { () throws(Errno) in try v.journal.writeSnapshotNow(clean: false) }
        return Double(monotonicNs() &- start) / Double(names.count * NamespacePhase.allCases.count)
    }

    /// Checks that `dir` holds exactly the names in `expected` (a sample of them by lookup).
    func checkEntries(_ dir: InodeNumber, _ expected: [String]) throws {
        let listed = try volumeCall("readdir") { () throws(Errno) in try volume.readdir(dir).count - 2 }
        if listed != expected.count {
            throw BenchFailure("volume namespace: the directory lists \(listed) names, expected \(expected.count)")
        }
        for name in [expected.first, expected.last].compactMap({ $0 }) {
            _ = try volumeCall("lookup \(name)") { () throws(Errno) in try volume.lookup(dir, name) }
        }
    }
}

/// The kernel's side: the same calls on files in a directory on tmpfs.
final class KernelNamespaceSide {
    let directory: String
    var tally = NamespaceTally()

    init(directory: String) { self.directory = directory }

    func phase(_ phase: NamespacePhase, counted: Bool, files: Int, _ body: () throws -> Void) throws {
        let ns = try timed(body)
        if counted { tally.ns[phase.rawValue].append(ns / Double(files)) }
    }

    func run(round: Int, files: Int) throws -> Double {
        let base: String
        switch HostFiles.makeUniqueDirectory(in: directory, prefix: benchFileName("namespace-\(round)")) {
        case .success(let path): base = path
        case .failure(let e): throw BenchFailure("kernel namespace: \(e)")
        }
        defer { HostFiles.remove(base) }
        let paths = (0..<files).map { "\(base)/file-\($0)" }
        let renamed = (0..<files).map { "\(base)/renamed-\($0)" }
        let start = monotonicNs()
        try phase(.create, counted: round > 0, files: files) {
            for p in paths {
                if let e = HostFiles.createExclusive(p) { throw BenchFailure("open(O_CREAT|O_EXCL) \(p): \(e.symbolicName)") }
            }
        }
        try phase(.setattr, counted: round > 0, files: files) {
            for p in paths { if let e = HostFiles.changeMode(p, 0o600) { throw BenchFailure("chmod \(p): \(e.symbolicName)") } }
        }
        if HostFiles.permissions(paths[files / 2]) != 0o600 { throw BenchFailure("kernel chmod: \(paths[files / 2]) is not mode 600") }
        try phase(.rename, counted: round > 0, files: files) {
            for (p, q) in zip(paths, renamed) {
                if let e = HostFiles.renameFile(p, to: q) { throw BenchFailure("rename \(p): \(e.symbolicName)") }
            }
        }
        if HostFiles.exists(paths[0]) || !HostFiles.exists(renamed[0]) { throw BenchFailure("kernel rename: \(paths[0]) was not renamed") }
        try phase(.unlink, counted: round > 0, files: files) {
            for q in renamed { if let e = HostFiles.unlinkFile(q) { throw BenchFailure("unlink \(q): \(e.symbolicName)") } }
        }
        if HostFiles.exists(renamed[0]) || HostFiles.exists(renamed[files - 1]) {
            throw BenchFailure("kernel unlink: \(renamed[0]) is still there")
        }
        return Double(monotonicNs() &- start) / Double(files * NamespacePhase.allCases.count)
    }
}

/// Runs an Errno-throwing call, naming it in the failure.
func volumeCall<T>(_ what: String, _ body: () throws(Errno) -> T) throws -> T {
    do {
        return try body()
    } catch {
        throw BenchFailure("volume \(what): \(error.symbolicName)")
    }
}

/// The metadata the device holds now, read as a mount would read it: what a row checks its
/// writes against.
func recoveredState(_ device: any BlockDevice) throws -> MetadataState {
    do {
        return try recoverLog(try DeviceLogStore.open(device)).state
    } catch {
        throw BenchFailure("reading the volume back: \(error)")
    }
}

/// Creates `directories` directories of `filesEach` empty files under the root.
func makeTree(_ v: Volume, directories: Int, filesEach: Int) throws {
    try volumeCall("making the tree") { () throws(Errno) in
        for d in 0..<directories {
            let dir = try v.mkdir(in: .root, "dir-\(d)", permissions: 0o755)
            for f in 0..<filesEach { _ = try v.create(in: dir, "file-\(f)", permissions: 0o644) }
        }
    }
}

/// overwrite-4k's loop through a volume's FileHandle: the engine's write and then the
/// volume's timestamp update, one call per operation.
@inline(never)
func volumeWrites(_ handle: FileHandle, _ src: PatternBuffer, size: Int, opSize: Int) throws -> Double {
    try timed {
        var off = 0
        while off < size {
            let n = try handle.write(src.bytes(forFileOffset: off, length: opSize), at: off)
            if n != opSize { throw BenchFailure("volume write at \(off) wrote \(n) of \(opSize) bytes") }
            off += opSize
        }
    }
}

/// What filling a log left on the device: the metadata as of the last force, and the log
/// it took.
struct FilledLog {
    var state: MetadataState
    var logBlocksUsed: Int
    var checkpoints: Int
    var records: Int
}

/// One batch of the fill: `files` files created, chmodded, renamed, and all but the last
/// unlinked (the one kept is the trace by which the mount is checked).
func churn(_ v: Volume, _ dir: InodeNumber, batch: Int, files: Int) throws {
    try volumeCall("filling the log") { () throws(Errno) in
        var inodes: [InodeNumber] = []
        for i in 0..<files { inodes.append(try v.create(in: dir, "b\(batch)-\(i)", permissions: 0o644).inode) }
        for ino in inodes { try v.setAttributes(ino, .chmod(0o600)) }
        for i in 0..<files { try v.rename(from: dir, "b\(batch)-\(i)", to: dir, "r\(batch)-\(i)") }
        for i in 0..<files - 1 { try v.unlink(in: dir, "r\(batch)-\(i)") }
    }
}

/// Formats `device` with a log of `logBlocks` and fills the log with checkpoints of the
/// namespace calls, one force per batch of at most 1,000 files, each batch sized to the room
/// left, so that the log ends full without a snapshot (a checkpoint that does not fit would
/// be written as one, emptying the log). Returns with the volume dropped unmounted: a crash
/// after the last force.
func fillLog(_ device: any BlockDevice, logBlocks: Int) throws -> FilledLog {
    let v = try makeBenchVolume(device, logBlocks: logBlocks)
    let base = v.journal.stats
    let dir = try volumeCall("mkdir") { () throws(Errno) in try v.mkdir(in: .root, "fill", permissions: 0o755) }
    var files = 1000
    var blocksPerFile = 0.0
    var batch = 0
    while true {
        let used = v.journal.stats.checkpointBlocks - base.checkpointBlocks
        // 10% and two blocks to spare: names grow with the batch number, and a checkpoint
        // rounds up to whole blocks.
        if blocksPerFile > 0 { files = min(1000, Int(Double(logBlocks - used - 2) / blocksPerFile * 0.9)) }
        if files < 1 { break }
        try churn(v, dir, batch: batch, files: files)
        try volumeCall("force") { () throws(Errno) in try v.journal.forceAll() }
        let s = v.journal.stats
        if s.snapshots != base.snapshots { throw BenchFailure("volume-mount: the log wrapped while it was being filled") }
        blocksPerFile = max(blocksPerFile, Double(s.checkpointBlocks - base.checkpointBlocks - used) / Double(files))
        batch += 1
    }
    let s = v.journal.stats
    return FilledLog(
        state: v.state, logBlocksUsed: s.checkpointBlocks - base.checkpointBlocks, checkpoints: s.checkpoints - base.checkpoints,
        records: s.records - base.records)
}

extension BenchContext {
    // MARK: volume-namespace

    /// create, chmod, rename and unlink of 10,000 files in one directory (quick: 1/16), each a
    /// timed loop, on the volume and on tmpfs; then the log bytes per call.
    func volumeNamespace() throws -> [BenchResult] {
        let files = 10_000 / scale
        let engine = try VolumeNamespaceSide(files: files)
        let kernel = KernelNamespaceSide(directory: kernelDir)
        _ = try alternate(
            BenchWorkload.volumeNamespace.rawValue,
            [
                { round in try engine.run(round: round) },
                { round in try kernel.run(round: round, files: files) },
            ])
        var rows: [BenchResult] = []
        for phase in NamespacePhase.allCases {
            let i = phase.rawValue
            var r = BenchResult(name: phase.row, goal: goalText(phase.row))
            let (e, k) = (median(engine.tally.ns[i]), median(kernel.tally.ns[i]))
            r.engineNsPerOp = e
            r.kernelNsPerOp = k
            r.ratio = k / e
            r.holds = e <= 5_000 && engine.tally.io[i] == 0
            r.attainment = engine.tally.io[i] == 0 ? 5_000 / e : 0
            r.detail["io_in_timed_loops"] = Double(engine.tally.io[i])
            r.detail["log_bytes_per_op"] = median(engine.tally.logBytes[i])
            r.detail["log_block_bytes_per_op"] = median(engine.tally.logBlockBytes[i])
            r.detail["files"] = Double(files)
            rows.append(r)
            if phase == .create {
                let bytes = median(engine.tally.logBytes[i])
                var log = boundRow("volume-create-log", bytes, bound: 300)
                log.detail["log_bytes_per_create"] = bytes
                log.detail["log_block_bytes_per_create"] = median(engine.tally.logBlockBytes[i])
                log.detail["files"] = Double(files)
                rows.append(log)
            }
        }
        return rows
    }

    // MARK: volume-overwrite-4k

    /// overwrite-4k through a FileHandle of a volume file against the plain engine file (and
    /// the kernel, as detail), same sizes, same bytes, in one run.
    func volumeOverwrite4k() throws -> BenchResult {
        let name = BenchWorkload.volumeOverwrite4k.rawValue
        let (size, opSize, ops, src) = overwrite4kSizes()
        let (plain, kfile) = try cachedFiles("volume-overwrite", src, size: size)
        defer { kfile.unlink() }
        let volume = try makeBenchVolume(MemoryBlockDevice(blockSize: 4096, blockCount: (size + 64 * MiB) / 4096))
        let handle = try volumeCall("open") { () throws(Errno) in
            try volume.open(try volume.create(in: .root, "overwrite", permissions: 0o644).inode)
        }
        _ = try volumeWrites(handle, src, size: size, opSize: MiB)

        let samples = try alternate(
            name,
            [
                { round in
                    src.fill(tag: round + 1)
                    let ns = try volumeWrites(handle, src, size: size, opSize: opSize)
                    try checkEngine("volume \(name)", handle.file, src, size: size)
                    return ns / ops
                },
                rewriteSide("plain engine \(name)", plain, src, size: size, opSize: opSize, ops: ops),
                rewriteSide("kernel \(name)", kfile, src, size: size, opSize: opSize, ops: ops),
            ])
        let (v, p, k) = (median(samples[0]), median(samples[1]), median(samples[2]))
        var r = BenchResult(name: name, goal: goalText(name))
        r.engineNsPerOp = v
        r.ratio = p / v
        r.holds = p / v >= 0.95
        r.attainment = p / v / 0.95
        r.detail["plain_ns_per_op"] = p
        r.detail["kernel_ns_per_op"] = k
        r.detail["bytes"] = Double(size)
        return r
    }

    // MARK: volume-snapshot

    /// writeSnapshotNow of 100,000 inodes (1,000 directories of 99 empty files; quick: 1/16)
    /// on a file-backed device in the disk directory, flushes included; the same on an
    /// in-memory device as detail. Every repetition writes the whole state again.
    func volumeSnapshot() throws -> BenchResult {
        let name = BenchWorkload.volumeSnapshot.rawValue
        let path = diskDir + "/" + benchFileName("volume-snapshot.img")
        defer { HostFiles.remove(path) }
        let onDisk = try makeBenchVolume(try makeFileDevice(path: path, bytes: GiB))
        let inMemory = try makeBenchVolume(MemoryBlockDevice(blockSize: 4096, blockCount: GiB / 4096))
        for v in [onDisk, inMemory] { try makeTree(v, directories: 1000 / scale, filesEach: 99) }
        func side(_ v: Volume) -> (Int) throws -> Double {
            { _ in
                let before = v.journal.stats.snapshots
                let ns = try timed { try volumeCall("snapshot") { () throws(Errno) in try v.journal.writeSnapshotNow(clean: false) } }
                if v.journal.stats.snapshots != before + 1 { throw BenchFailure("\(name): no snapshot was written") }
                return ns
            }
        }
        let samples = try alternate(name, [side(onDisk), side(inMemory)])
        // What was written is the tree: the device read as a mount reads it gives it back.
        for v in [onDisk, inMemory] where try recoveredState(v.device).inodes != v.state.inodes {
            throw BenchFailure("\(name): the snapshot read back is not the tree")
        }
        let e = median(samples[0])
        var r = boundRow(name, e, bound: 0.5e9, engineNs: e)
        r.detail["inodes"] = Double(onDisk.state.inodes.count)
        r.detail["memory_ns"] = median(samples[1])
        return r
    }

    // MARK: volume-mkfs

    /// Volume.format of a new 1 GiB image file (quick: 1/16) in the disk directory, with the
    /// default log; the image is made (sparse) before the clock starts.
    func volumeMkfs() throws -> BenchResult {
        let name = BenchWorkload.volumeMkfs.rawValue
        let bytes = GiB / scale
        let path = diskDir + "/" + benchFileName("volume-mkfs.img")
        defer { HostFiles.remove(path) }
        let samples = try alternate(
            name,
            [
                { _ in
                    HostFiles.remove(path)
                    let device = try makeFileDevice(path: path, bytes: bytes)
                    let ns = try timed {
                        do { try Volume.format(device: device) } catch { throw BenchFailure("\(name): \(error)") }
                    }
                    // The volume made reads back as a new one: the root alone.
                    if try recoveredState(device).inodes.count != 1 { throw BenchFailure("\(name): the new volume is not empty") }
                    return ns
                }
            ])
        let e = median(samples[0])
        var r = boundRow(name, e, bound: 1e9, engineNs: e)
        r.detail["bytes"] = Double(bytes)
        return r
    }

    // MARK: volume-mount

    /// Volume.mount after a crash with a full 64 MiB log (quick: 1/16) on an image file in the
    /// disk directory: recovery reads and replays every checkpoint, scans the log for a later
    /// one, and writes the snapshot a replay ends with. Each repetition fills a new log.
    func volumeMount() throws -> BenchResult {
        let name = BenchWorkload.volumeMount.rawValue
        let logBlocks = 64 * MiB / 4096 / scale
        let bytes = 4 * logBlocks * 4096
        let path = diskDir + "/" + benchFileName("volume-mount.img")
        defer { HostFiles.remove(path) }
        var filled: FilledLog?
        let samples = try alternate(
            name,
            [
                { _ in
                    HostFiles.remove(path)
                    let fill = try fillLog(try makeFileDevice(path: path, bytes: bytes), logBlocks: logBlocks)
                    // A new device on the image, as after a reboot.
                    let device = try makeFileDevice(path: path, bytes: bytes, create: false)
                    var mounted: Volume?
                    let ns = try timed {
                        do { mounted = try Volume.mount(device: device, options: benchVolumeOptions()) } catch {
                            throw BenchFailure("\(name): \(error)")
                        }
                    }
                    if mounted?.state.inodes != fill.state.inodes { throw BenchFailure("\(name): the mounted tree is not the one forced") }
                    filled = fill
                    return ns
                }
            ])
        let e = median(samples[0])
        var r = boundRow(name, e, bound: 1e9, engineNs: e)
        r.detail["log_bytes"] = Double(logBlocks * 4096)
        if let filled {
            r.detail["log_full_fraction"] = Double(filled.logBlocksUsed) / Double(logBlocks)
            r.detail["checkpoints_replayed"] = Double(filled.checkpoints)
            r.detail["records_replayed"] = Double(filled.records)
        }
        return r
    }
}
