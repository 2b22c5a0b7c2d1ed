// Counterpart: the xarray's debugging checks (XA_BUG_ON, xa_dump in lib/xarray.c): the
// whole-structure invariants of the page-cache index, run by tests and verify builds.

import IOMapBase

extension CacheIndex {
    /// Verifies the whole structure in O(n): slot links, present bits, exact tag
    /// propagation, no empty nodes below the root, and the entry and tag counts. Traps
    /// with a description of the first violation.
    public func checkInvariants() {
        if let violation = invariantViolation() { fatalError("CacheIndex invariant violated: \(violation)") }
    }

    /// The first structural violation `checkInvariants` would trap on, or nil (for tests
    /// that want to report it with their own context).
    func invariantViolation() -> String? {
        do throws(CacheIndexViolation) {
            try checkStructure()
            return nil
        } catch {
            return error.message
        }
    }

    private func checkStructure() throws(CacheIndexViolation) {
        guard let root else {
            guard count == 0 else { throw CacheIndexViolation("empty tree but count is \(count)") }
            for tag in CacheTag.allCases where tagCounts[tag.rawValue] != 0 {
                throw CacheIndexViolation("empty tree but \(tag) count is \(tagCounts[tag.rawValue])")
            }
            return
        }
        if root.parent != nil { throw CacheIndexViolation("root has a parent") }
        if root.shift % levelBits != 0 || root.shift >= Int.bitWidth {
            throw CacheIndexViolation("root shift \(root.shift) is invalid")
        }
        if root.present == 0 { throw CacheIndexViolation("root is empty but not removed") }
        if root.shift > 0 && root.present == 1 {
            throw CacheIndexViolation("root at shift \(root.shift) holds only slot 0 and should have shrunk")
        }
        var entries = 0
        var tagged = PerCacheTag<Int>(repeating: 0)
        try check(root, base: 0, entries: &entries, tagged: &tagged)
        if entries != count {
            throw CacheIndexViolation("count is \(count) but the tree holds \(entries) entries")
        }
        for tag in CacheTag.allCases where tagged[tag.rawValue] != tagCounts[tag.rawValue] {
            throw CacheIndexViolation(
                "CacheIndex: \(tag) count is \(tagCounts[tag.rawValue]) but \(tagged[tag.rawValue]) entries carry it")
        }
    }

    private func check(
        _ node: Node, base: Int, entries: inout Int, tagged: inout PerCacheTag<Int>
    ) throws(CacheIndexViolation) {
        let here = "node at shift \(node.shift) covering keys from \(base)"
        var present: UInt64 = 0
        var expectedTags = PerCacheTag<UInt64>(repeating: 0)
        for slot in 0..<fanout {
            guard let object = node.slots[slot] else { continue }
            let bit: UInt64 = slotBit(slot)
            present |= bit
            if node.shift == 0 {
                entries += 1
                for tag in 0..<CacheTag.count where node.tags[tag] & bit != 0 { tagged[tag] += 1 }
                continue
            }
            // A slot's kind follows from the node's level: interior slots hold nodes.
            let child = Node(base: object)
            if child.parent != node || child.offsetInParent != slot {
                throw CacheIndexViolation("\(here): child in slot \(slot) has a wrong parent link")
            }
            if child.shift != node.shift - levelBits {
                throw CacheIndexViolation("\(here): child in slot \(slot) has shift \(child.shift)")
            }
            if child.present == 0 {
                throw CacheIndexViolation("\(here): child in slot \(slot) is empty")
            }
            for tag in 0..<CacheTag.count where child.tags[tag] != 0 { expectedTags[tag] |= bit }
            try check(child, base: base + (slot &<< node.shift), entries: &entries, tagged: &tagged)
        }
        if present != node.present {
            throw CacheIndexViolation(
                "\(here): present bits \(hex(node.present)) but occupied slots \(hex(present))")
        }
        for tag in CacheTag.allCases {
            let t = tag.rawValue
            if node.shift == 0 {
                if node.tags[t] & ~present != 0 {
                    throw CacheIndexViolation("\(here): \(tag) bits \(hex(node.tags[t])) on empty slots")
                }
            } else if node.tags[t] != expectedTags[t] {
                throw CacheIndexViolation(
                    "\(here): \(tag) bits \(hex(node.tags[t])) but children carry \(hex(expectedTags[t]))")
            }
        }
    }

    func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
}

/// A description of a broken structural invariant of a CacheIndex.
struct CacheIndexViolation: Error {
    let message: String
    init(_ message: String) { self.message = message }
}
