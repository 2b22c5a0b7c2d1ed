// Counterpart: the races behind the seed fix and its series, written as small scenarios the
// explorer runs under every schedule: the seed's failed write against an mmap store
// (docs/KERNEL-MODEL.md §3.1, S2), xfs/925's stale mapping (§10.3 V-3), the unaligned EOF block (§3.8
// O1), writeback against truncate and a write fault against hole punching (§6.5, §5.8).
//
// Each schedule gets a new file system, set up on the calling thread before any actor runs.
// After every actor has finished, the check runs on the calling thread: the invariants of
// docs/KERNEL-MODEL.md §8 on the quiet file, the whole file read through the cache, fsync, space
// accounting with nothing left reserved, a full cache drop, and the file read again from
// disk, which must equal what the cache held and one of the scenario's legal outcomes.

import IOMapBase
import IOMap
import PageCache
import ExtentFS
import Synchronization

/// The engine switches the explorer runs scenarios under; the non-defaults are wrong on
/// purpose, to show that the explorer catches what they break.
public struct ExploreEngineOptions: Sendable, Equatable {
    /// The engine's deliberate bugs (the switches below are views of them).
    public var bugs: DeliberateBugs = []
    /// The engine's file system alone, or a file of a volume.
    public var backing: FileBacking = .engine
    public init(
        policy: CleanupPolicy = .preserveDirty, eofRounding: EOFRounding = .blockEnd, validityCheck: Bool = true,
        writeEnd: WriteEndPolicy = .zeroTail
    ) {
        bugs = DeliberateBugs(policy: policy, eofRounding: eofRounding, writeEnd: writeEnd, validityCheck: validityCheck)
    }

    public var policy: CleanupPolicy { bugs.cleanupPolicy }
    public var eofRounding: EOFRounding { bugs.eofRounding }
    public var validityCheck: Bool { bugs.validityCheck }
    public var writeEnd: WriteEndPolicy { bugs.writeEnd }

    /// The command-line flags that select these options.
    public var flags: [String] {
        var f: [String] = []
        if policy != .preserveDirty { f += ["--policy", policy.rawValue] }
        if eofRounding != .blockEnd { f += ["--eof-rounding", eofRounding.rawValue] }
        if !validityCheck { f.append("--no-validity-check") }
        if writeEnd != .zeroTail { f += ["--write-end", writeEnd.rawValue] }
        if backing == .volume { f.append("--volume") }
        return f
    }
}

/// What a check found wrong: the invariant's name and what was seen.
public struct ExploreFinding: Sendable, Equatable, CustomStringConvertible {
    public let invariant: String
    public let detail: String
    public init(_ invariant: String, _ detail: String) {
        self.invariant = invariant
        self.detail = detail
    }
    public var description: String { "\(invariant): \(detail)" }
}

/// One instance of a scenario: fresh state, its actors, and the check run after them.
public struct ScenarioInstance {
    /// One body per actor, in the order of the scenario's `actorNames`.
    public let bodies: [@Sendable () -> Void]
    public let check: () -> [ExploreFinding]
    public init(bodies: [@Sendable () -> Void], check: @escaping () -> [ExploreFinding]) {
        self.bodies = bodies
        self.check = check
    }
}

public enum ExploreScenario: String, CaseIterable, Sendable {
    case writeFailVsMappedStore = "write-fail-vs-mapped-store"
    case staleMapping = "stale-mapping"
    case eofBlock = "eof-block"
    case writebackVsTruncate = "writeback-vs-truncate"
    case faultVsPunchHole = "fault-vs-punch-hole"
    case shortCopyVsProtect = "short-copy-vs-protect"

    /// One line for `iomap explore --list`.
    public var summary: String {
        switch self {
        case .writeFailVsMappedStore:
            return
                "a write of [0,16K) into a sparse file fails at byte 5096 while a mapped store lands at 8256 and a flusher runs (the seed, S2)"
        case .staleMapping:
            return "xfs/925 (V-3): a write over unwritten [0,36K] while a flusher writes back and evicts the block holding 0x58 at 40K-1"
        case .eofBlock:
            return
                "O1: a write at 5120 over the unaligned EOF block (i_size 6144) fails with nothing written while a mapped store dirties that block"
        case .writebackVsTruncate:
            return "writeback of 12K of dirty delalloc (1K blocks) against truncate to 5000 and a mapped store at 1000"
        case .faultVsPunchHole:
            return "a mapped store at 4100 against a hole punch of [4K,8K) and a flusher, over a clean written file (1K blocks)"
        case .shortCopyVsProtect:
            return
                "a write of 300 bytes at 8492 into a hole while another thread makes its buffer unreadable (poisoned folio memory; a flusher runs)"
        }
    }

    /// The actors' names, by thread number.
    public var actorNames: [String] {
        switch self {
        case .writeFailVsMappedStore: return ["writer", "mapper", "flusher"]
        case .staleMapping: return ["writer", "flusher"]
        case .eofBlock: return ["writer", "mapper"]
        case .writebackVsTruncate: return ["flusher", "truncator", "mapper"]
        case .faultVsPunchHole: return ["mapper", "puncher", "flusher"]
        case .shortCopyVsProtect: return ["writer", "protector", "flusher"]
        }
    }

    /// Sets up a new instance with the engine switches `options`.
    public func make(_ options: ExploreEngineOptions, environment: IOMapEnvironment) -> ScenarioInstance {
        switch self {
        case .writeFailVsMappedStore: return Self.writeFailVsMappedStore(options, environment)
        case .staleMapping: return Self.staleMapping(options, environment)
        case .eofBlock: return Self.eofBlock(options, environment)
        case .writebackVsTruncate: return Self.writebackVsTruncate(options, environment)
        case .faultVsPunchHole: return Self.faultVsPunchHole(options, environment)
        case .shortCopyVsProtect: return Self.shortCopyVsProtect(options, environment)
        }
    }
}

// MARK: - Scenarios

extension ExploreScenario {
    static func newFile(_ options: ExploreEngineOptions, _ environment: IOMapEnvironment, blockSize: Int) -> (ExtentFS, ExtentFile) {
        let fileSystem = TestFileSystem(
            options.backing, dataBytes: 8 << 20,
            config: ExtentFSConfig(blockSize: blockSize, maxFolioSize: pageSize, bugs: options.bugs, environment: environment))
        // The file keeps its file system and journal alive; the volume object itself (its
        // namespace) may go, which the data path does not need.
        return (fileSystem.fs, fileSystem.createFile())
    }

    /// The body of the actor that stores `stored` at `offset` through the file's mapping, its
    /// outcome recorded as "mapper".
    static func mapper(_ file: ExtentFile, _ stored: [UInt8], at offset: Int, _ results: Outcomes) -> @Sendable () -> Void {
        {
            results.record("mapper") { () throws(Errno) in
                try file.mappedStore(stored, at: offset); return stored.count
            }
        }
    }

    /// The race of a write of `data` at `offset` whose buffer faults at `faultOffset` (the
    /// "writer") with a store of `stored` at `storeOffset` through the mapping (the "mapper").
    static func failingWriteVsStore(
        _ file: ExtentFile, _ data: [UInt8], at offset: Int, faultOffset: Int, _ stored: [UInt8], at storeOffset: Int,
        _ results: Outcomes
    ) -> [@Sendable () -> Void] {
        [
            { results.record("writer") { () throws(Errno) in try file.write(data, at: offset, faultOffset: faultOffset) } },
            mapper(file, stored, at: storeOffset, results),
        ]
    }

    /// Bytes that differ from their neighbours and from zero, so a lost or misplaced byte shows.
    static func pattern(_ count: Int, seed: UInt8) -> [UInt8] {
        (0..<count).map { i in UInt8(truncatingIfNeeded: i &* 7 &+ Int(seed)) | 1 }
    }

    static func writeFailVsMappedStore(_ options: ExploreEngineOptions, _ environment: IOMapEnvironment) -> ScenarioInstance {
        let (fs, file) = newFile(options, environment, blockSize: 4096)
        try! file.truncate(to: 16384)
        let data = pattern(16384, seed: 0x31)
        let stored: [UInt8] = [0x4D, 0x41, 0x50, 0x50, 0x45, 0x44, 0x21, 0x21]
        let results = Outcomes()
        return ScenarioInstance(
            bodies: failingWriteVsStore(file, data, at: 0, faultOffset: 5096, stored, at: 8256, results) + [{ file.writeback() }],
            check: {
                var expected = [UInt8](repeating: 0, count: 16384)
                var findings: [ExploreFinding] = []
                let written = results.value("writer")
                if let written { expected.replaceSubrange(0..<written, with: data[0..<written]) }
                if results.value("mapper") != nil { expected.replaceSubrange(8256..<8264, with: stored) }
                if let e = results.error("mapper") { findings.append(ExploreFinding("mapped-store", "the store at 8256 failed: \(e)")) }
                findings += settle(
                    fs, file, failedWrite: ByteRange(0, 16384),
                    legal: [expected], stores: [(ByteRange(8256, 8264), "stored through the mapping")])
                return findings
            })
    }

    static func staleMapping(_ options: ExploreEngineOptions, _ environment: IOMapEnvironment) -> ScenarioInstance {
        let (fs, file) = newFile(options, environment, blockSize: 4096)
        try! file.allocate(offset: 0, length: 40960, keepSize: false)
        try! file.fsync()
        _ = file.dropCaches()
        _ = try! file.write([0x58], at: 40959)
        let data = [UInt8](repeating: 0x57, count: 36865)
        let results = Outcomes()
        return ScenarioInstance(
            bodies: [
                { results.record("writer") { () throws(Errno) in try file.write(data, at: 0) } },
                {
                    file.writeback(ByteRange(36864, 40960))
                    file.mapping.invalidateClean(ByteRange(36864, 40960))
                },
            ],
            check: {
                var expected = data + [UInt8](repeating: 0, count: 40960 - data.count)
                expected[40959] = 0x58
                var findings: [ExploreFinding] = []
                if let e = results.error("writer") { findings.append(ExploreFinding("write", "the write failed: \(e)")) }
                return findings
                    + settle(fs, file, failedWrite: nil, legal: [expected], stores: [(ByteRange(40959, 40960), "written before the race")])
            })
    }

    /// The variant of a short copy that needs a race: the buffer is readable when the write
    /// faults it in and not when it copies, so the write fails with EFAULT, having written
    /// nothing, after write-begin zeroed around its range and marked the block uptodate. What
    /// the folio's memory held in [8492, 8792) must not become readable (Linux's write end
    /// leaves it, `--write-end kernel`). Poisons folio memory, so stale bytes are recognisable.
    static func shortCopyVsProtect(_ options: ExploreEngineOptions, _ environment: IOMapEnvironment) -> ScenarioInstance {
        FolioMemory.fill = .poison
        let (fs, file) = newFile(options, environment, blockSize: 4096)
        try! file.truncate(to: 16384)
        let data = pattern(300, seed: 0x29)
        let protection = SourceProtection()
        let results = Outcomes()
        return ScenarioInstance(
            bodies: [
                { results.record("writer") { () throws(Errno) in try file.write(data, at: 8492, protection: protection) } },
                { protection.revoke(from: 0) },
                { _ = file.writeback() },
            ],
            check: {
                let zeroes = [UInt8](repeating: 0, count: 16384)
                var whole = zeroes
                whole.replaceSubrange(8492..<8792, with: data)
                var findings: [ExploreFinding] = []
                if let written = results.value("writer"), written != data.count {
                    findings.append(ExploreFinding("write", "the write returned \(written): its buffer was either readable or not"))
                }
                if let e = results.error("writer"), e != .badAddress {
                    findings.append(ExploreFinding("write", "the write failed with \(e), not EFAULT"))
                }
                let legal = results.value("writer") == nil ? [zeroes] : [whole]
                return findings + settle(fs, file, failedWrite: nil, legal: legal, stores: [])
            })
    }

    static func eofBlock(_ options: ExploreEngineOptions, _ environment: IOMapEnvironment) -> ScenarioInstance {
        let (fs, file) = newFile(options, environment, blockSize: 4096)
        let head = pattern(4096, seed: 0x17)
        _ = try! file.write(head, at: 0)
        try! file.fsync()
        try! file.truncate(to: 6144)
        let data = pattern(4096, seed: 0x5A)
        let stored: [UInt8] = [0x45, 0x4F, 0x46, 0x2D, 0x42, 0x4C, 0x4B, 0x21]
        let results = Outcomes()
        return ScenarioInstance(
            bodies: failingWriteVsStore(file, data, at: 5120, faultOffset: 0, stored, at: 4096, results),
            check: {
                var expected = head + [UInt8](repeating: 0, count: 2048)
                var findings: [ExploreFinding] = []
                if let written = results.value("writer"), written > 0 {
                    findings.append(ExploreFinding("write", "the write meant to fail wrote \(written) bytes"))
                }
                if results.value("mapper") != nil { expected.replaceSubrange(4096..<4104, with: stored) }
                if let e = results.error("mapper") { findings.append(ExploreFinding("mapped-store", "the store at 4096 failed: \(e)")) }
                return findings
                    + settle(
                        fs, file, failedWrite: ByteRange(5120, 9216), legal: [expected],
                        stores: [(ByteRange(4096, 4104), "stored through the mapping")])
            })
    }

    static func writebackVsTruncate(_ options: ExploreEngineOptions, _ environment: IOMapEnvironment) -> ScenarioInstance {
        let (fs, file) = newFile(options, environment, blockSize: 1024)
        let data = pattern(12288, seed: 0x63)
        _ = try! file.write(data, at: 0)
        let stored: [UInt8] = [0x54, 0x52, 0x55, 0x4E, 0x43, 0x41, 0x54, 0x45]
        let results = Outcomes()
        return ScenarioInstance(
            bodies: [
                { file.writeback() },
                {
                    results.record("truncator") { () throws(Errno) in
                        try file.truncate(to: 5000); return 0
                    }
                },
                mapper(file, stored, at: 1000, results),
            ],
            check: {
                var expected = Array(data[0..<5000])
                expected.replaceSubrange(1000..<1008, with: stored)
                var findings: [ExploreFinding] = []
                for who in ["truncator", "mapper"] {
                    if let e = results.error(who) { findings.append(ExploreFinding(who, "failed: \(e)")) }
                }
                return findings
                    + settle(fs, file, failedWrite: nil, legal: [expected], stores: [(ByteRange(1000, 1008), "stored through the mapping")])
            })
    }

    static func faultVsPunchHole(_ options: ExploreEngineOptions, _ environment: IOMapEnvironment) -> ScenarioInstance {
        let (fs, file) = newFile(options, environment, blockSize: 1024)
        let data = pattern(16384, seed: 0x29)
        _ = try! file.write(data, at: 0)
        try! file.fsync()
        let stored: [UInt8] = [0x50, 0x55, 0x4E, 0x43, 0x48, 0x45, 0x44, 0x3F]
        let results = Outcomes()
        return ScenarioInstance(
            bodies: [
                mapper(file, stored, at: 4100, results),
                {
                    results.record("puncher") { () throws(Errno) in
                        try file.punchHole(offset: 4096, length: 4096); return 0
                    }
                },
                { file.writeback() },
            ],
            check: {
                // The store lands before the punch (and is punched away) or after it (and
                // stays, in a hole-backed block it faulted a reservation for).
                var punched = data
                punched.replaceSubrange(4096..<8192, with: repeatElement(0, count: 4096))
                var storedAfter = punched
                storedAfter.replaceSubrange(4100..<4108, with: stored)
                var findings: [ExploreFinding] = []
                for who in ["mapper", "puncher"] {
                    if let e = results.error(who) { findings.append(ExploreFinding(who, "failed: \(e)")) }
                }
                return findings + settle(fs, file, failedWrite: nil, legal: [punched, storedAfter], stores: [])
            })
    }
}

// MARK: - Checks

/// What each actor's operation returned, recorded by the actor and read by the check.
final class Outcomes: Sendable {
    private let results = HarnessMutex<[String: Result<Int, Errno>]>([:])

    func record(_ who: String, _ op: () throws(Errno) -> Int) {
        let r = Result { () throws(Errno) -> Int in try op() }
        results.withLock { $0[who] = r }
    }

    func value(_ who: String) -> Int? {
        guard case .success(let n)? = results.withLock({ $0[who] }) else { return nil }
        return n
    }

    func error(_ who: String) -> Errno? {
        guard case .failure(let e)? = results.withLock({ $0[who] }) else { return nil }
        return e
    }
}

/// The checks after every actor has finished; see the file comment. `failedWrite` is the
/// range of a write that was meant to fail: a dirty block below EOF inside it with no backing
/// is reported as D1 (its cleanup removed the reservation under dirty data). `stores` are
/// ranges whose bytes some actor put there, named for the report.
func settle(
    _ fs: ExtentFS, _ file: ExtentFile, failedWrite: ByteRange?, legal: [[UInt8]], stores: [(ByteRange, String)]
) -> [ExploreFinding] {
    var findings: [ExploreFinding] = []
    let g = file.geometry
    for problem in file.invariantFindings() {
        if problem.id == .d3, let failedWrite, let at = problem.offset, failedWrite.overlaps(ByteRange(start: at, length: g.blockSize)) {
            // A dirty block left unbacked inside the failed write's range is its cleanup's
            // doing: the cleanup broke D1 (it removed the reservation under dirty data).
            findings.append(
                ExploreFinding(
                    InvariantID.d1.rawValue,
                    "cleanup of the failed write \(failedWrite) removed the reservation under dirty data: \(problem.detail)"))
        } else {
            findings.append(ExploreFinding(problem.id.rawValue, problem.description))
        }
    }
    // Dirty data without backing is lost the moment writeback runs (it finds a hole and
    // writes nothing, which a verify build traps on): the finding is already made.
    if findings.contains(where: { $0.invariant == "D1" || $0.invariant == "D3" }) { return findings }
    let size = file.size
    let cached: [UInt8]
    do throws(Errno) { cached = try file.read(count: size, at: 0) } catch {
        return findings + [ExploreFinding("read", "reading the file through the cache failed: \(error)")]
    }
    do throws(Errno) { try file.fsync() } catch { findings.append(ExploreFinding("fsync", "fsync failed: \(error)")) }
    if file.delallocBlocks != 0 {
        findings.append(ExploreFinding("D4", "\(file.delallocBlocks) delalloc blocks left after fsync: \(file.delallocBlockIndices())"))
    }
    if let problem = fs.checkSpaceAccounting() { findings.append(ExploreFinding("D4", problem)) }
    _ = file.dropCaches()
    let disk: [UInt8]
    do throws(Errno) { disk = try file.read(count: size, at: 0) } catch {
        return findings + [ExploreFinding("read", "reading the file back from disk failed: \(error)")]
    }
    for (range, what) in stores where range.end <= disk.count {
        let expectedBytes = legal.first.map { Array($0[range.start..<min(range.end, $0.count)]) }
        let got = Array(disk[range.start..<range.end])
        if let expectedBytes, got != expectedBytes, legal.allSatisfy({ Array($0[range.start..<min(range.end, $0.count)]) != got }) {
            findings.append(
                ExploreFinding(
                    "lost-data",
                    "the bytes \(what) at \(range) read back as \(hexBytes(got)) after fsync and a cache drop, not \(hexBytes(expectedBytes))"
                ))
        }
    }
    // Poison in the file, in the cache or on disk, is memory never written or zeroed.
    for (image, whereFrom) in [(cached, "the cache"), (disk, "disk")] {
        let closest = legal.min { difference($0, image) < difference($1, image) }!
        if let at = PoisonCheck.firstPoison(image, expected: closest, fileOffset: 0) {
            return findings + [
                ExploreFinding("poison", "\(PoisonCheck.message(offset: at)): byte \(at) read \(byte(image, at)) from \(whereFrom)")
            ]
        }
    }
    if disk != cached {
        let at = firstDifferingByte(disk, cached)
        findings.append(
            ExploreFinding(
                disk.count > at && disk[at] == 0 ? "lost-data" : "corrupt-data",
                "byte \(at) read \(byte(cached, at)) from the cache before fsync and \(byte(disk, at)) from disk after it"))
    }
    if !legal.contains(disk) {
        let closest = legal.min { difference($0, disk) < difference($1, disk) }!
        let at = firstDifferingByte(disk, closest)
        findings.append(
            ExploreFinding(
                at < disk.count && disk[at] == 0 ? "lost-data" : "corrupt-data",
                "byte \(at) of the file reads \(byte(disk, at)), expected \(byte(closest, at)) (size \(disk.count), expected \(closest.count))"
            ))
    }
    return findings
}

private func firstDifferingByte(_ a: [UInt8], _ b: [UInt8]) -> Int {
    a.indices.first { $0 >= b.count || a[$0] != b[$0] } ?? min(a.count, b.count)
}

private func difference(_ a: [UInt8], _ b: [UInt8]) -> Int {
    zip(a, b).reduce(abs(a.count - b.count)) { $0 + ($1.0 == $1.1 ? 0 : 1) }
}

private func byte(_ bytes: [UInt8], _ at: Int) -> String { at < bytes.count ? hexBytes([bytes[at]]) : "nothing (past EOF)" }

private func hexBytes(_ bytes: [UInt8]) -> String {
    bytes.map { b in
        let s = String(b, radix: 16)
        return s.count == 1 ? "0" + s : s
    }.joined(separator: " ")
}
