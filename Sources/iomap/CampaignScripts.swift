// The two batch descriptions `iomap campaign plan` writes: a Slurm job array and a Kubernetes
// Indexed Job. Both run the same shard step: the tool with `--shard INDEX/COUNT`, its one
// line into a file beside the final one, renamed into place only when the tool ended as a
// shard does (0, or 1 with violations), so that a result file is always one whole line and a
// retried task replaces it rather than adding a second.

import Foundation

struct CampaignScripts {
    var plan: CampaignPlanFile
    var options: CampaignPlan
    /// The campaign's directory, absolute.
    var directory: String

    /// The shell step of one shard: `binary` run on the plan's tool with the shard from
    /// `indexVariable`, the line moved into `results`. Exits 0 when the line is in place,
    /// else the tool's status.
    func shardStep(binary: String, indexVariable: String, results: String, attemptName: String) -> String {
        let command = ([binary, plan.tool] + plan.arguments).map(shellQuote).joined(separator: " ")
        return """
            index="$\(indexVariable)"
            tmp=\(shellQuote(results))/.shard-"$index".\(attemptName).tmp
            \(command) --shard "$index/\(plan.shards)" > "$tmp"
            status=$?
            # 0: no violation, 1: violations, both in the line. Anything else is a failed task.
            if [ "$status" -le 1 ] && [ -s "$tmp" ]; then
                mv -f "$tmp" \(shellQuote(results))/shard-"$index".json && exit 0
            fi
            rm -f "$tmp"
            echo "iomap campaign: shard $index/\(plan.shards) exited $status" >&2
            """
    }

    /// The Slurm batch script: one array task per shard; a task that fails runs again in
    /// place up to --retries times (Slurm requeues only for node failures).
    func slurm() -> String {
        let results = directory + "/results"
        let throttle = options.parallelism.map { "%\($0)" } ?? ""
        var header = [
            "--job-name=\(options.name)", "--array=0-\(plan.shards - 1)\(throttle)", "--ntasks=1",
            "--cpus-per-task=\(options.cpus)", "--mem=\(options.memoryMib)M", "--time=\(options.timeLimit)",
            "--output=\(directory)/logs/shard-%a.log",
            // A failing tool leaves its evidence in its working directory: the campaign's.
            "--chdir=\(directory)",
        ]
        if let partition = options.partition { header.append("--partition=\(partition)") }
        let step = shardStep(
            binary: plan.binary, indexVariable: "SLURM_ARRAY_TASK_ID", results: results, attemptName: "$SLURM_JOB_ID.$attempt")
        return """
            #!/bin/bash
            # A campaign of `iomap \(plan.tool)` in \(plan.shards) shards, written by `iomap campaign plan`.
            # Submit: sbatch --wait \(directory)/campaign.sbatch
            # Verdict: iomap campaign merge \(directory)
            \(header.map { "#SBATCH \($0)" }.joined(separator: "\n"))
            set -u
            : "${SLURM_ARRAY_TASK_ID:?submit this script with sbatch: it is a job array}"
            attempt=0
            while :; do
            \(step.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }.joined(separator: "\n"))
                attempt=$((attempt + 1))
                if [ "$attempt" -gt \(options.retries) ]; then exit "$status"; fi
                echo "iomap campaign: running shard $index again ($attempt of \(options.retries))" >&2
            done

            """
    }

    /// The Kubernetes Indexed Job: completion index = shard, results on a volume claim,
    /// --retries as each index's own backoff limit.
    func kubernetes() -> String {
        let step = shardStep(
            binary: plan.containerBinary, indexVariable: "JOB_COMPLETION_INDEX", results: "/results", attemptName: "$HOSTNAME")
        let resources = "{cpu: \(yaml(String(options.cpus))), memory: \(yaml("\(options.memoryMib)Mi"))}"
        let labels = "{app.kubernetes.io/name: iomap-campaign, app.kubernetes.io/component: \(yaml(plan.tool))}"
        return """
            # A campaign of `iomap \(plan.tool)` in \(plan.shards) shards, written by `iomap campaign plan`.
            # Start: kubectl apply -f campaign-job.yaml (the claim \(options.claim) must exist).
            # Verdict: copy the claim's shard-*.json into \(directory)/results, then run
            #   iomap campaign merge \(directory)
            apiVersion: batch/v1
            kind: Job
            metadata:
              name: \(yaml(options.name))
              labels: \(labels)
            spec:
              completionMode: Indexed
              completions: \(plan.shards)
              parallelism: \(options.parallelism ?? plan.shards)
              backoffLimitPerIndex: \(options.retries)
              template:
                metadata:
                  labels: \(labels)
                spec:
                  restartPolicy: Never
                  activeDeadlineSeconds: \(options.timeLimit * 60)
                  containers:
                    - name: shard
                      image: \(yaml(plan.containerImage))
                      workingDir: /results
                      command: ["/bin/sh", "-c"]
                      args: [\(yaml(step + "\nexit \"$status\""))]
                      resources:
                        requests: \(resources)
                        limits: \(resources)
                      volumeMounts:
                        - {name: results, mountPath: /results}
                  volumes:
                    - name: results
                      persistentVolumeClaim: {claimName: \(yaml(options.claim))}

            """
    }
}

/// `text` as one shell word.
func shellQuote(_ text: String) -> String {
    if !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_./=:,+@".contains($0)) }) { return text }
    return "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// `text` as a YAML scalar: a JSON string, which YAML reads as a double-quoted scalar.
func yaml(_ text: String) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    return String(decoding: try! encoder.encode(text), as: UTF8.self)
}
