// Counterpart: none in the kernel; CrashMonkey's AutoChecker (compare what survived with
// what the workload was promised), in process: the checks of CrashModel's oracle against a
// volume mounted after a crash. The oracle itself is stated in CrashModel.swift.

import ExtentFS
import IOMapBase
import Volume

/// What the oracle found on a recovered volume.
public struct CrashCheck: Sendable {
    public var violations: [String] = []
    /// The ops P (between `durable` and the last begun) whose tree the recovered one is.
    public var matched: [Int] = []
    /// Files whose contents were checked, and of them those held to their exact contents.
    public var files = 0
    public var exact = 0
}

extension CrashModel {
    /// Checks `volume`, just mounted after a crash of this model's workload.
    public func check(_ volume: Volume) -> CrashCheck {
        var out = CrashCheck()
        let state = volume.state
        let tree = readTree(state).tree
        let xattrs = readXattrs(state, tree)
        let named = Set(tree.values).union([.root])
        out.matched = (durable...opCount).filter { trees[$0] == tree && xattrStates[$0].filter { named.contains($0.key) } == xattrs }
        if out.matched.isEmpty { out.violations.append(namespaceMismatch(tree, xattrs)) }
        var names: [InodeNumber: [String]] = [:]
        for (path, ino) in tree { names[ino, default: []].append(path) }
        for (ino, paths) in names.sorted(by: { $0.key < $1.key }) {
            let label = "\(paths.sorted().joined(separator: ", ")) (#\(ino.rawValue))"
            let type = state[ino]?.attributes.type
            if let kind = kinds[ino], let type, kind != type {
                out.violations.append("\(label): a \(type), but the workload made it a \(kind)")
                continue
            }
            if type == .symlink { out.violations += symlinkViolation(state, ino, label).map { [$0] } ?? [] }
            guard type == .regular else { continue }
            guard let states = contents[ino] else {
                out.violations.append("\(label): an inode the workload never had")
                continue
            }
            out.files += 1
            if states.count == 1 { out.exact += 1 }
            do throws(Errno) {
                let got = try readContents(volume, ino)
                if let v = Self.contentViolation(got, states) { out.violations.append("\(label): \(v)") }
            } catch {
                out.violations.append("\(label): reading it failed: \(error)")
            }
        }
        return out
    }

    /// Why a symlink's target is not the one it was made with, or nil.
    func symlinkViolation(_ state: MetadataState, _ ino: InodeNumber, _ label: String) -> String? {
        guard let want = symlinks[ino] else { return "\(label): a symlink the workload never made" }
        let got = state[ino]?.symlinkTarget ?? []
        if got == Array(want.utf8) { return nil }
        let first = zip(got, want.utf8).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, want.utf8.count)
        return "\(label): the symlink's target is \(got.count) bytes, made with \(want.utf8.count); they differ from byte \(first)"
    }

    /// Why the recovered namespace is none of those allowed: the tree's mismatch, or, when
    /// some allowed ops' trees are it, how the xattrs differ from those ops' (the nearest).
    func namespaceMismatch(_ tree: [String: InodeNumber], _ xattrs: [InodeNumber: CrashXattrs]) -> String {
        let sameTree = (durable...opCount).filter { trees[$0] == tree }
        guard let nearest = sameTree.last else { return treeMismatch(tree) }
        let named = Set(tree.values).union([.root])
        let want = xattrStates[nearest].filter { named.contains($0.key) }
        var diff: [String] = []
        for ino in Set(want.keys).union(xattrs.keys).sorted() where want[ino] != xattrs[ino] {
            let w = want[ino] ?? [:]
            let g = xattrs[ino] ?? [:]
            for name in Set(w.keys).union(g.keys).sorted(by: { $0.lexicographicallyPrecedes($1) }) where w[name] != g[name] {
                func show(_ v: [UInt8]?) -> String {
                    v.map { "\($0.count) bytes" + ($0.first.map { " from \(Self.hex($0))" } ?? "") } ?? "absent"
                }
                diff.append("#\(ino.rawValue) \(String(decoding: name, as: UTF8.self)): \(show(g[name])), expected \(show(w[name]))")
            }
        }
        var text =
            "the tree after the crash is the tree after ops \(sameTree.map(String.init).joined(separator: "/")), but the xattrs "
            + "are those of no op from \(durable) (durable) to \(opCount) with that tree; against op \(nearest): "
            + diff.joined(separator: "; ")
        if (0..<durable).contains(where: { trees[$0] == tree && xattrStates[$0].filter { named.contains($0.key) } == xattrs }) {
            text += "; they are those after an op before the durable bound: a change a force returned for was lost"
        }
        return text
    }

    /// Why the recovered tree is none of those allowed: the nearest allowed one and how it
    /// differs, and whether it is the tree of an op before the durable bound (a forced change
    /// lost).
    func treeMismatch(_ tree: [String: InodeNumber]) -> String {
        func distance(_ t: [String: InodeNumber]) -> Int { Set(t.keys).union(tree.keys).filter { t[$0] != tree[$0] }.count }
        let nearest = (durable...opCount).min { distance(trees[$0]) < distance(trees[$1]) }!
        let want = trees[nearest]
        var diff: [String] = []
        for p in Set(want.keys).union(tree.keys).sorted() where want[p] != tree[p] {
            let w = want[p].map { "#\($0.rawValue)" } ?? "absent"
            let g = tree[p].map { "#\($0.rawValue)" } ?? "absent"
            diff.append("\(p): \(g), expected \(w)")
        }
        var text =
            "the tree after the crash is the tree after no op from \(durable) (durable) to \(opCount); nearest, after op "
            + "\(nearest): \(diff.joined(separator: "; "))"
        if let lost = (0..<durable).last(where: { trees[$0] == tree }) {
            text += "; it is the tree after op \(lost), before the durable bound: a change a force returned for was lost"
        }
        return text
    }

    /// Why `got` is no contents the oracle allows for a file whose states since its last
    /// durability point are `states` (the first is the durable one), or nil.
    static func contentViolation(_ got: [UInt8], _ states: [[UInt8]]) -> String? {
        if states.count == 1 {
            let want = states[0]
            if got.count != want.count { return "size \(got.count), but \(want.count) was made durable and not changed since" }
            if got.withUnsafeBufferPointer({ g in want.withUnsafeBufferPointer { sameBytes(g, $0, 0, g.count) } }) { return nil }
            guard let o = got.indices.first(where: { got[$0] != want[$0] }) else { return nil }
            let bad = zip(got, want).filter { $0 != $1 }.count
            return "\(bad) bytes differ from what was made durable and not changed since; the first at \(o): "
                + "\(hex(got[o]))\(poisonNote(got[o])), durable \(hex(want[o]))"
        }
        let sizes = states.map(\.count)
        if got.count < sizes.min()! || got.count > sizes.max()! {
            return "size \(got.count), outside [\(sizes.min()!), \(sizes.max()!)], the sizes it had since its last durability point"
        }
        let (bad, first) = mismatches(got, states)
        guard let o = first else { return nil }
        let allowed = Set(states.map { o < $0.count ? $0[o] : 0 }).sorted().map(hex)
        return "\(bad) bytes are in none of its \(states.count) states since its last durability point; the first at \(o): "
            + "\(hex(got[o]))\(poisonNote(got[o])), allowed \(allowed.joined(separator: " "))"
    }

    /// The bytes of `got` that are in none of `states` at their offset (zero past a state's
    /// size), and the first of them. Most bytes equal the newest state's or the durable
    /// one's, so runs equal to either are skipped a word at a time, and only the others are
    /// looked up in every state (this check was a ninth of an fsx workload's exploration).
    static func mismatches(_ got: [UInt8], _ states: [[UInt8]]) -> (count: Int, first: Int?) {
        let last = states.count - 1
        var bad = 0
        var first: Int?
        let run = 512
        got.withUnsafeBufferPointer { g in
            states[last].withUnsafeBufferPointer { newest in
                states[0].withUnsafeBufferPointer { durable in
                    var lo = 0
                    while lo < g.count {
                        let hi = min(lo + run, g.count)
                        defer { lo = hi }
                        if sameBytes(g, newest, lo, hi) || sameBytes(g, durable, lo, hi) { continue }
                        if states.contains(where: { s in s.withUnsafeBufferPointer { sameBytes(g, $0, lo, hi) } }) { continue }
                        for o in lo..<hi {
                            let b = g[o]
                            if (o < newest.count ? newest[o] : 0) == b || (o < durable.count ? durable[o] : 0) == b { continue }
                            if states.contains(where: { (o < $0.count ? $0[o] : 0) == b }) { continue }
                            bad += 1
                            if first == nil { first = o }
                        }
                    }
                }
            }
        }
        return (bad, first)
    }

    /// Whether `a` and `b` hold the same bytes in `lo..<hi` (false when `b` ends before `hi`).
    static func sameBytes(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>, _ lo: Int, _ hi: Int) -> Bool {
        guard hi <= b.count, hi <= a.count, let pa = a.baseAddress, let pb = b.baseAddress else { return lo >= hi }
        var o = lo
        while o + 8 <= hi {
            let x = UnsafeRawPointer(pa + o).loadUnaligned(as: UInt64.self)
            let y = UnsafeRawPointer(pb + o).loadUnaligned(as: UInt64.self)
            if x != y { return false }
            o += 8
        }
        while o < hi {
            if pa[o] != pb[o] { return false }
            o += 1
        }
        return true
    }

    static func hex(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return "0x" + String(digits[Int(b >> 4)]) + String(digits[Int(b & 15)])
    }

    static func poisonNote(_ b: UInt8) -> String { b == CrashCase.poison ? " (the poison of a block never written)" : "" }
}
