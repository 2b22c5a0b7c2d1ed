// `iomap difftest`'s engine: the running kernel as the oracle for every result, errno, size
// and byte, on a file in a temporary directory; and its canary, a deliberately wrong engine.

import ExtentFS
import Foundation
#if canImport(Glibc)
    import Glibc
#endif
import IOMap
import IOMapBase
import IOMapKernelSide
import IOMapTesting
import Testing

/// A new temporary directory, removed by `body`'s end.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    try HostFiles.withTemporaryDirectory(prefix: "iomap-difftest-test", body)
}

@Suite("Differential test against the kernel")
struct DiffTestTests {
    @Test("random fsx ops, mapread and mapwrite included, agree with the kernel op by op", arguments: 0..<3)
    func agrees(entry: Int) throws {
        var config = DiffConfig(seed: randomTestSeed() &+ UInt64(entry))
        config.ops = 6000
        config.blockSize = [4096, 1024, 512][entry]
        print("difftest: seed \(config.seed), \(config.ops) ops, block size \(config.blockSize)")
        let r = try withTemporaryDirectory { try runDiffTest(config, directory: $0) }
        #expect(r.mismatches == 0, "\(r.firstMismatch.map(String.init(describing:)) ?? "")")
        #expect(r.compared > 5000)
        #expect(r.log.contains { if case .op(let op) = $0 { op.name == .mapwrite } else { false } })
    }

    @Test("the engine side on a volume's file agrees with the kernel as the engine alone does")
    func onVolume() throws {
        var config = DiffConfig(seed: 11)
        config.ops = 5000
        config.backing = .volume
        let r = try withTemporaryDirectory { try runDiffTest(config, directory: $0) }
        #expect(r.mismatches == 0, "\(r.firstMismatch.map(String.init(describing:)) ?? "")")
        #expect(r.compared > 1000)
    }

    @Test("the log fstests' fsx recorded on XFS replays with no mismatch")
    func sampleLog() throws {
        let entries = try FsxLog.parse(try fsxSampleLogForKernelSide())
        let r = try withTemporaryDirectory { try runDiffTest(DiffConfig(seed: 1), replay: entries, directory: $0) }
        #expect(r.mismatches == 0, "\(r.firstMismatch.map(String.init(describing:)) ?? "")")
        #expect(r.ops == 2000 - 734)
    }

    @Test("canary: an engine that skips zeroing the EOF block on truncate down is caught, with the op index")
    func canary() throws {
        var config = DiffConfig(seed: 1)
        config.ops = 5000
        config.canary = true
        let bad = try withTemporaryDirectory { try runDiffTest(config, directory: $0) }
        let m = try #require(bad.firstMismatch)
        #expect(m.opIndex > 0 && m.opIndex <= bad.entries)
        // A truncate down came before it.
        #expect(
            bad.log.prefix(m.opIndex).contains {
                if case .op(let op) = $0 { op.name == .truncate && op.newSize < op.sizeBefore } else { false }
            })
        config.canary = false
        let good = try withTemporaryDirectory { try runDiffTest(config, directory: $0) }
        #expect(good.mismatches == 0, "\(good.firstMismatch.map(String.init(describing:)) ?? "")")
    }

    static var canMountXFS: Bool { geteuid() == 0 && FileManager.default.fileExists(atPath: "/dev/loop-control") }

    @Test(
        "on a loop-mounted XFS, SEEK_DATA and SEEK_HOLE answers agree too (one-page folios, probes after a sync and a cache drop)",
        .enabled(if: canMountXFS, "mounting an XFS image needs root and loop devices: the SEEK comparison is skipped"),
        arguments: 0..<2)
    func xfsSeek(entry: Int) throws {
        let mount = try XFSLoopMount.make(sizeBytes: 512 << 20)
        defer { mount.unmount() }
        var config = DiffConfig(seed: randomTestSeed() &+ 100 &+ UInt64(entry))
        config.ops = 3000
        config.maxFolioSize = 4096
        config.compareSeek = true
        print("difftest on XFS: seed \(config.seed), \(config.ops) ops, SEEK probes every \(config.seekEvery) ops")
        let r = try runDiffTest(config, directory: mount.mountPoint)
        #expect(r.dirFSType == "xfs")
        #expect(r.seekProbes > 1000)
        #expect(r.mismatches == 0, "\(r.firstMismatch.map(String.init(describing:)) ?? "")")
    }
}

/// The log fstests' fsx recorded on XFS, kept with the engine-only tests' fixtures.
func fsxSampleLogForKernelSide() throws -> String {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../IOMapTestingTests/Fixtures/fsx-sample.fsxops")
    return try String(contentsOf: url, encoding: .utf8)
}
