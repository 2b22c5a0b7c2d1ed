// `iomap crash`'s contract: exit 0 when every crash state holds, 1 on a violation with a
// replay line that replays it, 2 for bad usage; --json's fields.

import Foundation
import Testing

@Suite("iomap crash")
struct CrashCommandTests {
    @Test("a clean run exits 0 and --json has the documented fields")
    func cleanRunJSON() throws {
        let r = try runIOMap(["crash", "--seed", "5", "--workloads", "10", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let j = try r.json()
        for key in [
            "seed", "workload", "workloads", "ops", "states_checked", "subset_states", "torn_states", "recovery_states",
            "states_per_second", "elapsed_s", "violations", "violations_by_class", "failed_runs", "first_violation", "replay",
        ] {
            #expect(j[key] != nil, "no \(key) in \(r.stdout)")
        }
        #expect(j["violations"] as? Int == 0)
        #expect((j["states_checked"] as? Int ?? 0) > 0)
        #expect(r.stderr.contains("seed 5"), "the seed is printed: \(r.stderr)")
    }

    /// Each tooth with the workloads that catch it in seconds: short random workloads catch
    /// rule 1; rule 2 needs a file's blocks freed and reused (longer workloads); rule 3 needs
    /// a snapshot, so a full log (longer still); a skipped force shows in the first seq1
    /// workload; the pre-seed cleanup in the race workload's first fsync.
    @Test(
        "each tooth exits 1, and its printed replay line exits 1 on that one state",
        arguments: [
            ["--bug", "commit-before-data", "--workloads", "200"],
            ["--bug", "reuse-before-commit", "--workloads", "100", "--min-ops", "10", "--max-ops", "40"],
            ["--bug", "superblock-before-snapshot", "--workloads", "40", "--min-ops", "60", "--max-ops", "120"],
            ["--bug", "fsync-skips-force", "--workload", "seq1"],
            // It needs a checkpoint boundary inside a rename: the background force's stand-in.
            ["--bug", "rename-two-records", "--workloads", "200", "--min-ops", "5", "--max-ops", "20"],
            // The seed's bug: a store made inside a failing write, dropped by its cleanup.
            ["--bug", "truncate-page-cache", "--workload", "race", "--workloads", "10"],
        ])
    func toothAndReplay(_ tooth: [String]) throws {
        let r = try runIOMap(["crash", "--seed", "7", "--first", "--recovery-every", "0"] + tooth)
        #expect(r.status == 1, "\(tooth): \(r.stdout)\n\(r.stderr)")
        let line = try #require(r.stderr.split(separator: "\n").first { $0.contains("replay: iomap crash") }, "no replay line: \(r.stderr)")
        let args = line.split(separator: " ").drop { $0 != "iomap" }.dropFirst().map(String.init)
        let again = try runIOMap(args + ["--json"])
        #expect(again.status == 1, "the replay \(args) did not fail: \(again.stdout)")
        #expect(try again.json()["states_checked"] as? Int == 1)
    }

    @Test(
        "bad usage exits 2 naming the option",
        arguments: [
            ["crash", "--workloads", "0"], ["crash", "--replay", "x.y"], ["crash", "--image", "/tmp/x"], ["crash", "--bug", "nonsense"],
            ["crash", "--min-ops", "5", "--max-ops", "2"], ["crash", "--jobs", "0"],
        ])
    func badUsage(_ args: [String]) throws {
        let r = try runIOMap(args)
        #expect(r.status == 2, "\(args): \(r.stderr)")
        #expect(!r.stderr.isEmpty)
    }
}
