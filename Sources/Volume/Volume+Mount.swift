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
    /// crash left open (free intents, orphans), and, when the log had anything to replay,
    /// writes a snapshot at once, so that no new checkpoint is ever written over a torn one
    /// with the same sequence.
    public static func mount(device: any BlockDevice, store: any LogStore, options: VolumeOptions = VolumeOptions()) throws(VolumeError)
        -> Volume
    {
        let recovered = try recoverLog(store)
        let used = try usedBlocks(
            of: recovered.state, snapshot: recovered.anchor.snapshot, metadataBlocks: store.metadataBlocks,
            deviceBlocks: device.blockCount)
        let journal = Journal(
            state: recovered.state, anchor: recovered.anchor, head: recovered.head, used: recovered.used,
            sequence: recovered.nextSequence, store: store, bugs: options.bugs)
        var config = ExtentFSConfig(
            blockSize: device.blockSize, maxFolioSize: options.maxFolioSize, memoryLimit: options.memoryLimit, bugs: options.bugs,
            environment: options.environment)
        config.journal = journal
        let fs = ExtentFS(device: device, config: config, allocated: used)
        journal.attach(fs.space)
        let volume = Volume(device: device, journal: journal, fs: fs, options: options)
        do throws(Errno) {
            let finished = try volume.finishRecovery()
            if recovered.checkpoints > 0 || finished || !recovered.end.isEmpty && recovered.end.hasPrefix("torn") {
                try journal.writeSnapshotNow(clean: false)
            }
        } catch {
            throw .io(error, "finishing recovery")
        }
        volume.startBackgroundForce()
        return volume
    }

    /// Frees the blocks of open free intents and the orphans. True when there was any.
    func finishRecovery() throws(Errno) -> Bool {
        let state = journal.state
        for intent in state.intents.values.sorted(by: { $0.id < $1.id }) {
            for e in intent.extents { fs.space.free(BlockExtent(start: Int(e.diskBlock), count: Int(e.count))) }
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
        let box = Unmanaged.passRetained(ForceTask(volume: self, period: period))
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                let task = Unmanaged<ForceTask>.fromOpaque(raw!).takeRetainedValue()
                task.run()
                return nil
            }, box.toOpaque())
        if rc != 0 {
            box.release()
            return
        }
        forcer.withLock { $0 = thread }
    }

    func stopBackgroundForce() {
        stopping.store(true, ordering: .releasing)
        if let t = forcer.withLock({ f -> pthread_t? in
            defer { f = nil }
            return f
        }) {
            pthread_join(t, nil)
        }
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
                try? v.journal.force(upTo: v.journal.openSequenceIfAny)
                next = clock.now + period
            }
        }
    }
}

extension Journal {
    /// The sequence of the open checkpoint if it holds anything, else nil.
    var openSequenceIfAny: UInt64? { open.withLock { $0.records.isEmpty ? nil : $0.sequence } }
}
