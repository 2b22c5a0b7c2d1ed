// The steps and checks the scenario rows of docs/KERNEL-MODEL.md §10.1 and §10.3 share:
// the clean file most rows start from, a folio's per-block bits, and the end every row
// ends with (the content a fresh mount sees, then the invariants at a quiet point).

import IOMapBase
import PageCache
import Testing

@testable import ExtentFS

extension WriteTestKit {
    /// A rig whose file holds `size` bytes of `pattern(size, seed:)`, on disk and clean with
    /// an empty cache (`makeCleanFile`); returns the rig and those bytes.
    static func makeCleanRig(
        blockSize: Int, size: Int, seed: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> (Rig, [UInt8]) {
        let rig = makeRig(blockSize: blockSize)
        let old = pattern(size, seed: seed)
        try makeCleanFile(rig, old, sourceLocation: sourceLocation)
        return (rig, old)
    }

    /// The row's write: `bytes` written at `offset` through the write system call, which must
    /// return `returns` and leave i_size at `size`.
    static func write(
        _ rig: Rig, _ bytes: [UInt8], at offset: Int, returns: Int, size: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let n = try rig.file.write(bytes, at: offset)
        #expect(n == returns, sourceLocation: sourceLocation)
        #expect(rig.file.size == size, sourceLocation: sourceLocation)
    }

    /// The per-block uptodate and dirty bits of `folio` are `uptodate` and `dirty`.
    static func expectBlockBits(
        _ folio: Folio, uptodate: [Bool], dirty: [Bool], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let bits = blockBits(folio)
        #expect(bits.uptodate == uptodate, sourceLocation: sourceLocation)
        #expect(bits.dirty == dirty, sourceLocation: sourceLocation)
    }

    /// The end of a row: after a remount the rig's file holds `expected`, and the file and
    /// the file system are quiet (`expectQuiet`).
    static func expectRemountedContent(
        _ rig: Rig, _ expected: [UInt8], sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        #expect(try contentAfterRemount(rig.file, sourceLocation: sourceLocation) == expected, sourceLocation: sourceLocation)
        expectQuiet(rig, sourceLocation: sourceLocation)
    }

    /// The same end, with the cache checked first: before the remount `folio` holds the
    /// bytes of `expected` over the file offsets `fileRange`.
    static func expectRemountedContent(
        _ rig: Rig, _ expected: [UInt8], cachedIn folio: Folio, over fileRange: Range<Int>,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        expectFolioBytes(folio, equal: expected, over: fileRange, sourceLocation: sourceLocation)
        try expectRemountedContent(rig, expected, sourceLocation: sourceLocation)
    }

    /// The device reads since the log was last cleared are exactly one request for each run
    /// of `fileBlocks`, in order, at the run's disk address; each run must be contiguous on
    /// the disk for one request to read it.
    static func expectReads(
        _ rig: Rig, ofFileBlocks fileBlocks: [Range<Int>], sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        var expected: [DeviceIO] = []
        for run in fileBlocks {
            let start = try #require(diskBlock(of: run.lowerBound, in: rig.file), sourceLocation: sourceLocation)
            for block in run.dropFirst() {
                #expect(diskBlock(of: block, in: rig.file) == start + (block - run.lowerBound), sourceLocation: sourceLocation)
            }
            expected.append(DeviceIO(block: start, count: run.count))
        }
        #expect(rig.device.reads == expected, sourceLocation: sourceLocation)
    }

    /// The folio cached at `offset` of the rig's file, which must exist and span `range`.
    static func cachedFolio(
        _ rig: Rig, at offset: Int, spanning range: ByteRange, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> Folio {
        let folio = try #require(rig.file._folio(at: offset), sourceLocation: sourceLocation)
        #expect(folio.range == range, sourceLocation: sourceLocation)
        return folio
    }

    /// `folio` holds the bytes of `expected` over the file offsets `fileRange` (which it covers).
    static func expectFolioBytes(
        _ folio: Folio, equal expected: [UInt8], over fileRange: Range<Int>, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let inFolio = (fileRange.lowerBound - folio.pos)..<(fileRange.upperBound - folio.pos)
        #expect(bytes(of: folio, inFolio) == Array(expected[fileRange]), sourceLocation: sourceLocation)
    }
}

extension WriteTestKit.Hooks {
    /// Runs `action` once, at the first event at `point` that `matches`, as another thread
    /// acting at that moment would; later events at `point` run nothing.
    func onFirst(
        _ point: HookPoint, where matches: @escaping @Sendable (HookEvent) -> Bool = { _ in true },
        _ action: @escaping @Sendable (HookEvent) -> Void
    ) {
        let fired = WriteTestKit.Counter()
        on(point) { event in
            guard matches(event), fired.next() == 1 else { return }
            action(event)
        }
    }
}
