// Every path that puts bytes in front of a reader, run over poisoned folio memory: EOF tails,
// reads of partly uptodate folios, writeback of partial blocks, page_mkwrite of a new folio,
// zero range, punch hole, truncation, and folios made again after reclaim. Each case runs
// its operations on the engine and on a byte-array model, then compares the whole file (and
// the EOF page past EOF, through a mapping) with the model in the cache and again after
// fsync and a cache drop. A mismatch that is poison is memory never written or zeroed.

import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import PageCache
import Testing

struct PoisonPathCase: Sendable, CustomStringConvertible {
    var name: String
    var blockSize = 4096
    var maxFolioSize = 64 << 10
    /// Runs the operations on the file and returns the bytes the model says it holds.
    var run: @Sendable (ExtentFile) throws -> [UInt8]
    var description: String { name }
}

private func bytes(_ count: Int, _ value: UInt8) -> [UInt8] { [UInt8](repeating: value, count: count) }

private func placed(_ model: inout [UInt8], _ data: [UInt8], at offset: Int) {
    if model.count < offset + data.count { model += bytes(offset + data.count - model.count, 0) }
    model.replaceSubrange(offset..<(offset + data.count), with: data)
}

let poisonPathCases: [PoisonPathCase] = [
    PoisonPathCase(name: "a write ending mid-block: the EOF tail") { f in
        try f.write(bytes(100, 0xA1), at: 0)
        return bytes(100, 0xA1)
    },
    PoisonPathCase(name: "a write whose buffer faults mid-way, over a hole (1 KiB blocks)", blockSize: 1024) { f in
        try f.truncate(to: 65536)
        let written = try f.write(bytes(3000, 0x9E), at: 8492, faultOffset: 200)
        var m = bytes(65536, 0)
        placed(&m, bytes(written, 0x9E), at: 8492)
        return m
    },
    PoisonPathCase(name: "a read of a partly uptodate folio (1 KiB blocks)", blockSize: 1024) { f in
        try f.truncate(to: 16384)
        try f.write(bytes(1024, 0xB2), at: 5120)
        var m = bytes(16384, 0)
        placed(&m, bytes(1024, 0xB2), at: 5120)
        _ = try f.read(count: 16384, at: 0)
        return m
    },
    PoisonPathCase(name: "writeback of partial blocks (512-byte blocks)", blockSize: 512) { f in
        try f.truncate(to: 65536)
        try f.write(bytes(77, 0xC3), at: 8492)
        try f.write(bytes(300, 0xC4), at: 40001)
        _ = f.writeback()
        var m = bytes(65536, 0)
        placed(&m, bytes(77, 0xC3), at: 8492)
        placed(&m, bytes(300, 0xC4), at: 40001)
        return m
    },
    PoisonPathCase(name: "page_mkwrite of a new folio over a hole") { f in
        try f.truncate(to: 200_000)
        try f.mappedStore(bytes(8, 0xD5), at: 70000)
        var m = bytes(200_000, 0)
        placed(&m, bytes(8, 0xD5), at: 70000)
        return m
    },
    PoisonPathCase(name: "zero range and punch hole inside cached data (2 KiB blocks)", blockSize: 2048) { f in
        try f.write(bytes(50000, 0xE6), at: 0)
        try f.fsync()
        try f.zeroRange(offset: 1000, length: 3000, keepSize: true)
        try f.punchHole(offset: 20001, length: 9000)
        var m = bytes(50000, 0xE6)
        placed(&m, bytes(3000, 0), at: 1000)
        placed(&m, bytes(9000, 0), at: 20001)
        return m
    },
    PoisonPathCase(name: "truncate down mid-block, then up, then a write past EOF") { f in
        try f.write(bytes(10000, 0xF7), at: 0)
        try f.fsync()
        _ = f.dropCaches()
        try f.truncate(to: 5000)
        try f.truncate(to: 9000)
        try f.write(bytes(10, 0xF8), at: 20000)
        var m = bytes(5000, 0xF7) + bytes(4000, 0)
        placed(&m, bytes(10, 0xF8), at: 20000)
        return m
    },
    PoisonPathCase(name: "folios made again after reclaim, over unwritten extents") { f in
        try f.allocate(offset: 0, length: 131072, keepSize: false)
        try f.write(bytes(4000, 0x1A), at: 3)
        try f.fsync()
        _ = f.reclaim()
        try f.write(bytes(9, 0x1B), at: 65600)
        try f.mappedStore(bytes(3, 0x1C), at: 100000)
        var m = bytes(131072, 0)
        placed(&m, bytes(4000, 0x1A), at: 3)
        placed(&m, bytes(9, 0x1B), at: 65600)
        placed(&m, bytes(3, 0x1C), at: 100000)
        return m
    },
]

@Suite("No path shows poisoned folio memory")
struct PoisonPathTests {
    /// What differs between `got` and `want`, led by the poison message where it is poison.
    static func mismatch(_ got: [UInt8], _ want: [UInt8], _ when: String) -> String? {
        if got.count != want.count { return "\(when): \(got.count) bytes, the model has \(want.count)" }
        guard let i = (0..<got.count).first(where: { got[$0] != want[$0] }) else { return nil }
        return PoisonCheck.describe("\(when): byte \(i) is \(got[i]), the model has \(want[i])", got: got, expected: want, fileOffset: 0) {
            $0
        }
    }

    /// Runs a case and returns every mismatch found, in the cache and after fsync and a
    /// cache drop, including the EOF page past EOF as a mapping shows it.
    static func findings(_ c: PoisonPathCase, writeEnd: WriteEndPolicy = .zeroTail) throws -> [String] {
        FolioMemory.fill = .poison
        let fs = ExtentFS(
            memoryBytes: 16 << 20,
            config: ExtentFSConfig(blockSize: c.blockSize, maxFolioSize: c.maxFolioSize, writeEnd: writeEnd))
        let f = fs.createFile()
        let model = try c.run(f)
        var found: [String] = []
        for when in ["in the cache", "after fsync and a cache drop"] {
            if when != "in the cache" {
                try f.fsync()
                _ = f.dropCaches()
            }
            found += [mismatch(try f.read(count: model.count + 4096, at: 0), model, "\(c) \(when)")].compactMap { $0 }
            let tail = roundUp(f.size, pageSize) - f.size
            if tail > 0 {
                let got = try f.mappedLoad(count: tail, at: f.size)
                found += [mismatch(got, bytes(tail, 0), "\(c) \(when), the EOF page past EOF")].compactMap { $0 }
            }
        }
        found += f.invariantViolations()
        return found
    }

    @Test("the file reads as the model says, in the cache and after fsync and a cache drop", arguments: poisonPathCases)
    func holds(_ c: PoisonPathCase) throws {
        let found = try Self.findings(c)
        #expect(found.isEmpty, "\(found)")
    }

    @Test("canary: Linux's write end leaves poison after a write whose buffer faults, and this check names it")
    func canary() throws {
        let c = poisonPathCases.first { $0.name.hasPrefix("a write whose buffer faults") }!
        let found = try Self.findings(c, writeEnd: .kernel)
        #expect(found.first?.hasPrefix("poison at offset") == true, "\(found)")
    }
}
