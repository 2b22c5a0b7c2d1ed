// Counterpart: none in the kernel; a reproducer of the kind attached to a kernel bug report.
// It shows, on the host kernel, the loss docs/KERNEL-MODEL.md §3.8 O1 predicts: a store through a
// shared mapping into the folio holding an unaligned EOF is lost when a buffered write that
// reserved new delalloc over that block fails with nothing written (docs/DESIGN.md decision 5).
//
// Each kernel attempt (CKernelShim's eofprobe.c) runs on a new file: 4 KiB of data, fsync,
// ftruncate to i_size; a write of 4 KiB at 5120 from an unreadable buffer; 8 bytes stored
// through a shared mapping at the start of the block holding EOF, inside the write's
// window; then msync, fsync, a cache drop and a read. The aligned-EOF control repeats it
// with i_size rounded up to the block size. The engine runs the same sequence, the store
// made at hook point H1 (after the reservation, before the failure).

import CKernelShim
import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapTesting
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

public enum EOFProbeMethod: String, CaseIterable, Sendable {
    /// The store races the failing write; only some attempts land in the window.
    case race
    /// The write stalls in its pre-fault on a userfaultfd page while the store is made.
    case userfaultfd
}

public struct EOFProbeConfig: Sendable {
    /// A directory on the file system to probe; nil: a new XFS image, loop-mounted.
    public var directory: String?
    public var attempts = 500
    public var isize = 6144
    public var blockSize = 4096
    public var method = EOFProbeMethod.race
    public init() {}

    /// Where the 8 bytes are stored: the start of the block holding EOF.
    public var storeOffset: Int { (isize - 1) / blockSize * blockSize }
    /// The control's i_size: rounded up to a whole block.
    public var controlIsize: Int { (isize + blockSize - 1) / blockSize * blockSize }

    /// What is wrong with these settings, if anything.
    public var problem: String? {
        if attempts < 1 { return "--attempts must be at least 1, got \(attempts)" }
        if ![1024, 2048, 4096].contains(blockSize) { return "--block-size must be 1024, 2048 or 4096, got \(blockSize)" }
        if isize <= 4096 || isize >= 5120 + 4096 {
            return "--isize must lie inside the write at 5120 and above the first 4 KiB of data (4097 to 9215), got \(isize)"
        }
        if isize % blockSize == 0 {
            return "--isize \(isize) is a multiple of the block size \(blockSize): the probe needs an unaligned EOF"
        }
        if storeOffset < 4096 { return "--isize \(isize): the block holding EOF starts at \(storeOffset), inside the first 4 KiB of data" }
        return nil
    }
}

/// The sums over the kernel attempts at one i_size.
public struct EOFProbeTally: Sendable {
    public var windowHits = 0
    public var lost = 0
    /// Attempts whose write did not fail with nothing written (it should always fail).
    public var writesNotFailed = 0
}

public struct EOFProbeReport: Sendable {
    public var kernel = ""
    public var fs = ""
    public var config: EOFProbeConfig
    /// The attempts at the unaligned i_size, and the aligned control's.
    public var unaligned = EOFProbeTally()
    public var control = EOFProbeTally()
    public var engineLost = 0
    public var seconds = 0.0

    public var windowHits: Int { unaligned.windowHits }
    public var lost: Int { unaligned.lost }
    public var controlWindowHits: Int { control.windowHits }
    public var controlLost: Int { control.lost }
    /// Over the unaligned attempts and the control's.
    public var writesNotFailed: Int { unaligned.writesNotFailed + control.writesNotFailed }
}

/// Runs the probe: the kernel attempts at `isize`, the aligned control, and the engine.
/// An image it makes is made through `scratch`, so that a signal handler can remove it.
public func runEOFProbe(
    _ config: EOFProbeConfig, scratch: ProbeScratch = ProbeScratch(), progress: (String) -> Void
) throws -> EOFProbeReport {
    let clock = ContinuousClock()
    let start = clock.now
    var report = try withProbeDirectory(config.directory, blockSize: config.blockSize, scratch: scratch, progress: progress) {
        try runEOFProbe(config, in: $0, progress: progress)
    }
    report.seconds = (clock.now - start).inSeconds
    return report
}

func runEOFProbe(_ config: EOFProbeConfig, in directory: String, progress: (String) -> Void) throws -> EOFProbeReport {
    var report = EOFProbeReport(config: config)
    report.kernel = kernelRelease()
    report.fs = try fileSystemName(directory)
    let path = directory + "/iomap-eof-probe-\(getpid())"
    let method = config.method == .race ? Int32(CKS_PROBE_RACE) : Int32(CKS_PROBE_USERFAULTFD)

    func attempts(isize: Int, label: String) throws -> EOFProbeTally {
        var tally = EOFProbeTally()
        for i in 0..<config.attempts {
            var out = cks_probe_attempt()
            let rc = cks_probe_eof_block(path, Int64(isize), Int64(config.storeOffset), method, &out)
            if rc < 0 {
                throw KernelSetupError("\(label) attempt \(i + 1) in \(directory) failed: \(Errno(rawValue: -rc).symbolicName)")
            }
            tally.windowHits += Int(out.window_hit)
            tally.lost += Int(out.lost)
            if out.write_result != -Int64(EFAULT) { tally.writesNotFailed += 1 }
            if (i + 1) % 100 == 0 || i + 1 == config.attempts {
                progress("\(label): \(i + 1)/\(config.attempts) attempts, \(tally.windowHits) hit the window, \(tally.lost) lost")
            }
        }
        return tally
    }
    report.unaligned = try attempts(isize: config.isize, label: "i_size \(config.isize)")
    report.control = try attempts(isize: config.controlIsize, label: "control, i_size \(config.controlIsize)")
    for _ in 0..<config.attempts where engineLosesStore(config) { report.engineLost += 1 }
    progress("engine: \(config.attempts) attempts, \(report.engineLost) lost")
    return report
}

/// The same sequence on the engine: the store lands at H1, after the write's reservation.
public func engineLosesStore(_ config: EOFProbeConfig, eofRounding: EOFRounding = .blockEnd) -> Bool {
    let stored: [UInt8] = Array("EOFBLOCK".utf8)
    let box = EngineProbeHook()
    let fs = ExtentFS(
        memoryBytes: 16 << 20,
        config: ExtentFSConfig(
            blockSize: config.blockSize, maxFolioSize: pageSize, eofRounding: eofRounding,
            environment: IOMapEnvironment(hook: { box.fire($0) })))
    let file = fs.createFile()
    do {
        _ = try file.write([UInt8](repeating: 0x11, count: 4096), at: 0)
        try file.fsync()
        try file.truncate(to: config.isize)
        _ = try file.mappedLoad(count: 1, at: config.storeOffset)
        box.arm { try? file.mappedStore(stored, at: config.storeOffset) }
        _ = try? file.write([UInt8](repeating: 0x22, count: 4096), at: 5120, faultOffset: 0)
        // Dirty data left without backing is lost at the next writeback, which finds a hole
        // there and writes nothing (and a verify build traps on that warning): lost already.
        if file.invariantFindings().contains(where: { $0.id == .d3 }) { return true }
        try file.fsync()
        file.dropCaches()
        return try file.read(count: stored.count, at: config.storeOffset) != stored
    } catch {
        return true
    }
}

/// Runs an armed action once, at the first H1 of the write.
final class EngineProbeHook: Sendable {
    private let action = HarnessMutex<(@Sendable () -> Void)?>(nil)
    func arm(_ body: @escaping @Sendable () -> Void) { action.withLock { $0 = body } }
    func fire(_ event: HookEvent) {
        guard event.point == .afterIomapBegin else { return }
        let body = action.withLock { a -> (@Sendable () -> Void)? in
            defer { a = nil }
            return a
        }
        body?()
    }
}

/// The running kernel's release, as uname -r prints it.
public func kernelRelease() -> String {
    var names = utsname()
    uname(&names)
    return withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}

/// The statfs type of the file system holding `directory`, by name where known.
func fileSystemName(_ directory: String) throws -> String {
    let probe = try KernelFile(directory: directory, name: "iomap-eof-probe-fstype-\(getpid())")
    defer { probe.unlink() }
    return probe.fileSystemType
}
