// Counterpart: fstests' fsx (ltp/fsx.c): test()'s choice of the next operation and its
// ranges; and, for presets such as the random runner's, a weighted choice (FsxMix) in its
// place, with the engine-only events and the races writes carry.

import ExtentFS
import IOMap
import IOMapBase

extension FsxRun {
    /// A random entry, fsx-style.
    public mutating func generate() -> FsxEntry {
        if let mix = config.mix { return generate(mix) }
        let maxLen = config.maxFileSize
        if config.engineEvents && Int.random(in: 0..<100, using: &rng) < 4 {
            if Bool.random(using: &rng) {
                let offset = Int.random(in: 0..<maxLen, using: &rng)
                return .writeback(offset: offset, length: Int.random(in: 1...maxLen, using: &rng))
            }
            return .reclaim(target: Int.random(in: 0...maxLen, using: &rng))
        }
        let names = FsxOpName.allCases.filter {
            $0.isSupported && !config.disabled.contains($0) && $0 != .read_dontcache && $0 != .write_dontcache
        }
        let name = names.isEmpty ? FsxOpName.fsync : names[Int.random(in: 0..<names.count, using: &rng)]
        let size = model.size
        func range(_ limit: Int) -> (Int, Int) {
            let offset = Int.random(in: 0..<max(1, limit), using: &rng)
            let length = Int.random(in: 1...config.maxOpSize, using: &rng)
            return (offset, min(length, max(1, limit - offset)))
        }
        var op: FsxOp
        switch name {
        case .read, .mapread:
            let (o, l) = range(maxLen)
            op = FsxOp(name, [o, l, size])
        case .write, .mapwrite:
            let (o, l) = range(maxLen)
            op = FsxOp(name, [o, l, size])
            // The seed commit's race, single-threaded: a store through the mapping lands
            // inside a third of the writes, ahead of its cursor.
            if name == .write && config.engineEvents && config.races && Int.random(in: 0..<3, using: &rng) == 0 {
                let fraction = Double.random(in: 0..<1, using: &rng)
                op.raceRequest = FsxRaceRequest(kind: .mapwrite, fraction: fraction, length: Int.random(in: 1...64, using: &rng))
            }
        case .truncate:
            op = FsxOp(.truncate, [0, Int.random(in: 0..<maxLen, using: &rng), size])
        case .fallocate, .zero_range:
            let (o, l) = range(maxLen)
            op = FsxOp(name, [o, l, size], keepSize: Bool.random(using: &rng))
        case .punch_hole:
            let (o, l) = range(max(size, 1))
            op = FsxOp(.punch_hole, [o, l, size])
        case .copy_range:
            let (s, l) = range(max(size, 1))
            var d = Int.random(in: 0..<maxLen, using: &rng)
            // copy_file_range refuses overlapping ranges in one file; fsx moves the target.
            if d + l > s && d < s + l { d = (s + l + Int.random(in: 0..<4096, using: &rng)) % maxLen }
            op = FsxOp(.copy_range, [s, min(l, maxLen - d), d, size])
        default:
            op = FsxOp(.fsync, [0, 0, size])
        }
        if config.engineEvents && Int.random(in: 0..<100, using: &rng) < 2 { op.closeOpen = true }
        return .op(op)
    }
}
