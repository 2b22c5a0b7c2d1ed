// Counterpart: none in the kernel; the FUSE variant of the short-copy probe (`iomap
// kernel-probe short-copy --fs fuse`). Since Linux 6.17 a FUSE mount with the kernel's
// writeback cache takes buffered writes through iomap, whose write-begin zeroes a block only
// when it starts at or past EOF (fuse reports every range mapped, never NEW), and nothing
// zeroes what a short copy did not reach. Those bytes lie past the new EOF: a mapping of the
// EOF page shows them at once, and they become file content when the file grows before
// writeback zeroes the page's tail.
//
// The probe asks the kernel through our own mount: a new volume mounted by the built `iomap
// mount`, once with `-o cache=writeback` and once in the default direct mode, each recording
// every WRITE the kernel sends (`--record-writes`). Each attempt (CKernelShim's
// cks_probe_eof_short_copy) writes from a buffer that turns unreadable part way through,
// grows the file, and reads it back; every byte of the file is known, so a stale byte is one
// that differs from what it should be. The recorded WRITE payloads are counted the same way:
// they are what the engine received, and stored, as data.

import CKernelShim
import Foundation
import IOMapBase
import IOMapTesting

#if canImport(Glibc)
    import Glibc
#endif

/// How a FUSE case grows the file after its write.
public enum EOFGrowth: String, Sendable, CaseIterable {
    case truncate, fallocate, write

    var code: Int32 {
        switch self {
        case .truncate: return Int32(CKS_GROW_TRUNCATE)
        case .fallocate: return Int32(CKS_GROW_FALLOCATE)
        case .write: return Int32(CKS_GROW_WRITE)
        }
    }
}

/// One write of the FUSE variant: a file holding `dataBytes` of data and `fileSize` long;
/// `length` bytes at `offset`, `readable` of them readable; then grown to `growTo`.
public struct EOFShortCopyWrite: Sendable, Equatable {
    public var dataBytes: Int
    public var fileSize: Int
    public var offset: Int
    public var length: Int
    public var readable: Int
    public var growth: EOFGrowth
    public var growTo: Int
    /// The canary's marker bytes stored just past the new EOF (cks_eof_short_copy_params).
    public var planted = 0

    public var description: String {
        "\(length) bytes at \(offset) of a \(fileSize)-byte file, \(readable) readable; then \(growth.rawValue) to \(growTo)"
    }

    var params: cks_eof_short_copy_params {
        cks_eof_short_copy_params(
            data_bytes: Int64(dataBytes), file_size: Int64(fileSize), offset: Int64(offset), length: Int64(length),
            readable: Int64(readable), growth: growth.code, grow_to: Int64(growTo), planted: Int64(planted))
    }
}

/// The cases of the FUSE variant. The first five meet a block write-begin zeroes around the
/// write (it starts at or past EOF); the controls do not, or copy everything.
public enum FUSEShortCopyCase: String, Sendable, CaseIterable {
    /// An append at a page boundary, then ftruncate up.
    case appendTruncate = "append-truncate"
    /// The same append, then fallocate up.
    case appendFallocate = "append-fallocate"
    /// The same append, then a write past the new EOF.
    case appendWrite = "append-write-past-eof"
    /// A write into a page wholly past EOF, then ftruncate up.
    case pastEOF = "page-past-eof"
    /// An extending write over two pages whose last page is covered in part, then ftruncate.
    case multiPage = "multi-page"
    /// Control: a write into a hole below EOF (its page is read from the daemon first).
    case holeBelowEOF = "hole-below-eof"
    /// Control: an append inside the EOF page (its block starts below EOF, so it is read).
    case appendInEOFPage = "append-in-eof-page"
    /// Control: append-truncate's write from a buffer readable throughout.
    case readableBuffer = "readable-buffer"

    public var isControl: Bool { [.holeBelowEOF, .appendInEOFPage, .readableBuffer].contains(self) }

    public var write: EOFShortCopyWrite {
        let append = EOFShortCopyWrite(
            dataBytes: 8192, fileSize: 8192, offset: 8192, length: 300, readable: 100, growth: .truncate, growTo: 12388)
        var w = append
        switch self {
        case .appendTruncate: break
        case .appendFallocate: w.growth = .fallocate
        case .appendWrite: (w.growth, w.growTo) = (.write, 16384)
        case .pastEOF: (w.offset, w.growTo) = (12388, 16484)
        case .multiPage: (w.length, w.readable, w.growTo) = (4396, 4196, 16484)
        case .holeBelowEOF: (w.fileSize, w.offset, w.growTo) = (65536, 16684, 69632)
        case .appendInEOFPage: (w.dataBytes, w.fileSize, w.offset) = (8292, 8292, 8292)
        case .readableBuffer: w.readable = w.length
        }
        return w
    }
}

/// What one place of reading back found, summed over attempts.
public struct StaleCount: Sendable, Equatable {
    /// Stale bytes in all, the most one attempt found, and those equal to the marker.
    public var stale = 0
    public var maxStale = 0
    public var marker = 0
    /// Attempts where this place could not be looked at (no mapping could be made).
    public var unseen = 0
    public init() {}

    mutating func add(stale: Int64, marker: Int64) {
        guard stale >= 0 else {
            unseen += 1
            return
        }
        self.stale += Int(stale)
        maxStale = max(maxStale, Int(stale))
        self.marker += Int(marker)
    }
}

/// A case's attempts in one cache mode.
public struct FUSEShortCopyResult: Sendable {
    public var name: String
    public var cache: String
    public var isControl: Bool
    public var write: EOFShortCopyWrite
    public var attempts = 0
    public var writeReturned: [Int] = []
    /// The page holding the new EOF, through a shared mapping, before the growth.
    public var mapped = StaleCount()
    /// read(2) after the growth.
    public var afterGrowth = StaleCount()
    /// The WRITE payloads the engine received.
    public var inWrites = StaleCount()
    /// read(2) after fsync and a cache drop: what the engine stored.
    public var afterSync = StaleCount()
    /// WRITEs recorded for the attempts' files, and those from the kernel's writeback.
    public var writesRecorded = 0
    public var writebackWrites = 0
    /// Errors a growth met (errno names), each once.
    public var growthErrors: [String] = []
    /// Attempts whose page under the write's end was one the marker was freed from, and
    /// attempts where that could be told: zeroes there were written by the kernel.
    public var recycled = 0
    public var recycledKnown = 0

    public var stale: Int { mapped.stale + afterGrowth.stale + inWrites.stale + afterSync.stale }
}

/// A recorded WRITE, as the probe needs it (the mount's recording, parsed by the caller).
public struct FUSERecordedWrite: Sendable {
    public var inode: UInt64
    public var offset: UInt64
    public var fromPageCache: Bool
    public var payload: [UInt8]

    public init(inode: UInt64, offset: UInt64, fromPageCache: Bool, payload: [UInt8]) {
        self.inode = inode
        self.offset = offset
        self.fromPageCache = fromPageCache
        self.payload = payload
    }
}

/// What the FUSE variant needs beyond the attempts count: the built `iomap` to make and mount
/// volumes with, and the parser of its write recordings (the FUSE module's, which this module
/// does not depend on).
public struct FUSEProbeTools: Sendable {
    public var iomap: String
    public var parseRecording: @Sendable ([UInt8]) throws -> [FUSERecordedWrite]
    /// The parent of the probe's scratch directory.
    public var scratchParent = "/tmp"

    public init(iomap: String, parseRecording: @escaping @Sendable ([UInt8]) throws -> [FUSERecordedWrite]) {
        self.iomap = iomap
        self.parseRecording = parseRecording
    }
}

public struct FUSEShortCopyReport: Sendable {
    public var kernel = ""
    public var initOnAlloc = InitOnAllocState(value: "unknown", source: "not looked at")
    public var results: [FUSEShortCopyResult] = []
    public var notes: [String] = []
    public var seconds = 0.0
    public init() {}

    /// Whether a case (not a control) found stale bytes in the writeback cache.
    public var affected: Bool { results.contains { !$0.isControl && $0.cache == "writeback" && $0.stale > 0 } }
    /// Whether every control, and every case in direct mode, was clean.
    public var controlsClean: Bool { !results.contains { ($0.isControl || $0.cache != "writeback") && $0.stale > 0 } }
}

/// Runs the FUSE variant: both cache modes, every case, `attempts` times each.
public func runFUSEShortCopyProbe(
    attempts: Int, tools: FUSEProbeTools, scratch: ProbeScratch, plan: FUSEProbePlan = FUSEProbePlan(), progress: (String) -> Void
) throws -> FUSEShortCopyReport {
    if let why = FUSEShortCopyProbeHost.unavailable(iomap: tools.iomap) { throw KernelSetupError(why) }
    let clock = ContinuousClock()
    let start = clock.now
    var report = FUSEShortCopyReport()
    report.kernel = kernelRelease()
    for cache in plan.modes {
        let directory = try scratch.makeDirectory(in: tools.scratchParent, prefix: "iomap-short-copy-fuse")
        defer { scratch.removeDirectory(directory) }
        let recording = directory + "/writes.rec"
        progress("mounting a new volume with -o cache=\(cache), recording its WRITEs")
        let mount = try scratch.mountFUSE(
            iomap: tools.iomap, directory: directory, imageBytes: 64 << 20, options: "cache=\(cache)",
            arguments: ["--record-writes", recording, "--no-self-test"])
        defer {
            for problem in scratch.unmountFUSE(mount) { progress("cleanup: \(problem)") }
        }
        let reader = try RecordingReader(path: recording, parse: tools.parseRecording)
        for c in plan.cases {
            let result = try fuseCase(c, cache: cache, in: mount.mountPoint, attempts: attempts, planted: plan.planted, reader: reader)
            progress(
                "\(c.rawValue), cache=\(cache): \(attempts) attempts, stale bytes mapped \(result.mapped.stale), "
                    + "read after growth \(result.afterGrowth.stale), in WRITEs \(result.inWrites.stale), after sync \(result.afterSync.stale)"
            )
            report.results.append(result)
        }
    }
    report.initOnAlloc = initOnAllocState()
    report.seconds = (clock.now - start).inSeconds
    return report
}

/// One case's attempts in one mode.
private func fuseCase(
    _ c: FUSEShortCopyCase, cache: String, in mountPoint: String, attempts: Int, planted: Int, reader: RecordingReader
) throws -> FUSEShortCopyResult {
    var write = c.write
    write.planted = planted
    var params = write.params
    var result = FUSEShortCopyResult(name: c.rawValue, cache: cache, isControl: c.isControl, write: write)
    let path = mountPoint + "/short-copy-\(c.rawValue)"
    var returned = Set<Int>()
    var growthErrors = Set<String>()
    for i in 0..<attempts {
        var out = cks_eof_short_copy_attempt()
        let rc = cks_probe_eof_short_copy(path, &params, &out)
        if rc < 0 {
            throw KernelSetupError("\(c.rawValue), cache=\(cache): attempt \(i + 1) failed: \(Errno(rawValue: -rc).symbolicName)")
        }
        result.attempts += 1
        result.recycled += out.recycled == 1 ? 1 : 0
        result.recycledKnown += out.recycled >= 0 ? 1 : 0
        returned.insert(Int(out.write_result))
        if out.growth_errno != 0 { growthErrors.insert(Errno(rawValue: Int32(out.growth_errno)).symbolicName) }
        result.mapped.add(stale: out.stale_mapped, marker: out.marker_mapped)
        result.afterGrowth.add(stale: out.stale_after_growth, marker: out.marker_after_growth)
        result.afterSync.add(stale: out.stale_after_sync, marker: out.marker_after_sync)
        let writes = try reader.next().filter { $0.inode == out.ino }
        result.writesRecorded += writes.count
        result.writebackWrites += writes.filter(\.fromPageCache).count
        let (stale, marker) = unexpectedBytes(in: writes, params: params, written: max(Int(out.write_result), 0))
        result.inWrites.add(stale: Int64(stale), marker: Int64(marker))
    }
    result.writeReturned = returned.sorted()
    result.growthErrors = growthErrors.sorted()
    return result
}

/// The bytes of recorded WRITE payloads that differ from what the file should hold there,
/// and of those, the marker's.
func unexpectedBytes(in writes: [FUSERecordedWrite], params: cks_eof_short_copy_params, written: Int) -> (Int, Int) {
    var params = params
    var stale = 0
    var marker = 0
    for w in writes {
        for (i, byte) in w.payload.enumerated() {
            let o = Int64(w.offset) + Int64(i)
            guard Int32(byte) != cks_eof_expected_byte(&params, Int64(written), o) else { continue }
            stale += 1
            if Int32(byte) == cks_marker_byte(o) { marker += 1 }
        }
    }
    return (stale, marker)
}

/// Reads a growing recording from where it last stopped.
final class RecordingReader {
    let handle: FileHandle
    let parse: @Sendable ([UInt8]) throws -> [FUSERecordedWrite]

    init(path: String, parse: @escaping @Sendable ([UInt8]) throws -> [FUSERecordedWrite]) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw KernelSetupError("the mount made no write recording at \(path)")
        }
        self.handle = handle
        self.parse = parse
    }

    /// The records appended since the last call. A request thread appends a record before
    /// the volume sees its WRITE, and the attempts end with fsync, so a whole attempt's
    /// records are there when it returns.
    func next() throws -> [FUSERecordedWrite] {
        let bytes = [UInt8](handle.readDataToEndOfFile())
        do { return try parse(bytes) } catch { throw KernelSetupError("the mount's write recording: \(error)") }
    }
}

/// Which modes and cases a FUSE run covers, and its canary.
public struct FUSEProbePlan: Sendable {
    /// Cache modes, mounted in this order.
    public var modes = ["writeback", "direct"]
    public var cases = FUSEShortCopyCase.allCases
    /// The canary: marker bytes stored past EOF after each write (0: none).
    public var planted = 0
    public init() {}

    /// What `iomap mount -o cache=writeback` checks before it mounts: the exposing cases in
    /// writeback mode only.
    public static var selfTest: FUSEProbePlan {
        var p = FUSEProbePlan()
        p.modes = ["writeback"]
        p.cases = FUSEShortCopyCase.allCases.filter { !$0.isControl }
        return p
    }
}

/// What the FUSE variant needs from the host.
public enum FUSEShortCopyProbeHost {
    /// Why the variant cannot run here, or nil.
    public static func unavailable(iomap: String) -> String? {
        if geteuid() != 0 { return "not root (the probe mounts FUSE file systems with mount(2))" }
        guard FileManager.default.isExecutableFile(atPath: iomap) else { return "\(iomap) is not an executable iomap" }
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        if fd < 0 { return "/dev/fuse cannot be opened (\(Errno(rawValue: errno).symbolicName))" }
        close(fd)
        return nil
    }
}
