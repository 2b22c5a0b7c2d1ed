// `iomap fsx`'s engine: the fsx log format (parsing, formatting, errors with line numbers),
// record and replay, the canary (the pre-seed cleanup is caught and minimized), and the
// random matrix across block sizes and at a large offset base.

import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapTesting
import PageCache
import Testing

/// The log fstests' fsx recorded on XFS, kept beside this file.
func fsxSampleLog() throws -> String {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fsx-sample.fsxops")
    return try String(contentsOf: url, encoding: .utf8)
}

@Suite("fsx")
struct FsxTests {
    @Test("the sample lines of the fsx op-log format (docs/TESTING.md) parse, and format back to themselves")
    func sampleLines() throws {
        let text = """
            write 0xdc5f 0x2539 0x0
            mapread 0xc8de 0x38ba 0x10198
            zero_range 0x15ef9 0x1238 0x35628 keep_size
            punch_hole 0x14e22 0x2b61 0x35628
            fallocate 0x0 0x1000 0x0 keep_size
            truncate 0x0 0x10 0x1000
            """
        let entries = try FsxLog.parse(text)
        #expect(entries.count == 6)
        guard case .op(let z) = entries[2] else { Issue.record("not an op"); return }
        #expect(z.name == .zero_range && z.args == [0x15ef9, 0x1238, 0x35628] && z.keepSize)
        guard case .op(let t) = entries[5] else { Issue.record("not an op"); return }
        #expect(t.name == .truncate && t.newSize == 0x10 && t.sizeBefore == 0x1000)
        #expect(FsxLog.format(entries) == text + "\n")
    }

    @Test("the log fstests' fsx recorded on XFS parses: every line, skips and four-argument ops included")
    func realLogParses() throws {
        let entries = try FsxLog.parse(try fsxSampleLog())
        #expect(entries.count == 2000)
        let ops = entries.compactMap { e -> FsxOp? in if case .op(let o) = e { return o } else { return nil } }
        #expect(ops.filter(\.skip).count == 734)
        #expect(ops.contains { $0.name == .copy_range && $0.args.count == 4 })
        let runnable = ops.filter { !$0.skip }.allSatisfy { $0.name.isSupported }
        #expect(runnable)
    }

    @Test(
        "a malformed log is rejected with the line number and why",
        arguments: [
            ("write 0x10 0x20 0x0\nfrobnicate 1 2 3\n", 2, "unknown operation 'frobnicate'"),
            ("write 0x10 0x20\n", 1, "write needs 3 numbers, found 2"),
            ("# c\n\nread 0x10 zz 0x0\n", 3, "'zz' is not"),
            ("write 0x10 0x20 0x0 sideways\n", 1, "unknown flag 'sideways'"),
            ("punch_hole 0x0 0x10 0x20 keep_size\n", 1, "keep_size applies to fallocate and zero_range only"),
            ("#@ fault short-copy 0x0 3\n", 1, "must follow the operation"),
            ("write 0x0 0x10 0x0\n#@ fault nosuch 0x0 1\n", 2, "#@ fault needs a site"),
            ("read 0x0 0x10 0x0\n#@ race mapwrite 0x0 0x4\n", 2, "must follow the write"),
            ("copy_range 0x0 0x10 0x0\n", 1, "copy_range needs 4 numbers, found 3"),
            ("write 0x0 0x10 0x0\n#@ race sideways 0x0\n", 2, "#@ race needs"),
            ("write 0x0 0x10 0x0\n#@ race writeback 0x0 0x4\n", 2, "#@ race needs"),
        ])
    func malformed(text: String, line: Int, reason: String) {
        do {
            _ = try FsxLog.parse(text)
            Issue.record("the log parsed: \(text)")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.reason.contains(reason), "\(error)")
        }
    }

    @Test("race lines of every kind parse and format back to themselves; a store's line is the one older logs hold")
    func raceKinds() throws {
        let text = """
            write 0x0 0x2000 0x0
            #@ race mapwrite 0x100 0x4
            write 0x0 0x2000 0x2000
            #@ race writeback 0x1000
            write_dontcache 0x0 0x2000 0x2000
            #@ race reclaim 0x1000
            """
        let entries = try FsxLog.parse(text)
        let races = entries.compactMap { e -> FsxRace? in if case .op(let o) = e { o.race } else { nil } }
        #expect(
            races == [FsxRace(.mapwrite, offset: 0x100, length: 4), FsxRace(.writeback, offset: 0x1000), FsxRace(.reclaim, offset: 0x1000)])
        #expect(FsxLog.format(entries) == text + "\n")
    }

    @Test("a recorded log replays to the same final image, faults and races included")
    func roundTrip() throws {
        var config = FsxConfig(seed: baseSeed())
        config.ops = 20_000
        config.blockSize = 1024
        config.maxFolioSize = 16 << 10
        let first = runFsx(config)
        #expect(first.violation == nil, "\(first.violation?.what ?? "")")
        let log = FsxLog.format(first.entries)
        #expect(log.contains("#@ fault") && log.contains("#@ race mapwrite") && log.contains("close_open"))
        let parsed = try FsxLog.parse(log)
        #expect(parsed == first.entries)
        let second = runFsx(config, replay: parsed)
        #expect(second.violation == nil)
        #expect(second.actualImage == first.actualImage)
        #expect(second.expectedImage == first.expectedImage)
        #expect(second.faultsInjected == first.faultsInjected)
        #expect(FsxLog.format(second.entries) == log)
    }

    @Test("fsx's own log replays on the engine from an empty file and matches the model")
    func realLogReplays() throws {
        let r = runFsx(FsxConfig(seed: 1), replay: try FsxLog.parse(try fsxSampleLog()))
        #expect(r.violation == nil, "\(r.violation?.what ?? "")")
        #expect(r.opsByKind.values.reduce(0, +) == 2000 - 734)
    }

    @Test("an op the engine does not run is reported by name, or counted with skipUnsupported")
    func unsupported() throws {
        let entries = try FsxLog.parse("write 0x0 0x2000 0x0\ncollapse_range 0x0 0x1000 0x2000\nread 0x0 0x1000 0x2000\n")
        let strict = runFsx(FsxConfig(seed: 1), replay: entries)
        #expect(strict.violation?.what.contains("collapse_range") == true)
        var c = FsxConfig(seed: 1)
        c.skipUnsupported = true
        let lenient = runFsx(c, replay: entries)
        #expect(lenient.violation == nil)
        #expect(lenient.skippedUnsupported == ["collapse_range": 1])
    }

    @Test("canary: the pre-seed cleanup is caught on a pinned seed, minimized to a few ops; preserve-dirty passes it")
    func canary() {
        var config = FsxConfig(seed: 6)
        config.ops = 30_000
        config.policy = .truncatePageCache
        let bad = runFsx(config)
        #expect(bad.violation != nil, "truncate-page-cache went uncaught on seed 6")
        let minimized = minimizeFsx(config, bad.entries)
        #expect(minimized.count <= 24, "minimized to \(minimized.count) entries")
        #expect(runFsx(config, replay: minimized).violation != nil)
        // The minimized log shows the seed's race: a write failing on its buffer while a
        // store through the mapping lands in its range.
        #expect(minimized.contains { if case .op(let op) = $0 { op.race != nil && !op.faults.isEmpty } else { false } })
        config.policy = .preserveDirty
        #expect(runFsx(config).violation == nil)
        #expect(runFsx(config, replay: minimized).violation == nil)
    }

    @Test("canary: the kernel's write end leaves poison after a short copy; fsx finds it within 10,000 ops and minimizes it")
    func kernelWriteEndIsCaught() {
        FolioMemory.fill = .poison
        var config = FsxConfig(seed: 1)
        config.ops = 10_000
        config.writeEnd = .kernel
        let bad = runFsx(config)
        guard let v = bad.violation else {
            Issue.record("the kernel's write end went uncaught in 10,000 ops of seed 1")
            return
        }
        #expect(v.what.hasPrefix("poison at offset"), "\(v.what)")
        let minimized = minimizeFsx(config, bad.entries)
        #expect(minimized.count <= 4, "minimized to \(minimized.count) entries")
        #expect(runFsx(config, replay: minimized).violation?.what.hasPrefix("poison at offset") == true)
        // A short write: the minimized log holds a write whose buffer faulted or whose copy came up short.
        #expect(minimized.contains { if case .op(let op) = $0 { op.name == .write && !op.faults.isEmpty } else { false } })
        config.writeEnd = .zeroTail
        #expect(runFsx(config, replay: minimized).violation == nil)
        #expect(runFsx(config).violation == nil)
    }

    static let matrix: [(blockSize: Int, maxFolioSize: Int)] = [(512, 4096), (1024, 64 << 10), (2048, 16 << 10), (4096, 2 << 20)]

    @Test("random fsx ops with every fault site keep data and invariants", arguments: matrix.indices)
    func matrixHolds(entry: Int) {
        var config = FsxConfig(seed: baseSeed() &+ UInt64(entry))
        config.ops = 60_000
        config.blockSize = Self.matrix[entry].blockSize
        config.maxFolioSize = Self.matrix[entry].maxFolioSize
        print("fsx: seed \(config.seed) ops \(config.ops) block \(config.blockSize) folio \(config.maxFolioSize)")
        let r = runFsx(config)
        #expect(r.violation == nil, "\(r.violation?.what ?? ""); seed \(config.seed)")
        // Every fault site fired.
        #expect(Set(r.faultsInjected.keys) == Set(FaultSite.allCases.map(\.rawValue)), "\(r.faultsInjected)")
        #expect(r.cleanupCalls > 0)
    }

    @Test("the same sequence runs at offset base 2^44")
    func offsetBase() {
        var config = FsxConfig(seed: baseSeed())
        config.ops = 20_000
        config.offsetBase = 1 << 44
        let high = runFsx(config)
        #expect(high.violation == nil, "\(high.violation?.what ?? "")")
        config.offsetBase = 0
        let low = runFsx(config)
        #expect(high.actualImage == low.actualImage)
    }
}
