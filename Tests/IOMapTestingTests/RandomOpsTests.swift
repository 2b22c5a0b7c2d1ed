// The seeded randomized test of issue 2, fsx with the random runner's preset: random operation
// sequences, with injected short and zero-byte copies, stale mappings, ENOSPC and read errors, and with mapped stores,
// writebacks and reclaims landing inside failing writes, checked against a byte-array
// model and the invariants of docs/KERNEL-MODEL.md §8 after every operation. Every run prints its
// configuration; a failure prints the line that replays it and the last operations.
//
// Set IOMAP_RANDOM_SEED to run the whole matrix with another seed.

import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapTesting
import PageCache
import Testing

/// The matrix: every block size with folio maxima from 4 KiB to 2 MiB.
let randomMatrix: [(blockSize: Int, maxFolioSize: Int)] = [
    (512, 4096), (512, 64 << 10), (512, 2 << 20),
    (1024, 4096), (1024, 16 << 10), (1024, 256 << 10),
    (4096, 4096), (4096, 64 << 10), (4096, 2 << 20),
]

/// Operations per matrix entry; nine entries make at least 100,000 in all.
let randomOpsPerEntry = 20_000

func baseSeed() -> UInt64 { randomTestSeed() }

func describe(_ r: RandomRunReport) -> String {
    var s = "violation at op \(r.violationOp ?? -1): \(r.violation ?? "none")\n\(r.replayLine)\nlast operations:\n"
    s += r.logTail.suffix(20).map { "  \($0)" }.joined(separator: "\n")
    return s
}

@Suite("Randomized operations against the model")
struct RandomOpsTests {
    @Test("random ops with faults and races keep data and invariants (preserve-dirty)", arguments: randomMatrix.indices)
    func preserveDirtyHolds(entry: Int) {
        let (bs, folio) = randomMatrix[entry]
        let config = RandomRunConfig(
            seed: baseSeed() &+ UInt64(entry), ops: randomOpsPerEntry, blockSize: bs, maxFolioSize: folio)
        print("random run: \(config)")
        let r = runRandomOps(config)
        #expect(r.violation == nil, "\(describe(r))")
        #expect(r.opsRun == randomOpsPerEntry)
        // A run in which nothing failed or raced proves nothing.
        #expect(r.failedWrites + r.shortWrites > 100, "only \(r.failedWrites + r.shortWrites) failed or short writes")
        #expect(r.cleanups > 100, "only \(r.cleanups) failure cleanups ran")
        #expect(r.racesLanded > 100, "only \(r.racesLanded) races landed inside writes")
        #expect((r.faultsInjected["short-copy"] ?? 0) > 0 && (r.faultsInjected["stale-mid"] ?? 0) > 0)
        #expect((r.faultsInjected["enospc"] ?? 0) > 0 && (r.faultsInjected["zero-copy"] ?? 0) > 0)
    }

    @Test("canary: truncate-page-cache loses data the model keeps", arguments: [(4096, 4096), (1024, 64 << 10), (512, 2 << 20)])
    func truncatePageCacheIsCaught(bs: Int, folio: Int) {
        let config = RandomRunConfig(
            seed: baseSeed(), ops: randomOpsPerEntry, blockSize: bs, maxFolioSize: folio, policy: .truncatePageCache)
        print("canary run: \(config)")
        let r = runRandomOps(config)
        #expect(r.violation != nil, "the pre-seed cleanup ran \(r.opsRun) ops without being caught")
        print("canary caught at op \(r.violationOp ?? -1): \(r.violation ?? "")")
    }

    @Test("canary: the kernel's EOF rounding leaves dirty data without a reservation")
    func kernelEOFRoundingIsCaught() {
        var found = false
        for seed in 0..<UInt64(8) where !found {
            let config = RandomRunConfig(
                seed: baseSeed() &+ seed, ops: randomOpsPerEntry, blockSize: 1024, maxFolioSize: 4096, eofRounding: .kernel)
            let r = runRandomOps(config)
            if let v = r.violation {
                print("kernel EOF rounding caught (\(config)): \(v)")
                found = true
            }
        }
        #expect(found, "eight runs with the kernel's EOF rounding found nothing")
    }

    @Test("canary: the kernel's write end leaves poison after a short copy", arguments: [(4096, 4096), (1024, 64 << 10)])
    func kernelWriteEndIsCaught(bs: Int, folio: Int) {
        FolioMemory.fill = .poison
        var config = RandomRunConfig(seed: baseSeed(), ops: randomOpsPerEntry, blockSize: bs, maxFolioSize: folio)
        config.writeEnd = .kernel
        print("canary run: \(config)")
        let r = runRandomOps(config)
        #expect(r.violation?.hasPrefix("poison at offset") == true, "\(r.violation ?? "no violation in \(r.opsRun) ops")")
    }

    @Test("the preset's fsx log replays exactly: the same images and faults, every race kind included")
    func presetLogReplays() throws {
        let config = RandomRunConfig(seed: baseSeed(), ops: 5000, blockSize: 1024, maxFolioSize: 16 << 10)
        let r = runRandomOps(config)
        #expect(r.violation == nil, "\(describe(r))")
        let first = try #require(r.fsx)
        let log = FsxLog.format(first.entries)
        for kind in FsxRaceKind.allCases { #expect(log.contains("#@ race \(kind.rawValue) "), "no \(kind.rawValue) race in the log") }
        let second = runFsx(config.fsxConfig, replay: try FsxLog.parse(log))
        #expect(second.violation == nil, "\(second.violation?.what ?? "")")
        #expect(second.actualImage == first.actualImage)
        #expect(second.expectedImage == first.expectedImage)
        #expect(second.faultsInjected == first.faultsInjected)
        #expect(FsxLog.format(second.entries) == log)
    }

    @Test("the same seed replays the same run")
    func replayIsDeterministic() {
        let config = RandomRunConfig(seed: baseSeed(), ops: 2000, blockSize: 1024, maxFolioSize: 16 << 10)
        let a = runRandomOps(config)
        let b = runRandomOps(config)
        #expect(a.logTail == b.logTail)
        #expect(a.opsByKind == b.opsByKind)
        #expect(a.faultsInjected == b.faultsInjected)
    }
}
