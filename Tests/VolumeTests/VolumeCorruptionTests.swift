// Counterpart: none in the kernel; damage to a volume, block kind by block kind: one byte
// flipped in one block of each kind a crashed volume uses (both superblocks, the log's
// checkpoints after the snapshot, and every snapshot block kind), then fsck must name the
// structure, the block and the check and exit 4, and mount must refuse with the same words
// (never trap, never hang), but for one superblock copy, which mounts from the other; a torn
// tail must mount, losing only the last checkpoint.

import ExtentFS
import IOMapBase
import IOMapTesting
import Synchronization
import Testing

@testable import Volume

#if canImport(Glibc)
    import Glibc
#endif

/// A crashed volume with a block of every kind in use, as bytes, and where each kind is.
struct DamageImage: Sendable {
    static let blockSize = 512
    static let blockCount = 16384
    let bytes: [UInt8]
    /// The blocks of each kind the volume uses now: the superblocks, the current snapshot's
    /// blocks, and the log's checkpoints after it.
    let blocks: [BlockKind: [Int]]
    /// The checkpoints after the snapshot, in log order: each one's device blocks, head first.
    let checkpoints: [[Int]]

    /// A memory disk holding the image, with byte `byte` of block `address` XORed with `mask`.
    func device(flipping address: Int? = nil, byte: Int = 0, mask: UInt8 = 0x01) throws -> MemoryBlockDevice {
        let d = MemoryBlockDevice(blockSize: Self.blockSize, blockCount: Self.blockCount)
        var copy = bytes
        if let address { copy[address * Self.blockSize + byte] ^= mask }
        try d.writeBlocks(0, copy)
        return d
    }

    /// A memory disk holding the image with block `address` replaced by `change` of it.
    func device(changing address: Int, _ change: ([UInt8]) -> [UInt8]) throws -> MemoryBlockDevice {
        let d = try device()
        try d.writeBlocks(address, change(try d.readBlocks(address, count: 1)))
        return d
    }

    /// For the first and the last block of `checkpoint` (its index in the checkpoint and its
    /// address): the verdict on the image with byte 100 of that block flipped.
    func verdictsFlippingEnds(of checkpoint: [Int]) throws -> [(index: Int, address: Int, verdict: DamageVerdict)] {
        try [(0, checkpoint[0]), (checkpoint.count - 1, checkpoint[checkpoint.count - 1])].map { i, address in
            (i, address, DamageVerdict(try device(flipping: address, byte: 100)))
        }
    }

    static let built = Result { () throws -> DamageImage in try build() }

    /// Makes the volume, crashes it with a file open and unlinked, and takes its disk.
    static func build() throws -> DamageImage {
        let rig = try VolumeRig(blocks: blockCount, blockSize: blockSize)
        let orphan = try populate(rig.volume)
        let v = rig.volume
        // Two checkpoints past the snapshot, several blocks each: damage to the first is in
        // the middle of the log, to the second at its tail.
        for batch in ["a", "b"] {
            for i in 0..<10 { _ = try v.mkdir(in: .root, "\(batch)\(i)-with-a-longer-name", permissions: 0o755) }
            try v.journal.forceAll()
        }
        rig.device.crash()
        let bytes = try rig.disk.readBlocks(0, count: blockCount)
        withExtendedLifetime(orphan) {}
        return try classify(bytes)
    }

    /// The tree: a directory of many inodes (with 512-byte blocks the snapshot root lists 25
    /// runs and an inode block holds 4 inodes, so 160 inodes need map blocks), a file with
    /// data and an xattr, a symlink, a file unlinked while open (an orphan) and one unlinked
    /// when closed, whose free is still an intent when the snapshot is written. Returns the
    /// open handle, which must stay open until the crash.
    static func populate(_ v: Volume) throws -> FileHandle {
        let dir = try v.mkdir(in: .root, "dir", permissions: 0o755)
        for i in 0..<160 { _ = try v.mknod(in: dir, "fifo\(i)", type: .fifo, permissions: 0o644) }
        for name in ["data", "victim", "orphan"] {
            let h = try v.open(try v.create(in: dir, name, permissions: 0o644).inode)
            try h.write(pattern(3000, seed: name.count), at: 0)
            try h.fsync()
            try h.close()
        }
        try v.setxattr(try v.lookup(dir, "data"), "user.color", Array("blue".utf8))
        _ = try v.symlink(in: .root, "link", target: "dir/data")
        let orphan = try v.open(try v.lookup(dir, "orphan"))
        try v.unlink(in: dir, "orphan")
        try v.unlink(in: dir, "victim")
        // The snapshot seals the unlinks with the state: the victim's free intent is open in
        // it (its done record follows in the next checkpoint), the orphan is listed.
        try v.journal.writeSnapshotNow(clean: false)
        return orphan
    }

    /// Finds the blocks of each kind: the snapshot's from its own block list, the log's by
    /// walking the checkpoints from the replay start.
    static func classify(_ bytes: [UInt8]) throws -> DamageImage {
        let disk = MemoryBlockDevice(blockSize: blockSize, blockCount: blockCount)
        try disk.writeBlocks(0, bytes)
        let store = try DeviceLogStore.open(disk)
        let anchor = try store.readAnchor()
        var blocks: [BlockKind: [Int]] = [.superblock: [0, 1]]
        for run in try store.readSnapshot(anchor.snapshot).blocks {
            for a in run.start..<run.end {
                let magic = try disk.readBlocks(a, count: 1).le(UInt32.self, at: 0)
                blocks[try #require(BlockKind(magic: magic), "block \(a) of the snapshot"), default: []].append(a)
            }
        }
        let g = store.geometry
        var checkpoints: [[Int]] = []
        var (offset, sequence) = (anchor.tail.offset, anchor.tail.sequence)
        while let head = try? decodeCheckpointHead(
            try disk.readBlocks(g.log.address(ofOffset: offset), count: 1), at: offset, geometry: g, sequenceAtLeast: sequence),
            head.sequence == sequence
        {
            checkpoints.append((0..<head.blockCount).map { g.log.address(ofOffset: offset + $0) })
            (offset, sequence) = ((offset + head.blockCount) % g.log.length, sequence + 1)
        }
        blocks[.log] = checkpoints.flatMap { $0 }
        return DamageImage(bytes: bytes, blocks: blocks, checkpoints: checkpoints)
    }
}

/// Mount options for the damaged images: no background force, a test clock.
func damageMountOptions() -> VolumeOptions {
    var o = VolumeOptions()
    o.backgroundForce = nil
    let clock = TestClock()
    o.clock = { clock.tick() }
    return o
}

/// What fsck and mount made of a device: fsck's errors by check code, its exit status, and
/// the mount's error (nil: it mounted).
struct DamageVerdict {
    var fsckErrors: [String: [String]] = [:]
    var exitStatus: Int32 = 0
    var openError: VolumeError?
    var mountError: VolumeError?
    var mounted: Volume?
    let device: MemoryBlockDevice

    init(_ device: MemoryBlockDevice) {
        self.device = device
        do throws(VolumeError) {
            let report = checkVolume(try DeviceLogStore.open(device), deviceBlocks: device.blockCount)
            for c in report.checks where !c.errors.isEmpty { fsckErrors[c.code] = c.errors }
            exitStatus = report.exitStatus
        } catch {
            openError = error
        }
        do throws(VolumeError) { mounted = try Volume.mount(device: device, options: damageMountOptions()) } catch { mountError = error }
    }

    var allFsckErrors: [String] { fsckErrors.values.flatMap { $0 } }

    /// The mount refused the device as corrupt, for a reason naming `text`; `context`
    /// starts each failure's message.
    func expectCorruptMount(naming text: String, _ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
        guard let why = corruptReason(context, sourceLocation: sourceLocation) else { return }
        #expect(why.contains(text), "\(context)\(why)", sourceLocation: sourceLocation)
    }

    /// The mount refused the device as corrupt, for a reason that begins with `text`.
    func expectCorruptMount(startingWith text: String, _ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
        guard let why = corruptReason(context, sourceLocation: sourceLocation) else { return }
        #expect(why.hasPrefix(text), "\(context)\(why)", sourceLocation: sourceLocation)
    }

    /// The reason of the mount's `.corrupt` refusal; any other outcome is recorded as an issue.
    private func corruptReason(_ context: String, sourceLocation: SourceLocation) -> String? {
        guard case .corrupt(let why) = mountError else {
            Issue.record("\(context)mount gave \(String(describing: mountError)), expected .corrupt", sourceLocation: sourceLocation)
            return nil
        }
        return why
    }
}

@Suite("Volume: corruption, per block kind", .serialized)
struct VolumeCorruptionTests {
    let seed = randomTestSeed()

    func image() throws -> DamageImage { try DamageImage.built.get() }

    @Test("the image has a block of every kind, and two multi-block checkpoints after the snapshot; undamaged it is clean")
    func imageHasEveryKind() throws {
        let image = try image()
        for kind in BlockKind.allCases { #expect(!(image.blocks[kind] ?? []).isEmpty, "no \(kind) in the image") }
        #expect(image.checkpoints.count == 2 && image.checkpoints.allSatisfy { $0.count >= 2 }, "\(image.checkpoints)")
        let verdict = DamageVerdict(try image.device())
        #expect(verdict.allFsckErrors.isEmpty && verdict.exitStatus == 0, "\(verdict.allFsckErrors)")
        let v = try #require(verdict.mounted, "\(String(describing: verdict.mountError))")
        #expect(try v.lookup(.root, "b9-with-a-longer-name") != .root)
        #expect(v.state.orphans.isEmpty && v.state.intents.isEmpty, "recovery finishes the orphan and the intent")
    }

    static let snapshotKinds: [BlockKind] = BlockKind.allCases.filter { $0 != .superblock && $0 != .log }

    @Test("a flipped byte in a snapshot block of each kind: fsck names kind, address and check and exits 4; mount refuses alike")
    func snapshotBlockFlips() throws {
        print("VolumeCorruptionTests.snapshotBlockFlips seed \(seed)")
        var rng = SeededRandom(seed: seed)
        let image = try image()
        for kind in Self.snapshotKinds {
            let candidates = try #require(image.blocks[kind])
            let address = candidates[Int.random(in: 0..<candidates.count, using: &rng)]
            // A byte of the magic is caught as a bad magic, any other as a bad CRC.
            for byte in [Int.random(in: 0..<4, using: &rng), Int.random(in: 4..<DamageImage.blockSize, using: &rng)] {
                let mask = UInt8.random(in: 1...255, using: &rng)
                let check = byte < 4 ? "bad magic" : "bad CRC"
                let expected = "\(kind) \(address): \(check)"
                let verdict = DamageVerdict(try image.device(flipping: address, byte: byte, mask: mask))
                let what = "\(kind) \(address) byte \(byte) ^ \(mask)"
                #expect(verdict.fsckErrors["C"]?.count == 1, "\(what): \(verdict.fsckErrors)")
                #expect(verdict.fsckErrors["C"]?.first?.hasPrefix(expected) == true, "\(what): \(verdict.fsckErrors)")
                #expect(verdict.exitStatus == 4, "\(what)")
                verdict.expectCorruptMount(startingWith: expected, "\(what): ")
            }
        }
    }

    @Test("one superblock copy flipped: the other copy is used, fsck names the flipped one; both flipped: refused, naming both")
    func superblockFlips() throws {
        print("VolumeCorruptionTests.superblockFlips seed \(seed)")
        var rng = SeededRandom(seed: seed ^ 1)
        let image = try image()
        let byte = Int.random(in: 4..<DamageImage.blockSize, using: &rng)
        let reference = try #require(DamageVerdict(try image.device()).mounted).state
        // Either copy flipped, the newest one too, after two durable checkpoints past its
        // snapshot: every update writes both copies, so the other names the same snapshot
        // and log tail, and the volume mounts whole. fsck still reports the damaged copy.
        for flipped in [0, 1] {
            let device = try image.device(flipping: flipped, byte: byte)
            #expect(try DeviceLogStore.open(device).superblock.withLock { $0.copy } == 1 - flipped, "the other copy is read")
            let verdict = DamageVerdict(device)
            #expect(verdict.exitStatus == 4, "superblock \(flipped) flipped: \(verdict.fsckErrors)")
            #expect(verdict.fsckErrors == ["S": ["superblock \(flipped): bad CRC"]], "\(verdict.fsckErrors)")
            #expect(verdict.mounted?.state == reference, "\(String(describing: verdict.mountError))")
        }
        // Both flipped: no superblock, and the error names both.
        let device = try image.device(flipping: 0, byte: byte)
        try device.writeBlocks(1, try device.readBlocks(1, count: 1).flipping(byte, mask: 0x01))
        let expected = "superblock 0: bad CRC (copy 1 is no better: superblock 1: bad CRC)"
        #expect(throws: VolumeError.corrupt(expected)) { try DeviceLogStore.open(device) }
        #expect(throws: VolumeError.corrupt(expected)) { try Volume.mount(device: device, options: damageMountOptions()) }
        // A flipped magic byte is the same: the other copy is used.
        #expect(throws: Never.self) { try DeviceLogStore.open(try image.device(flipping: 0, byte: 1)) }
    }

    /// The names the two checkpoints create: a0... in the first, b0... in the last.
    func hasBatch(_ v: Volume, _ batch: String) -> Bool { (try? v.lookup(.root, "\(batch)0-with-a-longer-name")) != nil }

    @Test("a flipped block of the last checkpoint is a torn tail: mount succeeds without that checkpoint, fsck is clean")
    func tornTail() throws {
        let image = try image()
        for (i, _, verdict) in try image.verdictsFlippingEnds(of: try #require(image.checkpoints.last)) {
            #expect(verdict.allFsckErrors.isEmpty && verdict.exitStatus == 0, "block \(i): \(verdict.allFsckErrors)")
            let v = try #require(verdict.mounted, "block \(i) of the last checkpoint: \(String(describing: verdict.mountError))")
            #expect(hasBatch(v, "a") && !hasBatch(v, "b"), "block \(i): the first checkpoint kept, the last lost")
            // The mount wrote a snapshot over the torn tail: the next mount is clean and equal.
            let state = v.state
            try v.unmount()
            #expect(try Volume.mount(device: verdict.device, options: damageMountOptions()).state == state)
        }
    }

    // Mid-log damage: recovery stops at the damaged checkpoint and must see the newer one
    // behind it (docs/FORMAT.md "Telling a torn tail from corruption"); before the scan of
    // Recovery.swift's checkedEnd it mounted, silently dropping the durable checkpoint.
    @Test("mid-log damage: a flipped block of a checkpoint followed by a newer one refuses the mount, naming the block")
    func midLogDamage() throws {
        let image = try image()
        for (i, address, verdict) in try image.verdictsFlippingEnds(of: try #require(image.checkpoints.first)) {
            let named = verdict.allFsckErrors.contains { $0.contains("log block \(address)") }
            #expect(named && verdict.exitStatus == 4, "block \(i) at \(address): fsck found \(verdict.fsckErrors)")
            verdict.expectCorruptMount(naming: "log block \(address)", "block \(i) at \(address): ")
        }
    }

    // DeviceLogStore.readCheckpoint gives a checksummed checkpoint whose fields are impossible
    // the "damaged" verdict of docs/FORMAT.md ("Reading a checkpoint: three verdicts"), and
    // recovery refuses it rather than end the log there quietly as it would a torn one.
    @Test("a checksummed impossible checkpoint (corrupt, not torn): its head resealed with a wrong record count refuses the mount")
    func resealedImpossibleCheckpoint() throws {
        let image = try image()
        let head = try #require(image.checkpoints.last?.first)
        // Offset 60 is the head's record count (docs/FORMAT.md "A checkpoint's blocks").
        let device = try image.device(changing: head) { resealed($0.flipping(BlockHeader.size + 4, mask: 0x01)) }
        let verdict = DamageVerdict(device)
        #expect(verdict.allFsckErrors.contains { $0.contains("log block \(head)") }, "fsck found \(verdict.fsckErrors)")
        verdict.expectCorruptMount(naming: "log block \(head)")
    }

    @Test("a crash right after a snapshot that holds an open free intent: the mount finishes it without freeing its blocks twice")
    func openIntentAtCrash() throws {
        let rig = try VolumeRig()
        let v = rig.volume
        try v.writeDurablyThenUnlink("victim", pattern(5 * 4096, seed: 9))
        // The unlink's free intent is in the snapshot; its done record would ride in the
        // next checkpoint, which the crash loses.
        try v.journal.writeSnapshotNow(clean: false)
        rig.device.crash()
        rig.device.revive()
        #expect(try rig.fsck().clean)
        // Until 1278219 this trapped: the mount's free space already left the intent's
        // blocks out, and finishing the intent freed them again (a double free).
        let w = try Volume.mount(device: rig.device, options: rig.options)
        #expect(w.state.intents.isEmpty && (try? w.lookup(.root, "victim")) == nil)
        let free = w.statfs().freeBlocks
        try w.unmount()
        let again = try Volume.mount(device: rig.device, options: rig.options)
        #expect(again.statfs().freeBlocks == free, "the intent's blocks are free once, and stay so")
        try rig.expectClean("after the remount")
    }

    @Test("fsck of a crashed volume whose log needs recovery replays it in memory and writes nothing, on a memory disk and an image file")
    func fsckAfterCrashWritesNothing() throws {
        let image = try image()
        let disk = try image.device()
        let writes = disk.writeCount
        let report = checkVolume(try DeviceLogStore.open(disk), deviceBlocks: disk.blockCount)
        #expect(report.clean, "\(report.checks.flatMap(\.errors))")
        #expect(report.replayedCheckpoints == image.checkpoints.count, "replayed \(report.replayedCheckpoints)")
        #expect(report.checks.map(\.code) == fsckChecks.map(\.code) && report.checks.allSatisfy(\.ran), "every check ran")
        #expect(disk.writeCount == writes, "fsck wrote to the disk")
        #expect(try disk.readBlocks(0, count: disk.blockCount) == image.bytes)

        // The same through an image file, as `iomap fsck` opens it; its bytes before and after.
        let file = try TemporaryImage()
        defer { file.remove() }
        let device = try FileBlockDevice(
            path: file.path, blockSize: DamageImage.blockSize, blockCount: DamageImage.blockCount, create: true)
        try device.writeBlocks(0, image.bytes)
        try device.flush()
        let before = try fileBytes(file.path)
        #expect(checkVolume(try DeviceLogStore.open(device), deviceBlocks: device.blockCount).clean)
        #expect(try fileBytes(file.path) == before, "fsck changed the image file")
        // What fsck left is still a log for the mount to recover: the mount replays it.
        let v = try Volume.mount(device: device, options: damageMountOptions())
        #expect(hasBatch(v, "b") && v.state.orphans.isEmpty)
        try v.unmount()
    }
}

/// A file's bytes, read with the system calls (not through any device's cache).
func fileBytes(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw Errno(rawValue: errno) }
    defer { close(fd) }
    var out: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { break }
        out += buffer[0..<n]
    }
    return out
}
