// Campaigns split over many machines (`--shard INDEX/COUNT`, `iomap campaign`): the one
// contract between a shard and the merge. A sharded run of a tool prints exactly one JSON
// line on stdout, a `ShardLine`; `iomap campaign merge` reads a directory of them back and
// checks that together they cover the campaign's space once.
//
// The split is deterministic and needs no coordination: shard I of C takes the I-th of C
// contiguous, nearly equal blocks of the campaign's units (seeds, workloads, or schedule
// subtrees in the explorer's canonical order), so C shards cover exactly the units one
// unsharded run does, whatever machine runs which shard, in any order, retried or not.

import ArgumentParser

/// `--shard INDEX/COUNT`: which of COUNT equal parts of a campaign this run covers. INDEX
/// counts from 0, as a Slurm array task id and a Kubernetes completion index do.
struct ShardSpec: Hashable, Sendable, Codable, CustomStringConvertible, ExpressibleByArgument {
    var index: Int
    var count: Int

    /// The most shards a campaign may have.
    static let maxCount = 1_000_000

    init(index: Int, count: Int) {
        self.index = index
        self.count = count
    }

    /// Parses "INDEX/COUNT"; nil when it is not that (ArgumentParser then names the option).
    init?(argument: String) {
        guard let spec = try? Self.parse(argument) else { return nil }
        self = spec
    }

    /// Parses "INDEX/COUNT", saying what is wrong when it is not.
    static func parse(_ text: String) throws(ShardSpecError) -> ShardSpec {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let index = Int(parts[0]), let count = Int(parts[1]) else {
            throw ShardSpecError("--shard \(text): expected INDEX/COUNT, e.g. 0/8")
        }
        guard (1...maxCount).contains(count) else { throw ShardSpecError("--shard \(text): COUNT must be 1 to \(maxCount)") }
        guard (0..<count).contains(index) else {
            throw ShardSpecError("--shard \(text): INDEX counts from 0 and must be below COUNT (\(count))")
        }
        return ShardSpec(index: index, count: count)
    }

    var description: String { "\(index)/\(count)" }

    /// This shard's block of `units` units numbered from 0: [⌊units·I/C⌋, ⌊units·(I+1)/C⌋).
    /// The blocks of all C shards are disjoint and cover 0..<units; a shard may get none
    /// when there are fewer units than shards.
    func block(of units: Int) -> Range<Int> {
        precondition(units >= 0)
        func bound(_ i: Int) -> Int { Int((UInt64(units).multipliedFullWidth(by: UInt64(i)).low) / UInt64(count)) }
        // units·i fits in 64 bits for every count the option allows and any unit count
        // below 2^43; larger campaigns are refused where their units are counted.
        return bound(index)..<bound(index + 1)
    }

    /// The most units a sharded campaign may have, so that `block(of:)` cannot overflow.
    static let maxUnits = 1 << 43
}

struct ShardSpecError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One shard's result, printed as one JSON line (keys sorted) by a run with `--shard`.
struct ShardLine: Codable, Equatable, Sendable {
    /// The format's version; the merge refuses any other.
    static let currentFormat = 1

    var format = ShardLine.currentFormat
    /// The subcommand: fsx, random, race, stress, explore or crash.
    var tool: String
    /// What identifies the campaign: the tool's options other than --shard, in a canonical
    /// order, so that the merge can tell shards of one campaign from those of another.
    var campaign: String
    var shard: ShardSpec
    /// The campaign's whole space, and this shard's part of it.
    var space: Space
    /// Counters of the shard's work, summed by the merge key by key (runs, ops, schedules,
    /// states, …: whatever the tool counts).
    var counts: [String: Int]
    var violations: [Violation]
    /// The exit status the shard's run has: 0, or 1 when it found a violation.
    var status: Int
    var elapsedSeconds: Double
    /// explore with --shard-schedules only: every schedule the shard ran, as printed (left
    /// out of the line otherwise), so that shards can be checked against a whole search.
    var schedules: [String]? = nil

    enum CodingKeys: String, CodingKey {
        case format, tool, campaign, shard, space, counts, violations, status, schedules
        case elapsedSeconds = "elapsed_s"
    }

    /// The units of a campaign: `kind` names them (seeds, workloads, subtrees), `first` is
    /// the first unit's number (a seed, or 0), `units` how many the campaign has, and
    /// `covered` the numbers, relative to `first`, of those this shard ran.
    struct Space: Codable, Equatable, Sendable {
        var kind: String
        var first: UInt64
        var units: Int
        var covered: Range<Int>

        enum CodingKeys: String, CodingKey { case kind, first, units, covered }

        init(kind: String, first: UInt64, units: Int, covered: Range<Int>) {
            self.kind = kind
            self.first = first
            self.units = units
            self.covered = covered
        }

        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            kind = try c.decode(String.self, forKey: .kind)
            first = try c.decode(UInt64.self, forKey: .first)
            units = try c.decode(Int.self, forKey: .units)
            let bounds = try c.decode([Int].self, forKey: .covered)
            guard bounds.count == 2, bounds[0] <= bounds[1] else {
                throw DecodingError.dataCorruptedError(
                    forKey: .covered, in: c, debugDescription: "covered must be [start, end] with start <= end")
            }
            covered = bounds[0]..<bounds[1]
        }

        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(kind, forKey: .kind)
            try c.encode(first, forKey: .first)
            try c.encode(units, forKey: .units)
            try c.encode([covered.lowerBound, covered.upperBound], forKey: .covered)
        }
    }

    /// A violation the shard found: the unit it was in, what was wrong, and the one command
    /// line that replays it on any machine.
    struct Violation: Codable, Equatable, Sendable {
        var unit: UInt64
        var message: String
        var replay: String
    }
}
