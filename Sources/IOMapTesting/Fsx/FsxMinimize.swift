// Counterpart: fstests has no minimizer for fsx logs; this is delta debugging (Zeller's
// ddmin) over an fsx log, replaying each candidate from an empty file.

/// Delta debugging (Zeller's ddmin) over a failing entry list: the smallest list found that
/// still fails when replayed from an empty file.
public func minimizeFsx(_ config: FsxConfig, _ failing: [FsxEntry], maxRuns: Int = 2000) -> [FsxEntry] {
    var runs = 0
    // The checks read the file and so change what the cache holds; the replays check as the
    // failing run did, so that they see the same engine.
    func fails(_ entries: [FsxEntry]) -> Bool {
        runs += 1
        return runFsx(config, replay: entries).violation != nil
    }
    var current = failing
    var n = 2
    while current.count >= 2 && runs < maxRuns {
        let chunk = (current.count + n - 1) / n
        var reduced = false
        var i = 0
        while i < current.count && runs < maxRuns {
            let complement = Array(current[..<i]) + Array(current[min(current.count, i + chunk)...])
            if !complement.isEmpty && fails(complement) {
                current = complement
                n = max(n - 1, 2)
                reduced = true
                break
            }
            i += chunk
        }
        if !reduced {
            if n >= current.count { break }
            n = min(current.count, n * 2)
        }
    }
    return current
}
