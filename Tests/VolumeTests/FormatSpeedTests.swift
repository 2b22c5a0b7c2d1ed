// Counterpart: none in the kernel; the snapshot's cost at the size the design names (100,000
// inodes in well under 0.5 s), measured and printed, never asserted: timings belong in
// reports, not in pass/fail (a loaded CI machine would fail for nothing).

import Foundation
import IOMapBase
import Testing

@testable import Volume

/// 100,000 inodes: 1,000 directories of 99 files each, every file with two extents and a
/// third with an xattr.
func hundredThousandInodes() throws -> MetadataState {
    var s = MetadataState.newVolume(time: Timestamp(seconds: 1_700_000_000))
    let t = Timestamp(seconds: 1_700_000_000, nanoseconds: 42)
    var ino: UInt64 = 2
    for d in 0..<1000 {
        let dir = InodeNumber(ino)
        ino += 1
        try s.apply(
            .createInode(dir, InodeAttributes(type: .directory, permissions: 0o755, nlink: 2, time: t), parent: .root, symlinkTarget: nil))
        try s.apply(
            .addEntry(
                directory: .root, name: FileName(unchecked: Array("d\(d)".utf8)), target: dir, type: .directory, cookie: UInt64(d + 3)))
        for f in 0..<99 {
            let file = InodeNumber(ino)
            ino += 1
            try s.apply(
                .createInode(
                    file, InodeAttributes(type: .regular, permissions: 0o644, nlink: 1, size: 81920, time: t), parent: nil,
                    symlinkTarget: nil))
            try s.apply(
                .addEntry(
                    directory: dir, name: FileName(unchecked: Array("file-\(f).dat".utf8)), target: file, type: .regular,
                    cookie: UInt64(f + 3)))
            let disk = Int64(ino) * 40
            try s.apply(.allocateUnwritten(file, DiskExtent(fileBlock: 0, diskBlock: disk, count: 10, unwritten: true)))
            try s.apply(.allocateUnwritten(file, DiskExtent(fileBlock: 10, diskBlock: disk + 20, count: 10, unwritten: false)))
            if f % 3 == 0 { try s.apply(.setXattr(file, name: Array("user.tag".utf8), value: Array("value \(f)".utf8))) }
        }
    }
    return s
}

@Suite("Format: speed")
struct FormatSpeedTests {
    @Test("encode and decode a snapshot of 100,000 inodes (printed, not asserted)")
    func hundredThousand() throws {
        let state = try hundredThousandInodes()
        #expect(state.inodes.count == 100_001)
        let g = formatGeometry(blockSize: 4096, blockCount: 1 << 24, logLength: 16384)
        var clock = ContinuousClock.now
        let image = SnapshotImage(state, blockSize: 4096)
        let addresses = snapshotAddresses(image.blockCount, geometry: g, first: 20000)
        let blocks = image.blocks(sequence: 5, addresses: addresses, uuid: g.uuid)
        let encode = ContinuousClock.now - clock
        var disk = BlockMap()
        disk.put(blocks, at: addresses)
        clock = ContinuousClock.now
        let back = try decodeSnapshot(root: addresses[0], sequence: 5, geometry: g, read: disk.read)
        let decode = ContinuousClock.now - clock
        #expect(back == state)
        print("FormatSpeedTests: 100,001 inodes, \(blocks.count) blocks of 4 KiB: encode \(encode), decode \(decode)")
    }
}
