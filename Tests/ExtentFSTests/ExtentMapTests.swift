// The per-file extent map (the in-core XFS extent list): merging of same-state neighbours,
// splitting on removal, the two conversions, the counters, edge lookups, the sequence number
// that goes stale exactly when the map changes, and a seeded randomized comparison against a
// per-block model.

import IOMapBase
import Testing

@testable import ExtentFS

private func delalloc(_ start: Int, _ count: Int) -> ExtentRecord {
    ExtentRecord(startBlock: start, blockCount: count, state: .delalloc)
}

private func unwritten(_ start: Int, _ count: Int, at disk: Int) -> ExtentRecord {
    ExtentRecord(startBlock: start, blockCount: count, state: .unwritten, diskBlock: disk)
}

private func written(_ start: Int, _ count: Int, at disk: Int) -> ExtentRecord {
    ExtentRecord(startBlock: start, blockCount: count, state: .written, diskBlock: disk)
}

/// A map made by inserting `records` in order: the setup of the tests whose subject is not insert.
private func makeMap(_ records: ExtentRecord...) -> ExtentMap {
    var map = ExtentMap()
    for record in records { map.insert(record) }
    return map
}

/// The map's two block counters, then its invariants: what every change must leave behind.
private func expectCounts(
    _ map: ExtentMap, delalloc: Int, allocated: Int, sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(map.delallocBlocks == delalloc, sourceLocation: sourceLocation)
    #expect(map.allocatedBlocks == allocated, sourceLocation: sourceLocation)
    map.checkInvariants()
}

@Suite("ExtentMap")
struct ExtentMapTests {
    // MARK: Insert and merging

    @Test("insert merges delalloc neighbours on either side, always")
    func insertMergesDelalloc() {
        // Goal: adjacent delalloc records become one record, whichever side the neighbour is on.
        var map = ExtentMap()
        map.insert(delalloc(4, 4))
        map.insert(delalloc(0, 4))
        #expect(map.records == [delalloc(0, 8)])
        map.insert(delalloc(10, 2))
        #expect(map.records == [delalloc(0, 8), delalloc(10, 2)])
        // Filling the gap merges with both neighbours at once.
        map.insert(delalloc(8, 2))
        #expect(map.records == [delalloc(0, 12)])
        expectCounts(map, delalloc: 12, allocated: 0)
    }

    @Test("insert merges allocated neighbours only when their disk blocks are contiguous", arguments: [ExtentState.unwritten, .written])
    func insertMergesAllocatedWhenContiguous(state: ExtentState) {
        // Goal: unwritten/written records merge exactly when file and disk blocks both continue.
        func rec(_ s: Int, _ c: Int, _ d: Int) -> ExtentRecord {
            ExtentRecord(startBlock: s, blockCount: c, state: state, diskBlock: d)
        }
        var map = ExtentMap()
        map.insert(rec(0, 4, 100))
        map.insert(rec(4, 4, 104))  // contiguous on disk: merges
        #expect(map.records == [rec(0, 8, 100)])
        map.insert(rec(8, 4, 200))  // adjacent in the file, not on disk: stays apart
        #expect(map.records == [rec(0, 8, 100), rec(8, 4, 200)])
        map.insert(rec(14, 2, 206))
        // Adjacent on both sides in the file, contiguous with neither on disk.
        map.insert(rec(12, 2, 300))
        #expect(map.records == [rec(0, 8, 100), rec(8, 4, 200), rec(12, 2, 300), rec(14, 2, 206)])
        map.remove(from: 12, to: 14)
        map.insert(rec(12, 2, 204))  // contiguous with both: one record
        #expect(map.records == [rec(0, 8, 100), rec(8, 8, 200)])
        // Contiguous with the left neighbour only (the right one is a different disk run).
        map.insert(rec(20, 4, 500))
        map.insert(rec(16, 4, 208))
        #expect(map.records == [rec(0, 8, 100), rec(8, 12, 200), rec(20, 4, 500)])
        // Contiguous with the right neighbour only (the left one is a different disk run).
        map.insert(rec(26, 4, 800))
        map.insert(rec(24, 2, 798))
        #expect(map.records == [rec(0, 8, 100), rec(8, 12, 200), rec(20, 4, 500), rec(24, 6, 798)])
        expectCounts(map, delalloc: 0, allocated: 30)
    }

    @Test("insert never merges records of different states, even with contiguous disk blocks")
    func insertKeepsDifferentStatesApart() {
        // Goal: state is part of the merge rule; delalloc/unwritten/written neighbours stay separate.
        var map = ExtentMap()
        map.insert(delalloc(0, 4))
        map.insert(unwritten(4, 4, at: 104))
        map.insert(written(8, 4, at: 108))  // disk-contiguous with the unwritten record
        map.insert(delalloc(12, 4))
        map.insert(unwritten(16, 4, at: 116))  // disk-contiguous with nothing before it
        #expect(
            map.records == [delalloc(0, 4), unwritten(4, 4, at: 104), written(8, 4, at: 108), delalloc(12, 4), unwritten(16, 4, at: 116)])
        expectCounts(map, delalloc: 8, allocated: 12)
    }

    @Test("inserting over an existing record traps")
    func insertOverlapTraps() async {
        // Goal: insert only fills holes; overlapping an existing record is a programming error.
        await #expect(processExitsWith: .failure) {
            var map = ExtentMap()
            map.insert(ExtentRecord(startBlock: 10, blockCount: 10, state: .delalloc))
            map.insert(ExtentRecord(startBlock: 5, blockCount: 6, state: .delalloc))
        }
    }

    // MARK: Remove

    @Test("remove splits records at both edges and returns the removed pieces clipped")
    func removeSplitsAtEdges() {
        // Goal: a removal straddling records leaves their outer parts and reports exactly the inner parts.
        var map = makeMap(delalloc(0, 10), unwritten(10, 10, at: 100), written(25, 5, at: 400))
        let before = map.sequence
        let removed = map.remove(from: 5, to: 27)
        #expect(removed == [delalloc(5, 5), unwritten(10, 10, at: 100), written(25, 2, at: 400)])
        #expect(map.records == [delalloc(0, 5), written(27, 3, at: 402)])
        #expect(map.sequence == before + 1)
        expectCounts(map, delalloc: 5, allocated: 3)

        // Removing the middle of one record leaves two pieces with the right disk offsets.
        var one = ExtentMap()
        one.insert(written(0, 16, at: 1000))
        let middle = one.remove(from: 4, to: 6)
        #expect(middle == [written(4, 2, at: 1004)])
        #expect(one.records == [written(0, 4, at: 1000), written(6, 10, at: 1006)])
        one.checkInvariants()
    }

    @Test("remove over a hole, or of an empty range, changes nothing and keeps the sequence")
    func removeNothingKeepsSequence() {
        // Goal: the sequence goes stale only on a real change, so a no-op removal must not bump it.
        var map = makeMap(delalloc(0, 4), written(8, 4, at: 50))
        let seq = map.sequence
        let records = map.records
        let inHole = map.remove(from: 4, to: 8)  // exactly the hole between records
        #expect(inHole == [])
        let pastEnd = map.remove(from: 12, to: 1000)  // past the last record
        #expect(pastEnd == [])
        let emptyRange = map.remove(from: 2, to: 2)  // empty range inside a record
        #expect(emptyRange == [])
        let inverted = map.remove(from: 3, to: 1)  // inverted range
        #expect(inverted == [])
        #expect(map.sequence == seq)
        #expect(map.records == records)
        #expect(map.delallocBlocks == 4)
        // The predicate form with nothing matching changes nothing either.
        let noneMatching = map.remove(from: 0, to: 100, where: { $0.state == .unwritten })
        #expect(noneMatching == [])
        #expect(map.sequence == seq)
        #expect(map.records == records)
    }

    @Test("every changing call moves the sequence; insert and remove by exactly one")
    func sequenceBumps() {
        // Goal: mapping cookies go stale on every change: insert/remove bump once, conversions at least once.
        var map = ExtentMap()
        #expect(map.sequence == 0)
        map.insert(delalloc(0, 8))
        #expect(map.sequence == 1)
        map.insert(delalloc(8, 8))  // a merging insert is still one change
        #expect(map.sequence == 2)
        map.remove(from: 4, to: 12)
        #expect(map.sequence == 3)
        var seq = map.sequence
        _ = map.convertDelalloc(holding: 0, to: [BlockExtent(start: 100, count: 4)])
        #expect(map.sequence > seq)
        seq = map.sequence
        let converted = map.convertUnwritten(from: 0, to: 4)
        #expect(converted)
        #expect(map.sequence > seq)
        seq = map.sequence
        // Converting again finds nothing unwritten: unchanged.
        let again = map.convertUnwritten(from: 0, to: 4)
        #expect(!again)
        let beyond = map.convertUnwritten(from: 4, to: 100)
        #expect(!beyond)
        #expect(map.sequence == seq)
        #expect(map.records == [written(0, 4, at: 100), delalloc(12, 4)])
    }

    // MARK: Conversions

    @Test("convertDelalloc replaces exactly the delalloc record holding a block with unwritten pieces in file order")
    func convertDelallocPieces() {
        // Goal: allocation turns one whole delalloc record into unwritten records laid out piece by piece.
        var map = makeMap(delalloc(0, 4), written(4, 2, at: 10), delalloc(6, 8), delalloc(20, 4))
        let replaced = map.convertDelalloc(
            holding: 9, to: [BlockExtent(start: 300, count: 3), BlockExtent(start: 50, count: 5)])
        #expect(replaced == delalloc(6, 8))
        #expect(map.records == [delalloc(0, 4), written(4, 2, at: 10), unwritten(6, 3, at: 300), unwritten(9, 5, at: 50), delalloc(20, 4)])
        expectCounts(map, delalloc: 8, allocated: 10)
    }

    @Test("convertDelalloc pieces merge with each other and with a disk-contiguous unwritten neighbour")
    func convertDelallocMerges() {
        // Goal: the result is canonical: contiguous pieces and a contiguous unwritten neighbour become one record.
        var map = makeMap(unwritten(0, 4, at: 96), delalloc(4, 6), unwritten(10, 2, at: 106))
        _ = map.convertDelalloc(holding: 4, to: [BlockExtent(start: 100, count: 2), BlockExtent(start: 102, count: 4)])
        #expect(map.records == [unwritten(0, 12, at: 96)])
        expectCounts(map, delalloc: 0, allocated: 12)
    }

    @Test("convertDelalloc on a block not held by delalloc traps")
    func convertDelallocNotDelallocTraps() async {
        // Goal: converting something that is not a reservation is a programming error.
        await #expect(processExitsWith: .failure) {
            var map = ExtentMap()
            map.insert(ExtentRecord(startBlock: 0, blockCount: 4, state: .unwritten, diskBlock: 7))
            _ = map.convertDelalloc(holding: 1, to: [BlockExtent(start: 9, count: 4)])
        }
    }

    @Test("convertDelalloc with pieces not summing to the record traps")
    func convertDelallocWrongLengthTraps() async {
        // Goal: an allocation must cover the reservation exactly.
        await #expect(processExitsWith: .failure) {
            var map = ExtentMap()
            map.insert(ExtentRecord(startBlock: 0, blockCount: 4, state: .delalloc))
            _ = map.convertDelalloc(holding: 1, to: [BlockExtent(start: 9, count: 3)])
        }
    }

    @Test("convertUnwritten converts only the unwritten parts of the range and merges the result")
    func convertUnwrittenOnlyUnwritten() {
        // Goal: I/O completion flips unwritten to written inside the range, leaves everything else, and re-merges.
        var map = makeMap(unwritten(0, 10, at: 100), delalloc(10, 5), unwritten(15, 5, at: 200), written(20, 5, at: 205))
        let firstPass = map.convertUnwritten(from: 5, to: 18)
        #expect(firstPass)
        #expect(
            map.records == [
                unwritten(0, 5, at: 100), written(5, 5, at: 105), delalloc(10, 5), written(15, 3, at: 200), unwritten(18, 2, at: 203),
                written(20, 5, at: 205),
            ])
        map.checkInvariants()
        // Converting the rest makes [15, 25) one written run on disk 200...
        let secondPass = map.convertUnwritten(from: 15, to: 25)
        #expect(secondPass)
        #expect(map.records == [unwritten(0, 5, at: 100), written(5, 5, at: 105), delalloc(10, 5), written(15, 10, at: 200)])
        // ...and [0, 5) merges into the written record after it.
        let thirdPass = map.convertUnwritten(from: 0, to: 100)
        #expect(thirdPass)
        #expect(map.records == [written(0, 10, at: 100), delalloc(10, 5), written(15, 10, at: 200)])
        expectCounts(map, delalloc: 5, allocated: 20)
    }

    // MARK: Counters and lookups

    @Test("delallocBlocks and allocatedBlocks follow every kind of change")
    func counters() {
        // Goal: i_delayed_blks and the allocated count are exact after inserts, removes and conversions.
        var map = ExtentMap()
        #expect(map.delallocBlocks == 0 && map.allocatedBlocks == 0)
        map.insert(delalloc(0, 16))
        map.insert(delalloc(32, 8))
        #expect(map.delallocBlocks == 24 && map.allocatedBlocks == 0)
        map.remove(from: 4, to: 8)
        #expect(map.delallocBlocks == 20 && map.allocatedBlocks == 0)
        _ = map.convertDelalloc(holding: 10, to: [BlockExtent(start: 0, count: 8)])
        #expect(map.delallocBlocks == 12 && map.allocatedBlocks == 8)
        map.insert(written(100, 3, at: 900))
        #expect(map.delallocBlocks == 12 && map.allocatedBlocks == 11)
        map.convertUnwritten(from: 0, to: 200)
        #expect(map.delallocBlocks == 12 && map.allocatedBlocks == 11)
        map.remove(from: 0, to: 1000)
        #expect(map.delallocBlocks == 0 && map.allocatedBlocks == 0)
        #expect(map.records.isEmpty)
        map.checkInvariants()
    }

    @Test("lookup, next(atOrAfter:) and records(from:to:) at record edges")
    func lookupsAtEdges() {
        // Goal: half-open record bounds are honoured by every query, and clipping adjusts disk blocks.
        var map = ExtentMap()
        #expect(map.lookup(0) == nil)
        #expect(map.next(atOrAfter: 0) == nil)
        #expect(map.records(from: 0, to: 100).isEmpty)
        let a = written(10, 10, at: 500)
        let b = delalloc(30, 10)
        map.insert(a)
        map.insert(b)
        #expect(map.lookup(9) == nil)
        #expect(map.lookup(10) == a)
        #expect(map.lookup(19) == a)
        #expect(map.lookup(20) == nil)
        #expect(map.lookup(29) == nil)
        #expect(map.lookup(30) == b)
        #expect(map.lookup(39) == b)
        #expect(map.lookup(40) == nil)

        #expect(map.next(atOrAfter: 0) == a)
        #expect(map.next(atOrAfter: 19) == a)
        #expect(map.next(atOrAfter: 20) == b)
        #expect(map.next(atOrAfter: 39) == b)
        #expect(map.next(atOrAfter: 40) == nil)

        #expect(map.records(from: 15, to: 35) == [written(15, 5, at: 505), delalloc(30, 5)])
        #expect(map.records(from: 20, to: 30) == [])
        #expect(map.records(from: 19, to: 31) == [written(19, 1, at: 509), delalloc(30, 1)])
        #expect(map.records(from: 10, to: 40) == [a, b])
        #expect(map.records(from: 0, to: 1000) == [a, b])
        #expect(map.records(from: 12, to: 12) == [])
        #expect(map.records(from: 40, to: 50) == [])
    }

    // MARK: Invariant canary

    @Test("checkInvariants traps on a corrupt map (canary)")
    func checkInvariantsCanary() async {
        // Goal: the structural check is live. `records` and the counters are private(set), so
        // @testable offers no way to corrupt them; the public insert does accept a record at a
        // negative block, which checkInvariants must reject ("bad extent record").
        var healthy = ExtentMap()
        healthy.insert(ExtentRecord(startBlock: 0, blockCount: 2, state: .delalloc))
        healthy.checkInvariants()  // the control: the same shape at a valid block passes
        await #expect(processExitsWith: .failure) {
            var map = ExtentMap()
            map.insert(ExtentRecord(startBlock: -1, blockCount: 2, state: .delalloc))
            map.checkInvariants()
        }
    }

    // MARK: Randomized comparison with a per-block model

    @Test("random inserts, removes and conversions match a per-block model", arguments: [UInt64(1), 42, 20_221_128])
    func randomAgainstModel(seed: UInt64) {
        // Goal: after every operation the map equals the canonical (fully merged) form of a
        // per-block model, and every query, counter and the sequence agree with it.
        var harness = ExtentMapModelHarness(seed: seed)
        for op in 0..<4000 {
            if let failure = harness.step(op) {
                Issue.record("seed \(seed), op \(op): \(failure)\nlast ops:\n\(harness.log.suffix(8).joined(separator: "\n"))")
                return
            }
        }
        // The run must have exercised every operation and every state.
        #expect(harness.counts.values.allSatisfy { $0 > 100 }, "seed \(seed): operation mix \(harness.counts)")
        #expect(harness.counts.count == 4, "seed \(seed): operation mix \(harness.counts)")
        #expect(harness.maxRecords > 10, "seed \(seed): the map never grew past \(harness.maxRecords) records")
    }
    @Test("a lookup with a cursor finds what the search finds, whatever the cursor holds")
    func cursorLookup() {
        var random = SeededRandom(seed: 4242)
        var map = ExtentMap()
        var block = 0
        for _ in 0..<200 {
            block += Int.random(in: 1...5, using: &random)
            let count = Int.random(in: 1...4, using: &random)
            map.insert(ExtentRecord(startBlock: block, blockCount: count, state: .delalloc))
            block += count
        }
        print("cursor test over \(map.records.count) records")
        var cursor = 0
        var hits = 0
        for probe in 0..<(block + 10) {
            for start in [cursor, -3, 0, map.records.count, map.records.count + 7, Int.random(in: 0..<map.records.count, using: &random)] {
                var c = start
                #expect(map.next(atOrAfter: probe, cursor: &c) == map.next(atOrAfter: probe), "block \(probe), cursor \(start)")
                #expect(c == map.firstIndex(endingAfter: probe))
            }
            // Walking forward, the cursor is right (or one short) almost every time.
            let before = cursor
            _ = map.next(atOrAfter: probe, cursor: &cursor)
            if cursor == before || cursor == before + 1 { hits += 1 }
        }
        #expect(hits > block * 9 / 10)
    }
}

/// One block of the model: nil is a hole.
private struct ModelCell: Equatable {
    var state: ExtentState
    var disk: Int?
}

/// Drives an ExtentMap and a per-block array model with the same random operations.
private struct ExtentMapModelHarness {
    static let blocks = 512

    let seed: UInt64
    var random: SeededRandom
    var map = ExtentMap()
    var model = [ModelCell?](repeating: nil, count: blocks)
    var nextDisk = 10_000
    var log: [String] = []
    var counts: [String: Int] = [:]
    var maxRecords = 0

    init(seed: UInt64) {
        self.seed = seed
        self.random = SeededRandom(seed: seed)
    }

    /// The canonical records of `model` over `[from, to)`: maximal runs that the map's merge
    /// rule would join (same state; for allocated ones, consecutive disk blocks).
    func canonical(_ model: [ModelCell?], from: Int = 0, to: Int = blocks) -> [ExtentRecord] {
        var out: [ExtentRecord] = []
        var b = from
        while b < to {
            guard let c = model[b] else {
                b += 1
                continue
            }
            var e = b + 1
            while e < to, let n = model[e], n.state == c.state, n.disk == c.disk.map({ $0 + (e - b) }) { e += 1 }
            out.append(ExtentRecord(startBlock: b, blockCount: e - b, state: c.state, diskBlock: c.disk))
            b = e
        }
        return out
    }

    /// The canonical record of the whole model holding `block`, if any.
    func record(holding block: Int, in records: [ExtentRecord]) -> ExtentRecord? {
        records.first { $0.startBlock <= block && block < $0.endBlock }
    }

    mutating func int(_ range: Range<Int>) -> Int { Int.random(in: range, using: &random) }

    mutating func step(_ op: Int) -> String? {
        let before = canonical(model)
        let seq = map.sequence
        var changed = false
        var exactBump = false
        let choice = int(0..<100)
        if choice < 40 {
            guard let (s, e) = pickHoleRun() else { return verify(before: before, seq: seq, changed: false, exact: false) }
            let state: ExtentState = [.delalloc, .unwritten, .written][int(0..<3)]
            var disk: Int? = nil
            if state != .delalloc {
                // Often continue a neighbour's disk run so that merges happen.
                let left = s > 0 ? model[s - 1] : nil
                let right = e < Self.blocks ? model[e] : nil
                switch int(0..<3) {
                case 0 where left?.disk != nil: disk = left!.disk! + 1
                case 1 where right?.disk != nil && right!.disk! >= e - s: disk = right!.disk! - (e - s)
                default:
                    disk = nextDisk
                    nextDisk += e - s + int(0..<2)
                }
            }
            let r = ExtentRecord(startBlock: s, blockCount: e - s, state: state, diskBlock: disk)
            log.append("insert \(r)")
            counts["insert", default: 0] += 1
            map.insert(r)
            for b in s..<e { model[b] = ModelCell(state: state, disk: disk.map { $0 + (b - s) }) }
            changed = true
            exactBump = true
        } else if choice < 65 {
            let from = int(0..<Self.blocks)
            let to = min(Self.blocks, from + int(0..<48))
            log.append("remove [\(from), \(to))")
            counts["remove", default: 0] += 1
            let expected = canonical(model, from: from, to: to)
            let removed = map.remove(from: from, to: to)
            for b in from..<to { model[b] = nil }
            if removed != expected { return "remove returned \(removed), expected \(expected)" }
            changed = !expected.isEmpty
            exactBump = true
        } else if choice < 85 {
            let delallocBlocks = (0..<Self.blocks).filter { model[$0]?.state == .delalloc }
            guard !delallocBlocks.isEmpty else { return verify(before: before, seq: seq, changed: false, exact: false) }
            let block = delallocBlocks[int(0..<delallocBlocks.count)]
            let target = record(holding: block, in: before)!
            var pieces: [BlockExtent] = []
            var left = target.blockCount
            while left > 0 {
                let n = int(1..<(min(left, 6) + 1))
                // Sometimes continue the previous piece's run, or the left neighbour's.
                let start: Int
                if let last = pieces.last, int(0..<3) == 0 {
                    start = last.end
                } else if pieces.isEmpty, target.startBlock > 0, let l = model[target.startBlock - 1], l.state == .unwritten,
                    int(0..<2) == 0
                {
                    start = l.disk! + 1
                } else {
                    start = nextDisk
                    nextDisk += n + 1
                }
                pieces.append(BlockExtent(start: start, count: n))
                left -= n
            }
            log.append("convertDelalloc holding \(block) (\(target)) to \(pieces)")
            counts["convertDelalloc", default: 0] += 1
            let replaced = map.convertDelalloc(holding: block, to: pieces)
            if replaced != target { return "convertDelalloc replaced \(replaced), expected \(target)" }
            var fileBlock = target.startBlock
            for p in pieces {
                for i in 0..<p.count { model[fileBlock + i] = ModelCell(state: .unwritten, disk: p.start + i) }
                fileBlock += p.count
            }
            changed = true
        } else {
            let from = int(0..<Self.blocks)
            let to = min(Self.blocks, from + int(1..<64))
            log.append("convertUnwritten [\(from), \(to))")
            counts["convertUnwritten", default: 0] += 1
            let expectChange = (from..<to).contains { model[$0]?.state == .unwritten }
            let result = map.convertUnwritten(from: from, to: to)
            for b in from..<to where model[b]?.state == .unwritten { model[b]!.state = .written }
            if result != expectChange { return "convertUnwritten returned \(result), expected \(expectChange)" }
            changed = expectChange
        }
        return verify(before: before, seq: seq, changed: changed, exact: exactBump)
    }

    /// A random hole run `[s, e)` of at most 24 blocks, or nil when the map is full.
    mutating func pickHoleRun() -> (Int, Int)? {
        let holes = (0..<Self.blocks).filter { model[$0] == nil }
        guard !holes.isEmpty else { return nil }
        let s = holes[int(0..<holes.count)]
        var e = s + 1
        let limit = s + int(1..<25)
        while e < Self.blocks, e < limit, model[e] == nil { e += 1 }
        return (s, e)
    }

    mutating func verify(before: [ExtentRecord], seq: UInt64, changed: Bool, exact: Bool) -> String? {
        map.checkInvariants()
        let expected = canonical(model)
        maxRecords = max(maxRecords, expected.count)
        if map.records != expected { return "records \(map.records)\nexpected \(expected)" }
        if changed {
            if exact && map.sequence != seq &+ 1 { return "sequence \(seq) -> \(map.sequence), expected one bump" }
            if map.sequence == seq { return "the map changed but the sequence stayed \(seq)" }
        } else if map.sequence != seq {
            return "nothing changed but the sequence moved \(seq) -> \(map.sequence)"
        }
        let delalloc = model.reduce(0) { $0 + ($1?.state == .delalloc ? 1 : 0) }
        let allocated = model.reduce(0) { $0 + ($1 != nil && $1!.state != .delalloc ? 1 : 0) }
        if map.delallocBlocks != delalloc { return "delallocBlocks \(map.delallocBlocks), model \(delalloc)" }
        if map.allocatedBlocks != allocated { return "allocatedBlocks \(map.allocatedBlocks), model \(allocated)" }
        var holder = [ExtentRecord?](repeating: nil, count: Self.blocks + 1)
        for r in expected { for b in r.startBlock..<r.endBlock { holder[b] = r } }
        for b in 0...Self.blocks {
            let want = holder[b]
            if map.lookup(b) != want { return "lookup(\(b)) = \(String(describing: map.lookup(b))), expected \(String(describing: want))" }
        }
        let probe = int(0..<(Self.blocks + 1))
        let wantNext = expected.first { $0.endBlock > probe }
        if map.next(atOrAfter: probe) != wantNext {
            return "next(atOrAfter: \(probe)) = \(String(describing: map.next(atOrAfter: probe))), expected \(String(describing: wantNext))"
        }
        let from = int(0..<Self.blocks)
        let to = min(Self.blocks, from + int(0..<80))
        if map.records(from: from, to: to) != canonical(model, from: from, to: to) {
            return
                "records(from: \(from), to: \(to)) = \(map.records(from: from, to: to)), expected \(canonical(model, from: from, to: to))"
        }
        return nil
    }

}
