// Counterpart: xfs_fs_fill_super and xfs_mountfs (fs/xfs/xfs_super.c, xfs_mount.c): log
// recovery, then the end of recovery's unfinished business (xlog_recover_finish: intents,
// then the unlinked inodes), then the log worker; and xfs_fs_put_super / xfs_unmountfs:
// everything written back, the log forced and covered, the superblock marked clean.

import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

extension Volume {
    /// Mounts the volume `store` reads from `device`: recovers the log, finishes what the
    /// crash left open (free intents, orphans), and writes a snapshot at once, so that no new
    /// checkpoint is ever written over a torn one with the same sequence.
    public static func mount(device: any BlockDevice, store: any LogStore, options: VolumeOptions = VolumeOptions()) throws(VolumeError)
        -> Volume
    {
        try mount(device: device, store: store, options: options) { () throws(VolumeError) in try recoverLog(store) }
    }

    /// Mounts the volume as `recovered`, the outcome of recoverLog(store), found its log: for a
    /// caller that recovers an image once for both a check and a mount of it (the crash
    /// explorer; checkVolume(_:deviceBlocks:recovered:)). Nothing may have written to the
    /// device since that recovery read it.
    public static func mount(
        device: any BlockDevice, store: any LogStore, recovered: Result<RecoveredLog, VolumeError>, options: VolumeOptions = VolumeOptions()
    ) throws(VolumeError) -> Volume {
        try mount(device: device, store: store, options: options) { () throws(VolumeError) in try recovered.get() }
    }

    private static func mount(
        device: any BlockDevice, store: any LogStore, options: VolumeOptions, recover: () throws(VolumeError) -> RecoveredLog
    ) throws(VolumeError) -> Volume {
        // An unknown read-only-compatible feature allows reading only, and there is no
        // read-only mount: refuse before recovery writes anything (docs/FORMAT.md "Features").
        if let device = store as? DeviceLogStore {
            let (sb, copy) = device.superblock.withLock { ($0.current, $0.copy) }
            do throws(FormatError) { try sb.checkWritable(copy: copy) } catch { throw .unsupported(error.description) }
        }
        let recovered = try recover()
        // Both copies must name this superblock's place before anything reuses the place an
        // older or damaged other copy names (docs/FORMAT.md "Two copies").
        if let device = store as? DeviceLogStore {
            do throws(Errno) { _ = try device.rewriteOtherCopy() } catch {
                throw .io(error, "rewriting superblock \(device.superblock.withLock { 1 - $0.copy })")
            }
        }
        let used = try usedBlocks(
            of: recovered.state, snapshotBlocks: recovered.snapshotBlocks, metadataBlocks: store.metadataBlocks,
            deviceBlocks: device.blockCount)
        let journal = Journal(
            state: recovered.state, anchor: recovered.anchor, snapshotBlocks: recovered.snapshotBlocks, head: recovered.head,
            used: recovered.used,
            sequence: recovered.nextSequence, store: store, bugs: options.bugs, boundary: options.transactionBoundary)
        var config = ExtentFSConfig(
            blockSize: device.blockSize, maxFolioSize: options.maxFolioSize, memoryLimit: options.memoryLimit, bugs: options.bugs,
            environment: options.environment)
        config.journal = journal
        let fs = ExtentFS(device: device, config: config, allocated: used)
        journal.attach(fs.space)
        let volume = Volume(device: device, journal: journal, fs: fs, options: options)
        do throws(Errno) {
            _ = try volume.finishRecovery()
            // Always, so that no checkpoint sequence is ever written twice at one log place:
            // whatever of the checkpoint the log's end expected reached the disk (a torn head,
            // some of its blocks), the next checkpoint gets a sequence of its own. A torn
            // write over blocks of an earlier write with the same sequence would leave every
            // sector stamped alike and fail its CRC, which recovery must take for damage
            // (wholeButDamagedLogBlock), not for a torn tail.
            try journal.writeSnapshotNow(clean: false)
        } catch {
            throw .io(error, "finishing recovery")
        }
        volume.startBackgroundForce()
        return volume
    }

    /// Finishes open free intents (their done records) and frees the orphans. True when there
    /// was any.
    func finishRecovery() throws(Errno) -> Bool {
        let state = journal.state
        // An open intent's blocks are free already: usedBlocks leaves them out, since no
        // inode maps them. Only the done record is missing.
        for intent in state.intents.values.sorted(by: { $0.id < $1.id }) {
            try journal.transact { (_: borrowing MetadataState) throws(Errno) -> ([LogRecord], Void) in ([.freeDone(intent: intent.id)], ())
            }
        }
        try namespace.withExclusive { () throws(Errno) in
            for ino in state.orphans.sorted() { try freeUnreferenced(ino) }
        }
        return !state.intents.isEmpty || !state.orphans.isEmpty
    }

    /// Writes back every file, forces the log, and writes a snapshot with the log marked
    /// clean. The volume must not be used after.
    public func unmount() throws(VolumeError) {
        stopBackgroundForce()
        do throws(Errno) {
            try sync()
            try journal.writeSnapshotNow(clean: true)
        } catch {
            throw .io(error, "unmount")
        }
    }

    // MARK: The background force

    /// Starts the thread that forces the log every `options.backgroundForce`, as XFS's log
    /// worker covers an idle log: metadata never waits long for its checkpoint.
    func startBackgroundForce() {
        guard let period = options.backgroundForce else { return }
        let task = ForceTask(volume: self, period: period)
        // Without a thread the volume still works: fsync, sync and unmount force the log.
        guard let thread = JoinableThread(starting: { task.run() }) else { return }
        forcer.withLock { $0 = thread }
    }

    func stopBackgroundForce() {
        stopping.store(true, ordering: .releasing)
        forcer.withLock { f -> JoinableThread? in
            defer { f = nil }
            return f
        }?.join()
    }
}

/// The background force's loop: sleeps in short steps, so that unmount does not wait a
/// whole period, and forces the log when a period has passed. It holds the volume weakly:
/// a volume dropped without unmount stops its thread.
final class ForceTask: Sendable {
    weak let volume: Volume?
    let period: Duration

    init(volume: Volume, period: Duration) {
        self.volume = volume
        self.period = period
    }

    func run() {
        let clock = ContinuousClock()
        var next = clock.now + period
        while true {
            var ts = timespec(tv_sec: 0, tv_nsec: 20_000_000)
            nanosleep(&ts, nil)
            guard let v = volume, !v.stopping.load(ordering: .acquiring) else { return }
            if clock.now >= next {
                try? v.journal.forceLogged()
                next = clock.now + period
            }
        }
    }
}

extension Journal {
    /// The sequence of the open checkpoint if it holds anything, else nil.
    var openSequenceIfAny: UInt64? { open.withLock { $0.records.isEmpty ? nil : $0.sequence } }
}

/// How `iomap mkfs` and `Volume.format` lay a volume out.
public struct FormatOptions: Sendable {
    /// The log's length in blocks; nil: min(64 MiB, 1/64 of the device), at least the
    /// format's minimum.
    public var logBlocks: Int?
    /// nil: a random one.
    public var uuid: VolumeUUID?
    /// The root directory's owner and the volume's creation time.
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var time: Timestamp?
    /// Format over an existing volume.
    public var force = false

    public init() {}
}

extension Volume {
    /// The least number of blocks a volume may have beyond its metadata region: room for
    /// two snapshots of a small tree and some data.
    public static let minimumDataBlocks = 64

    /// Writes a new, empty volume to `device`: a zeroed log (so that log writes are
    /// overwrites and no stale checkpoint can be read as a current one), a snapshot with the
    /// root directory alone, and both superblock copies. Refuses a device that holds a
    /// volume unless `options.force`; changes nothing when it refuses.
    public static func format(device: any BlockDevice, options: FormatOptions = FormatOptions()) throws(VolumeError) {
        if !options.force, let existing = try? DeviceLogStore.open(device) {
            throw .exists("the device holds volume \(existing.geometry.uuid) already; format it again with --force")
        }
        var rng = SystemRandomNumberGenerator()
        let bs = device.blockSize
        let log =
            options.logBlocks.map { LogRegion(start: LogRegion.firstLogBlock, length: $0) }
            ?? LogRegion.recommended(blockSize: bs, blockCount: device.blockCount)
        let geometry = VolumeGeometry(
            uuid: options.uuid ?? VolumeUUID.random(using: &rng), blockSize: bs, blockCount: device.blockCount, log: log)
        if let problem = geometry.problem { throw .invalid(problem) }
        let needed = log.end + Self.minimumDataBlocks
        if device.blockCount < needed {
            throw .invalid(
                "a volume with a \(log.length)-block log needs at least \(needed) blocks of \(bs) bytes; the device has \(device.blockCount)"
            )
        }
        let time = options.time ?? Timestamp.coarseNow()
        let state = MetadataState.newVolume(time: time, uid: options.uid, gid: options.gid)
        let image = SnapshotImage(state, blockSize: bs)
        let blocks = Array(log.end..<log.end + image.blockCount)
        let sb = Superblock(
            geometry: geometry, generation: 1, snapshot: SnapshotLocation(root: blocks[0], sequence: 0),
            replayStart: LogPosition(offset: 0, sequence: 1), cleanUnmount: true, created: time)
        do throws(Errno) {
            try zero(device, from: log.start, count: log.length)
            let store = DeviceLogStore(device: device, superblock: sb, copy: 0, other: .sameGeneration)
            try store.writeSnapshot(image, sequence: 0, at: blocks)
            try device.flush()
            try device.writeBlocks(0, sb.encode(copy: 0))
            try device.writeBlocks(1, sb.encode(copy: 1))
            try device.flush()
        } catch {
            throw .io(error, "writing the new volume")
        }
    }

    /// Writes zeroes over `count` blocks from `block`, a megabyte at a time.
    static func zero(_ device: any BlockDevice, from block: Int, count: Int) throws(Errno) {
        let chunk = max(1, (1 << 20) / device.blockSize)
        let zeros = [UInt8](repeating: 0, count: chunk * device.blockSize)
        var b = block
        while b < block + count {
            let n = min(chunk, block + count - b)
            try device.writeBlocks(b, n == chunk ? zeros : Array(zeros[0..<n * device.blockSize]))
            b += n
        }
    }

    /// Mounts the volume on `device` (DeviceLogStore.open, then mount).
    public static func mount(device: any BlockDevice, options: VolumeOptions = VolumeOptions()) throws(VolumeError) -> Volume {
        try mount(device: device, store: try DeviceLogStore.open(device), options: options)
    }
}

extension Volume {
    /// The block size an image's first superblock says, read from its first bytes (a
    /// header, then the format version and the block size), so that a tool can open the
    /// image with the right geometry before it reads anything else. Nil when the bytes do not
    /// start with a superblock of a size the format allows; the superblock's full check
    /// happens at open.
    public static func peekBlockSize(_ firstBytes: [UInt8]) -> Int? {
        guard firstBytes.count >= BlockHeader.size + 8 else { return nil }
        let magic = firstBytes[0..<4].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard magic == BlockKind.superblock.magic else { return nil }
        let at = BlockHeader.size + 4
        let bs = firstBytes[at..<at + 4].reversed().reduce(0) { $0 << 8 | Int($1) }
        guard bs >= VolumeGeometry.minimumBlockSize, bs <= VolumeGeometry.maximumBlockSize, bs & (bs - 1) == 0 else { return nil }
        return bs
    }
}
