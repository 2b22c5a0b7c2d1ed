// Counterpart: none in the kernel; the test rig of the volume tests: a formatted volume on
// an in-memory disk behind a FaultyBlockDevice (a volatile cache a crash discards), and
// the remount after a crash or an unmount.

import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import Testing
import Synchronization
import Volume

/// A volume on `disk`, seen through `device`, whose crashes lose what was not flushed.
final class VolumeRig {
    let disk: MemoryBlockDevice
    let device: FaultyBlockDevice
    var volume: Volume
    var options: VolumeOptions

    /// Formats and mounts a volume of `blocks` blocks.
    /// `boundary` is the volume's transaction-boundary hook (VolumeOptions.transactionBoundary).
    init(
        blocks: Int = 2048, blockSize: Int = 4096, logBlocks: Int? = nil, bugs: DeliberateBugs = [], seed: UInt64 = 1,
        boundary: (@Sendable (Journal) -> Void)? = nil
    ) throws {
        disk = MemoryBlockDevice(blockSize: blockSize, blockCount: blocks)
        device = FaultyBlockDevice(wrapping: disk, seed: seed)
        var f = FormatOptions()
        f.logBlocks = logBlocks
        f.time = Timestamp(seconds: 1_700_000_000)
        try Volume.format(device: device, options: f)
        options = VolumeOptions()
        options.bugs = bugs
        options.backgroundForce = nil
        options.transactionBoundary = boundary
        let clock = TestClock()
        options.clock = { clock.tick() }
        volume = try Volume.mount(device: device, options: options)
    }

    /// A power loss now (unflushed writes dropped, or kept with `keepFraction`), then a mount
    /// of what is left, as a new boot would.
    @discardableResult
    func crashAndMount(keepFraction: Double = 0) throws -> Volume {
        device.crash(keepFraction: keepFraction)
        device.revive()
        volume = try Volume.mount(device: device, options: options)
        return volume
    }

    /// After a crash the device armed itself for: the mount of what it kept.
    @discardableResult
    func mountAfterArmedCrash() throws -> Volume {
        device.revive()
        volume = try Volume.mount(device: device, options: options)
        return volume
    }

    /// A clean unmount and a mount of the disk alone (no cache left anywhere).
    @discardableResult
    func unmountAndMount() throws -> Volume {
        try volume.unmount()
        volume = try Volume.mount(device: device, options: options)
        return volume
    }

    /// fsck of the device as it is.
    func fsck() throws -> FsckReport {
        let store = try DeviceLogStore.open(device)
        return checkVolume(store, deviceBlocks: device.blockCount)
    }

    /// Expects fsck to find nothing wrong, printing what it found otherwise.
    func expectClean(_ context: String = "", sourceLocation: SourceLocation = #_sourceLocation) throws {
        let report = try fsck()
        let errors = report.checks.flatMap { c in c.errors.map { "\(c.code): \($0)" } }
        #expect(errors.isEmpty, "fsck \(context): \(errors.joined(separator: "; "))", sourceLocation: sourceLocation)
    }
}

/// A clock that moves a millisecond each time it is read, so that every change has a new
/// time and tests do not depend on the wall clock.
final class TestClock: Sendable {
    let next = HarnessMutex<Int64>(1_700_000_000_000)
    func tick() -> Timestamp {
        let ms = next.withLock { v -> Int64 in
            v += 1
            return v
        }
        return Timestamp(seconds: ms / 1000, nanoseconds: UInt32(ms % 1000) * 1_000_000)
    }
}

/// Bytes that tell writes apart: a pattern from `seed`, never zero.
func pattern(_ count: Int, seed: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 131) &+ ($0 >> 9) &+ seed &* 17) | 1 }
}
