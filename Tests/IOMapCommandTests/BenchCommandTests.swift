// Counterpart: none in the kernel; tests of `iomap bench`, the engine's fio, as a command.
//
// `iomap bench` as a user runs it: the quick configuration of every workload exits 0 and
// prints the documented JSON; --only runs just the named workloads; an unknown name is bad
// usage (exit 2) and is named in the message. No timing is asserted.

import Foundation
import Testing

private let allRows = [
    "overwrite-4k", "append-4k", "append-1m", "read-4k", "seek-data", "seek-hole", "cleanup", "writeback-fsync",
    "live-hooks", "memory-4k", "memory-2m", "volume-overwrite-4k", "volume-create", "volume-create-log", "volume-setattr",
    "volume-rename", "volume-unlink", "volume-fsync-overwrite", "volume-fsync-append", "volume-fsync-clean", "volume-fsync-8t",
    "volume-snapshot", "volume-mkfs", "volume-mount",
]

/// The scaling curves, in report order, with where their points lie at --quick.
private let quickCurves: [(name: String, xs: [Double])] = [
    ("threads-overwrite-4k", [1, 2, 2]), ("threads-read-4k", [1, 2, 2]), ("extents-iomap-begin", [100, 1_000, 10_000]),
    ("extents-seek-data", [100, 1_000, 10_000]), ("cache-overwrite-4k", [4_194_304, 16_777_216, 67_108_864]),
    ("files-open-write-4k", [10, 1_000, 10_000]),
]

private let scalingFields: Set<String> = ["name", "axis", "goal", "holds", "points", "detail"]
private let pointFields: Set<String> = ["x", "label", "engine_ns_per_op", "kernel_ns_per_op"]

private let resultFields: Set<String> = [
    "name", "engine_ns_per_op", "kernel_ns_per_op", "memcpy_ns_per_op", "ratio", "own_work", "attainment", "goal", "holds",
]

/// A JSON number or null, as a Double; nil for null (and for anything else, which fails).
private func number(_ value: Any?, _ what: String) -> Double? {
    if value is NSNull { return nil }
    guard let x = value as? Double else {
        Issue.record("\(what) is neither a number nor null: \(String(describing: value))")
        return nil
    }
    return x
}

@Suite("iomap bench, as a command")
struct BenchCommandTests {
    @Test("--quick --json runs every workload and prints the documented fields")
    func quickJSON() throws {
        let r = try runIOMap(["bench", "--quick", "--json"])
        #expect(r.status == 0, "exit \(r.status)\n\(r.stderr)")
        let j = try r.json()
        #expect(j["repetitions"] as? Int == 5)
        #expect((j["kernel_dir_fstype"] as? String)?.isEmpty == false)
        let results = try #require(j["results"] as? [[String: Any]])
        #expect(results.compactMap { $0["name"] as? String } == allRows)
        for row in results {
            let name = row["name"] as? String ?? "?"
            #expect(resultFields.isSubset(of: Set(row.keys)), "\(name) lacks \(resultFields.subtracting(row.keys))")
            #expect((row["goal"] as? String)?.isEmpty == false, "\(name) has no goal")
            #expect(row["holds"] is Bool, "\(name): holds is not a boolean")
            #expect(row["error"] == nil, "\(name): \(row["error"] ?? "")")
            let engine = number(row["engine_ns_per_op"], "\(name) engine")
            let kernel = number(row["kernel_ns_per_op"], "\(name) kernel")
            let memcpy = number(row["memcpy_ns_per_op"], "\(name) memcpy")
            for t in [engine, kernel, memcpy].compactMap({ $0 }) { #expect(t.isFinite && t > 0, "\(name): time \(t)") }
            let ratio = try #require(number(row["ratio"], "\(name) ratio"), "\(name) has no ratio")
            #expect(ratio.isFinite)
            if let engine, let kernel { #expect(abs(ratio - kernel / engine) <= 1e-9 * ratio, "\(name): ratio \(ratio)") }
            // own_work is (engine - memcpy) / (kernel - memcpy) wherever there are all three
            // and the kernel is slower than the copy; the own-work rows always have one then.
            if let engine, let kernel, let memcpy, kernel > memcpy {
                let own = try #require(number(row["own_work"], "\(name) own_work"), "\(name) has no own_work")
                #expect(abs(own - max(0, engine - memcpy) / (kernel - memcpy)) <= 1e-9 * max(own, 1), "\(name): own_work \(own)")
            }
        }
        // Every workload with a kernel side has one; cleanup, live-hooks, memory and the volume's
        // rows held to a bound or compared with the plain engine do not.
        let kernelSides = results.filter { !($0["kernel_ns_per_op"] is NSNull) }.compactMap { $0["name"] as? String }
        #expect(
            kernelSides == [
                "overwrite-4k", "append-4k", "append-1m", "read-4k", "seek-data", "seek-hole", "writeback-fsync", "volume-create",
                "volume-setattr", "volume-rename", "volume-unlink", "volume-fsync-overwrite", "volume-fsync-append", "volume-fsync-clean",
            ])
        try checkScaling(j)
        // Progress goes to stderr, never into the JSON.
        #expect(r.stderr.contains("overwrite-4k: repetition 5/5"))
    }

    /// The scaling curves of a quick run: every one, with its points, both sides' times finite
    /// and positive, and no error; whether goals hold is not asserted.
    func checkScaling(_ j: [String: Any]) throws {
        let scaling = try #require(j["scaling"] as? [[String: Any]])
        #expect(scaling.compactMap { $0["name"] as? String } == quickCurves.map(\.name))
        for (curve, want) in zip(scaling, quickCurves) {
            let name = want.name
            #expect(scalingFields.isSubset(of: Set(curve.keys)), "\(name) lacks \(scalingFields.subtracting(curve.keys))")
            #expect(curve["error"] == nil, "\(name): \(curve["error"] ?? "")")
            #expect((curve["goal"] as? String)?.isEmpty == false && (curve["axis"] as? String)?.isEmpty == false)
            #expect(curve["holds"] is Bool, "\(name): holds is not a boolean")
            let points = try #require(curve["points"] as? [[String: Any]], "\(name) has no points")
            #expect(points.compactMap { number($0["x"], "\(name) x") } == want.xs)
            for p in points {
                #expect(pointFields.isSubset(of: Set(p.keys)), "\(name) point lacks \(pointFields.subtracting(p.keys))")
                #expect((p["label"] as? String)?.isEmpty == false)
                for side in ["engine_ns_per_op", "kernel_ns_per_op"] {
                    let t = try #require(number(p[side], "\(name) \(side)"), "\(name): \(side) is null")
                    #expect(t.isFinite && t > 0, "\(name): \(side) \(t)")
                }
            }
        }
    }

    @Test("--only overwrite-4k,read-4k runs just those, in the human table too")
    func only() throws {
        let r = try runIOMap(["bench", "--quick", "--json", "--only", "overwrite-4k,read-4k"])
        #expect(r.status == 0, "exit \(r.status)\n\(r.stderr)")
        let results = try #require(try r.json()["results"] as? [[String: Any]])
        #expect(results.compactMap { $0["name"] as? String } == ["overwrite-4k", "read-4k"])
        #expect((try r.json()["scaling"] as? [Any])?.isEmpty == true, "no scaling workload was asked for")
        #expect(!r.stderr.contains("append-4k"))

        let human = try runIOMap(["bench", "--quick", "--only", "cleanup"])
        #expect(human.status == 0, "exit \(human.status)\n\(human.stderr)")
        let lines = human.stdout.split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("workload") && $0.contains("ratio") && $0.contains("goal") && $0.contains("holds") })
        #expect(lines.contains { $0.hasPrefix("cleanup ") && $0.contains("1 TiB ≤ 2× 1 MiB") })
        #expect(!lines.contains { $0.hasPrefix("overwrite-4k") })
    }

    @Test("bad usage exits 2 with a message naming the problem")
    func badUsage() throws {
        let r = try runIOMap(["bench", "--quick", "--only", "nope"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("nope"), "stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty)
        let missing = try runIOMap(["bench", "--quick", "--dir", "/nonexistent/iomap-bench"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("/nonexistent/iomap-bench"), "stderr: \(missing.stderr)")
    }

    @Test("--plot writes an SVG naming every row, beside the table")
    func plot() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("iomap-plot-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("x.svg").path
        let r = try runIOMap(["bench", "--quick", "--only", "cleanup,overwrite-4k", "--plot", path])
        #expect(r.status == 0, "exit \(r.status)\n\(r.stderr)")
        #expect(r.stdout.contains("workload"), "the table is still printed")
        let svg = try String(contentsOfFile: path, encoding: .utf8)
        #expect(svg.hasPrefix("<svg ") && svg.hasSuffix("</svg>\n"))
        for name in ["cleanup", "overwrite-4k"] { #expect(svg.contains(">\(name)</text>"), "\(name) is not in the plot") }
    }

    @Test("--plot in a directory that does not exist, or not .svg, is bad usage naming the path")
    func plotBadPath() throws {
        let missing = try runIOMap(["bench", "--quick", "--only", "cleanup", "--plot", "/nonexistent/dir/x.svg"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("/nonexistent/dir/x.svg"), "stderr: \(missing.stderr)")
        #expect(missing.stdout.isEmpty)
        let png = try runIOMap(["bench", "--quick", "--only", "cleanup", "--plot", "/tmp/x.png"])
        #expect(png.status == 2)
        #expect(png.stderr.contains("/tmp/x.png"), "stderr: \(png.stderr)")
    }
}
