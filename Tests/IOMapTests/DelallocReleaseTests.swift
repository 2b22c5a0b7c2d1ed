// Scenarios S1–S17 of docs/KERNEL-MODEL.md §10.2: the delalloc release a failed buffered write runs
// (iomap_write_delalloc_release). S1–S9 build the table's exact state white-box and compare
// the punch calls with the kernel column of §10.2 (from the executable release model of
// docs/KERNEL-MODEL.md §11); S8/S9 pin docs/DESIGN.md decision 5 (ours) and the
// kernel's rounding side by side. S10–S17 drive real operations, hooks and large offsets.

import IOMap
import IOMapBase
import PageCache
import Synchronization
import Testing

@testable import ExtentFS

private let K = 1024

/// One cached folio of a scenario; bit strings give per-block uptodate and dirty bits.
private struct CachedFolio: Sendable {
    let pos: Int
    let size: Int
    let uptodate: String
    let dirty: String
    init(_ pos: Int, _ size: Int, up uptodate: String, dirty: String) {
        self.pos = pos
        self.size = size
        self.uptodate = uptodate
        self.dirty = dirty
    }
}

/// What a failure cleanup left: the punch calls in order and the delalloc blocks kept.
private struct Outcome {
    let fs: ExtentFS
    let file: ExtentFile
    let punches: [ByteRange]
    let kept: [Int]
}

private func r(_ start: Int, _ end: Int) -> ByteRange { ByteRange(start, end) }

/// Builds one §10.2 state at `base` (i_size, the write's new delalloc, the cache) and runs the
/// failure cleanup the write would run from iomapEnd.
private func failWrite(
    blockSize: Int, eofRounding: EOFRounding = .blockEnd, environment: IOMapEnvironment = .live,
    onCreate: (ExtentFile) -> Void = { _ in }, base: Int = 0, isize: Int, newBlocks: Range<Int>,
    cache: [CachedFolio], pos: Int, length: Int, written: Int
) throws -> Outcome {
    let config = ExtentFSConfig(blockSize: blockSize, eofRounding: eofRounding, environment: environment)
    let fs = ExtentFS(memoryBytes: 64 << 20, config: config)
    let file = fs.createFile()
    onCreate(file)
    let b0 = base / blockSize
    file._setSize(base + isize)
    try file._reserveDelalloc(fromBlock: b0 + newBlocks.lowerBound, toBlock: b0 + newBlocks.upperBound)
    for f in cache {
        file._installFolio(
            pos: base + f.pos, size: f.size, uptodate: f.uptodate.map { $0 == "1" }, dirty: f.dirty.map { $0 == "1" })
    }
    file.recordPunches()
    let m = file._newDelallocMapping(fromBlock: b0 + newBlocks.lowerBound, toBlock: b0 + newBlocks.upperBound)
    file._failWrite(pos: base + pos, length: length, written: written, mapping: m)
    return Outcome(fs: fs, file: file, punches: file.recordedPunches, kept: file.delallocBlockIndices())
}

/// A file system with one file, for the scenarios driven by real operations.
private func makeFile(
    blockSize: Int = 4096, maxFolioSize: Int = 2 << 20, environment: IOMapEnvironment = .live
) -> (ExtentFS, ExtentFile) {
    let config = ExtentFSConfig(blockSize: blockSize, maxFolioSize: maxFolioSize, environment: environment)
    let fs = ExtentFS(memoryBytes: 64 << 20, config: config)
    return (fs, fs.createFile())
}

private func pattern(_ count: Int, seed: UInt8 = 1) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
}

/// Runs `action` once, at the first event at `point`, as another thread would, keeping its
/// result; records the range of every event at `point`.
private final class HookProbe<R: Sendable>: Sendable {
    let point: HookPoint
    let action: @Sendable (ExtentFile, HookEvent) -> R
    private let state = Mutex<(file: ExtentFile?, events: [ByteRange], result: R?)>((nil, [], nil))

    init(at point: HookPoint, action: @escaping @Sendable (ExtentFile, HookEvent) -> R) {
        self.point = point
        self.action = action
    }

    var environment: IOMapEnvironment { IOMapEnvironment(hook: { [self] in fire($0) }) }
    func attach(_ file: ExtentFile) { state.withLock { $0.file = file } }
    var events: [ByteRange] { state.withLock { $0.events } }
    var result: R? { state.withLock { $0.result } }

    func fire(_ event: HookEvent) {
        guard event.point == point else { return }
        let (file, first) = state.withLock { s in
            s.events.append(event.range)
            return (s.file, s.events.count == 1)
        }
        guard first, let file else { return }
        let value = action(file, event)
        state.withLock { $0.result = value }
    }
}

/// Extent records as "state [start, end)", without disk addresses.
private func extentSummary(_ file: ExtentFile) -> [String] {
    file.extentRecords.map { "\($0.state) [\($0.startBlock), \($0.endBlock))" }
}

/// One row of the §10.2 table: the state `failWrite` builds, the punches the kernel column
/// gives and the delalloc blocks left. `d3At` is the offset of the one D3 finding the row
/// must leave (the kernel's EOF rounding), nil for a clean file.
struct ReleaseCase: Sendable, CustomTestStringConvertible {
    let name: String
    var blockSize = 4 * K
    var eofRounding = EOFRounding.blockEnd
    let isize: Int
    let newBlocks: Range<Int>
    fileprivate let cache: [CachedFolio]
    var pos = 0
    let length: Int
    var written = 0
    let punches: [ByteRange]
    let kept: [Int]
    var d3At: Int? = nil
    /// Cached folios the release must leave in the cache.
    var stillCached: [Int] = []

    var testDescription: String { name }
}

// Each row's goal: the state → the kernel column's punches and the blocks kept.
// S1: 6K of a 16K write copied at i_size 6K → punch [8K, 16K), keep blocks 0 and 1.
private let s1 = ReleaseCase(
    name: "S1: a short write punches only past its last written block", isize: 6 * K, newBlocks: 0..<4,
    cache: [CachedFolio(0, 4 * K, up: "1", dirty: "1"), CachedFolio(4 * K, 4 * K, up: "1", dirty: "1")],
    length: 16 * K, written: 6 * K, punches: [r(8 * K, 16 * K)], kept: [0, 1])
// S2: nothing written, folio [8K, 12K) dirty → punch [0, 8K) and [12K, 16K), keep block 2.
private let s2 = ReleaseCase(
    name: "S2: a folio dirtied through mmap keeps its reservation", isize: 16 * K, newBlocks: 0..<4,
    cache: [CachedFolio(8 * K, 4 * K, up: "1", dirty: "1")], length: 16 * K,
    punches: [r(0, 8 * K), r(12 * K, 16 * K)], kept: [2])
// S3: folio [8K, 12K) uptodate but clean → one punch [0, 16K), nothing kept; the release
// must not drop the clean folio.
private let s3 = ReleaseCase(
    name: "S3: a clean cached folio protects nothing", isize: 16 * K, newBlocks: 0..<4,
    cache: [CachedFolio(8 * K, 4 * K, up: "1", dirty: "0")], length: 16 * K,
    punches: [r(0, 16 * K)], kept: [], stillCached: [8 * K])
// S4: folio [0, 4K) uptodate 1111 dirty 0110 → punch [0, 1K) and [3K, 4K), keep blocks 1 and 2.
private let s4 = ReleaseCase(
    name: "S4: per-block punch inside a partly dirty folio (1K blocks)", blockSize: K, isize: 16 * K, newBlocks: 0..<4,
    cache: [CachedFolio(0, 4 * K, up: "1111", dirty: "0110")], length: 4 * K,
    punches: [r(0, K), r(3 * K, 4 * K)], kept: [1, 2])
// S5: uptodate 0100 dirty 0100 → punch [0, 1K) then [2K, 4K), keep block 1.
private let s5 = ReleaseCase(
    name: "S5: a partly uptodate dirty folio: gap punch, then final punch (1K blocks)", blockSize: K, isize: 16 * K,
    newBlocks: 0..<4, cache: [CachedFolio(0, 4 * K, up: "0100", dirty: "0100")], length: 4 * K,
    punches: [r(0, K), r(2 * K, 4 * K)], kept: [1])
// S6: i_size 8K, 8K written, folio [8K, 12K) dirty past EOF → punch [8K, 16K), keep blocks 0 and 1.
private let s6 = ReleaseCase(
    name: "S6: dirty cache beyond EOF does not protect delalloc (EOF clamp)", isize: 8 * K, newBlocks: 0..<4,
    cache: [
        CachedFolio(0, 4 * K, up: "1", dirty: "1"), CachedFolio(4 * K, 4 * K, up: "1", dirty: "1"),
        CachedFolio(8 * K, 4 * K, up: "1", dirty: "1"),
    ],
    length: 16 * K, written: 8 * K, punches: [r(8 * K, 16 * K)], kept: [0, 1])
// S7: 16K folio uptodate 1111 dirty 0010 → punch [0,4K), [4K,8K), [12K,16K), [16K,32K); keep block 2.
private let s7 = ReleaseCase(
    name: "S7: one large folio, one dirty block: per-block punches, then the rest", isize: 64 * K, newBlocks: 0..<8,
    cache: [CachedFolio(0, 16 * K, up: "1111", dirty: "0010")], length: 32 * K,
    punches: [r(0, 4 * K), r(4 * K, 8 * K), r(12 * K, 16 * K), r(16 * K, 32 * K)], kept: [2])
// S8: i_size 6K, dirty folio [4K, 8K), write (5K, 4K, 0) → punch only [8K, 12K), keep block 1.
private let s8 = ReleaseCase(
    name: "S8: unaligned EOF in a dirty block keeps its reservation (ours, DESIGN decision 5)", isize: 6 * K,
    newBlocks: 1..<3, cache: [CachedFolio(4 * K, 4 * K, up: "1", dirty: "1")], pos: 5 * K, length: 4 * K,
    punches: [r(8 * K, 12 * K)], kept: [1])
// S8-kernel: same state with EOFRounding.kernel → punch [6K, 12K), nothing kept, dirty block 1 unbacked (D3).
private let s8Kernel = ReleaseCase(
    name: "S8-kernel: with the kernel's EOF rounding the dirty EOF block loses its reservation (O1)",
    eofRounding: .kernel, isize: 6 * K, newBlocks: 1..<3, cache: [CachedFolio(4 * K, 4 * K, up: "1", dirty: "1")],
    pos: 5 * K, length: 4 * K, punches: [r(6 * K, 12 * K)], kept: [], d3At: 4096)
// S9: i_size 5.5K, folio [4K, 8K) dirty 1100 → punch [6K, 8K), keep blocks 4 and 5.
private let s9 = ReleaseCase(
    name: "S9: unaligned EOF with 1K blocks keeps both dirty blocks (ours, DESIGN decision 5)", blockSize: K,
    isize: 5 * K + 512, newBlocks: 4..<8, cache: [CachedFolio(4 * K, 4 * K, up: "1111", dirty: "1100")], pos: 4 * K,
    length: 4 * K, punches: [r(6 * K, 8 * K)], kept: [4, 5])
// S9-kernel: same state with EOFRounding.kernel → punch [5632, 8192), keep block 4 only, block 5 unbacked (D3).
private let s9Kernel = ReleaseCase(
    name: "S9-kernel: with the kernel's EOF rounding dirty block 5 loses its reservation (O1)", blockSize: K,
    eofRounding: .kernel, isize: 5 * K + 512, newBlocks: 4..<8, cache: [CachedFolio(4 * K, 4 * K, up: "1111", dirty: "1100")],
    pos: 4 * K, length: 4 * K, punches: [r(5632, 8192)], kept: [4], d3At: 5120)

private let releaseTable = [s1, s2, s3, s4, s5, s6, s7, s8, s8Kernel, s9, s9Kernel]

/// Runs row `c` moved to `base` and checks its punches and kept blocks (both shifted by
/// `base`), the folios it must leave cached, D1–D4 (or the row's one D3 finding) and the
/// space accounting.
private func expectRelease(_ c: ReleaseCase, base: Int = 0, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let o = try failWrite(
        blockSize: c.blockSize, eofRounding: c.eofRounding, base: base, isize: c.isize, newBlocks: c.newBlocks,
        cache: c.cache, pos: c.pos, length: c.length, written: c.written)
    #expect(o.punches == c.punches.map { r(base + $0.start, base + $0.end) }, sourceLocation: sourceLocation)
    #expect(o.kept == c.kept.map { base / c.blockSize + $0 }, sourceLocation: sourceLocation)
    for offset in c.stillCached {
        #expect(o.file._folio(at: base + offset) != nil, "the release must not drop the clean folio", sourceLocation: sourceLocation)
    }
    if let d3At = c.d3At {
        let violations = o.file.invariantFindings()
        #expect(violations.count == 1, sourceLocation: sourceLocation)
        #expect(violations.first?.id == .d3 && violations.first?.offset == base + d3At, "\(violations)", sourceLocation: sourceLocation)
    } else {
        #expect(o.file.invariantViolations() == [], sourceLocation: sourceLocation)
    }
    #expect(o.fs.checkSpaceAccounting() == nil, sourceLocation: sourceLocation)
}

@Suite("Delalloc release (docs/KERNEL-MODEL.md §10.2)")
struct DelallocReleaseTests {
    // MARK: S1–S9: the table, white-box

    @Test("S1–S9: a failed write's release punches the table's ranges and keeps its blocks", arguments: releaseTable)
    func table(_ c: ReleaseCase) throws {
        try expectRelease(c)
    }

    // MARK: S10–S16: real operations and hooks

    private struct WritebackSnapshot: Sendable, Equatable {
        let folios: Int
        let bytes: Int
        let extents: [String]
    }

    @Test("S10: writeback converts the write's reservation mid-write; the stale mapping is remapped")
    func s10() throws {
        // Goal: writeback of folio 0 mid-write makes [0,16K) unwritten; the write remaps at 4K, its punch [4K,16K) removes nothing, data intact.
        let probe = HookProbe<WritebackSnapshot>(at: .afterCopy) { file, _ in
            let wb = file.writeback(ByteRange(0, 4 * K))
            return WritebackSnapshot(folios: wb.folios, bytes: wb.bytesWritten, extents: extentSummary(file))
        }
        let (fs, file) = makeFile(maxFolioSize: 4 * K, environment: probe.environment)
        probe.attach(file)
        file.recordPunches()
        let data = pattern(16 * K)
        #expect(try file.write(data, at: 0) == 16 * K)
        #expect(probe.events == [r(0, 4 * K), r(4 * K, 8 * K), r(8 * K, 12 * K), r(12 * K, 16 * K)])
        #expect(probe.result == WritebackSnapshot(folios: 1, bytes: 4 * K, extents: ["written [0, 1)", "unwritten [1, 4)"]))
        #expect(file.inode.stats.staleMappings == 1)
        #expect(file.recordedPunches == [r(4 * K, 16 * K)])
        #expect(file.delallocBlockIndices() == [])
        #expect(try file.read(count: 16 * K, at: 0) == data)
        try file.fsync()
        file.dropCaches()
        #expect(extentSummary(file) == ["written [0, 4)"])
        #expect(try file.read(count: 16 * K, at: 0) == data)
        #expect(file.invariantViolations() == [])
        #expect(fs.checkSpaceAccounting() == nil)
    }

    /// S11 and S12: S2's state with a clean folio [4K, 8K) in front of the dirty one, evicted by
    /// the hook at `point` (which must evict exactly it); the release must still give exactly
    /// S2's punches and kept block, with D1–D4 and the space accounting intact.
    private func s2EvictingCleanFolio(
        at point: HookPoint, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> (HookProbe<Int>, Outcome) {
        let probe = HookProbe<Int>(at: point) { file, event in file.mapping.invalidateClean(event.range) }
        let o = try failWrite(
            blockSize: 4 * K, environment: probe.environment, onCreate: probe.attach, isize: 16 * K, newBlocks: 0..<4,
            cache: [CachedFolio(4 * K, 4 * K, up: "1", dirty: "0"), CachedFolio(8 * K, 4 * K, up: "1", dirty: "1")],
            pos: 0, length: 16 * K, written: 0)
        #expect(probe.result == 1, sourceLocation: sourceLocation)
        #expect(o.punches == s2.punches, sourceLocation: sourceLocation)
        #expect(o.kept == s2.kept, sourceLocation: sourceLocation)
        #expect(o.file.invariantViolations() == [], sourceLocation: sourceLocation)
        #expect(o.fs.checkSpaceAccounting() == nil, sourceLocation: sourceLocation)
        return (probe, o)
    }

    @Test("S11: a clean folio evicted between SEEK_DATA and SEEK_HOLE is seeked past")
    func s11() throws {
        // Goal: evicting clean folio [4K, 8K) at H4 re-seeks and gives exactly the S2 punches.
        let (probe, o) = try s2EvictingCleanFolio(at: .releaseBetweenSeeks)
        #expect(probe.events == [r(4 * K, 16 * K), r(8 * K, 16 * K)])
        #expect(o.file.inode.stats.cleanups == 1)
    }

    @Test("S12: a folio that vanished before its lookup is skipped as if clean")
    func s12() throws {
        // Goal: evicting clean folio [4K, 8K) at H4b skips one page and gives exactly the S2 punches.
        let (probe, _) = try s2EvictingCleanFolio(at: .releaseBeforeFolioLookup)
        #expect(probe.events == [r(4 * K, 12 * K), r(8 * K, 12 * K)])
    }

    @Test("S13: a page fault reserves delalloc and never punches")
    func s13() throws {
        // Goal: an mmap store into a hole reserves block 2 and never punches (nor does a fault iomapEnd with 0 done); data survives.
        let (fs, file) = makeFile()
        try file.truncate(to: 16 * K)
        file.recordPunches()
        let bytes: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
        try file.mappedStore(bytes, at: 8 * K + 100)
        #expect(file.delallocBlockIndices() == [2])
        let m = file._newDelallocMapping(fromBlock: 2, toBlock: 3)
        try file.iomapEnd(file.inode, pos: 8 * K, length: 4 * K, written: 0, flags: [.write, .fault], mapping: m)
        #expect(file.recordedPunches == [])
        #expect(file.inode.stats.cleanups == 0)
        #expect(file.inode.stats.punches == 0)
        #expect(file.delallocBlockIndices() == [2])
        #expect(file.invariantViolations() == [])
        try file.fsync()
        file.dropCaches()
        #expect(try file.read(count: 8, at: 8 * K + 100) == bytes)
        #expect(file.blockState(2) == .written)
        #expect(file.delallocBlockIndices() == [])
        #expect(fs.checkSpaceAccounting() == nil)
    }

    @Test("S14: a failed write over someone else's delalloc punches nothing")
    func s14() throws {
        // Goal: a write over delalloc left by an earlier writer that faults at once (written 0) runs no cleanup.
        let (fs, file) = makeFile()
        try file.truncate(to: 16 * K)
        let earlier = pattern(16 * K, seed: 3)
        #expect(try file.write(earlier, at: 0) == 16 * K)
        #expect(file.delallocBlockIndices() == [0, 1, 2, 3])
        file.recordPunches()
        #expect(throws: Errno.badAddress) { try file.write(pattern(16 * K, seed: 9), at: 0, faultOffset: 0) }
        #expect(file.recordedPunches == [])
        #expect(file.inode.stats.cleanups == 0)
        #expect(file.delallocBlockIndices() == [0, 1, 2, 3])
        #expect(try file.read(count: 16 * K, at: 0) == earlier)
        #expect(file.invariantViolations() == [])
        #expect(fs.checkSpaceAccounting() == nil)
    }

    // S15 (a failed write on a reflinked file punches COW-fork delalloc only) needs reflink,
    // which the engine does not have: there is no test for it, rather than a placeholder.

    @Test("S16: zeroing delalloc beyond EOF under truncate completes", .timeLimit(.minutes(1)))
    func s16() throws {
        // Goal: truncate down, then up over delalloc past EOF, finishes without self-deadlock and leaves exact bytes and reservations.
        let (fs, file) = makeFile()
        let data = pattern(16 * K, seed: 5)
        #expect(try file.write(data, at: 0) == 16 * K)
        try file.truncate(to: 5000)
        #expect(file.delallocBlockIndices() == [0, 1])
        try file._reserveDelalloc(fromBlock: 2, toBlock: 4)  // speculative preallocation past EOF
        try file.truncate(to: 20000)
        let expected = Array(data[0..<5000]) + [UInt8](repeating: 0, count: 15000)
        #expect(file.size == 20000)
        #expect(try file.read(count: 20000, at: 0) == expected)
        #expect(file.delallocBlockIndices() == [0, 1, 2, 3])
        #expect(file.invariantViolations() == [])
        try file.fsync()
        file.dropCaches()
        #expect(try file.read(count: 20000, at: 0) == expected)
        #expect(file.delallocBlockIndices() == [])
        #expect(file.blockState(4) == nil)
        #expect(fs.checkSpaceAccounting() == nil)
    }

    // MARK: S17: large offsets

    @Test(
        "S17: S2 and S7 at large offsets give the same punches shifted", arguments: [s2, s7],
        [(1 << 32) + (1 << 20), (1 << 44) - (1 << 20)])
    func s17(_ c: ReleaseCase, base: Int) throws {
        // Goal: the state moved to `base` punches the row's ranges shifted by base and keeps its blocks shifted by base / B.
        try expectRelease(c, base: base)
    }
}
