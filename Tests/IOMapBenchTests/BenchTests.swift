// Counterpart: none in the kernel; tests of the fio-like harness behind `iomap bench`.
//
// `iomap bench`'s workloads, run in-process in their quick configuration so that none of
// them rots: every row comes back with its goal, finite positive times and a ratio that
// agrees with them, and the files a run makes are gone afterwards. No timing is asserted:
// the numbers depend on the machine and on whatever else the test run is doing.

import Foundation
import IOMapBench
import IOMapKernelSide
import Testing

/// Checks what every row promises, whatever the machine.
func checkShape(_ r: BenchResult) {
    #expect(r.error == nil, "\(r.name): \(r.error ?? "")")
    #expect(!r.goal.isEmpty, "\(r.name) has no goal")
    for (label, value) in [("engine", r.engineNsPerOp), ("kernel", r.kernelNsPerOp), ("memcpy", r.memcpyNsPerOp)] {
        if let value { #expect(value.isFinite && value > 0, "\(r.name): \(label) time \(value)") }
    }
    for (key, value) in r.detail { #expect(value.isFinite, "\(r.name): detail \(key) = \(value)") }
    guard let ratio = r.ratio else {
        Issue.record("\(r.name) has no ratio")
        return
    }
    #expect(ratio.isFinite)
    if let e = r.engineNsPerOp, let k = r.kernelNsPerOp {
        #expect(abs(ratio - k / e) <= 1e-9 * ratio, "\(r.name): ratio \(ratio) but kernel / engine is \(k / e)")
    }
}

@Suite("iomap bench, in-process")
struct BenchTests {
    @Test("quick overwrite-4k, seek-data and cleanup give well-formed rows")
    func quickRows() throws {
        var config = BenchConfig(quick: true)
        config.workloads = [.overwrite4k, .seekData, .cleanup]
        var lines: [String] = []
        let report = try runBench(config) { lines.append($0) }
        #expect(report.results.map(\.name) == ["overwrite-4k", "seek-data", "cleanup"])
        #expect(report.failures.isEmpty)
        #expect(report.repetitions == 5 && report.quick)
        #expect(!report.kernelDirFSType.isEmpty)
        #expect(lines.contains { $0.contains("repetition 5/5") }, "no progress lines: \(lines)")
        for r in report.results { checkShape(r) }

        let byName = Dictionary(uniqueKeysWithValues: report.results.map { ($0.name, $0) })
        let overwrite = try #require(byName["overwrite-4k"])
        #expect(overwrite.kernelNsPerOp != nil && overwrite.memcpyNsPerOp != nil)
        #expect(overwrite.detail["engine_over_memcpy"] != nil)
        let seek = try #require(byName["seek-data"])
        #expect(seek.kernelNsPerOp != nil && seek.memcpyNsPerOp == nil)
        // cleanup has no kernel side; its ratio is the largest range's time over the smallest's.
        let cleanup = try #require(byName["cleanup"])
        #expect(cleanup.kernelNsPerOp == nil && cleanup.memcpyNsPerOp == nil)
        let smallest = try #require(cleanup.detail["ns_per_op_64KiB"])
        let largest = try #require(cleanup.detail["ns_per_op_64GiB"])
        #expect(cleanup.detail["ns_per_op_64MiB"] != nil)
        #expect(cleanup.engineNsPerOp == largest)
        #expect(abs(try #require(cleanup.ratio) - largest / smallest) <= 1e-9 * largest / smallest)
        #expect(cleanup.detail["punches_per_cleanup"] == 9, "8 dirty folios inside the range leave 9 holes to punch")
    }

    @Test("quick append-1m, writeback-fsync and live-hooks run in given directories and leave nothing behind")
    func quickFilesRemoved() throws {
        try HostFiles.withTemporaryDirectory(prefix: "bench-test") { kernelDir in
            try HostFiles.withTemporaryDirectory(prefix: "bench-test") { diskDir in
                var config = BenchConfig(quick: true)
                config.workloads = [.append1m, .writebackFsync, .liveHooks]
                config.kernelDirectory = kernelDir
                config.diskDirectory = diskDir
                let report = try runBench(config)
                #expect(report.results.map(\.name) == ["append-1m", "writeback-fsync", "live-hooks"])
                for r in report.results { checkShape(r) }
                let hooks = try #require(report.results.last)
                #expect(hooks.kernelNsPerOp == nil, "live-hooks has no kernel side")
                let live = try #require(hooks.detail["live_ns_per_op"])
                let ratio = try #require(hooks.ratio)
                #expect(abs(ratio - (try #require(hooks.engineNsPerOp) / live - 1)) <= 1e-9)
                #expect(report.kernelDirectory == kernelDir && report.diskDirectory == diskDir)
                #expect(try FileManager.default.contentsOfDirectory(atPath: kernelDir) == [])
                #expect(try FileManager.default.contentsOfDirectory(atPath: diskDir) == [])
            }
        }
    }

    @Test("--only names: workloads and memory's rows are known, anything else is named back")
    func parseNames() throws {
        #expect(try BenchWorkload.parse("read-4k,overwrite-4k").get() == [.overwrite4k, .read4k])
        #expect(try BenchWorkload.parse("memory-2m").get() == [.memory])
        #expect(try BenchWorkload.parse("memory").get().flatMap(\.rowNames) == ["memory-4k", "memory-2m"])
        switch BenchWorkload.parse("cleanup,nope,seek") {
        case .success(let w): Issue.record("parsed \(w)")
        case .failure(let e):
            #expect(e.description.contains("'nope'") && e.description.contains("'seek'"))
            #expect(e.description.contains("overwrite-4k"), "the message lists the workloads")
        }
    }

    @Test("--only 'fuse*' names the FUSE group, which a run without --only leaves out")
    func fuseNames() throws {
        #expect(try BenchWorkload.parse("fuse-*").get() == [.fuse, .fuseWriteback])
        #expect(try BenchWorkload.parse("fuse-wb-write-4k").get() == [.fuseWriteback])
        #expect(!BenchWorkload.defaultWorkloads.contains(.fuse) && BenchWorkload.defaultWorkloads.contains(.overwrite4k))
        #expect(BenchConfig().workloads == BenchWorkload.defaultWorkloads)
        #expect(BenchWorkload.fuse.rowNames.contains("fuse-pwrite-4k"))
        if case .success(let w) = BenchWorkload.parse("nothing-*") { Issue.record("parsed \(w)") }
    }

    @Test("the FUSE rows at 4 MiB: each either says why it was skipped or is well formed")
    func fuseRows() throws {
        var config = BenchConfig(quick: true)
        config.workloads = [.fuse]
        config.fuseBytes = 4 << 20
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        config.iomapExecutable = [dir, dir.deletingLastPathComponent()].map { $0.appendingPathComponent("iomap").path }
            .first { FileManager.default.isExecutableFile(atPath: $0) }
        let report = try runBench(config)
        #expect(report.results.map(\.name) == BenchWorkload.fuse.rowNames)
        for r in report.results {
            if let why = r.skipped {
                print("\(r.name) skipped: \(why)")
                #expect(r.engineNsPerOp == nil && r.error == nil && !why.isEmpty)
                continue
            }
            checkShape(r)
            #expect(r.detail["tmpfs_ns_per_op"] != nil && r.detail["xfs_ns_per_op"] != nil, "\(r.name): \(r.detail)")
        }
        #expect(report.failures.isEmpty)
    }

    @Test("a memory probe caches what it was asked to and sees resident memory grow")
    func memoryProbe() throws {
        // Resident memory of a process shared with other tests is not asserted on; only
        // that the probe ran, cached the bytes and read numbers.
        let s = try runBenchMemoryProbe(BenchMemoryProbe(folioSize: 2 << 20, bytes: 8 << 20, tag: 3))
        #expect(s.cachedBytes == 8 << 20)
        #expect(s.baselineRSS > 0 && s.peakRSS > 0)
        #expect(BenchMemoryProbe(folioSize: 3000, bytes: 1 << 20, tag: 0).problem != nil)
    }
}
