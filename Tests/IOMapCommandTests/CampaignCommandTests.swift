// `iomap campaign plan` and `merge` as a user runs them: the plan's Slurm script run as its
// array tasks would run it (here without Slurm, and on a one-node Slurm where one can start),
// its Kubernetes manifest checked against the Kubernetes schema, and the merge's verdict: the
// shards' counts equal one unsharded run, violations come with replay lines that reproduce
// them, and a missing, duplicated, malformed or overlapping shard exits 2 naming it.

import Foundation
import Testing

/// The checkout's root, for the scripts the project ships (.ci/slurm).
let checkoutRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Runs `command` (found on PATH unless it is a path) with `arguments` and `environment`
/// added; its status and output.
func runProgram(
    _ command: String, _ arguments: [String], environment: [String: String] = [:], in directory: String? = nil,
    timeout: Double = commandTimeout
) throws -> CommandResult {
    try runExecutable(
        URL(fileURLWithPath: "/usr/bin/env"), [command] + arguments, environment: environment, in: directory, timeout: timeout)
}

/// Whether `command` is on PATH.
func onPath(_ command: String) -> Bool {
    (try? runProgram("sh", ["-c", "command -v \(command)"]).status) == 0
}

/// A planned campaign's directory, and the plan's output.
func planCampaign(_ tool: [String], shards: Int, extra: [String] = [], name: String) throws -> String {
    let dir = try scratchDirectory(name)
    let r = try runIOMap(["campaign", "plan"] + tool + ["--shards", "\(shards)", "--out", dir] + extra)
    #expect(r.status == 0, "plan: \(r.stderr)")
    return dir
}

/// Runs the plan's Slurm script as each array task would, one after another, without Slurm.
func runTasksByHand(_ dir: String, shards: Int, environment: [String: String] = [:]) throws {
    for i in 0..<shards {
        let r = try runProgram(
            "bash", [dir + "/campaign.sbatch"],
            environment: environment.merging(["SLURM_ARRAY_TASK_ID": "\(i)", "SLURM_JOB_ID": "1"]) { $1 },
            // Slurm starts each task in the campaign's directory (--chdir), where fsx leaves
            // a failure's evidence.
            in: dir)
        #expect(r.status == 0, "task \(i): \(r.stderr)")
    }
}

/// `iomap campaign merge DIR --json`: its status and report.
func mergeCampaign(_ dir: String) throws -> (status: Int32, report: [String: Any], stderr: String) {
    let r = try runIOMap(["campaign", "merge", dir, "--json"])
    return (r.status, try r.json(), r.stderr)
}

@Suite("iomap campaign, as a command")
struct CampaignCommandTests {
    static let fsx = ["fsx", "--seed", "70", "--seeds", "12", "--ops", "500"]

    /// The unsharded run of the same seeds, as one shard line.
    func unsharded(_ tool: [String]) throws -> ParsedShardLine {
        // fsx leaves a failure's evidence in the working directory unless told where.
        let evidence = try scratchDirectory("campaign-unsharded")
        defer { try? FileManager.default.removeItem(atPath: evidence) }
        let whole = try runShard(tool + ["--shard-line"] + (tool.first == "fsx" ? ["--artifacts", evidence] : []))
        #expect(whole.status == 0 || whole.status == 1)
        return whole.line
    }

    @Test("plan writes the plan, a job array of one task per shard and an Indexed Job, with the options given")
    func planFiles() throws {
        let dir = try planCampaign(
            Self.fsx, shards: 8, extra: ["--retries", "3", "--cpus", "2", "--memory-mib", "512", "--partition", "debug"], name: "plan")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let plan = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/plan.json"))) as? [String: Any])
        #expect(plan["tool"] as? String == "fsx" && plan["shards"] as? Int == 8)
        #expect(plan["arguments"] as? [String] == Array(Self.fsx.dropFirst()))
        let sbatch = try String(contentsOfFile: dir + "/campaign.sbatch", encoding: .utf8)
        for line in [
            "#SBATCH --array=0-7", "#SBATCH --cpus-per-task=2", "#SBATCH --mem=512M", "#SBATCH --partition=debug", "--shard \"$index/8\"",
        ] {
            #expect(sbatch.contains(line), "campaign.sbatch lacks \(line)")
        }
        let job = try String(contentsOfFile: dir + "/campaign-job.yaml", encoding: .utf8)
        for line in ["completionMode: Indexed", "completions: 8", "backoffLimitPerIndex: 3", "JOB_COMPLETION_INDEX"] {
            #expect(job.contains(line), "campaign-job.yaml lacks \(line)")
        }
        #expect(FileManager.default.isExecutableFile(atPath: dir + "/campaign.sbatch"))
    }

    @Test(
        "plan refuses what its tasks could not run, naming it",
        arguments: [
            (["nosuch"], "'nosuch' is not a tool"),
            (["fsx", "--ops", "10"], "--shard needs --seed"),
            (["fsx", "--seed", "1", "--shard", "0/2"], "--shard is the plan's"),
            (["fsx", "--seed", "1", "--bogus"], "--bogus"),
            (["fsx", "--seed", "1", "--job-name", "Bad_Name"], "--job-name Bad_Name"),
            (["explore", "--scenario", "eof-block", "--strategy", "pct"], "pct"),
            (["fsx", "--seed", "1", "--retries", "-1"], "--retries"),
        ])
    func planUsage(arguments: [String], named: String) throws {
        let dir = try scratchDirectory("plan-usage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try runIOMap(["campaign", "plan"] + arguments + ["--shards", "4", "--out", dir])
        #expect(r.status == 2 && r.stderr.contains(named), "exit \(r.status): \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/plan.json"))
    }

    @Test("plan warns when a campaign has fewer seeds than shards, in either spelling of --seeds", arguments: ["--seeds", "--seeds="])
    func planFewSeeds(spelling: String) throws {
        let dir = try scratchDirectory("plan-few")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let seeds = spelling.hasSuffix("=") ? ["--seeds=3"] : ["--seeds", "3"]
        let r = try runIOMap(["campaign", "plan", "fsx", "--seed", "1"] + seeds + ["--shards", "5", "--out", dir])
        #expect(r.status == 0 && r.stderr.contains("only 3 seeds for 5 shards: 2 shards will run none"), "\(r.stderr)")
        let enough = try runIOMap(["campaign", "plan", "fsx", "--seed", "1", "--seeds", "5", "--shards", "5", "--out", dir, "--force"])
        #expect(enough.status == 0 && !enough.stderr.contains("will run none"), "\(enough.stderr)")
    }

    @Test("plan will not mix a new campaign with an earlier one's results unless --force")
    func planRefusesEarlier() throws {
        let dir = try planCampaign(Self.fsx, shards: 2, name: "plan-again")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let again = try runIOMap(["campaign", "plan"] + Self.fsx + ["--shards", "3", "--out", dir])
        #expect(again.status == 2 && again.stderr.contains("--force"), "\(again.stderr)")
        let forced = try runIOMap(["campaign", "plan"] + Self.fsx + ["--shards", "3", "--out", dir, "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
    }

    @Test("the job array's tasks, run by hand, merge to the unsharded run's counts: exit 0, every seed once")
    func tasksMergeToUnsharded() throws {
        let dir = try planCampaign(Self.fsx, shards: 5, name: "campaign-fsx")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try runTasksByHand(dir, shards: 5)
        let merged = try mergeCampaign(dir)
        #expect(merged.status == 0, "\(merged.stderr)")
        #expect(merged.report["verdict"] as? String == "holds" && (merged.report["problems"] as? [String])?.isEmpty == true)
        #expect(merged.report["counts"] as? [String: Int] == (try unsharded(Self.fsx)).counts)
        #expect((merged.report["shards"] as? [String: Int]) == ["expected": 5, "reported": 5])
    }

    @Test("a campaign with the pre-seed cleanup policy merges to exit 1, listing violations whose replay lines reproduce them")
    func violationsReplay() throws {
        let tool = ["fsx", "--seed", "5", "--seeds", "4", "--ops", "30000", "--policy", "truncate-page-cache", "--no-minimize"]
        let dir = try planCampaign(tool, shards: 2, name: "campaign-violation")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try runTasksByHand(dir, shards: 2)
        try checkViolations(dir, tool: tool)
    }

    /// The merge of a violating campaign: exit 1, its violations those of the unsharded run,
    /// the first one's replay line exiting 1 alone.
    func checkViolations(_ dir: String, tool: [String]) throws {
        let merged = try mergeCampaign(dir)
        #expect(merged.status == 1 && merged.report["verdict"] as? String == "violation", "\(merged.stderr)")
        let violations = try #require(merged.report["violations"] as? [[String: Any]])
        let whole = try unsharded(tool)
        #expect(!violations.isEmpty && violations.count == whole.violations.count)
        #expect(violations.map { $0["unit"] as? Int } == whole.violations.map { $0["unit"] as? Int })
        let replay = try #require(violations.first?["replay"] as? String)
        #expect(try runReplayLine(replay, in: dir) == 1, "the replay line must reproduce the violation: \(replay)")
    }

    @Test("merge exits 2 naming the shard when one is missing, reported twice, malformed, of another campaign, or overlaps")
    func mergeProblems() throws {
        let dir = try planCampaign(Self.fsx, shards: 4, name: "campaign-problems")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try runTasksByHand(dir, shards: 4)
        let results = dir + "/results"
        let fm = FileManager.default
        func expectProblem(_ named: String, _ why: String) throws {
            let m = try mergeCampaign(dir)
            let problems = m.report["problems"] as? [String] ?? []
            #expect(m.status == 2 && m.report["verdict"] as? String == "incomplete", "\(why): exit \(m.status)")
            #expect(problems.contains { $0.contains(named) }, "\(why): \(problems)")
            #expect(m.stderr.isEmpty || m.stderr.contains(named))
        }
        #expect(try mergeCampaign(dir).status == 0)
        try fm.moveItem(atPath: results + "/shard-2.json", toPath: dir + "/shard-2.json.away")
        try expectProblem("shard 2", "missing")
        try fm.moveItem(atPath: dir + "/shard-2.json.away", toPath: results + "/shard-2.json")
        try fm.copyItem(atPath: results + "/shard-1.json", toPath: results + "/shard-1-again.json")
        try expectProblem("shard 1 reported twice", "duplicated")
        try fm.removeItem(atPath: results + "/shard-1-again.json")
        let good = try String(contentsOfFile: results + "/shard-3.json", encoding: .utf8)
        for bad in [
            "{\"format\": 1, \"tool\": \"fsx\"", "", good + good, good.replacingOccurrences(of: "\"status\":0", with: "\"status\":1"),
        ] {
            try bad.write(toFile: results + "/shard-3.json", atomically: true, encoding: .utf8)
            try expectProblem("shard 3 (shard-3.json): malformed", "malformed: \(bad.prefix(40))")
        }
        try good.write(toFile: results + "/shard-3.json", atomically: true, encoding: .utf8)
        let other = try runShard(["fsx", "--seed", "71", "--seeds", "12", "--ops", "500", "--shard", "3/4"])
        try other.line.jsonText().write(toFile: results + "/shard-3.json", atomically: true, encoding: .utf8)
        try expectProblem("shard 3 (shard-3.json): belongs to another campaign", "another campaign")
        try good.write(toFile: results + "/shard-3.json", atomically: true, encoding: .utf8)
        #expect(try mergeCampaign(dir).status == 0, "restored")
    }

    @Test("merge catches a split whose blocks overlap (IOMAP_SHARD_SPLIT_CANARY): exit 2 naming the shards")
    func mergeSplitCanary() throws {
        let dir = try planCampaign(Self.fsx, shards: 3, name: "campaign-canary")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try runTasksByHand(dir, shards: 3, environment: ["IOMAP_SHARD_SPLIT_CANARY": "1"])
        let m = try mergeCampaign(dir)
        #expect(m.status == 2)
        #expect((m.report["problems"] as? [String] ?? []).contains { $0.contains("shards 0 and 1 both cover") }, "\(m.report)")
    }

    @Test("merge of a directory that is no campaign: exit 2 naming it")
    func mergeUsage() throws {
        let missing = try runIOMap(["campaign", "merge", "/nonexistent-iomap-campaign"])
        #expect(missing.status == 2 && missing.stderr.contains("/nonexistent-iomap-campaign"))
        let dir = try scratchDirectory("campaign-empty")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let empty = try mergeCampaign(dir)
        #expect(empty.status == 2 && (empty.report["problems"] as? [String] ?? []).contains { $0.contains("no shard results") })
        try "not json".write(toFile: dir + "/plan.json", atomically: true, encoding: .utf8)
        let badPlan = try runIOMap(["campaign", "merge", dir])
        #expect(badPlan.status == 2 && badPlan.stderr.contains("plan.json"), "\(badPlan.stderr)")
    }
}

extension ParsedShardLine {
    /// The line as JSON text again.
    func jsonText() throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]), as: UTF8.self) + "\n"
    }
}
