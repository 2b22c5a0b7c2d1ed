// Counterpart: fstests' fsx op logs (ltp/fsx.c: logdump(), read_op_log() and the
// --record-ops / --replay-ops options): one operation a line, in fsx's own text format, so
// that logs move both ways between fsx on a real file system and our engine.
//
//     # comment lines and blank lines are ignored; numbers are hex (0x…) or decimal
//     [skip ]<op> <arg0> <arg1> <arg2> [<arg3>] [keep_size] [close_open] [unshare] [*]
//
// Three-argument ops: `offset length file_size_before_op`; truncate: `0 new_size old_size`.
// Four-argument ops (clone_range, dedupe_range, copy_range, exchange_range):
// `src_offset length dst_offset file_size_before_op`.
//
// What fsx cannot express lives in comment lines that fsx skips and we read, `#@` then a
// word: the engine-only events (`#@ writeback OFFSET LENGTH`, `#@ reclaim TARGET`) and the
// faults that fired during the operation before (`#@ fault SITE OFFSET VALUE [NTH]`), so that a
// replay injects exactly the faults the recording saw, and another actor's operation that
// landed inside the write before it, after a copy and before its end (hook point H3):
// `#@ race mapwrite OFFSET LENGTH`, a store through the mapping (the seed commit's race,
// single-threaded); `#@ race writeback CURSOR`, a writeback of the whole file, which turns
// the write's mapping stale under it; `#@ race reclaim CURSOR`, a reclaim of every clean
// folio. CURSOR is where the write's copy stood when it landed; a replay fires it there.

import IOMapBase

/// An fsx operation name.
public enum FsxOpName: String, CaseIterable, Sendable {
    case read, read_dontcache, write, write_dontcache, write_atomic, mapread, mapwrite, truncate
    case fallocate, punch_hole, zero_range, collapse_range, insert_range, clone_range, dedupe_range
    case copy_range, exchange_range, fsync

    /// How many numeric arguments the op's log line carries.
    public var argumentCount: Int {
        switch self {
        case .clone_range, .dedupe_range, .copy_range, .exchange_range: return 4
        default: return 3
        }
    }

    /// Whether our engine can run it.
    public var isSupported: Bool {
        switch self {
        case .read, .read_dontcache, .write, .write_dontcache, .mapread, .mapwrite, .truncate, .fallocate,
            .punch_hole, .zero_range, .copy_range, .fsync:
            return true
        case .write_atomic, .collapse_range, .insert_range, .clone_range, .dedupe_range, .exchange_range:
            return false
        }
    }
}

/// One fault that fired during an operation, as a replay must inject it again: the site,
/// the file offset of the query and, for copies, the bytes the copy delivered.
public struct FsxFault: Sendable, Equatable {
    public var site: FaultSite
    public var offset: Int
    public var value: Int
    /// Which query of this site at this offset during the op it answered (0 for the first):
    /// a write retrying at one offset asks again, and only the right answer may fail.
    public var nth = 0
}

/// What another actor does inside a write, at hook point H3.
public enum FsxRaceKind: String, CaseIterable, Sendable {
    /// A store through the mapping, ahead of the write's cursor.
    case mapwrite
    /// A writeback of the whole file, as the flusher would.
    case writeback
    /// A reclaim of every clean folio.
    case reclaim
}

/// Another actor's operation inside a write's range, made from inside the write.
public struct FsxRace: Sendable, Equatable {
    public var kind: FsxRaceKind
    /// For a store, where it landed (relative to the run's base); else where the write's
    /// cursor stood when it landed.
    public var offset: Int
    /// The bytes stored; 0 for a writeback or a reclaim.
    public var length: Int
    public init(_ kind: FsxRaceKind = .mapwrite, offset: Int, length: Int = 0) {
        self.kind = kind
        self.offset = offset
        self.length = length
    }

    /// The race's `#@` line.
    var line: String {
        let hex = { (v: Int) in "0x" + String(v, radix: 16) }
        return kind == .mapwrite ? "#@ race mapwrite \(hex(offset)) \(hex(length))" : "#@ race \(kind.rawValue) \(hex(offset))"
    }
}

/// Generation only: the race a write asks for, landing at `fraction` of what remains of its
/// range (a store of `length` bytes), or at its first copy (a writeback or a reclaim).
struct FsxRaceRequest: Sendable {
    var kind: FsxRaceKind
    var fraction: Double
    var length: Int
}

/// One line's worth of work: an fsx operation or an engine-only event.
public enum FsxEntry: Sendable, Equatable {
    case op(FsxOp)
    /// Write back `[offset, offset + length)`, as the flusher would.
    case writeback(offset: Int, length: Int)
    /// Evict clean folios until at most `target` bytes stay cached.
    case reclaim(target: Int)
}

/// An fsx operation with its arguments and flags.
public struct FsxOp: Sendable, Equatable {
    public var name: FsxOpName
    /// offset, length, file size before; for truncate 0, new size, old size; for
    /// four-argument ops source offset, length, destination offset, file size before.
    public var args: [Int]
    public var skip = false
    public var keepSize = false
    public var closeOpen = false
    public var unshare = false
    /// Marks an op touching a bad offset in a failure dump.
    public var star = false
    /// Faults that fired during the op (recorded as `#@ fault` lines after it).
    public var faults: [FsxFault] = []
    /// Another actor's operation that landed inside this write (a `#@ race` line).
    public var race: FsxRace?
    /// Generation only: the race to make inside this write.
    var raceRequest: FsxRaceRequest?

    public static func == (a: FsxOp, b: FsxOp) -> Bool {
        a.name == b.name && a.args == b.args && a.skip == b.skip && a.keepSize == b.keepSize && a.closeOpen == b.closeOpen
            && a.unshare == b.unshare && a.star == b.star && a.faults == b.faults && a.race == b.race
    }

    public init(_ name: FsxOpName, _ args: [Int], keepSize: Bool = false, closeOpen: Bool = false) {
        self.name = name
        self.args = args
        self.keepSize = keepSize
        self.closeOpen = closeOpen
    }

    public var offset: Int { args[0] }
    public var length: Int { args[1] }
    /// The destination offset of a four-argument op.
    public var destination: Int { args[2] }
    /// The new size of a truncate.
    public var newSize: Int { args[1] }
    /// The file size before the op, as the recorder saw it.
    public var sizeBefore: Int { args[name.argumentCount - 1] }

    /// The op's log line, in fsx's format (hex numbers).
    public var line: String {
        var parts = skip ? ["skip", name.rawValue] : [name.rawValue]
        parts += args.map { "0x" + String($0, radix: 16) }
        if keepSize { parts.append("keep_size") }
        if closeOpen { parts.append("close_open") }
        if unshare { parts.append("unshare") }
        if star { parts.append("*") }
        return parts.joined(separator: " ")
    }
}

/// A log line that cannot be read: where and why.
public struct FsxLogError: Error, CustomStringConvertible, Equatable {
    public var line: Int
    public var reason: String
    public var description: String { "line \(line): \(reason)" }
}

public enum FsxLog {
    /// Parses a whole log. Faults (`#@ fault`) attach to the op before them.
    public static func parse(_ text: String) throws(FsxLogError) -> [FsxEntry] {
        var entries: [FsxEntry] = []
        var lineNumber = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let line = raw.trimmingSpaces()
            if line.isEmpty { continue }
            if line.hasPrefix("#@") {
                switch try parseDirective(line.dropFirst(2), lineNumber) {
                case .entry(let e): entries.append(e)
                case .fault(let f):
                    guard case .op(var op)? = entries.last else {
                        throw FsxLogError(line: lineNumber, reason: "a fault line must follow the operation it belongs to")
                    }
                    op.faults.append(f)
                    entries[entries.count - 1] = .op(op)
                case .race(let r):
                    guard case .op(var op)? = entries.last, op.name == .write || op.name == .write_dontcache else {
                        throw FsxLogError(line: lineNumber, reason: "a race line must follow the write it lands in")
                    }
                    op.race = r
                    entries[entries.count - 1] = .op(op)
                }
                continue
            }
            if line.hasPrefix("#") { continue }
            entries.append(.op(try parseOp(line, lineNumber)))
        }
        return entries
    }

    /// Parses one operation line.
    public static func parseOp(_ line: Substring, _ lineNumber: Int) throws(FsxLogError) -> FsxOp {
        var words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
        var skip = false
        if words.first == "skip" {
            skip = true
            words.removeFirst()
        }
        guard let first = words.first else { throw FsxLogError(line: lineNumber, reason: "'skip' with no operation") }
        guard let name = FsxOpName(rawValue: String(first)) else {
            throw FsxLogError(line: lineNumber, reason: "unknown operation '\(first)'")
        }
        words.removeFirst()
        let n = name.argumentCount
        guard words.count >= n else {
            throw FsxLogError(line: lineNumber, reason: "\(name.rawValue) needs \(n) numbers, found \(words.count)")
        }
        var args: [Int] = []
        for w in words.prefix(n) {
            guard let v = parseNumber(w), v >= 0 else {
                throw FsxLogError(line: lineNumber, reason: "'\(w)' is not a non-negative decimal or 0x-hex number")
            }
            args.append(v)
        }
        var op = FsxOp(name, args)
        op.skip = skip
        for flag in words.dropFirst(n) {
            switch flag {
            case "keep_size": op.keepSize = true
            case "close_open": op.closeOpen = true
            case "unshare": op.unshare = true
            case "*": op.star = true
            default: throw FsxLogError(line: lineNumber, reason: "unknown flag '\(flag)' after \(name.rawValue)")
            }
        }
        if op.keepSize && name != .fallocate && name != .zero_range {
            throw FsxLogError(line: lineNumber, reason: "keep_size applies to fallocate and zero_range only, not \(name.rawValue)")
        }
        return op
    }

    enum Directive {
        case entry(FsxEntry)
        case fault(FsxFault)
        case race(FsxRace)
    }

    static func parseDirective(_ text: Substring, _ lineNumber: Int) throws(FsxLogError) -> Directive {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
        func numbers(_ count: Int, from: Int) throws(FsxLogError) -> [Int] {
            guard words.count == from + count else {
                throw FsxLogError(line: lineNumber, reason: "#@ \(words.first ?? "") needs \(count) numbers")
            }
            var out: [Int] = []
            for w in words[from...] {
                guard let v = parseNumber(w), v >= 0 else { throw FsxLogError(line: lineNumber, reason: "'\(w)' is not a number") }
                out.append(v)
            }
            return out
        }
        switch words.first {
        case "writeback":
            let v = try numbers(2, from: 1)
            return .entry(.writeback(offset: v[0], length: v[1]))
        case "reclaim":
            return .entry(.reclaim(target: try numbers(1, from: 1)[0]))
        case "race":
            let kind = words.count >= 2 ? FsxRaceKind(rawValue: String(words[1])) : nil
            switch kind {
            case .mapwrite? where words.count == 4:
                let v = try numbers(2, from: 2)
                guard v[1] > 0 else { throw FsxLogError(line: lineNumber, reason: "#@ race length must be positive") }
                return .race(FsxRace(.mapwrite, offset: v[0], length: v[1]))
            case .some(let kind) where kind != .mapwrite && words.count == 3:
                return .race(FsxRace(kind, offset: try numbers(1, from: 2)[0]))
            default:
                throw FsxLogError(line: lineNumber, reason: "#@ race needs: mapwrite OFFSET LENGTH, writeback CURSOR or reclaim CURSOR")
            }
        case "fault":
            guard words.count >= 2, let site = FaultSite(rawValue: String(words[1])) else {
                throw FsxLogError(
                    line: lineNumber,
                    reason: "#@ fault needs a site: \(FaultSite.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            let v = try numbers(words.count == 5 ? 3 : 2, from: 2)
            return .fault(FsxFault(site: site, offset: v[0], value: v[1], nth: v.count == 3 ? v[2] : 0))
        default:
            throw FsxLogError(line: lineNumber, reason: "unknown directive '#@ \(words.first ?? "")'")
        }
    }

    static func parseNumber(_ word: Substring) -> Int? {
        if word.hasPrefix("0x") || word.hasPrefix("0X") { return Int(word.dropFirst(2), radix: 16) }
        return Int(word)
    }

    /// The log text of `entries`, one line each (plus their fault lines), after `header`
    /// comment lines.
    public static func format(_ entries: [FsxEntry], header: [String] = []) -> String {
        var lines = header.map { "# " + $0 }
        for e in entries {
            switch e {
            case .op(let op):
                lines.append(op.line)
                for f in op.faults {
                    lines.append("#@ fault \(f.site.rawValue) 0x\(String(f.offset, radix: 16)) \(f.value)\(f.nth > 0 ? " \(f.nth)" : "")")
                }
                if let r = op.race { lines.append(r.line) }
            case .writeback(let offset, let length):
                lines.append("#@ writeback 0x\(String(offset, radix: 16)) 0x\(String(length, radix: 16))")
            case .reclaim(let target):
                lines.append("#@ reclaim 0x\(String(target, radix: 16))")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while let c = s.first, c == " " || c == "\t" || c == "\r" { s.removeFirst() }
        while let c = s.last, c == " " || c == "\t" || c == "\r" { s.removeLast() }
        return s
    }
}
