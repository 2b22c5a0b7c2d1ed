// Scenario tests for a short copy into blocks that write-begin zeroed around the write: the
// bytes of the write's range the copy did not reach must never show what the folio's memory
// held. Folio memory is poisoned (FolioMemory.fill), so stale memory is recognisable; under
// WriteEndPolicy.kernel the engine does what Linux's __iomap_write_end does, and the same
// tests find the poison (the canary).

import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Testing

/// One short-copy case: a write of `length` bytes at `offset` whose buffer is readable for
/// its first `readable` bytes only.
struct ShortCopyCase: Sendable, CustomStringConvertible {
    var name: String
    var blockSize = 4096
    var maxFolioSize = 4096
    var offset: Int
    var length: Int
    var readable: Int
    /// Over a preallocated (unwritten) range instead of a hole.
    var unwritten = false

    var description: String { name }

    static let all = [
        // One block per folio: the fill makes the folio uptodate and the short copy is accepted.
        ShortCopyCase(name: "4 KiB blocks, into a hole", offset: 8492, length: 300, readable: 100),
        // Several blocks per folio: the short copy is rejected, then retried with what copied.
        ShortCopyCase(name: "1 KiB blocks, into a hole", blockSize: 1024, offset: 8492, length: 3000, readable: 200),
        ShortCopyCase(name: "a 64 KiB folio", maxFolioSize: 64 << 10, offset: 64 << 10, length: 64 << 10, readable: 200),
        ShortCopyCase(name: "4 KiB blocks, into an unwritten extent", offset: 8492, length: 300, readable: 100, unwritten: true),
        ShortCopyCase(
            name: "512-byte blocks, 16 KiB folio", blockSize: 512, maxFolioSize: 16 << 10, offset: 700, length: 9000, readable: 33),
    ]
}

/// What a short copy left behind: bytes outside what the write reported written that are not
/// zero, and how many of them are poison, in the cache and after fsync and a cache drop.
struct ShortCopyOutcome: Equatable {
    var written = 0
    var staleInCache = 0
    var poisonInCache = 0
    var staleOnDisk = 0
    var poisonOnDisk = 0
}

func runShortCopy(_ c: ShortCopyCase, writeEnd: WriteEndPolicy) throws -> ShortCopyOutcome {
    // The checks below need memory that is not zero to begin with. Poison is the verify
    // build's default already; setting it here makes the test mean the same in any build.
    FolioMemory.fill = .poison
    let fs = ExtentFS(
        memoryBytes: 16 << 20,
        config: ExtentFSConfig(blockSize: c.blockSize, maxFolioSize: c.maxFolioSize, writeEnd: writeEnd))
    let file = fs.createFile()
    let size = 256 << 10
    if c.unwritten { try file.allocate(offset: 0, length: size, keepSize: false) } else { try file.truncate(to: size) }
    try file.fsync()
    _ = file.dropCaches()
    let data = [UInt8](repeating: 0x77, count: c.length)
    var outcome = ShortCopyOutcome()
    outcome.written = try file.write(data, at: c.offset, faultOffset: c.readable)
    func count(_ image: [UInt8]) -> (stale: Int, poison: Int) {
        var stale = 0, poison = 0
        for (i, b) in image.enumerated() where b != 0 && !(i >= c.offset && i < c.offset + outcome.written) {
            stale += 1
            if FolioMemory.isPoison(b, atFileOffset: i) { poison += 1 }
        }
        return (stale, poison)
    }
    (outcome.staleInCache, outcome.poisonInCache) = count(try file.read(count: size, at: 0))
    try file.fsync()
    _ = file.dropCaches()
    (outcome.staleOnDisk, outcome.poisonOnDisk) = count(try file.read(count: size, at: 0))
    #expect(file.invariantViolations().isEmpty, "\(file.invariantViolations())")
    return outcome
}

@Suite("Short copies never expose folio memory")
struct ShortCopyTests {
    @Test("a short copy leaves zeroes, in the cache and on disk, wherever it did not reach", arguments: ShortCopyCase.all)
    func zeroTail(_ c: ShortCopyCase) throws {
        let o = try runShortCopy(c, writeEnd: .zeroTail)
        #expect(o.written == c.readable, "the write returns what its buffer let it copy")
        #expect(o.staleInCache == 0 && o.staleOnDisk == 0, "\(c): \(o)")
    }

    @Test("canary: the kernel's write end leaves poison readable in the cache and writes it to disk")
    func kernelWriteEnd() throws {
        let c = ShortCopyCase.all[0]
        let o = try runShortCopy(c, writeEnd: .kernel)
        #expect(o.written == c.readable)
        // [8592, 8792): the 200 bytes the copy did not reach, all poison, in the cache and on disk.
        #expect(o.poisonInCache == c.length - c.readable && o.staleInCache == o.poisonInCache, "\(o)")
        #expect(o.poisonOnDisk == c.length - c.readable && o.staleOnDisk == o.poisonOnDisk, "\(o)")
    }

    @Test("canary: with several blocks per folio the kernel's write end leaves poison after the retry")
    func kernelWriteEndRetry() throws {
        let o = try runShortCopy(ShortCopyCase.all[1], writeEnd: .kernel)
        #expect(o.poisonInCache > 0, "\(o)")
    }
}
