// Counterpart: fstests' fsx (ltp/fsx.c) picks its next op uniformly (test()); a mix is the
// weighted choice a preset asks for instead, with the engine-only events (writeback,
// reclaim, drop_caches) and the races at hook point H3 among the choices.

import ExtentFS
import IOMap
import IOMapBase

/// What a weighted generation step may produce.
public enum FsxChoice: Sendable, Equatable {
    /// An fsx op; a write carries no race.
    case op(FsxOpName)
    /// A write carrying a race of one of the mix's race kinds.
    case racedWrite
    /// Write back a random range.
    case writeback
    /// Reclaim to a random target.
    case reclaim
    /// Drop every clean folio (recorded as `#@ reclaim 0`, which evicts the same folios).
    case dropCaches
}

/// Weighted generation: choices and race kinds with their weights, in a fixed order, so
/// that a seed makes the same run everywhere.
public struct FsxMix: Sendable {
    public var choices: [(FsxChoice, Int)]
    public var races: [(FsxRaceKind, Int)]
    /// The largest store a mapwrite race makes.
    public var raceStoreMax: Int
    /// Half of all offsets are aligned down to a block or a page, where the write path's
    /// edge cases live.
    public var alignOffsets: Bool

    public init(choices: [(FsxChoice, Int)], races: [(FsxRaceKind, Int)], raceStoreMax: Int = 16, alignOffsets: Bool = true) {
        self.choices = choices
        self.races = races
        self.raceStoreMax = raceStoreMax
        self.alignOffsets = alignOffsets
    }
}

extension FsxRun {
    /// A random entry from `mix`.
    mutating func generate(_ mix: FsxMix) -> FsxEntry {
        let maxLen = config.maxFileSize
        switch pick(mix.choices) ?? .op(.fsync) {
        case .writeback:
            let (o, l) = mixRange(mix, maxLength: maxLen, within: maxLen)
            return .writeback(offset: o, length: l)
        case .reclaim: return .reclaim(target: Int.random(in: 0...maxLen, using: &rng))
        case .dropCaches: return .reclaim(target: 0)
        case .racedWrite:
            var op = mixOp(.write, mix)
            let kind = pick(mix.races) ?? .mapwrite
            let fraction = Double.random(in: 0..<1, using: &rng)
            op.raceRequest = FsxRaceRequest(
                kind: kind, fraction: fraction, length: Int.random(in: 1...max(1, mix.raceStoreMax), using: &rng))
            return .op(op)
        case .op(let name): return .op(mixOp(name, mix))
        }
    }

    /// An op of `name` with the random runner's ranges: anywhere below the largest file size,
    /// or within EOF for the mapping's ops when the file is not empty.
    mutating func mixOp(_ name: FsxOpName, _ mix: FsxMix) -> FsxOp {
        let (maxLen, size) = (config.maxFileSize, model.size)
        switch name {
        case .mapread, .mapwrite:
            let limit = size > 0 ? size : maxLen
            let (o, l) = mixRange(mix, maxLength: min(config.maxOpSize, limit), within: limit)
            return FsxOp(name, [o, l, size])
        case .truncate:
            return FsxOp(.truncate, [0, Int.random(in: 0...maxLen, using: &rng), size])
        case .fallocate, .zero_range:
            let (o, l) = mixRange(mix, maxLength: config.maxOpSize, within: maxLen)
            return FsxOp(name, [o, l, size], keepSize: Bool.random(using: &rng))
        case .copy_range:
            let (s, l) = mixRange(mix, maxLength: config.maxOpSize, within: max(size, 1))
            var d = Int.random(in: 0..<maxLen, using: &rng)
            // copy_file_range refuses overlapping ranges in one file; fsx moves the target.
            if d + l > s && d < s + l { d = (s + l + Int.random(in: 0..<4096, using: &rng)) % maxLen }
            return FsxOp(.copy_range, [s, max(1, min(l, maxLen - d)), d, size])
        case .fsync:
            return FsxOp(.fsync, [0, 0, size])
        default:
            let (o, l) = mixRange(mix, maxLength: config.maxOpSize, within: maxLen)
            return FsxOp(name, [o, l, size])
        }
    }

    /// A range of 1 to `maxLength` bytes inside `[0, limit)`, its offset aligned down to a
    /// block or a page half the time.
    mutating func mixRange(_ mix: FsxMix, maxLength: Int, within limit: Int) -> (Int, Int) {
        let length = Int.random(in: 1...max(1, min(maxLength, limit)), using: &rng)
        var offset = Int.random(in: 0...max(0, limit - length), using: &rng)
        if mix.alignOffsets {
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: offset = roundDown(offset, config.blockSize)
            case 1: offset = roundDown(offset, pageSize)
            default: break
            }
        }
        return (offset, length)
    }

    /// A choice by weight, or nil when every weight is zero.
    mutating func pick<T>(_ weighted: [(T, Int)]) -> T? {
        let total = weighted.reduce(0) { $0 + max(0, $1.1) }
        guard total > 0 else { return nil }
        var r = Int.random(in: 0..<total, using: &rng)
        for (choice, weight) in weighted where weight > 0 {
            if r < weight { return choice }
            r -= weight
        }
        return nil
    }
}
