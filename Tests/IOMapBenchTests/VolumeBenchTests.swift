// Counterpart: none in the kernel; tests of the volume's rows of `iomap bench`.
//
// The volume's workloads, run in-process in their quick configuration so that none of them
// rots: every row comes back with its goal, a ratio that agrees with its times or its bound,
// and the figures its goal is judged on; the files a run makes are gone afterwards. No
// timing is asserted (see BenchTests.swift).

import Foundation
import IOMapBench
import IOMapKernelSide
import Testing

@Suite("iomap bench, the volume's rows, in-process")
struct VolumeBenchTests {
    @Test("quick volume-overwrite-4k and volume-namespace give well-formed rows")
    func quickInMemoryRows() throws {
        var config = BenchConfig(quick: true)
        config.workloads = [.volumeOverwrite4k, .volumeNamespace]
        let report = try runBench(config)
        #expect(
            report.results.map(\.name) == [
                "volume-overwrite-4k", "volume-create", "volume-create-log", "volume-setattr", "volume-rename", "volume-unlink",
            ])
        #expect(report.diskDirectory.isEmpty, "the in-memory rows need no disk directory")
        for r in report.results { checkShape(r) }
        let byName = Dictionary(uniqueKeysWithValues: report.results.map { ($0.name, $0) })

        // The volume against the plain engine: the ratio is plain / volume, the kernel detail.
        let overwrite = try #require(byName["volume-overwrite-4k"])
        let plain = try #require(overwrite.detail["plain_ns_per_op"])
        #expect(overwrite.kernelNsPerOp == nil && overwrite.detail["kernel_ns_per_op"] != nil)
        #expect(abs(try #require(overwrite.ratio) - plain / (try #require(overwrite.engineNsPerOp))) <= 1e-9)

        for call in ["volume-create", "volume-setattr", "volume-rename", "volume-unlink"] {
            let r = try #require(byName[call])
            #expect(r.kernelNsPerOp != nil, "\(call) has tmpfs beside it")
            #expect(r.detail["files"] == 625, "\(call): 10,000 files at 1/16")
            #expect(r.detail["io_in_timed_loops"] != nil)
            #expect((r.detail["log_bytes_per_op"] ?? 0) > 0, "\(call) logged nothing")
        }
        // The log bytes per create are held to a bound: the ratio is the bytes over it.
        let log = try #require(byName["volume-create-log"])
        let bytes = try #require(log.detail["log_bytes_per_create"])
        #expect(bytes == byName["volume-create"]?.detail["log_bytes_per_op"])
        #expect(abs(try #require(log.ratio) - bytes / 300) <= 1e-9)
        #expect(log.holds == (bytes <= 300))
    }

    @Test("quick disk rows run in given directories, count flushes and batches, and leave nothing behind")
    func quickDiskRows() throws {
        try HostFiles.withTemporaryDirectory(prefix: "bench-test") { kernelDir in
            try HostFiles.withTemporaryDirectory(prefix: "bench-test") { diskDir in
                var config = BenchConfig(quick: true)
                config.workloads = [.volumeFsync, .volumeFsync8t, .volumeSnapshot, .volumeMkfs, .volumeMount]
                config.kernelDirectory = kernelDir
                config.diskDirectory = diskDir
                let report = try runBench(config)
                #expect(
                    report.results.map(\.name) == [
                        "volume-fsync-overwrite", "volume-fsync-append", "volume-fsync-clean", "volume-fsync-8t", "volume-snapshot",
                        "volume-mkfs", "volume-mount",
                    ])
                for r in report.results { checkShape(r) }
                try checkDiskRows(Dictionary(uniqueKeysWithValues: report.results.map { ($0.name, $0) }))
                #expect(try FileManager.default.contentsOfDirectory(atPath: kernelDir) == [])
                #expect(try FileManager.default.contentsOfDirectory(atPath: diskDir) == [])
            }
        }
    }

    /// What the disk rows report beside their times.
    func checkDiskRows(_ byName: [String: BenchResult]) throws {
        for name in ["volume-fsync-overwrite", "volume-fsync-append", "volume-fsync-clean"] {
            let r = try #require(byName[name])
            #expect(r.kernelNsPerOp != nil && r.detail["memory_ns_per_op"] != nil)
            let least = try #require(r.detail["min_flushes_per_fsync"])
            let most = try #require(r.detail["max_flushes_per_fsync"])
            let mean = try #require(r.detail["flushes_per_fsync"])
            #expect(least <= mean && mean <= most, "\(name): flushes \(least) ≤ \(mean) ≤ \(most)")
        }
        // The threaded row: its ratio is the 8-thread rate over the 1-thread rate, and a batch
        // holds at least one fsync.
        let threaded = try #require(byName["volume-fsync-8t"])
        #expect(threaded.kernelNsPerOp == nil)
        let one = try #require(threaded.detail["fsyncs_per_s_1_thread"])
        let eight = try #require(threaded.detail["fsyncs_per_s_8_threads"])
        #expect(abs(try #require(threaded.ratio) - eight / one) <= 1e-9 * eight / one)
        #expect((threaded.detail["fsyncs_per_batch"] ?? 0) >= 1)
        #expect(threaded.detail["kernel_scaling"] != nil && threaded.detail["memory_flushes_per_batch"] != nil)
        // The bounded rows: time over the bound.
        for (name, bound) in [("volume-snapshot", 0.5e9), ("volume-mkfs", 1e9), ("volume-mount", 1e9)] {
            let r = try #require(byName[name])
            let e = try #require(r.engineNsPerOp)
            #expect(abs(try #require(r.ratio) - e / bound) <= 1e-9 * e / bound, "\(name)")
        }
        #expect(byName["volume-snapshot"]?.detail["inodes"] == 6_201, "62 directories of 99 files and the root")
        let mount = try #require(byName["volume-mount"])
        let full = try #require(mount.detail["log_full_fraction"])
        #expect(full > 0.99 && full <= 1, "the log was filled to \(full)")
        #expect((mount.detail["checkpoints_replayed"] ?? 0) > 1)
    }

    @Test("--only names the volume's workloads and rows; the disk rows ask for the disk directory")
    func parseNames() throws {
        #expect(try BenchWorkload.parse("volume-unlink,volume-create-log").get() == [.volumeNamespace])
        #expect(try BenchWorkload.parse("volume-fsync-clean").get() == [.volumeFsync])
        #expect(try BenchWorkload.parse("volume-fsync-8t,volume-fsync").get() == [.volumeFsync, .volumeFsync8t])
        #expect(try BenchWorkload.parse("volume-mount,overwrite-4k").get() == [.overwrite4k, .volumeMount])
        #expect(
            BenchWorkload.allCases.filter(\.needsDiskDirectory) == [
                .writebackFsync, .volumeFsync, .volumeFsync8t, .volumeSnapshot, .volumeMkfs, .volumeMount,
            ])
        // Every workload produces rows, or (the scaling workloads) curves.
        for w in BenchWorkload.allCases { #expect(w.rowNames.isEmpty == w.isScaling && w.curveNames.isEmpty != w.isScaling) }
    }
}
