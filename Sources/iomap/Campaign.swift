// `iomap campaign`: campaigns too long for one machine, run on the batch systems people have.
// `plan` turns one tool's command line into a Slurm job array and a Kubernetes Indexed Job,
// one task per shard (`--shard INDEX/COUNT`, ShardLine.swift), each writing its shard line
// into a results directory; `merge` reads that directory back and gives the campaign's
// verdict. Nothing here schedules anything: the batch system does, and the shards need no
// coordination because the split is a pure function of INDEX and COUNT.

import ArgumentParser
import Foundation

struct Campaign: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Plan a sharded campaign for Slurm or Kubernetes, and merge its shards' results into one verdict.",
        discussion: """
            plan writes DIR/campaign.sbatch (a Slurm job array) and DIR/campaign-job.yaml (a Kubernetes \
            Indexed Job) for one tool's command line; each task runs one shard and writes its JSON line to \
            DIR/results/shard-INDEX.json. merge DIR checks that every shard reported once and that together \
            they cover the campaign once, sums their counts and lists every violation with its replay line.
            """,
        subcommands: [CampaignPlan.self, CampaignMerge.self])
}

/// The tools a campaign can shard, and what parses and checks their command lines.
enum CampaignTool: String, CaseIterable {
    case fsx, random, race, stress, explore, crash

    var command: any ParsableCommand.Type {
        switch self {
        case .fsx: Fsx.self
        case .random: Random.self
        case .race: Race.self
        case .stress: Stress.self
        case .explore: Explore.self
        case .crash: Crash.self
        }
    }
}

/// What `plan` writes to DIR/plan.json, and `merge` reads back to know how many shards to
/// expect of which tool.
struct CampaignPlanFile: Codable, Equatable {
    static let currentFormat = 1
    static let name = "plan.json"

    var format = CampaignPlanFile.currentFormat
    var tool: String
    /// The tool's options, as given (without --shard, which each task adds).
    var arguments: [String]
    var shards: Int
    /// The iomap the Slurm tasks run, and the image and command the Kubernetes pods run.
    var binary: String
    var containerImage: String
    var containerBinary: String

    enum CodingKeys: String, CodingKey {
        case format, tool, arguments, shards, binary
        case containerImage = "container_image"
        case containerBinary = "container_binary"
    }
}

struct CampaignPlan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Write a Slurm job array and a Kubernetes Indexed Job that run a tool's campaign in shards.",
        discussion: """
            Usage: iomap campaign plan TOOL [tool options] --shards N --out DIR [plan options]. TOOL is one of \
            \(CampaignTool.allCases.map(\.rawValue).joined(separator: ", ")); its options are checked as the tool \
            would check them with --shard 0/N (so the random tools need --seed, and --seeds sets the campaign's \
            size). Submit with `sbatch DIR/campaign.sbatch` (add --wait to block until it ends) or \
            `kubectl apply -f DIR/campaign-job.yaml`, then run `iomap campaign merge DIR`. \
            Exit status: 0 when the plan was written, 2 for bad usage.
            """)

    @Option(help: "The number of shards (tasks), 1 to \(ShardSpec.maxCount).") var shards: Int
    @Option(help: "The campaign's directory: the plan, the scripts, results/ and logs/ go here.") var out: String
    @Option(help: "The iomap each Slurm task runs (default: this one), on a path every node sees.") var binary: String?
    @Option(help: "Kubernetes: the container image holding iomap.") var containerImage = "iomap:latest"
    @Option(help: "Kubernetes: the iomap command inside the image.") var containerBinary = "iomap"
    @Option(help: "CPUs each task asks for.") var cpus = 1
    @Option(help: "Memory each task asks for, in MiB.") var memoryMib = 2048
    @Option(help: "The time each task may run, in minutes.") var timeLimit = 60
    @Option(help: "How many times a task that fails (crashes, is killed, exits 2 or more) runs again.") var retries = 2
    @Option(help: "The most tasks running at once (default: no limit on Slurm, every shard on Kubernetes).") var parallelism: Int?
    @Option(help: "Slurm: the partition to submit to (default: the cluster's default).") var partition: String?
    @Option(help: "Kubernetes: the PersistentVolumeClaim the shards write their results to.") var claim = "iomap-campaign-results"
    @Option(help: "The job's name (default: iomap-TOOL-campaign); lower-case letters, digits and '-'.") var jobName: String?
    @Flag(help: "Replace the plan of an earlier campaign in --out, and remove its results and logs.") var force = false
    @Argument(parsing: .allUnrecognized, help: "The tool and its options.") var toolCommand: [String] = []

    var tool: CampaignTool? { toolCommand.first.flatMap(CampaignTool.init(rawValue:)) }
    var toolArguments: [String] { Array(toolCommand.dropFirst()) }
    var name: String { jobName ?? "iomap-\(tool?.rawValue ?? "tool")-campaign" }

    mutating func validate() throws {
        if toolCommand.first == "--" { toolCommand.removeFirst() }
        guard let first = toolCommand.first else {
            throw ValidationError("name the tool to run: iomap campaign plan TOOL [tool options] --shards N --out DIR")
        }
        guard let tool else {
            throw ValidationError(
                "'\(first)' is not a tool a campaign can shard; it must be one of \(CampaignTool.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        guard (1...ShardSpec.maxCount).contains(shards) else {
            throw ValidationError("--shards must be 1 to \(ShardSpec.maxCount), got \(shards)")
        }
        for (value, option) in [(cpus, "--cpus"), (memoryMib, "--memory-mib"), (timeLimit, "--time-limit")] where value < 1 {
            throw ValidationError("\(option) must be at least 1, got \(value)")
        }
        guard retries >= 0 else { throw ValidationError("--retries must be 0 or more, got \(retries)") }
        if let parallelism, parallelism < 1 { throw ValidationError("--parallelism must be at least 1, got \(parallelism)") }
        let label = /[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?/
        guard name.wholeMatch(of: label) != nil else {
            throw ValidationError(
                "--job-name \(name): a Kubernetes job name is 1 to 52 lower-case letters, digits and '-', starting and ending alphanumeric")
        }
        guard claim.wholeMatch(of: /[a-z0-9]([-.a-z0-9]*[a-z0-9])?/) != nil, claim.count <= 253 else {
            throw ValidationError("--claim \(claim): a claim's name is lower-case letters, digits, '-' and '.'")
        }
        // sbatch reads its #SBATCH lines itself, without a shell: a path with spaces or a '%'
        // (its file-name pattern character) would be cut or rewritten.
        if out.contains(where: { $0.isWhitespace || $0 == "%" }) {
            throw ValidationError("--out \(out): the directory's path may not hold spaces or '%'")
        }
        try checkToolArguments(tool)
    }

    /// Parses the tool's options as one of its shards would get them, so that a plan never
    /// holds a command line its tasks would refuse.
    func checkToolArguments(_ tool: CampaignTool) throws {
        for own in ["--shard", "--shard-line"] where toolArguments.contains(where: { $0 == own || $0.hasPrefix(own + "=") }) {
            throw ValidationError("\(own) is the plan's to set: give the tool's other options and --shards N")
        }
        do {
            let parsed = try tool.command.parse(toolArguments + ["--shard", "0/\(shards)"])
            if let seeds = (parsed as? any SeedCampaignCommand)?.campaign.seeds, seeds < shards {
                say("iomap campaign plan: only \(seeds) seeds for \(shards) shards: \(shards - seeds) shards will run none")
            }
        } catch {
            throw ValidationError("iomap \(tool.rawValue) \(toolArguments.joined(separator: " ")): \(tool.command.message(for: error))")
        }
    }

    func run() throws {
        guard let tool else { throw ValidationError("no tool") }
        let dir = URL(fileURLWithPath: out).standardizedFileURL.path
        let plan = CampaignPlanFile(
            tool: tool.rawValue, arguments: toolArguments, shards: shards, binary: try binary.map(absolutePath) ?? thisExecutable(),
            containerImage: containerImage, containerBinary: containerBinary)
        try prepare(dir)
        let scripts = CampaignScripts(plan: plan, options: self, directory: dir)
        try write(scripts.slurm(), to: dir + "/campaign.sbatch", executable: true)
        try write(scripts.kubernetes(), to: dir + "/campaign-job.yaml", executable: false)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        try write(
            String(decoding: try encoder.encode(plan), as: UTF8.self) + "\n", to: dir + "/" + CampaignPlanFile.name, executable: false)
        print("iomap campaign plan: \(tool.rawValue) in \(shards) shards, in \(dir)")
        print("  Slurm:      sbatch --wait \(dir)/campaign.sbatch")
        print("  Kubernetes: kubectl apply -f \(dir)/campaign-job.yaml (then copy the claim's shard-*.json into \(dir)/results)")
        print("  verdict:    iomap campaign merge \(dir)")
    }

    /// Makes DIR, results/ and logs/, refusing to mix this campaign with an earlier one's
    /// results unless --force says to remove them.
    func prepare(_ dir: String) throws {
        let fm = FileManager.default
        let results = dir + "/results"
        let earlier = (try? fm.contentsOfDirectory(atPath: results))?.filter { $0.hasSuffix(".json") } ?? []
        if fm.fileExists(atPath: dir + "/" + CampaignPlanFile.name) || !earlier.isEmpty {
            guard force else {
                throw ValidationError(
                    "--out \(dir) holds an earlier campaign (plan.json or results); give --force to replace it, or another --out")
            }
            for sub in ["results", "logs"] { try? fm.removeItem(atPath: dir + "/" + sub) }
        }
        do {
            for sub in ["results", "logs"] { try fm.createDirectory(atPath: dir + "/" + sub, withIntermediateDirectories: true) }
        } catch {
            throw ValidationError("--out \(dir): cannot make the campaign's directories: \(error.localizedDescription)")
        }
    }

    func write(_ text: String, to path: String, executable: Bool) throws {
        do {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
            if executable { try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path) }
        } catch {
            throw ValidationError("cannot write \(path): \(error.localizedDescription)")
        }
    }

    func absolutePath(_ path: String) throws -> String {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        guard FileManager.default.isExecutableFile(atPath: absolute) else {
            throw ValidationError("--binary \(path): not an executable file")
        }
        return absolute
    }

    /// This process's executable, resolved, so that tasks on other nodes run the same build.
    func thisExecutable() throws -> String {
        let path = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: path).standardizedFileURL.path
    }
}
