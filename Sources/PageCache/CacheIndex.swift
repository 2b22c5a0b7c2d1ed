// Counterpart: the xarray (lib/xarray.c) holding mapping->i_pages, with its marks.
//
// The page-cache index maps a page index to the folio cached there. It is a 64-ary radix
// tree rather than a hash table or a balanced tree because the page cache needs three
// things at once: a lookup that costs one array step per level (O(depth), at most seven
// levels for the 2^41 pages a file can have, with no hashing and no comparisons), in-order
// iteration from any index (readahead, truncate, SEEK_DATA), and a tagged search that
// skips every subtree holding no entry with the tag, so that writeback finds the few dirty
// folios of a large, mostly clean file without walking the clean ones.
//
// Every node keeps a `present` bitmap of its occupied slots and one bitmap per tag; a
// tag bit for a slot is set exactly when some entry below that slot carries the tag. The
// searches therefore move across a node with one trailing- or leading-zero count instead
// of a loop over 64 slots. The tree grows in height when a key beyond its reach arrives,
// frees nodes that become empty, and drops root levels that only hold slot 0.
//
// The index is not thread-safe: its owner keeps it inside the page-cache index lock.

/// One of the per-entry tag bits the index maintains (the xarray's marks).
public struct CacheTag: Hashable, Sendable, CustomStringConvertible {
    /// The tag's number, from 0 to `CacheTag.count - 1`.
    public let rawValue: Int

    private init(_ rawValue: Int) { self.rawValue = rawValue }

    /// The folio holds data newer than the disk (PAGECACHE_TAG_DIRTY).
    public static let dirty = CacheTag(0)
    /// The folio is being written back (PAGECACHE_TAG_WRITEBACK).
    public static let writeback = CacheTag(1)

    /// Every tag, in `rawValue` order.
    public static let allCases: [CacheTag] = [.dirty, .writeback]

    /// The number of distinct tags.
    static let count = 2

    public var description: String {
        switch rawValue {
        case 0: return "dirty"
        default: return "writeback"
        }
    }
}

/// One value per tag, stored inline so that nodes need no extra allocation.
struct PerCacheTag<Value> {
    var v0: Value
    var v1: Value

    @inline(__always)
    init(repeating value: Value) {
        v0 = value
        v1 = value
    }

    @inline(__always)
    subscript(_ tag: Int) -> Value {
        get { tag == 0 ? v0 : v1 }
        set {
            if tag == 0 { v0 = newValue } else { v1 = newValue }
        }
    }
}

/// Bits per level of the tree.
let levelBits = 6
/// Slots per node.
let fanout = 1 << levelBits
/// Mask extracting a slot number.
private let slotMask = fanout - 1
/// Selects the `present` bitmap in searches instead of a tag bitmap.
private let presentMask = -1

/// The bit for `slot` (0..<64) in a node bitmap.
@inline(__always)
func slotBit(_ slot: Int) -> UInt64 { 1 &<< UInt64(truncatingIfNeeded: slot) }

/// A node of the index: one 576-byte block of raw memory, a 64-byte header and 64 slots,
/// aligned to a cache line. A node with `shift == 0` is a leaf whose slots hold elements
/// (retained once, when stored); any other node's slots hold child nodes whose `shift` is
/// six less.
///
/// Nodes are not Swift objects, so that a walk down the tree is pointer loads and nothing
/// else: no reference counting per level, no exclusivity checks, no object headers between
/// the bitmaps a search reads. Their owner, the CacheIndex, frees them explicitly when they
/// empty and in its deinit. The index is confined to one thread at a time by its owner's
/// lock, as before.
@usableFromInline
struct CacheIndexNode: Equatable {
    /// Byte offsets of the header fields; the slots start at `slotsOffset`.
    private static var shiftOffset: Int { 0 }
    private static var parentOffset: Int { 8 }
    private static var offsetInParentOffset: Int { 16 }
    private static var presentOffset: Int { 24 }
    private static var tagsOffset: Int { 32 }
    private static var slotsOffset: Int { 64 }
    static var byteCount: Int { slotsOffset + fanout * MemoryLayout<UnsafeMutableRawPointer?>.stride }

    let base: UnsafeMutableRawPointer

    @inline(__always) init(base: UnsafeMutableRawPointer) { self.base = base }

    /// A new, empty node.
    static func make(shift: Int, parent: CacheIndexNode?, offset: Int) -> CacheIndexNode {
        let node = CacheIndexNode(base: .allocate(byteCount: byteCount, alignment: 64))
        node.base.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        node.base.storeBytes(of: shift, toByteOffset: shiftOffset, as: Int.self)
        node.parent = parent
        node.offsetInParent = offset
        return node
    }

    /// Frees the node's memory; its slots must hold nothing that needs releasing.
    func free() { base.deallocate() }

    /// How far a key is shifted right to find its slot in this node.
    var shift: Int {
        @inline(__always) get { base.load(fromByteOffset: Self.shiftOffset, as: Int.self) }
    }

    /// The node holding this one.
    var parent: CacheIndexNode? {
        @inline(__always) get {
            base.load(fromByteOffset: Self.parentOffset, as: UnsafeMutableRawPointer?.self).map(CacheIndexNode.init(base:))
        }
        @inline(__always) nonmutating set {
            base.storeBytes(of: newValue?.base, toByteOffset: Self.parentOffset, as: UnsafeMutableRawPointer?.self)
        }
    }

    /// This node's slot in its parent.
    var offsetInParent: Int {
        @inline(__always) get { base.load(fromByteOffset: Self.offsetInParentOffset, as: Int.self) }
        @inline(__always) nonmutating set { base.storeBytes(of: newValue, toByteOffset: Self.offsetInParentOffset, as: Int.self) }
    }

    /// Bit i is set exactly when slot i is occupied.
    var present: UInt64 {
        @inline(__always) get { base.load(fromByteOffset: Self.presentOffset, as: UInt64.self) }
        @inline(__always) nonmutating set { base.storeBytes(of: newValue, toByteOffset: Self.presentOffset, as: UInt64.self) }
    }

    /// Per tag, bit i is set exactly when slot i holds a tagged entry or a subtree with one.
    var tags: PerCacheTag<UInt64> {
        @inline(__always) get {
            var t = PerCacheTag<UInt64>(repeating: 0)
            t.v0 = base.load(fromByteOffset: Self.tagsOffset, as: UInt64.self)
            t.v1 = base.load(fromByteOffset: Self.tagsOffset + 8, as: UInt64.self)
            return t
        }
        @inline(__always) nonmutating set {
            base.storeBytes(of: newValue.v0, toByteOffset: Self.tagsOffset, as: UInt64.self)
            base.storeBytes(of: newValue.v1, toByteOffset: Self.tagsOffset + 8, as: UInt64.self)
        }
    }

    /// The bitmap of one tag.
    @inline(__always)
    func tag(_ t: Int) -> UInt64 { base.load(fromByteOffset: Self.tagsOffset + 8 * t, as: UInt64.self) }

    /// The 64 slots: retained elements in a leaf, child nodes elsewhere.
    var slots: UnsafeMutablePointer<UnsafeMutableRawPointer?> {
        @inline(__always) get { (base + Self.slotsOffset).assumingMemoryBound(to: UnsafeMutableRawPointer?.self) }
    }

    /// The bitmap a search follows: `present` for `presentMask`, else the tag's bitmap.
    @inline(__always)
    func mask(_ which: Int) -> UInt64 { which < 0 ? present : tag(which) }

    /// The child node in `slot`, which must be occupied (interior nodes only).
    @inline(__always)
    func child(_ slot: Int) -> CacheIndexNode { CacheIndexNode(base: slots[slot].unsafelyUnwrapped) }

    /// True when a root at `shift` reaches the non-negative `key` (it reaches 2^(shift + 6) keys).
    @inline(__always)
    static func covers(shift: Int, _ key: Int) -> Bool {
        shift + levelBits >= Int.bitWidth - 1 || key &>> (shift + levelBits) == 0
    }

    /// True when this node, as a root, reaches the non-negative `key`.
    @inline(__always)
    func covers(_ key: Int) -> Bool { Self.covers(shift: shift, key) }

    /// The largest key this node can hold as a root.
    @inline(__always) var maxKey: Int { shift + levelBits >= Int.bitWidth - 1 ? Int.max : (1 << (shift + levelBits)) - 1 }
}

/// The page-cache index: a 64-ary radix tree from non-negative page indices to class
/// references, with per-entry tags. Not thread-safe; the owner serialises access.
public final class CacheIndex<Element: AnyObject> {
    typealias Node = CacheIndexNode

    /// The top node, or nil when the index is empty.
    @exclusivity(unchecked) var root: Node?
    /// The number of entries.
    @exclusivity(unchecked) public private(set) var count = 0
    /// The number of entries carrying each tag.
    @exclusivity(unchecked) var tagCounts = PerCacheTag<Int>(repeating: 0)
    /// Bumped by every structural change, so that `forEach` notices a body that mutates.
    @exclusivity(unchecked) private var mutations = 0

    /// Creates an empty index.
    public init() {}

    deinit { freeAll() }

    /// True when the index holds no entries.
    public var isEmpty: Bool { count == 0 }

    // MARK: Lookup

    /// The leaf whose slots would hold `key`, or nil when no such leaf exists.
    @inline(__always)
    private func leaf(for key: Int) -> Node? {
        guard key >= 0, let top = root, top.covers(key) else { return nil }
        var node = top
        while node.shift > 0 {
            guard let child = node.slots[(key &>> node.shift) & slotMask] else { return nil }
            node = Node(base: child)
        }
        return node
    }

    /// The element stored at exactly `key`, or nil.
    public func get(_ key: Int) -> Element? {
        guard let node = leaf(for: key), let object = node.slots[key & slotMask] else { return nil }
        return Unmanaged<Element>.fromOpaque(object).takeUnretainedValue()
    }

    /// The entry with the greatest key less than or equal to `key`, or nil.
    public func floor(_ key: Int) -> (key: Int, element: Element)? {
        guard key >= 0, let root else { return nil }
        // Most answers are in the leaf that would hold `key` (the folio before a new one, a
        // small folio itself): one walk down and one leading-zero count.
        if let leaf = leaf(for: key) {
            let slot = key & slotMask
            let bits = leaf.present & (slot == slotMask ? ~0 : slotBit(slot + 1) &- 1)
            if bits != 0 {
                let found = slotMask - bits.leadingZeroBitCount
                return (key - slot + found, element(leaf, found))
            }
        }
        guard let (leaf, base, slot) = scanBackward(presentMask, from: root, base: 0, key: min(key, root.maxKey))
        else { return nil }
        return (base + slot, element(leaf, slot))
    }

    /// The entry with the least key greater than or equal to `key`, or nil.
    public func ceiling(_ key: Int) -> (key: Int, element: Element)? {
        guard let found = seekForward(presentMask, max(key, 0)) else { return nil }
        return (found.base + found.slot, element(found.leaf, found.slot))
    }

    /// The tagged entry with the least key greater than or equal to `key`, or nil.
    public func nextTagged(_ tag: CacheTag, from key: Int) -> (key: Int, element: Element)? {
        guard let found = seekForward(tag.rawValue, max(key, 0)) else { return nil }
        return (found.base + found.slot, element(found.leaf, found.slot))
    }

    /// Calls `body` on each entry in key order from the first key >= `key` until it
    /// returns false. `body` may modify the index; the walk then resumes after the key it
    /// was given.
    public func forEach(from key: Int, _ body: (Int, Element) throws -> Bool) rethrows {
        guard var (leaf, base, slot) = seekForward(presentMask, max(key, 0)) else { return }
        while true {
            let version = mutations
            let entryKey = base + slot
            guard try body(entryKey, element(leaf, slot)), entryKey < Int.max else { return }
            let next: (leaf: Node, base: Int, slot: Int)?
            if version == mutations {
                next = scanForward(presentMask, from: leaf, base: base, offset: slot + 1, key: 0, onPath: false)
            } else {
                next = seekForward(presentMask, entryKey + 1)
            }
            guard let next else { return }
            (leaf, base, slot) = next
        }
    }

    /// The element in `slot` of `leaf`, which must be occupied.
    @inline(__always)
    private func element(_ leaf: Node, _ slot: Int) -> Element {
        Unmanaged<Element>.fromOpaque(leaf.slots[slot].unsafelyUnwrapped).takeUnretainedValue()
    }

    /// The first position at or after `key` whose bit is set in the `which` bitmaps.
    @inline(__always)
    private func seekForward(_ which: Int, _ key: Int) -> (leaf: Node, base: Int, slot: Int)? {
        guard let root, root.covers(key) else { return nil }
        return scanForward(
            which, from: root, base: 0, offset: (key &>> root.shift) & slotMask, key: key, onPath: true)
    }

    /// Walks forward from `offset` in `start` (whose first key is `base`) to the first leaf
    /// slot set in the `which` bitmaps. While `onPath`, the walk follows `key` down;
    /// once it has moved right of `key` it takes the leftmost set slot of each node.
    private func scanForward(
        _ which: Int, from start: Node, base startBase: Int, offset startOffset: Int, key: Int, onPath startOnPath: Bool
    ) -> (leaf: Node, base: Int, slot: Int)? {
        var node = start
        var base = startBase
        var offset = startOffset
        var onPath = startOnPath
        while true {
            let bits = offset < fanout ? node.mask(which) & (~0 &<< UInt64(truncatingIfNeeded: offset)) : 0
            if bits != 0 {
                let slot = bits.trailingZeroBitCount
                if slot != offset { onPath = false }
                if node.shift == 0 { return (node, base, slot) }
                base += slot &<< node.shift
                node = node.child(slot)
                offset = onPath ? (key &>> node.shift) & slotMask : 0
            } else {
                guard let parent = node.parent else { return nil }
                base -= node.offsetInParent &<< parent.shift
                offset = node.offsetInParent + 1
                node = parent
                onPath = false
            }
        }
    }

    /// Walks backward from `key` (which `start`, with first key `base`, must cover) to the
    /// last leaf slot at or before it that is set in the `which` bitmaps.
    private func scanBackward(
        _ which: Int, from start: Node, base startBase: Int, key: Int
    ) -> (leaf: Node, base: Int, slot: Int)? {
        var node = start
        var base = startBase
        var offset = (key &>> node.shift) & slotMask
        var onPath = true
        while true {
            let bits: UInt64
            if offset < 0 {
                bits = 0
            } else if offset == slotMask {
                bits = node.mask(which)
            } else {
                bits = node.mask(which) & (slotBit(offset + 1) &- 1)
            }
            if bits != 0 {
                let slot = slotMask - bits.leadingZeroBitCount
                if slot != offset { onPath = false }
                if node.shift == 0 { return (node, base, slot) }
                base += slot &<< node.shift
                node = node.child(slot)
                offset = onPath ? (key &>> node.shift) & slotMask : slotMask
            } else {
                guard let parent = node.parent else { return nil }
                base -= node.offsetInParent &<< parent.shift
                offset = node.offsetInParent - 1
                node = parent
                onPath = false
            }
        }
    }

    // MARK: Update

    /// Stores `element` at `key`, which must be non-negative and absent.
    public func insert(_ key: Int, _ element: Element) {
        precondition(key >= 0, "CacheIndex.insert: key must be non-negative, got \(key)")
        var node: Node
        if let root {
            node = root
            while !node.covers(key) {
                // Grow: the old root becomes slot 0 of a new, taller root.
                let taller = Node.make(shift: node.shift + levelBits, parent: nil, offset: 0)
                taller.slots[0] = node.base
                taller.present = 1
                for tag in 0..<CacheTag.count where node.tags[tag] != 0 { taller.tags[tag] = 1 }
                node.parent = taller
                node.offsetInParent = 0
                node = taller
            }
            self.root = node
        } else {
            var shift = 0
            while !Node.covers(shift: shift, key) { shift += levelBits }
            node = Node.make(shift: shift, parent: nil, offset: 0)
            root = node
        }
        while node.shift > 0 {
            let slot = (key &>> node.shift) & slotMask
            if let child = node.slots[slot] {
                node = Node(base: child)
            } else {
                let child = Node.make(shift: node.shift - levelBits, parent: node, offset: slot)
                node.slots[slot] = child.base
                node.present |= slotBit(slot)
                node = child
            }
        }
        let slot = key & slotMask
        precondition(node.slots[slot] == nil, "CacheIndex.insert: key \(key) is already present")
        node.slots[slot] = Unmanaged.passRetained(element).toOpaque()
        node.present |= slotBit(slot)
        count += 1
        mutations &+= 1
    }

    /// Removes the entry at `key` and its tags; returns it, or nil when absent.
    @discardableResult
    public func remove(_ key: Int) -> Element? {
        guard let leaf = leaf(for: key) else { return nil }
        let slot = key & slotMask
        guard let object = leaf.slots[slot] else { return nil }
        let bit: UInt64 = slotBit(slot)
        leaf.slots[slot] = nil
        leaf.present &= ~bit
        for tag in 0..<CacheTag.count where leaf.tags[tag] & bit != 0 {
            leaf.tags[tag] &= ~bit
            tagCounts[tag] -= 1
        }
        count -= 1
        mutations &+= 1
        // Carry the change upward: free nodes that became empty, clear tag bits of
        // subtrees that lost their last tagged entry.
        var node = leaf
        while let parent = node.parent {
            let parentBit: UInt64 = slotBit(node.offsetInParent)
            var changed = false
            for tag in 0..<CacheTag.count where node.tags[tag] == 0 && parent.tags[tag] & parentBit != 0 {
                parent.tags[tag] &= ~parentBit
                changed = true
            }
            if node.present == 0 {
                parent.slots[node.offsetInParent] = nil
                parent.present &= ~parentBit
                node.free()
                changed = true
            }
            guard changed else { break }
            node = parent
        }
        shrink()
        return Unmanaged<Element>.fromOpaque(object).takeRetainedValue()
    }

    /// Drops an empty root, and root levels that hold only slot 0.
    private func shrink() {
        guard var top = root else { return }
        if top.present == 0 {
            top.free()
            root = nil
            return
        }
        while top.shift > 0 && top.present == 1 {
            let child = top.child(0)
            child.parent = nil
            child.offsetInParent = 0
            top.free()
            top = child
        }
        root = top
    }

    /// Removes every entry.
    public func removeAll() {
        freeAll()
        count = 0
        tagCounts = PerCacheTag(repeating: 0)
        mutations &+= 1
    }

    /// Frees every node and releases every element.
    private func freeAll() {
        if let root { Self.freeSubtree(root) }
        root = nil
    }

    private static func freeSubtree(_ node: Node) {
        var bits = node.present
        while bits != 0 {
            let slot = bits.trailingZeroBitCount
            bits &= bits &- 1
            let object = node.slots[slot].unsafelyUnwrapped
            if node.shift == 0 {
                Unmanaged<Element>.fromOpaque(object).release()
            } else {
                freeSubtree(Node(base: object))
            }
        }
        node.free()
    }

    // MARK: Tags

    /// Sets `tag` on the entry at `key`, which must be present.
    public func setTag(_ tag: CacheTag, _ key: Int) {
        let leaf = leaf(for: key)
        let slot = key & slotMask
        precondition(
            leaf?.slots[slot] != nil, "CacheIndex.setTag: key \(key) is not present (tag \(tag))")
        var node = leaf.unsafelyUnwrapped
        var bit: UInt64 = slotBit(slot)
        let t = tag.rawValue
        guard node.tags[t] & bit == 0 else { return }
        tagCounts[t] += 1
        while true {
            let wasClear = node.tags[t] == 0
            node.tags[t] |= bit
            // An ancestor's bit is already set when this node already had the tag.
            guard wasClear, let parent = node.parent else { return }
            bit = slotBit(node.offsetInParent)
            node = parent
        }
    }

    /// Clears `tag` on the entry at `key`; does nothing when it is absent or untagged.
    public func clearTag(_ tag: CacheTag, _ key: Int) {
        guard var node = leaf(for: key) else { return }
        var bit: UInt64 = slotBit(key & slotMask)
        let t = tag.rawValue
        guard node.tags[t] & bit != 0 else { return }
        tagCounts[t] -= 1
        while true {
            node.tags[t] &= ~bit
            // Ancestors keep the bit while this node still has another tagged entry.
            guard node.tags[t] == 0, let parent = node.parent else { return }
            bit = slotBit(node.offsetInParent)
            node = parent
        }
    }

    /// True when the entry at `key` exists and carries `tag`.
    public func isTagged(_ tag: CacheTag, _ key: Int) -> Bool {
        guard let leaf = leaf(for: key) else { return false }
        return leaf.tags[tag.rawValue] & slotBit(key & slotMask) != 0
    }

    /// True when some entry carries `tag`, in O(1).
    public func hasTagged(_ tag: CacheTag) -> Bool {
        guard let root else { return false }
        return root.tags[tag.rawValue] != 0
    }

    /// The number of entries carrying `tag`.
    public func taggedCount(_ tag: CacheTag) -> Int { tagCounts[tag.rawValue] }
}
