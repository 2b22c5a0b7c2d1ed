// Counterpart: none in the kernel; tests of the snapshot: round trips of random states, the
// spills (long block lists, big directories, values and intents), and each check the reader
// makes, every one shown to fail on the damage it is for.

import IOMapBase
import Testing

@testable import Volume

@Suite("Format: snapshot")
struct FormatSnapshotTests {
    /// Writes `state` as snapshot `sequence` at `addresses` (or a run from 1000) and reads it back.
    func roundTrip(_ state: MetadataState, geometry g: VolumeGeometry, sequence: UInt64 = 7, stride: Int = 1) throws -> MetadataState {
        let image = SnapshotImage(state, blockSize: g.blockSize)
        let addresses = snapshotAddresses(image.blockCount, geometry: g, stride: stride)
        var disk = BlockMap()
        disk.put(image.blocks(sequence: sequence, addresses: addresses, uuid: g.uuid), at: addresses)
        return try decodeSnapshot(root: addresses[0], sequence: sequence, geometry: g, read: disk.read)
    }

    @Test("random states round-trip exactly", arguments: [512, 4096])
    func randomStates(blockSize: Int) throws {
        let g = formatGeometry(blockSize: blockSize)
        var sections = Set<String>()
        for seed in 1...6 as ClosedRange<UInt64> {
            let state = RandomMetadata.state(seed: seed, records: 2500)
            #expect(state.inodes.count > 100, "seed \(seed)")
            if !state.intents.isEmpty { sections.insert("intents") }
            if !state.orphans.isEmpty { sections.insert("orphans") }
            #expect(try roundTrip(state, geometry: g, stride: seed % 2 == 0 ? 3 : 1) == state, "seed \(seed)")
        }
        #expect(sections == ["intents", "orphans"], "the states use every section")
        #expect(try roundTrip(MetadataState(), geometry: g) == MetadataState())
        let fresh = MetadataState.newVolume(time: Timestamp(seconds: 1))
        #expect(try roundTrip(fresh, geometry: g) == fresh)
        #expect(snapshotBlockCount(of: MetadataState(), blockSize: blockSize) == 1)
    }

    @Test("spills: a scattered list of thousands of runs, a huge directory, a 64 KiB value, a long symlink, a big intent")
    func spills() throws {
        var s = MetadataState.newVolume(time: Timestamp(seconds: 2))
        let a = InodeAttributes(type: .regular, permissions: 0o644, nlink: 1)
        for i in 2...5001 as ClosedRange<UInt64> {
            try s.apply(.createInode(InodeNumber(i), a, parent: nil, symlinkTarget: nil))
            let name = FileName(unchecked: Array(String(repeating: "n", count: 200).utf8) + Array(String(i).utf8))
            try s.apply(.addEntry(directory: .root, name: name, target: InodeNumber(i), type: .regular, cookie: i + 1))
        }
        try s.apply(.setXattr(.root, name: Array("user.big".utf8), value: (0..<65536).map { UInt8(truncatingIfNeeded: $0 * 31) }))
        try s.apply(
            .createInode(
                InodeNumber(6000), InodeAttributes(type: .symlink, permissions: 0o777), parent: nil,
                symlinkTarget: [UInt8](repeating: 0x78, count: 4095)))
        for b in 0..<3000 as Range<Int64> {
            try s.apply(
                .allocateUnwritten(InodeNumber(2), DiskExtent(fileBlock: b * 2, diskBlock: 10_000 + b * 3, count: 1, unwritten: b % 2 == 0))
            )
        }
        try s.apply(.unmapAndIntendFree(InodeNumber(2), fromBlock: 1000, toBlock: 6000, intent: 1))
        #expect(s.intents[1]!.extents.count == 2500)
        let g = formatGeometry(blockSize: 512)
        let image = SnapshotImage(s, blockSize: 512)
        #expect(image.mapBlocks > 20)
        #expect(try roundTrip(s, geometry: g, stride: 2) == s)
        #expect(try roundTrip(s, geometry: formatGeometry(blockSize: 4096), stride: 5) == s)
    }

    @Test("an entry larger than a block after a block filled exactly starts the next block (prefix 0)", arguments: [512, 4096])
    func spillAfterAFullBlock(blockSize: Int) throws {
        var s = MetadataState.newVolume(time: Timestamp(seconds: 2))
        let capacity = SnapshotLayout.chunkCapacity(blockSize: blockSize)
        // An xattr entry is 16 bytes, the name, the value: the first fills its block exactly.
        let first = Array("user.a".utf8)
        try s.apply(.setXattr(.root, name: first, value: [UInt8](repeating: 0x61, count: capacity - 16 - first.count)))
        try s.apply(.setXattr(.root, name: Array("user.b".utf8), value: [UInt8](repeating: 0x62, count: capacity + 100)))
        #expect(try roundTrip(s, geometry: formatGeometry(blockSize: blockSize)) == s)
    }

    /// A small state with every section in use.
    static func everySection() throws -> MetadataState {
        var s = MetadataState.newVolume(time: Timestamp(seconds: 3))
        let file = InodeAttributes(type: .regular, permissions: 0o600, nlink: 1)
        try s.apply([
            .createInode(
                InodeNumber(2), InodeAttributes(type: .directory, permissions: 0o755, nlink: 2), parent: .root, symlinkTarget: nil),
            .addEntry(directory: .root, name: FileName(unchecked: Array("dir".utf8)), target: InodeNumber(2), type: .directory, cookie: 3),
            .createInode(InodeNumber(3), file, parent: nil, symlinkTarget: nil),
            .addEntry(
                directory: InodeNumber(2), name: FileName(unchecked: Array("file".utf8)), target: InodeNumber(3), type: .regular, cookie: 3),
            .allocateUnwritten(InodeNumber(3), DiskExtent(fileBlock: 0, diskBlock: 5000, count: 4, unwritten: true)),
            .allocateUnwritten(InodeNumber(3), DiskExtent(fileBlock: 8, diskBlock: 6000, count: 4, unwritten: true)),
            .convertToWritten(InodeNumber(3), fromBlock: 1, toBlock: 2),
            .unmapAndIntendFree(InodeNumber(3), fromBlock: 9, toBlock: 10, intent: 1),
            .setXattr(InodeNumber(3), name: Array("user.a".utf8), value: [1, 2, 3]),
            .createInode(
                InodeNumber(4), InodeAttributes(type: .symlink, permissions: 0o777, nlink: 1), parent: nil,
                symlinkTarget: Array("../x".utf8)),
            .addEntry(directory: .root, name: FileName(unchecked: Array("link".utf8)), target: InodeNumber(4), type: .symlink, cookie: 4),
            .createInode(InodeNumber(5), file, parent: nil, symlinkTarget: nil),
            .addOrphan(InodeNumber(5)),
        ])
        return s
    }

    /// Every-section state, encoded at 512 bytes with a scattered list (so a map block is used).
    struct Sample {
        let state: MetadataState
        let g = formatGeometry(blockSize: 512)
        let addresses: [Int]
        var disk = BlockMap()

        init(state: MetadataState, sequence: UInt64 = 7, stride: Int = 2) {
            self.state = state
            let image = SnapshotImage(state, blockSize: 512)
            addresses = snapshotAddresses(image.blockCount, geometry: g, stride: stride)
            disk.put(image.blocks(sequence: sequence, addresses: addresses, uuid: g.uuid), at: addresses)
        }

        func decode(verifyCRC: Bool = true) -> Result<MetadataState, FormatError> {
            Result { () throws(FormatError) in
                try decodeSnapshot(root: addresses[0], sequence: 7, geometry: g, read: disk.read, verifyCRC: verifyCRC)
            }
        }

        var error: FormatError? { if case .failure(let e) = decode() { return e } else { return nil } }

        /// The address of the first block of `kind`.
        func first(_ kind: BlockKind) -> Int? { addresses.first { BlockHeader(reading: disk.blocks[$0]!).magic == kind.magic } }
    }

    /// A state with enough inodes that a root plus a map block list the blocks.
    static func mapped() throws -> MetadataState {
        var s = try everySection()
        for i in 6...130 as ClosedRange<UInt64> {
            try s.apply(.createInode(InodeNumber(i), InodeAttributes(type: .fifo, permissions: 0o644), parent: nil, symlinkTarget: nil))
        }
        return s
    }

    @Test("a flip of any byte of a block of any kind is caught, naming kind and address; with the CRC check off many are not (canary)")
    func flips() throws {
        var sample = Sample(state: try Self.mapped())
        let kinds = BlockKind.allCases.filter { $0 != .superblock && $0 != .log }
        for kind in kinds {
            let address = try #require(sample.first(kind), "a \(kind) in the sample")
            let original = sample.disk.blocks[address]!
            var missed = 0
            for i in 0..<512 {
                sample.disk.blocks[address] = original.flipping(i, mask: 0x04)
                let e = sample.error
                #expect(e?.description.hasPrefix("\(kind) \(address): ") == true, "byte \(i): \(String(describing: e))")
                #expect(
                    e?.check == (i < 4 ? .badMagic(found: sample.disk.blocks[address]!.le(UInt32.self, at: 0)) : .badCRC),
                    "\(kind) byte \(i)")
                if case .success = sample.decode(verifyCRC: false) { missed += 1 }
            }
            sample.disk.blocks[address] = original
            #expect(missed > 0, "\(kind): without the CRC some flip goes through (\(missed))")
        }
        #expect(sample.error == nil)
    }

    @Test("misdirected, foreign, stale, truncated and unreadable blocks are named")
    func headerChecks() throws {
        let state = try Self.mapped()
        var s = Sample(state: state)
        let inode = try #require(s.first(.inodes))
        let dir = try #require(s.first(.directories))
        let original = s.disk
        s.disk.blocks[dir] = original.blocks[inode]
        #expect(s.error?.description == "directory block \(dir): bad magic \"IMIN\" (inode block's)")
        let extents = try #require(s.first(.extents))
        s.disk = original
        let next = s.addresses[s.addresses.firstIndex(of: inode)! + 1]
        s.disk.blocks[next] = original.blocks[inode]
        #expect(s.error?.description == "inode block \(next): wrong self address (says \(inode))")

        s.disk = original
        let foreign = Sample(state: state).with(uuid: VolumeUUID(high: 9, low: 9))
        s.disk.blocks[extents] = foreign.blocks[extents]
        #expect(s.error?.description == "extent block \(extents): belongs to another volume")

        s.disk = original
        let older = Sample(state: state, sequence: 5)
        let orphans = try #require(s.first(.orphans))
        s.disk.blocks[orphans] = older.disk.blocks[orphans]
        #expect(s.error?.description == "orphan block \(orphans): sequence 5, expected 7")
        s.disk.blocks[s.addresses[0]] = older.disk.blocks[s.addresses[0]]
        #expect(s.error?.description == "snapshot root block \(s.addresses[0]): sequence 5, expected 7")

        s.disk = original
        s.disk.blocks[inode] = Array(original.blocks[inode]!.prefix(500))
        #expect(s.error?.description == "inode block \(inode): truncated (500 of 512 bytes)")
        s.disk.blocks[inode] = nil
        #expect(s.error?.description == "inode block \(inode): read failed: EIO")
    }

    /// Rewrites the block at `address` with `change` applied to its bytes, resealed.
    func tamper(_ s: inout Sample, _ address: Int, _ change: (inout [UInt8]) -> Void) {
        var b = s.disk.blocks[address]!
        change(&b)
        s.disk.blocks[address] = resealed(b)
    }

    /// The error decoding `base` gives once the block at `address` is changed by `change`
    /// and resealed (`tamper`); nil when it still decodes.
    func tamperedError(_ base: Sample, _ address: Int, _ change: (inout [UInt8]) -> Void) -> FormatError? {
        var s = base
        tamper(&s, address, change)
        return s.error
    }

    @Test("structure the reader sees: counts, order, uniqueness, references (each change resealed, so only the check can catch it)")
    func structure() throws {
        let base = Sample(state: try Self.mapped())
        let root = base.addresses[0]
        let payload = BlockHeader.size
        // The inode section's entry count.
        #expect(tamperedError(base, root, { $0[payload + 40] &+= 1 }) != nil)
        // The next inode below the inodes.
        let nextInode = tamperedError(base, root, { $0.replaceSubrange(payload..<payload + 8, with: [3, 0, 0, 0, 0, 0, 0, 0]) })
        #expect(nextInode?.description.contains("is not below the next inode 3") == true)
        let inodes = try #require(base.first(.inodes))
        let swappedInodes = tamperedError(
            base, inodes,
            { b in
                let e = payload + SnapshotLayout.prefixSize
                let size = SnapshotLayout.inodeEntrySize
                let first = Array(b[e..<e + 8])
                b.replaceSubrange(e..<e + 8, with: b[e + size..<e + size + 8])
                b.replaceSubrange(e + size..<e + size + 8, with: first)
            })
        #expect(swappedInodes?.description == "inode block \(inodes): inode 1 after inode 2: out of order or 0")
        // A continuation prefix where an entry starts.
        let continuation = tamperedError(base, inodes, { $0[payload] = 1 })
        #expect(continuation?.description.hasPrefix("inode block \(inodes): continuation prefix") == true)
        let dirs = try #require(base.first(.directories))
        let repeatedCookie = tamperedError(
            base, dirs,
            { b in
                // The second entry of the root directory gets the first one's cookie.
                let e = payload + SnapshotLayout.prefixSize + SnapshotLayout.directoryHeaderSize
                b.replaceSubrange(e + 21..<e + 29, with: b[e..<e + 8])
            })
        #expect(repeatedCookie?.description == "directory block \(dirs): cookie 3 after 3 (next cookie 5)")
        let map = try #require(base.first(.snapshotMap))
        let mapEntry = tamperedError(
            base, map, { b in b.replaceSubrange(payload + 8..<payload + 16, with: b[payload + 20..<payload + 28]) })
        #expect(mapEntry?.description.hasPrefix("snapshot root block \(root): block") == true)
        let symlinks = try #require(base.first(.symlinks))
        // The target of inode 3, a regular file.
        let target = tamperedError(base, symlinks, { $0[payload + 4] = 3 })
        #expect(target?.description == "symlink block \(symlinks): a symlink target of inode 3, which is a regular, not a symlink")
    }

    @Test("the root must be a data block; the list must stay in the data area")
    func placement() throws {
        let g = formatGeometry(blockSize: 512)
        let state = try Self.everySection()
        let image = SnapshotImage(state, blockSize: 512)
        let inLog = Array(20..<(20 + image.blockCount))
        var disk = BlockMap()
        disk.put(image.blocks(sequence: 7, addresses: inLog, uuid: g.uuid), at: inLog)
        let e = formatError { () throws(FormatError) in try decodeSnapshot(root: 20, sequence: 7, geometry: g, read: disk.read) }
        #expect(e?.description == "snapshot root block 20: the root is not a data block of the volume")
        let straddling = [1000] + Array(60..<(60 + image.blockCount - 1))
        disk.put(image.blocks(sequence: 7, addresses: straddling, uuid: g.uuid), at: straddling)
        let f = formatError { () throws(FormatError) in try decodeSnapshot(root: 1000, sequence: 7, geometry: g, read: disk.read) }
        #expect(f?.description.hasPrefix("snapshot root block 1000: run (60,") == true)
    }
}

extension FormatSnapshotTests.Sample {
    /// The same snapshot sealed for another volume.
    func with(uuid: VolumeUUID) -> BlockMap {
        var m = BlockMap()
        m.put(SnapshotImage(state, blockSize: 512).blocks(sequence: 7, addresses: addresses, uuid: uuid), at: addresses)
        return m
    }
}
