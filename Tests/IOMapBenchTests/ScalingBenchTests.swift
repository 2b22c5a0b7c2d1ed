// Counterpart: none in the kernel; tests of the scaling curves of `iomap bench`.
//
// The four scaling workloads, run in-process in their quick configuration so that none of
// them rots: every curve comes back with its goal, its points, finite positive times on both
// sides and its growth figures; with the canary (an expected value off by one in one check
// of each workload) every curve fails, so a check that cannot fail would be seen. No timing
// is asserted: the numbers depend on the machine and on whatever else the test run is doing.

import Foundation
import IOMapBench
import IOMapKernelSide
import Testing

private let scalingWorkloads: [BenchWorkload] = [.scalingThreads, .scalingExtents, .scalingCache, .scalingFiles]

private let curves: [(name: String, axis: String, points: [Double])] = [
    ("threads-overwrite-4k", "threads", [1, 2, 2]),
    ("threads-read-4k", "threads", [1, 2, 2]),
    ("extents-iomap-begin", "extents", [100, 1_000, 10_000]),
    ("extents-seek-data", "extents", [100, 1_000, 10_000]),
    ("cache-overwrite-4k", "cached bytes", [4_194_304, 16_777_216, 67_108_864]),
    ("files-open-write-4k", "files", [10, 1_000, 10_000]),
]

@Suite("iomap bench, the scaling curves, in-process")
struct ScalingBenchTests {
    @Test("quick scaling workloads give every curve its points, goal and finite times, and no rows")
    func quickCurves() throws {
        try HostFiles.withTemporaryDirectory(prefix: "bench-test") { kernelDir in
            var config = BenchConfig(quick: true)
            config.workloads = scalingWorkloads
            config.kernelDirectory = kernelDir
            let report = try runBench(config)
            #expect(report.results.isEmpty, "the scaling workloads draw curves, not rows")
            #expect(report.scalingFailures.isEmpty)
            #expect(report.scaling.map(\.name) == curves.map(\.name))
            for (c, want) in zip(report.scaling, curves) {
                #expect(c.error == nil && c.skipped == nil, "\(c.name): \(c.error ?? c.skipped ?? "")")
                #expect(c.axis == want.axis && !c.goal.isEmpty, "\(c.name): axis \(c.axis), goal \(c.goal)")
                #expect(c.points.map(\.x) == want.points, "\(c.name): points at \(c.points.map(\.x))")
                #expect(Set(c.points.map(\.label)).count == c.points.count, "\(c.name): labels \(c.points.map(\.label))")
                for p in c.points {
                    for t in [p.engineNsPerOp, p.kernelNsPerOp] {
                        let t = try #require(t, "\(c.name) \(p.label) lacks a side")
                        #expect(t.isFinite && t > 0, "\(c.name) \(p.label): \(t) ns")
                    }
                }
                for (key, value) in c.detail { #expect(value.isFinite, "\(c.name): detail \(key) = \(value)") }
            }
            // The goals are judged on figures the curve carries.
            let threads = try #require(report.scaling.first)
            let e = threads.points.map { $0.engineNsPerOp! }
            #expect(threads.points.last?.label == "2 threads, one file")
            #expect(abs(try #require(threads.detail["engine_two_files_speedup"]) - e[0] / e[1]) <= 1e-9 * e[0] / e[1])
            for c in report.scaling.dropFirst(2) {
                let growth = try #require(c.detail["engine_growth"], "\(c.name) has no growth")
                #expect(abs(growth - c.points.last!.engineNsPerOp! / c.points.first!.engineNsPerOp!) <= 1e-9 * growth)
                #expect(c.holds == (growth <= (try #require(c.detail["bound"]))))
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: kernelDir) == [], "the run left files behind")
        }
    }

    @Test("with the canary every scaling workload fails its check, and says which")
    func canary() throws {
        var config = BenchConfig(quick: true)
        config.workloads = scalingWorkloads
        config.scalingCanary = true
        config.repetitions = 1
        let report = try runBench(config)
        #expect(report.scaling.map(\.name) == curves.map(\.name))
        #expect(report.scalingFailures.count == curves.count)
        for c in report.scaling {
            let error = c.error ?? ""
            #expect(error.contains("data check failed") || error.contains("sum to"), "\(c.name): \(error)")
            #expect(c.points.isEmpty && !c.holds)
        }
    }

    @Test("--only names: the scaling workloads, their curves, and scaling-* for all four")
    func parseNames() throws {
        #expect(try BenchWorkload.parse("scaling-*").get() == scalingWorkloads)
        #expect(try BenchWorkload.parse("threads-read-4k,files-open-write-4k").get() == [.scalingThreads, .scalingFiles])
        #expect(scalingWorkloads.allSatisfy { $0.isScaling && $0.rowNames.isEmpty && !$0.curveNames.isEmpty })
        #expect(scalingWorkloads.allSatisfy(BenchWorkload.defaultWorkloads.contains), "a full run draws the curves")
        #expect(!BenchWorkload.overwrite4k.isScaling)
    }
}
