// The `--json` fields that have no value in a run are printed as null, not left out:
// scripts look them up by name. One passing run of each command that has such fields.

import Foundation
import Testing

@Suite("--json prints absent fields as null")
struct JSONNullFieldTests {
    @Test(
        "a passing run prints its absent fields as null",
        arguments: [
            (
                ["fsx", "--ops", "300", "--seed", "1"],
                ["violation", "violation_entry", "first_bad_offset", "minimized_entries", "artifacts"]
            ),
            (["random", "--ops", "300", "--seed", "1"], ["violation", "violation_op"]),
            (["stress", "--ops", "50", "--seed", "1"], ["violation"]),
            (["race", "--size", "1", "--rounds", "1", "--seed", "1"], ["first_loss"]),
            (["difftest", "--ops", "300", "--seed", "1"], ["first_mismatch"]),
            (["explore", "--scenario", "eof-block", "--replay", "-"], ["first_violation"]),
        ])
    func nullFields(arguments: [String], nullKeys: [String]) throws {
        let r = try runIOMap(arguments + ["--json"])
        #expect(r.status == 0, "exit \(r.status) for \(arguments)\n\(r.stderr)")
        let j = try r.json()
        for key in nullKeys { #expect(j[key] is NSNull, "\(arguments[0]): \(key) is \(String(describing: j[key]))") }
    }

    @Test("fields only some runs have are left out of the others")
    func omittedFields() throws {
        let dfs = try runIOMap(["explore", "--scenario", "eof-block", "--json"]).json()
        #expect(dfs["preemption_bound"] as? Int == 2)
        for key in ["replayed", "depth", "seed"] { #expect(dfs[key] == nil, "dfs run has \(key)") }
        let replay = try runIOMap(["explore", "--scenario", "eof-block", "--replay", "-", "--json"]).json()
        #expect(replay["replayed"] as? String == "-")
        #expect(replay["preemption_bound"] == nil)
    }

    @Test("bench without writeback-fsync: no disk directory, no error, null where a workload has no side")
    func benchNulls() throws {
        let r = try runIOMap(["bench", "--quick", "--json", "--only", "cleanup"])
        #expect(r.status == 0, "exit \(r.status)\n\(r.stderr)")
        let j = try r.json()
        #expect(j["disk_dir_fstype"] is NSNull)
        let row = try #require((j["results"] as? [[String: Any]])?.first)
        #expect(row["kernel_ns_per_op"] is NSNull && row["memcpy_ns_per_op"] is NSNull)
        #expect(row["error"] == nil)
        #expect(row["detail"] is [String: Any])
        // Counts are whole numbers and print as integers: "9", not "9.0".
        #expect(r.stdout.contains(try Regex(#""punches_per_cleanup":[0-9]+[,}]"#)), "\(r.stdout)")
    }

    @Test("short-copy on tmpfs: the engine's writes print a null error, only the unprivileged case a uid")
    func shortCopyNulls() throws {
        let r = try runIOMap(["kernel-probe", "short-copy", "--dir", "/dev/shm", "--attempts", "1", "--json"])
        #expect(r.status == 0, "exit \(r.status)\n\(r.stderr)")
        let j = try r.json()
        #expect(j["block_size"] as? Int == 4096)
        let engine = try #require(j["engine"] as? [[String: Any]])
        #expect(!engine.isEmpty && engine.allSatisfy { $0["error"] is NSNull }, "\(engine)")
        let cases = try #require(j["cases"] as? [[String: Any]])
        #expect(cases.filter { $0["uid"] != nil }.compactMap { $0["name"] as? String } == ["unprivileged"])
    }
}
