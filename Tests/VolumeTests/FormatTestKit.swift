// Counterpart: none in the kernel; the format tests' generators: random valid metadata
// states (built only through MetadataState.apply, so every state is one a volume can reach)
// and the records that built them, a geometry, and byte-level helpers.

import IOMapBase
import Testing

@testable import Volume

/// A small volume's geometry at `blockSize`.
func formatGeometry(blockSize: Int = 4096, blockCount: Int = 1 << 20, logLength: Int = 64, uuid: VolumeUUID? = nil) -> VolumeGeometry {
    VolumeGeometry(
        uuid: uuid ?? VolumeUUID(high: 0x0123_4567_89AB_4DEF, low: 0x8123_4567_89AB_CDEF), blockSize: blockSize,
        blockCount: blockCount, log: LogRegion(start: 2, length: logLength))
}

/// Random records applied to a new volume's state; the ones that do not apply are dropped,
/// so `records` replays to `state` exactly.
struct RandomMetadata {
    var rng: SeededRandom
    var state = MetadataState.newVolume(time: Timestamp(seconds: 1_700_000_000, nanoseconds: 1))
    var records: [LogRecord] = []
    /// Longest xattr value and symlink target to draw (big ones spill across blocks).
    var bigValues = true

    init(seed: UInt64) { rng = SeededRandom(seed: seed) }

    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    mutating func bytes(_ n: Int, avoiding: Set<UInt8> = []) -> [UInt8] {
        (0..<n).map { _ in
            var b = UInt8.random(in: 0...255, using: &rng)
            while avoiding.contains(b) { b = UInt8.random(in: 0...255, using: &rng) }
            return b
        }
    }

    mutating func name() -> FileName {
        let n = chance(0.1) ? 255 : int(1...24)
        var b = bytes(n, avoiding: [0, 0x2F])
        if b == [0x2E] || b == [0x2E, 0x2E] { b.append(0x41) }
        return FileName(unchecked: b)
    }

    mutating func timestamp() -> Timestamp {
        Timestamp(seconds: Int64.random(in: -1_000_000_000_000...1_000_000_000_000, using: &rng), nanoseconds: UInt32(int(0...999_999_999)))
    }

    mutating func attributes(_ type: FileType) -> InodeAttributes {
        var a = InodeAttributes(
            type: type, permissions: UInt16(int(0...0o7777)), uid: UInt32(int(0...70000)),
            gid: UInt32.random(in: 0...UInt32.max, using: &rng),
            nlink: UInt32(int(0...5)), size: Int64(int(0...1 << 40)), rdev: UInt64.random(in: 0...UInt64.max, using: &rng),
            generation: UInt32(int(0...9)))
        (a.atime, a.mtime, a.ctime, a.btime) = (timestamp(), timestamp(), timestamp(), timestamp())
        return a
    }

    func inodes(_ type: FileType?) -> [InodeNumber] {
        state.inodes.filter { type == nil || $0.value.attributes.type == type }.keys.sorted()
    }

    mutating func pick<T>(_ xs: [T]) -> T? { xs.isEmpty ? nil : xs[int(0...xs.count - 1)] }

    /// Applies `r` if it fits the state, keeping it.
    mutating func offer(_ r: LogRecord?) {
        guard let r else { return }
        var s = state
        if (try? s.apply(r)) != nil {
            state = s
            records.append(r)
        }
    }

    mutating func create() -> LogRecord {
        let types: [FileType] = [
            .regular, .regular, .regular, .directory, .directory, .symlink, .fifo, .socket, .characterDevice, .blockDevice,
        ]
        let type = pick(types)!
        let ino = InodeNumber(state.nextInode + UInt64(int(0...2)))
        let parent = type == .directory ? pick(inodes(.directory)) : nil
        let target = type == .symlink ? bytes(bigValues && chance(0.2) ? 4095 : int(1...40), avoiding: [0]) : nil
        return .createInode(ino, attributes(type), parent: parent, symlinkTarget: target)
    }

    mutating func link() -> LogRecord? {
        guard let dir = pick(inodes(.directory)), let target = pick(inodes(nil)) else { return nil }
        let d = state.inodes[dir]!.directory!
        return .addEntry(
            directory: dir, name: name(), target: target, type: state.inodes[target]!.attributes.type,
            cookie: d.nextCookie + UInt64(int(0...3)))
    }

    mutating func unlinkOrRename() -> LogRecord? {
        guard let dir = pick(inodes(.directory)), let e = pick(state.inodes[dir]!.directory!.order) else { return nil }
        if chance(0.5) { return .removeEntry(directory: dir, name: e.name) }
        guard let to = pick(inodes(.directory)) else { return nil }
        let other = pick(state.inodes[to]!.directory!.order)?.name
        let exchange = other != nil && chance(0.3)
        return .rename(
            fromDirectory: dir, from: e.name, toDirectory: to, to: exchange ? other! : name(), exchange: exchange,
            cookie: state.inodes[to]!.directory!.nextCookie)
    }

    mutating func extentRecord() -> LogRecord? {
        guard let f = pick(inodes(.regular)) else { return nil }
        switch int(0...3) {
        case 0, 1:
            let e = DiskExtent(
                fileBlock: Int64(int(0...4000)), diskBlock: Int64(int(100...1_000_000)), count: Int64(int(1...16)), unwritten: true)
            return .allocateUnwritten(f, e)
        case 2:
            let from = Int64(int(0...4000))
            return .convertToWritten(f, fromBlock: from, toBlock: from + Int64(int(0...64)))
        default:
            let from = Int64(int(0...4000))
            return .unmapAndIntendFree(
                f, fromBlock: from, toBlock: from + Int64(int(0...300)), intent: state.nextIntent + UInt64(int(0...1)))
        }
    }

    mutating func xattr() -> LogRecord? {
        guard let i = pick(inodes(nil)) else { return nil }
        if chance(0.2), let name = pick(Array(state.inodes[i]!.xattrs.keys)) { return .removeXattr(i, name: name) }
        let value = bytes(bigValues && chance(0.05) ? int(5000...70000) : int(0...100))
        return .setXattr(i, name: Array("user.".utf8) + bytes(int(1...60)), value: value)
    }

    mutating func other() -> LogRecord? {
        switch int(0...5) {
        case 0: return pick(Array(state.intents.keys)).map { .freeDone(intent: $0) }
        case 1: return pick(inodes(nil)).map { .addOrphan($0) }
        case 2: return pick(state.orphans.sorted()).map { .removeOrphan($0) }
        case 3:
            guard let i = pick(inodes(nil)) else { return nil }
            return .setAttributes(i, attributes(state.inodes[i]!.attributes.type))
        case 4: return pick(inodes(.regular)).map { .setSize($0, Int64(int(0...1 << 30))) }
        default:
            // Only an inode no entry names: apply does not check it, and a later rename
            // through a dangling entry to a directory traps in apply (reported).
            let named = Set(state.inodes.values.flatMap { $0.directory?.entries.values.map(\.inode) ?? [] })
            return pick(inodes(nil).filter { !named.contains($0) && $0 != .root }).map { .freeInode($0) }
        }
    }

    /// Offers `n` random records.
    mutating func run(_ n: Int) {
        for _ in 0..<n {
            switch int(0...9) {
            case 0, 1: offer(create())
            case 2, 3: offer(link())
            case 4: offer(unlinkOrRename())
            case 5, 6: offer(extentRecord())
            case 7: offer(xattr())
            default: offer(other())
            }
        }
    }

    /// A random state after `n` offered records.
    static func state(seed: UInt64, records n: Int, bigValues: Bool = true) -> MetadataState {
        var g = RandomMetadata(seed: seed)
        g.bigValues = bigValues
        g.run(n)
        return g.state
    }
}

/// A device of blocks in a dictionary, for snapshot round trips.
struct BlockMap {
    var blocks: [Int: [UInt8]] = [:]

    mutating func put(_ bytes: [[UInt8]], at addresses: [Int]) {
        for (b, a) in zip(bytes, addresses) { blocks[a] = b }
    }

    func read(_ a: Int) throws(Errno) -> [UInt8] {
        guard let b = blocks[a] else { throw .ioError }
        return b
    }
}

/// `n` distinct data-block addresses of `g`, scattered (every `stride`-th block from `first`)
/// so that the snapshot's list has many runs when stride > 1.
func snapshotAddresses(_ n: Int, geometry g: VolumeGeometry, first: Int = 1000, stride: Int = 1) -> [Int] {
    (0..<n).map { first + $0 * stride }
}

extension Array where Element == UInt8 {
    /// The bytes with byte `i` XORed with `mask`.
    func flipping(_ i: Int, mask: UInt8 = 0xFF) -> [UInt8] {
        var c = self
        c[i] ^= mask
        return c
    }
}

/// Re-seals a block whose payload a test has changed, so that only the structure checks can
/// catch the change (the CRC is right again).
func resealed(_ block: [UInt8]) -> [UInt8] {
    guard block.count >= BlockHeader.size else { return block }
    var b = block
    b.withUnsafeMutableBytes { p in
        let crc = CRC32C.blockChecksum(UnsafeRawBufferPointer(p), fieldOffset: BlockHeader.crcOffset)
        p.storeBytes(of: crc.littleEndian, toByteOffset: BlockHeader.crcOffset, as: UInt32.self)
    }
    return b
}

/// The error `body` throws, or nil.
func formatError<T>(_ body: () throws(FormatError) -> T) -> FormatError? {
    do {
        _ = try body()
        return nil
    } catch {
        return error
    }
}
