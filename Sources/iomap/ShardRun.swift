// The sharded run of the random tools (fsx, random, race, stress): a campaign is a range of
// seeds, --seed to --seed + --seeds - 1, each a complete run of the tool; `--shard I/C` runs
// only the I-th of C blocks of it and prints one ShardLine. See ShardLine.swift.

import ArgumentParser
import Foundation
import IOMapTesting

/// The options that make a run of a random tool a campaign of seeds, or a shard of one.
struct SeedCampaignOptions: ParsableArguments {
    @Option(help: "Run this many seeds, --seed, --seed + 1, ..., each a complete run with the other options (default 1).")
    var seeds = 1
    @Option(
        help: """
            Run only block INDEX of COUNT (INDEX from 0) of the --seeds seeds, and print one JSON shard line on stdout \
            instead of the report (needs --seed).
            """)
    var shard: String?
    @Flag(help: "Without --shard: print the run's shard line (as shard 0/1) on stdout instead of each seed's report.")
    var shardLine = false

    /// The --shard option parsed; validate() has checked it.
    var shardSpec: ShardSpec? { shard.flatMap { try? ShardSpec.parse($0) } }

    /// Whether the run prints a shard line rather than the tool's reports.
    var printsShardLine: Bool { shard != nil || shardLine }

    /// Whether the run is the tool's single run of old: one seed, its report on stdout.
    var isSingleRun: Bool { seeds == 1 && !printsShardLine }

    /// Checks the options with the tool's --seed: a sharded run needs one, since shards that
    /// chose their first seeds at random would belong to different campaigns.
    func check(seed: UInt64?, json: Bool) throws {
        guard (1...ShardSpec.maxUnits).contains(seeds) else {
            throw ValidationError("--seeds must be from 1 to \(ShardSpec.maxUnits), got \(seeds)")
        }
        if let shard {
            do { _ = try ShardSpec.parse(shard) } catch { throw ValidationError(error.description) }
            guard seed != nil else {
                throw ValidationError("--shard needs --seed: every shard of a campaign must start from the same seed")
            }
            if shardLine { throw ValidationError("--shard-line is for a run without --shard, which prints its shard line anyway") }
        }
        if json && seeds > 1 && !printsShardLine {
            throw ValidationError("--json prints one run's object; with --seeds above 1 use --shard-line for one line of them all")
        }
        if let seed, seed > UInt64.max - UInt64(seeds - 1) {
            throw ValidationError("--seed \(seed) with --seeds \(seeds) runs past the largest seed, \(UInt64.max)")
        }
    }
}

/// A random tool whose runs are a campaign of seeds (fsx, random, race, stress).
protocol SeedCampaignCommand: ParsableCommand {
    var campaign: SeedCampaignOptions { get }
}

extension Fsx: SeedCampaignCommand {}
extension Random: SeedCampaignCommand {}
extension Race: SeedCampaignCommand {}
extension Stress: SeedCampaignCommand {}

/// What one seed's run of a tool found: its counters and its violations (each with the
/// command line that replays it alone).
struct SeedOutcome {
    var counts: [String: Int] = [:]
    var violations: [(message: String, replay: String)] = []
}

/// Runs the seeds of `options` with `runOne` (seed, whether the run is part of a shard line,
/// so that it keeps stdout for the line) and exits as the runs say: 1 when any found a
/// violation. `campaign` is the tool's options other than the seeds and --shard, canonical.
func runSeedCampaign(
    tool: String, campaign: String, options: SeedCampaignOptions, seed: UInt64?,
    runOne: (UInt64, _ quiet: Bool) throws -> SeedOutcome
) throws {
    if options.isSingleRun {
        if !(try runOne(runSeed(seed), false).violations.isEmpty) { throw ExitStatus.violation }
        return
    }
    let first = runSeed(seed)
    let spec = options.shardSpec ?? ShardSpec(index: 0, count: 1)
    let block = options.printsShardLine ? shardBlock(spec, of: options.seeds) : 0..<options.seeds
    let start = ContinuousClock.now
    var counts: [String: Int] = ["runs": 0, "violations": 0]
    var violations: [ShardLine.Violation] = []
    for unit in block {
        let s = first + UInt64(unit)
        if options.printsShardLine { say("iomap \(tool): seed \(s) (\(unit - block.lowerBound + 1) of \(block.count), shard \(spec))") }
        let outcome = try runOne(s, options.printsShardLine)
        counts.merge(outcome.counts, uniquingKeysWith: +)
        counts["runs", default: 0] += 1
        counts["violations", default: 0] += outcome.violations.count
        violations += outcome.violations.map { ShardLine.Violation(unit: s, message: $0.message, replay: $0.replay) }
    }
    if options.printsShardLine {
        let line = ShardLine(
            tool: tool, campaign: "\(tool) --seed \(first) --seeds \(options.seeds) \(campaign)", shard: spec,
            space: .init(kind: "seeds", first: first, units: options.seeds, covered: block), counts: counts,
            violations: violations, status: violations.isEmpty ? 0 : 1, elapsedSeconds: (ContinuousClock.now - start).inSeconds)
        printJSON(line)
    }
    if !violations.isEmpty { throw ExitStatus.violation }
}

/// Where a seed's run prints what the tool prints on stdout: there, or on stderr when stdout
/// is kept for a shard line.
func reportPrinter(quiet: Bool) -> (String) -> Void { quiet ? { say($0) } : { print($0) } }

/// The block of `units` a shard runs: `spec.block(of:)`, or, with IOMAP_SHARD_SPLIT_CANARY=1
/// in the environment, a block one unit too long (every shard but the last overlapping the
/// next): the deliberate bug the tests' coverage check must catch.
func shardBlock(_ spec: ShardSpec, of units: Int) -> Range<Int> {
    let block = spec.block(of: units)
    guard ProcessInfo.processInfo.environment["IOMAP_SHARD_SPLIT_CANARY"] == "1" else { return block }
    return block.lowerBound..<min(units, block.upperBound + 1)
}
