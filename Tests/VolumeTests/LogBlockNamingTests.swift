// Counterpart: none in the kernel (XFS names log blocks by daddr in its recovery messages).
// A log block has two numbers, its device block and its offset in the log; every message,
// the format's decoders' and recovery's alike, names the device block and says so.

import ExtentFS
import IOMapBase
import IOMapTesting
import Testing

@testable import Volume

@Suite("Volume: log blocks are named by device block")
struct LogBlockNamingTests {
    @Test("a format message and a recovery message name the same log block the same way")
    func oneNumbering() throws {
        let rig = try VolumeRig()
        for name in ["first", "second"] {
            _ = try rig.volume.mkdir(in: .root, name, permissions: 0o755)
            try rig.volume.journal.forceAll()
        }
        rig.device.crash()
        let g = try DeviceLogStore.open(rig.disk).geometry
        let tail = rig.volume.journal.anchor.tail
        let head = g.log.address(ofOffset: tail.offset)
        let first = try decodeCheckpointHead(
            try rig.disk.readBlocks(head, count: 1), at: tail.offset, geometry: g, sequenceAtLeast: tail.sequence)
        let next = g.log.address(ofOffset: tail.offset + first.blockCount)
        #expect(head == g.log.start + tail.offset && head != tail.offset, "the two numbers differ")
        // The format's decoder, on the damaged head.
        try rig.disk.writeBlocks(head, try rig.disk.readBlocks(head, count: 1).flipping(100, mask: 0x04))
        let format = "log block \(head) (device block): bad CRC"
        let decoded = Result { () throws(FormatError) in
            try decodeCheckpointHead(try! rig.disk.readBlocks(head, count: 1), at: tail.offset, geometry: g, sequenceAtLeast: tail.sequence)
        }
        guard case .failure(let error) = decoded else { Issue.record("the damaged head decoded"); return }
        #expect(error.description == format)
        // Recovery's, on the same block: its sector stamps show it was written whole (and the
        // checkpoint after it, at log block `next`, that the log goes on).
        rig.device.revive()
        let recovery =
            "log block \(head) (device block): bad CRC, though every sector of it was written by checkpoint \(tail.sequence): "
            + "damaged after it was written, not torn (\(format))"
        #expect(throws: VolumeError.corrupt(recovery)) { try Volume.mount(device: rig.device, options: rig.options) }
        // The head lost instead (zeroes, as if never written): no stamp tells, but the
        // checkpoint after it shows the log was damaged in the middle.
        try rig.disk.writeBlocks(head, [UInt8](repeating: 0, count: g.blockSize))
        let lost =
            "log block \(head) (device block): checkpoint \(tail.sequence) is damaged (log block \(head) (device block): bad magic 0x00000000 (never written)), "
            + "but checkpoint \(tail.sequence + 1) follows at log block \(next) (device block): the log is damaged in the middle, not torn at its end"
        #expect(throws: VolumeError.corrupt(lost)) { try Volume.mount(device: rig.device, options: rig.options) }
    }
}
