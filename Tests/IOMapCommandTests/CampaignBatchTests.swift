// A planned campaign on the batch systems themselves: the job array submitted to a one-node
// Slurm that `.ci/slurm/start` brings up on this machine, and the Indexed Job checked against
// the Kubernetes API's schema. Each skips, saying why, where its system is missing.

import Foundation
import Testing

/// The Kubernetes version whose schema the manifest is checked against: the first in which
/// an Indexed Job's backoffLimitPerIndex is generally available.
let kubernetesSchemaVersion = "1.33.0"

@Suite("iomap campaign on Slurm and Kubernetes", .serialized)
struct CampaignBatchTests {
    // The schema checks field names and types, not values: restartPolicy: Sometimes passes it
    // (measured with kubernetes-validate 1.33 schemas), so the canaries break names and types.
    @Test("the Indexed Job passes the Kubernetes schema, strictly; a manifest with a wrong field does not (the canary)")
    func kubernetesSchema() throws {
        guard onPath("kubernetes-validate") else {
            print(
                "Kubernetes schema test skipped: kubernetes-validate is not installed (pip install kubernetes-validate; .ci/run installs it)"
            )
            return
        }
        let dir = try planCampaign(
            CampaignCommandTests.fsx, shards: 8,
            extra: ["--container-image", "registry.example/iomap:1.0", "--parallelism", "3", "--retries", "1"],
            name: "campaign-k8s")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let manifest = dir + "/campaign-job.yaml"
        func validate(_ path: String) throws -> CommandResult {
            try runProgram("kubernetes-validate", ["--strict", "--kubernetes-version", kubernetesSchemaVersion, path])
        }
        let good = try validate(manifest)
        #expect(good.status == 0, "the manifest must pass: \(good.stdout)\(good.stderr)")
        let text = try String(contentsOfFile: manifest, encoding: .utf8)
        for (from, to) in [
            ("completions: 8", "completions: \"eight\""), ("backoffLimitPerIndex:", "backoffLimitPerIndx:"),
            ("activeDeadlineSeconds: 3600", "activeDeadlineSeconds: \"an hour\""),
        ] {
            #expect(text.contains(from))
            let broken = dir + "/broken.yaml"
            try text.replacingOccurrences(of: from, with: to).write(toFile: broken, atomically: true, encoding: .utf8)
            #expect(try validate(broken).status != 0, "the validator must reject \(to)")
        }
    }

    @Test(
        "an 8-shard fsx campaign on a one-node Slurm (sbatch --wait) merges to the unsharded run; the pre-seed cleanup's violations replay")
    func slurmCampaign() throws {
        // start takes about 10 s (a minute more where it installs packages); the bounds below
        // only turn a hang into a failure that names the command.
        let start = try runProgram("bash", [checkoutRoot.path + "/.ci/slurm/start"], timeout: 600)
        guard start.status == 0, let last = start.stdout.split(separator: "\n").last, last.hasPrefix("export SLURM_CONF=") else {
            let reason = start.stderr.split(separator: "\n").last.map(String.init) ?? "exit \(start.status)"
            print("Slurm campaign test skipped: a one-node Slurm did not start here: \(reason)")
            #expect(start.status == 3, "start exits 3 when Slurm cannot start, anything else is its bug: \(start.stderr)")
            return
        }
        defer { _ = try? runProgram("bash", [checkoutRoot.path + "/.ci/slurm/stop"], timeout: 120) }
        let slurm = ["SLURM_CONF": String(last.dropFirst("export SLURM_CONF=".count))]

        let tool = ["fsx", "--seed", "300", "--seeds", "16", "--ops", "1500"]
        let dir = try planCampaign(tool, shards: 8, name: "slurm-fsx")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let submitted = try runProgram("sbatch", ["--wait", dir + "/campaign.sbatch"], environment: slurm, timeout: 600)
        #expect(submitted.status == 0, "sbatch --wait: \(submitted.stdout)\(submitted.stderr)")
        let merged = try mergeCampaign(dir)
        #expect(merged.status == 0, "\(merged.stderr)")
        let whole = try runShard(tool + ["--shard-line"]).line
        #expect(merged.report["counts"] as? [String: Int] == whole.counts, "the 8 Slurm shards' counts are one run's")
        #expect((merged.report["shards"] as? [String: Int]) == ["expected": 8, "reported": 8])

        let bad = ["fsx", "--seed", "5", "--seeds", "8", "--ops", "30000", "--policy", "truncate-page-cache", "--no-minimize"]
        let badDir = try planCampaign(bad, shards: 8, name: "slurm-violation")
        defer { try? FileManager.default.removeItem(atPath: badDir) }
        let badRun = try runProgram("sbatch", ["--wait", badDir + "/campaign.sbatch"], environment: slurm, timeout: 600)
        #expect(badRun.status == 0, "a shard that finds a violation still completes its task: \(badRun.stderr)")
        try CampaignCommandTests().checkViolations(badDir, tool: bad)
    }
}
