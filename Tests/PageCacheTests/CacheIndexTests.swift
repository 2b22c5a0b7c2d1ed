import IOMapBase
import Testing

@testable import PageCache

/// A stand-in for a folio: compared by identity.
private final class IndexedItem {
    let key: Int
    init(_ key: Int) { self.key = key }
}

/// A sorted array of distinct keys with binary-search lookups.
private struct SortedKeys {
    private(set) var keys: [Int] = []

    /// The index of the first key >= `key`.
    func lowerBound(_ key: Int) -> Int {
        var low = 0
        var high = keys.count
        while low < high {
            let mid = (low + high) / 2
            if keys[mid] < key { low = mid + 1 } else { high = mid }
        }
        return low
    }

    func contains(_ key: Int) -> Bool {
        let i = lowerBound(key)
        return i < keys.count && keys[i] == key
    }

    mutating func insert(_ key: Int) {
        let i = lowerBound(key)
        if i < keys.count && keys[i] == key { return }
        keys.insert(key, at: i)
    }

    mutating func remove(_ key: Int) {
        let i = lowerBound(key)
        if i < keys.count && keys[i] == key { keys.remove(at: i) }
    }

    func ceiling(_ key: Int) -> Int? {
        let i = lowerBound(key)
        return i < keys.count ? keys[i] : nil
    }

    func floor(_ key: Int) -> Int? {
        let i = key == Int.max ? keys.count : lowerBound(key + 1)
        return i > 0 ? keys[i - 1] : nil
    }
}

/// The reference the index is compared with: a sorted dictionary plus one sorted key set per tag.
private struct IndexModel {
    var keys = SortedKeys()
    var items: [Int: IndexedItem] = [:]
    var tagged = [SortedKeys](repeating: SortedKeys(), count: CacheTag.allCases.count)
}

private let maxTestKey = (1 << 41) - 1

/// Draws a key from one of several clusters: small indices, around 2^32, around 2^40, and
/// the extremes of the supported range.
private func randomKey(_ rng: inout SeededRandom) -> Int {
    switch Int.random(in: 0..<10, using: &rng) {
    case 0..<5: return Int.random(in: 0..<5000, using: &rng)
    case 5, 6: return (1 << 32) + Int.random(in: -3000..<3000, using: &rng)
    case 7, 8: return (1 << 40) + Int.random(in: -3000..<3000, using: &rng)
    default:
        return Bool.random(using: &rng)
            ? Int.random(in: 0..<64, using: &rng) : maxTestKey - Int.random(in: 0..<200, using: &rng)
    }
}

/// Compares an index answer with the model's, as optional keys plus element identity.
private func same(_ got: (key: Int, element: IndexedItem)?, _ want: Int?, _ model: IndexModel) -> Bool {
    switch (got, want) {
    case (nil, nil): return true
    case let (got?, want?): return got.key == want && got.element === model.items[want]
    default: return false
    }
}

private func describe(_ got: (key: Int, element: IndexedItem)?) -> String {
    got.map { "\($0.key)" } ?? "nil"
}

/// Runs `operations` random operations against both the index and the model and returns a
/// description of the first disagreement, or nil. Insert-heavy and remove-heavy phases
/// alternate so that the tree both grows tall and drains back to empty.
private func runRandomized(seed: UInt64, operations: Int) -> String? {
    var rng = SeededRandom(seed: seed)
    let index = CacheIndex<IndexedItem>()
    var model = IndexModel()
    let tags = CacheTag.allCases

    func existingOrRandomKey(percent: Int = 50) -> Int {
        if !model.keys.keys.isEmpty && Int.random(in: 0..<100, using: &rng) < percent {
            return model.keys.keys[Int.random(in: 0..<model.keys.keys.count, using: &rng)]
        }
        return randomKey(&rng)
    }

    for op in 0..<operations {
        let context = "seed \(seed), operation \(op)"
        // Phases of 5000 operations: growing by about 700 entries, then draining to
        // (nearly) empty.
        let growing = (op / 5000) % 2 == 0
        let roll = Int.random(in: 0..<100, using: &rng)
        switch roll {
        case 0..<20:
            let insertShare = growing ? 16 : 2
            if roll < insertShare {
                let key = randomKey(&rng)
                if model.items[key] == nil {
                    let item = IndexedItem(key)
                    index.insert(key, item)
                    model.items[key] = item
                    model.keys.insert(key)
                }
            } else {
                let key = existingOrRandomKey(percent: growing ? 50 : 90)
                let got = index.remove(key)
                let want = model.items.removeValue(forKey: key)
                if got !== want { return "\(context): remove(\(key)) returned the wrong element" }
                model.keys.remove(key)
                for t in tags.indices { model.tagged[t].remove(key) }
            }
        case 20..<30:
            let key = existingOrRandomKey()
            let want = model.items[key]
            if index.get(key) !== want { return "\(context): get(\(key)) disagrees with the model" }
        case 30..<38:
            let key = Int.random(in: 0..<8, using: &rng) == 0 ? -Int.random(in: 1..<10, using: &rng) : randomKey(&rng)
            let got = index.floor(key)
            let want = key < 0 ? nil : model.keys.floor(key)
            if !same(got, want, model) {
                return "\(context): floor(\(key)) is \(describe(got)), model says \(want.map { "\($0)" } ?? "nil")"
            }
        case 38..<46:
            let key = Int.random(in: 0..<8, using: &rng) == 0 ? -Int.random(in: 1..<10, using: &rng) : randomKey(&rng)
            let got = index.ceiling(key)
            let want = model.keys.ceiling(max(key, 0))
            if !same(got, want, model) {
                return "\(context): ceiling(\(key)) is \(describe(got)), model says \(want.map { "\($0)" } ?? "nil")"
            }
        case 46..<62:
            guard !model.keys.keys.isEmpty else { continue }
            let key = model.keys.keys[Int.random(in: 0..<model.keys.keys.count, using: &rng)]
            let t = Int.random(in: 0..<tags.count, using: &rng)
            index.setTag(tags[t], key)
            model.tagged[t].insert(key)
        case 62..<72:
            let key = existingOrRandomKey()
            let t = Int.random(in: 0..<tags.count, using: &rng)
            index.clearTag(tags[t], key)
            model.tagged[t].remove(key)
        case 72..<78:
            let key = existingOrRandomKey()
            let t = Int.random(in: 0..<tags.count, using: &rng)
            if index.isTagged(tags[t], key) != model.tagged[t].contains(key) {
                return "\(context): isTagged(\(tags[t]), \(key)) disagrees with the model"
            }
        case 78..<90:
            let key = Int.random(in: 0..<8, using: &rng) == 0 ? -Int.random(in: 1..<10, using: &rng) : randomKey(&rng)
            let t = Int.random(in: 0..<tags.count, using: &rng)
            let got = index.nextTagged(tags[t], from: key)
            let want = model.tagged[t].ceiling(max(key, 0))
            if !same(got, want, model) {
                return "\(context): nextTagged(\(tags[t]), from: \(key)) is \(describe(got)), "
                    + "model says \(want.map { "\($0)" } ?? "nil")"
            }
        case 90..<97:
            let key = randomKey(&rng)
            let limit = Int.random(in: 1..<200, using: &rng)
            var got: [Int] = []
            var identical = true
            index.forEach(from: key) { k, item in
                got.append(k)
                if item !== model.items[k] { identical = false }
                return got.count < limit
            }
            let start = model.keys.lowerBound(key)
            let want = Array(model.keys.keys[start..<min(start + limit, model.keys.keys.count)])
            if got != want || !identical {
                return "\(context): forEach(from: \(key)) visited \(got.prefix(8))..., model says \(want.prefix(8))..."
            }
        default:
            for (t, tag) in tags.enumerated() {
                if index.hasTagged(tag) != !model.tagged[t].keys.isEmpty {
                    return "\(context): hasTagged(\(tag)) disagrees with the model"
                }
                if index.taggedCount(tag) != model.tagged[t].keys.count {
                    return "\(context): taggedCount(\(tag)) is \(index.taggedCount(tag)), "
                        + "model says \(model.tagged[t].keys.count)"
                }
            }
        }
        if index.count != model.items.count {
            return "\(context): count is \(index.count), model says \(model.items.count)"
        }
        if op % 500 == 499, let violation = index.invariantViolation() { return "\(context): \(violation)" }
    }
    if let violation = index.invariantViolation() { return "seed \(seed), after the operations: \(violation)" }
    // Drain in random order, checking the structure as it shrinks.
    var remaining = model.keys.keys
    while !remaining.isEmpty {
        let key = remaining.remove(at: Int.random(in: 0..<remaining.count, using: &rng))
        if index.remove(key) !== model.items[key] {
            return "seed \(seed), drain: remove(\(key)) returned the wrong element"
        }
        if remaining.count % 97 == 0, let violation = index.invariantViolation() {
            return "seed \(seed), drain with \(remaining.count) left: \(violation)"
        }
    }
    if index.count != 0 || index.ceiling(0) != nil || CacheTag.allCases.contains(where: index.hasTagged) {
        return "seed \(seed), drain: index is not empty after removing every key"
    }
    return index.invariantViolation().map { "seed \(seed), drained: \($0)" }
}

@Suite("CacheIndex")
struct CacheIndexTests {
    @Test("random operations agree with a sorted-dictionary model", arguments: [42 as UInt64, 7, 2024])
    func modelBased(seed: UInt64) {
        if let failure = runRandomized(seed: seed, operations: 40_000) {
            Issue.record("\(failure) (rerun with SeededRandom(seed: \(seed)))")
        }
    }

    @Test("an empty index answers nothing")
    func empty() {
        let index = CacheIndex<IndexedItem>()
        #expect(index.count == 0)
        #expect(index.isEmpty)
        #expect(index.get(0) == nil)
        #expect(index.get(-1) == nil)
        #expect(index.floor(Int.max) == nil)
        #expect(index.ceiling(-5) == nil)
        #expect(index.nextTagged(.dirty, from: 0) == nil)
        #expect(index.remove(3) == nil)
        #expect(!index.hasTagged(.dirty))
        #expect(!index.isTagged(.dirty, 3))
        index.clearTag(.dirty, 3)
        var visited = 0
        index.forEach(from: 0) { _, _ in
            visited += 1
            return true
        }
        #expect(visited == 0)
        index.checkInvariants()
    }

    @Test("floor and ceiling stay right while the tree grows and shrinks")
    func floorCeilingAcrossGrowth() {
        let index = CacheIndex<IndexedItem>()
        let a = IndexedItem(5)
        index.insert(5, a)
        #expect(index.floor(4) == nil)
        #expect(index.floor(1 << 50)?.element === a)
        #expect(index.ceiling(6) == nil)
        #expect(index.ceiling(1 << 50) == nil)

        // Each insert beyond the reach of the root adds levels above it.
        let steps = [63, 64, 4095, 4096, 1 << 20, 1 << 32, 1 << 40, maxTestKey]
        var items: [Int: IndexedItem] = [5: a]
        for key in steps {
            let item = IndexedItem(key)
            index.insert(key, item)
            items[key] = item
            index.checkInvariants()
            let sorted = items.keys.sorted()
            for (i, k) in sorted.enumerated() {
                #expect(index.get(k) === items[k])
                #expect(index.floor(k)?.key == k)
                #expect(index.ceiling(k)?.key == k)
                if i > 0 { #expect(index.floor(k - 1)?.key == sorted[i - 1], "floor(\(k) - 1)") }
                if i + 1 < sorted.count {
                    #expect(index.ceiling(k + 1)?.key == sorted[i + 1], "ceiling(\(k) + 1)")
                } else {
                    #expect(index.ceiling(k + 1) == nil)
                }
            }
            #expect(index.floor(Int.max)?.key == sorted.last)
            #expect(index.ceiling(-1)?.key == 5)
        }

        // Removing the large keys lets the root drop back down.
        for key in steps.reversed() {
            #expect(index.remove(key) === items[key])
            items[key] = nil
            index.checkInvariants()
            let largest = items.keys.max()!
            #expect(index.floor(Int.max)?.key == largest)
            #expect(index.ceiling(largest + 1) == nil)
            #expect(index.floor(key)?.key == largest)
        }
        #expect(index.count == 1)
        #expect(index.ceiling(0)?.element === a)
        #expect(index.remove(5) === a)
        #expect(index.isEmpty)
        index.checkInvariants()
    }

    @Test("remove clears every tag of the entry")
    func removeClearsTags() {
        let index = CacheIndex<IndexedItem>()
        for key in [1, 2, 1000, 1 << 35] { index.insert(key, IndexedItem(key)) }
        for tag in CacheTag.allCases {
            index.setTag(tag, 1000)
            index.setTag(tag, 1000)  // setting twice is harmless
        }
        index.setTag(.dirty, 2)
        index.checkInvariants()
        #expect(index.taggedCount(.dirty) == 2)
        #expect(index.taggedCount(.writeback) == 1)

        #expect(index.remove(1000) != nil)
        index.checkInvariants()
        #expect(index.taggedCount(.dirty) == 1)
        #expect(!index.hasTagged(.writeback))
        #expect(index.nextTagged(.dirty, from: 3) == nil)
        #expect(index.nextTagged(.dirty, from: 0)?.key == 2)

        // A new entry at the same key starts untagged.
        index.insert(1000, IndexedItem(1000))
        for tag in CacheTag.allCases { #expect(!index.isTagged(tag, 1000)) }
        #expect(index.remove(2) != nil)
        #expect(!index.hasTagged(.dirty))
        index.checkInvariants()

        index.setTag(.writeback, 1 << 35)
        index.removeAll()
        #expect(index.count == 0)
        #expect(!index.hasTagged(.writeback))
        #expect(index.taggedCount(.writeback) == 0)
        index.checkInvariants()
    }

    @Test("clearTag keeps ancestor bits while a sibling is still tagged")
    func clearTagPropagation() {
        let index = CacheIndex<IndexedItem>()
        let keys = [10, 11, 70, 5000, 1 << 30]
        for key in keys { index.insert(key, IndexedItem(key)) }
        for key in keys { index.setTag(.dirty, key) }
        index.checkInvariants()
        index.clearTag(.dirty, 10)
        index.checkInvariants()
        #expect(index.nextTagged(.dirty, from: 0)?.key == 11)
        index.clearTag(.dirty, 11)
        index.clearTag(.dirty, 11)  // already clear
        index.clearTag(.dirty, 12)  // absent
        index.clearTag(.writeback, 70)  // never set
        index.checkInvariants()
        #expect(index.nextTagged(.dirty, from: 0)?.key == 70)
        index.clearTag(.dirty, 70)
        index.clearTag(.dirty, 5000)
        index.checkInvariants()
        #expect(index.nextTagged(.dirty, from: 0)?.key == 1 << 30)
        #expect(index.hasTagged(.dirty))
        index.clearTag(.dirty, 1 << 30)
        #expect(!index.hasTagged(.dirty))
        #expect(index.taggedCount(.dirty) == 0)
        index.checkInvariants()
    }

    @Test("nextTagged skips untagged subtrees")
    func nextTaggedSkips() {
        let index = CacheIndex<IndexedItem>()
        let n = 100_000
        for key in 0..<n { index.insert(key, IndexedItem(key)) }
        let far = (1 << 40) + 17
        index.insert(far, IndexedItem(far))
        index.setTag(.dirty, 3)
        index.setTag(.dirty, 99_999)
        index.setTag(.dirty, far)
        index.setTag(.writeback, 65_536)
        index.checkInvariants()

        // Only the path to each tagged entry carries the tag: the root has bits for the
        // low subtree and the far one, nothing else.
        #expect(index.nextTagged(.dirty, from: 0)?.key == 3)
        #expect(index.nextTagged(.dirty, from: 3)?.key == 3)
        #expect(index.nextTagged(.dirty, from: 4)?.key == 99_999)
        #expect(index.nextTagged(.dirty, from: 100_000)?.key == far)
        #expect(index.nextTagged(.dirty, from: far + 1) == nil)
        #expect(index.nextTagged(.writeback, from: 0)?.key == 65_536)
        #expect(index.nextTagged(.writeback, from: 65_537) == nil)

        // Walking all dirty entries visits exactly the tagged ones.
        var dirty: [Int] = []
        var cursor = 0
        while let next = index.nextTagged(.dirty, from: cursor) {
            dirty.append(next.key)
            #expect(next.element.key == next.key)
            cursor = next.key + 1
        }
        #expect(dirty == [3, 99_999, far])
        #expect(index.taggedCount(.dirty) == 3)

        // Clearing the tag of the middle entry removes it from the search.
        index.clearTag(.dirty, 99_999)
        #expect(index.nextTagged(.dirty, from: 4)?.key == far)
        index.checkInvariants()
    }

    @Test("keys 0 and 2^41 - 1")
    func extremeKeys() {
        let index = CacheIndex<IndexedItem>()
        let low = IndexedItem(0)
        let high = IndexedItem(maxTestKey)
        index.insert(maxTestKey, high)
        index.checkInvariants()
        index.insert(0, low)
        index.checkInvariants()
        #expect(index.count == 2)
        #expect(index.get(0) === low)
        #expect(index.get(maxTestKey) === high)
        #expect(index.get(maxTestKey + 1) == nil)
        #expect(index.get(1 << 60) == nil)
        #expect(index.floor(maxTestKey - 1)?.element === low)
        #expect(index.floor(Int.max)?.element === high)
        #expect(index.ceiling(1)?.element === high)
        #expect(index.ceiling(maxTestKey + 1) == nil)

        var order: [Int] = []
        index.forEach(from: 0) { key, _ in
            order.append(key)
            return true
        }
        #expect(order == [0, maxTestKey])

        index.setTag(.writeback, maxTestKey)
        index.setTag(.writeback, 0)
        #expect(index.nextTagged(.writeback, from: 1)?.key == maxTestKey)
        index.clearTag(.writeback, 0)
        #expect(index.nextTagged(.writeback, from: 0)?.key == maxTestKey)
        index.checkInvariants()

        #expect(index.remove(maxTestKey) === high)
        index.checkInvariants()
        #expect(!index.hasTagged(.writeback))
        #expect(index.floor(Int.max)?.element === low)
        #expect(index.remove(0) === low)
        #expect(index.isEmpty)
        index.checkInvariants()
    }

    @Test("keys up to Int.max")
    func fullRange() {
        let index = CacheIndex<IndexedItem>()
        let keys = [Int.max, Int.max - 1, 1 << 62, 0, 1 << 41]
        for key in keys { index.insert(key, IndexedItem(key)) }
        index.checkInvariants()
        #expect(index.floor(Int.max)?.key == Int.max)
        #expect(index.ceiling((1 << 62) + 1)?.key == Int.max - 1)
        #expect(index.floor(Int.max - 2)?.key == 1 << 62)
        var order: [Int] = []
        index.forEach(from: 1) { key, _ in
            order.append(key)
            return true
        }
        #expect(order == keys.sorted().dropFirst().map { $0 })
        index.setTag(.dirty, Int.max)
        #expect(index.nextTagged(.dirty, from: 0)?.key == Int.max)
        for key in keys {
            #expect(index.remove(key)?.key == key)
            index.checkInvariants()
        }
    }

    @Test("forEach stops when asked and tolerates removal of visited entries")
    func forEachBehaviour() {
        let index = CacheIndex<IndexedItem>()
        let keys = Array(stride(from: 0, to: 10_000, by: 7)) + [1 << 33, (1 << 33) + 1]
        for key in keys { index.insert(key, IndexedItem(key)) }

        var seen: [Int] = []
        index.forEach(from: 50) { key, item in
            #expect(item.key == key)
            seen.append(key)
            return seen.count < 5
        }
        #expect(seen == [56, 63, 70, 77, 84])

        // The body removes each entry it visits and inserts one far ahead; the walk still
        // sees every original entry from its start exactly once, in order, plus the new ones.
        var visited: [Int] = []
        index.forEach(from: 0) { key, _ in
            visited.append(key)
            index.remove(key)
            if key == 0 { index.insert((1 << 34), IndexedItem(1 << 34)) }
            return true
        }
        #expect(visited == keys + [1 << 34])
        #expect(index.isEmpty)
        index.checkInvariants()
    }

    @Test("a duplicate insert traps")
    func duplicateInsertTraps() async {
        await #expect(processExitsWith: .failure) {
            let index = CacheIndex<IndexedItem>()
            index.insert(9, IndexedItem(9))
            index.insert(9, IndexedItem(9))
        }
    }

    @Test("tagging an absent key traps")
    func setTagAbsentTraps() async {
        await #expect(processExitsWith: .failure) {
            let index = CacheIndex<IndexedItem>()
            index.insert(9, IndexedItem(9))
            index.setTag(.dirty, 10)
        }
    }

    // The nodes are raw memory and each leaf slot holds a retained element: these check
    // that every element is released exactly when the index lets it go.

    @Test("an element is released when removed, when removeAll runs and when the index goes")
    func elementsAreReleased() {
        weak var removed: IndexedItem?
        weak var cleared: IndexedItem?
        weak var dropped: IndexedItem?
        do {
            let index = CacheIndex<IndexedItem>()
            do {
                let a = IndexedItem(3)
                removed = a
                index.insert(3, a)
            }
            #expect(removed != nil, "the index keeps what it holds")
            #expect(index.remove(3)?.key == 3)
            #expect(removed == nil, "a removed element is released once its last reference goes")
            do {
                let b = IndexedItem(1 << 20)
                cleared = b
                index.insert(1 << 20, b)
            }
            index.removeAll()
            #expect(cleared == nil, "removeAll releases every element")
            do {
                let c = IndexedItem(70_000)
                dropped = c
                index.insert(70_000, c)
                index.insert(5, IndexedItem(5))
            }
            #expect(dropped != nil)
            index.checkInvariants()
        }
        #expect(dropped == nil, "an index that goes releases what it held")
    }

    // Canaries for the structural checker: each breaks one invariant by hand.

    @Test("the invariant checker catches a present bit without an entry")
    func canaryPresentBit() throws {
        let index = CacheIndex<IndexedItem>()
        for key in [1, 64, 4_096, 300_000] { index.insert(key, IndexedItem(key)) }
        #expect(index.invariantViolation() == nil)
        let root = try #require(index.root)
        // Restored before anything is asserted: the index frees its nodes by their present
        // bits, and a bit without a node behind it must not outlive the check.
        root.present |= slotBit(63)
        let violation = index.invariantViolation()
        root.present &= ~slotBit(63)
        #expect(violation?.contains("present bits") == true, "\(violation ?? "no violation reported")")
        #expect(index.invariantViolation() == nil)
    }

    @Test("the invariant checker catches a tag bit its children do not carry")
    func canaryTagBit() throws {
        let index = CacheIndex<IndexedItem>()
        for key in [2, 640, 9_000] { index.insert(key, IndexedItem(key)) }
        index.setTag(.dirty, 640)
        #expect(index.invariantViolation() == nil)
        let root = try #require(index.root)
        let saved = root.tags
        root.tags[CacheTag.dirty.rawValue] = 0
        let violation = try #require(index.invariantViolation())
        #expect(violation.contains("dirty bits"), "\(violation)")
        root.tags = saved
        #expect(index.invariantViolation() == nil)
    }

    @Test("the invariant checker catches a wrong parent link")
    func canaryParentLink() throws {
        let index = CacheIndex<IndexedItem>()
        for key in [0, 100, 5_000] { index.insert(key, IndexedItem(key)) }
        let root = try #require(index.root)
        let slot = root.present.trailingZeroBitCount
        let child = root.child(slot)
        child.offsetInParent = slot + 1
        let violation = try #require(index.invariantViolation())
        #expect(violation.contains("parent link"), "\(violation)")
        child.offsetInParent = slot
        #expect(index.invariantViolation() == nil)
    }
}
