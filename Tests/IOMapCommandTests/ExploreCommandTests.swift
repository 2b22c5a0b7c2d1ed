// `iomap explore` as a user runs it: the scenario list, exit statuses, the `--json` fields,
// and a violation's printed replay command run as printed.

import Foundation
import Testing

@Suite("iomap explore, as a command")
struct ExploreCommandTests {
    @Test("--list shows every scenario on one line each")
    func list() throws {
        let r = try runIOMap(["explore", "--list"])
        #expect(r.status == 0)
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 6)
        for name in [
            "write-fail-vs-mapped-store", "stale-mapping", "eof-block", "writeback-vs-truncate", "fault-vs-punch-hole",
            "short-copy-vs-protect",
        ] {
            #expect(lines.contains { $0.hasPrefix(name + " ") }, "\(name) missing from\n\(r.stdout)")
        }
    }

    @Test("an exhaustive run with no violation exits 0 and says so in its JSON")
    func exhaustiveHolds() throws {
        let r = try runIOMap(["explore", "--scenario", "eof-block", "--json"])
        #expect(r.status == 0, "exit \(r.status)\n\(r.stderr)")
        let j = try r.json()
        #expect(j["scenario"] as? String == "eof-block")
        #expect(j["policy"] as? String == "preserve-dirty")
        #expect(j["strategy"] as? String == "dfs")
        #expect(j["preemption_bound"] as? Int == 2)
        #expect(j["exhausted"] as? Bool == true)
        #expect(j["violations"] as? Int == 0)
        #expect((j["schedules_explored"] as? Int ?? 0) > 100)
        #expect(j["first_violation"] is NSNull)
    }

    @Test("the pre-seed cleanup: exit 1, the violation's schedule in the JSON, and the printed replay command reproduces it")
    func violationReplays() throws {
        let r = try runIOMap(["explore", "--scenario", "write-fail-vs-mapped-store", "--policy", "truncate-page-cache", "--json"])
        #expect(r.status == 1, "exit \(r.status)\n\(r.stderr)")
        let j = try r.json()
        #expect(j["violations"] as? Int == 1)
        #expect(j["exhausted"] as? Bool == false)
        let v = try #require(j["first_violation"] as? [String: Any])
        let schedule = try #require(v["schedule"] as? String)
        #expect(v["invariant"] as? String == "lost-data")
        #expect((v["detail"] as? String ?? "").contains("8256"))
        let line = try #require(r.stderr.split(separator: "\n").first { $0.hasPrefix("replay: iomap explore ") })
        let replayArguments = line.dropFirst("replay: iomap ".count).split(separator: " ").map(String.init)
        #expect(replayArguments.suffix(2) == ["--replay", schedule])

        let again = try runIOMap(replayArguments + ["--json"])
        #expect(again.status == 1, "exit \(again.status)\n\(again.stderr)")
        let a = try again.json()
        #expect(a["strategy"] as? String == "replay")
        #expect(a["schedules_explored"] as? Int == 1)
        let av = try #require(a["first_violation"] as? [String: Any])
        #expect(av["schedule"] as? String == schedule)
        #expect(av["invariant"] as? String == v["invariant"] as? String)
        #expect(av["detail"] as? String == v["detail"] as? String)
        // Without --json the replay prints the trace of the schedule.
        let text = try runIOMap(replayArguments)
        #expect(text.status == 1)
        #expect(text.stdout.contains("trace:") && text.stdout.contains("preempted at"))
    }

    @Test(
        "bad usage exits 2 with a message naming what was wrong",
        arguments: [
            ([], "--scenario"),
            (["--scenario", "nope"], "nope"),
            (["--scenario", "eof-block", "--preemption-bound", "-1"], "--preemption-bound"),
            (["--scenario", "eof-block", "--strategy", "bfs"], "bfs"),
            (["--scenario", "eof-block", "--depth", "0"], "--depth"),
            (["--scenario", "eof-block", "--schedules", "0"], "--schedules"),
            (["--scenario", "eof-block", "--replay", "3:x"], "3:x"),
            (["--scenario", "eof-block", "--replay", "6:9"], "thread 9 cannot run"),
            (["--scenario", "eof-block", "--replay", "900:1"], "past the end"),
            (["--scenario", "eof-block", "--eof-rounding", "sideways"], "sideways"),
        ])
    func badUsage(arguments: [String], named: String) throws {
        let r = try runIOMap(["explore"] + arguments)
        #expect(r.status == 2, "exit \(r.status) for \(arguments)")
        #expect(r.stderr.contains(named), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }
}
