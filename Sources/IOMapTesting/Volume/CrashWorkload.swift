// Counterpart: none in the kernel; the workloads of the crash tests of dm-log-writes
// (fstests' log-writes replays) and of CrashMonkey's ACE, in process: a seeded sequence of
// file-system calls on a volume, small enough that every crash state it can leave is
// checkable against a model (CrashModel.swift) and replayable from its seed.
//
// The workload works on a handful of files (3 to 6 live at once, named from a small pool)
// in the root and in up to two subdirectories: buffered writes that extend or overwrite,
// stores through a shared mapping and msync, truncates up and down, fallocate, punch hole
// and zero range, fsync and fdatasync, create, close, unlink of a closed file and of an
// open one (an orphan), rename onto a free name or over a file (and now and then of a
// directory), link, symlink, mkdir and rmdir of an empty directory, extended attributes set
// and removed on files and directories, fsync of a directory, and sync. Every op is drawn
// from the model's state, so each is valid: an op that fails is a failure of the volume,
// not of the workload.

import ExtentFS
import IOMapBase
import Volume

/// One call of a crash workload. Paths are relative to the root ("a", "d/b").
public enum CrashOp: Sendable, Equatable, CustomStringConvertible {
    /// open(O_CREAT | O_EXCL); the handle stays open.
    case create(String)
    case mkdir(String)
    /// pwrite of `length` bytes of `crashData(stamp:...)` at `offset`.
    case write(InodeNumber, offset: Int, length: Int, stamp: Int)
    case truncate(InodeNumber, size: Int)
    case allocate(InodeNumber, offset: Int, length: Int, keepSize: Bool)
    case punch(InodeNumber, offset: Int, length: Int)
    case fsync(InodeNumber)
    case fdatasync(InodeNumber)
    /// close of the workload's handle (the last close of an orphan frees it).
    case close(InodeNumber)
    case unlink(String)
    /// rename(2): onto a free name, or over the file `to` names.
    case rename(String, to: String)
    case link(String, to: String)
    case sync
    /// fallocate(ZERO_RANGE [| KEEP_SIZE]).
    case zeroRange(InodeNumber, offset: Int, length: Int, keepSize: Bool)
    /// A store of `length` bytes of `crashData(stamp:...)` at `offset` through a shared
    /// writable mapping (the workload keeps it inside the file's size).
    case mappedStore(InodeNumber, offset: Int, length: Int, stamp: Int)
    /// msync(MS_SYNC) of the whole mapping: CrashGenerator.maxFileSize bytes from 0, which
    /// every op's range lies in.
    case msync(InodeNumber)
    /// rmdir(2) of an empty directory.
    case rmdir(String)
    /// symlink(2): `path` made a symlink holding `target` (which need not exist).
    case symlink(target: String, path: String)
    /// setxattr(2) on the file or directory `path` ("" is the root), with no flags.
    case setxattr(String, name: String, value: [UInt8])
    case removexattr(String, name: String)
    /// fsync(2) of the directory `path` ("" is the root).
    case fsyncDirectory(String)
    /// pwrite of `length` bytes of `crashData(stamp:...)` at `offset` from a buffer that
    /// faults `faultAt` bytes in: a short write or EFAULT (the seed's failed write). Recorded
    /// in the model as the write of what it wrote (CrashRecording), or as this when it wrote
    /// nothing.
    case failingWrite(InodeNumber, offset: Int, length: Int, stamp: Int, faultAt: Int)
    /// The seed's race: a failing write (as failingWrite) while a store of 8 bytes of
    /// `crashData(stamp: stamp + CrashOp.racingStamp)` lands at `storeAt` through a shared
    /// mapping, made from inside the write once its reservation covers `storeAt` (hook point
    /// H1, RacingStore) and before its copy faults; `storeAt` lies past the fault, in the part
    /// the write's failure cleanup undoes, so the store must survive it. Recorded in the model
    /// with `length` cut to what the write wrote.
    case racedWrite(InodeNumber, offset: Int, length: Int, stamp: Int, faultAt: Int, storeAt: Int)

    /// What a racedWrite's store adds to its stamp.
    public static let racingStamp = 500

    public var description: String {
        switch self {
        case .create(let p): return "create \(p)"
        case .mkdir(let p): return "mkdir \(p)"
        case .write(let i, let o, let n, let s): return "write #\(i.rawValue) [\(o), +\(n)) stamp \(s)"
        case .truncate(let i, let n): return "truncate #\(i.rawValue) to \(n)"
        case .allocate(let i, let o, let n, let k): return "fallocate #\(i.rawValue) [\(o), +\(n))\(k ? " keep-size" : "")"
        case .punch(let i, let o, let n): return "punch #\(i.rawValue) [\(o), +\(n))"
        case .fsync(let i): return "fsync #\(i.rawValue)"
        case .fdatasync(let i): return "fdatasync #\(i.rawValue)"
        case .close(let i): return "close #\(i.rawValue)"
        case .unlink(let p): return "unlink \(p)"
        case .rename(let a, let b): return "rename \(a) -> \(b)"
        case .link(let a, let b): return "link \(a) -> \(b)"
        case .sync: return "sync"
        case .zeroRange(let i, let o, let n, let k): return "zero range #\(i.rawValue) [\(o), +\(n))\(k ? " keep-size" : "")"
        case .mappedStore(let i, let o, let n, let s): return "mapped store #\(i.rawValue) [\(o), +\(n)) stamp \(s)"
        case .failingWrite(let i, let o, let n, let s, let f):
            return "failing write #\(i.rawValue) [\(o), +\(n)) stamp \(s), its buffer faulting at +\(f)"
        case .racedWrite(let i, let o, let n, let s, let f, let at):
            return "failing write #\(i.rawValue) [\(o), +\(n)) stamp \(s), its buffer faulting at +\(f), "
                + "racing a mapped store at \(at)"
        case .msync(let i): return "msync #\(i.rawValue)"
        case .rmdir(let p): return "rmdir \(p)"
        case .symlink(let t, let p):
            return "symlink \(p) -> " + (t.utf8.count <= 40 ? t : "\(t.prefix(24))... (\(t.utf8.count) bytes)")
        case .setxattr(let p, let n, let v):
            return "setxattr \(p.isEmpty ? "/" : p) \(n) = \(v.count) bytes\(v.first.map { " from \(CrashModel.hex($0))" } ?? "")"
        case .removexattr(let p, let n): return "removexattr \(p.isEmpty ? "/" : p) \(n)"
        case .fsyncDirectory(let p): return "fsync directory \(p.isEmpty ? "/" : p)"
        }
    }

    /// Whether the op makes an inode (create, mkdir, symlink).
    public var createsInode: Bool {
        switch self {
        case .create, .mkdir, .symlink: return true
        default: return false
        }
    }

    /// The inode a data op works on through a handle.
    public var handleInode: InodeNumber? {
        switch self {
        case .write(let i, _, _, _), .truncate(let i, _), .allocate(let i, _, _, _), .punch(let i, _, _), .fsync(let i),
            .fdatasync(let i), .close(let i), .zeroRange(let i, _, _, _), .mappedStore(let i, _, _, _), .msync(let i),
            .failingWrite(let i, _, _, _, _), .racedWrite(let i, _, _, _, _, _):
            return i
        default: return nil
        }
    }
}

/// Byte `offset` of what the write with `stamp` stores: odd, never zero, and depending on
/// the file offset, so that a block read back at the wrong offset, another file's block and
/// a never-written block (CrashWorkload.poison, even) all differ from it.
@inline(__always)
public func crashDataByte(stamp: Int, offset o: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: (o &* 131) &+ (o >> 9) &+ stamp &* 17) | 1
}

public func crashData(stamp: Int, offset: Int, count: Int) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        for i in 0..<count { buffer[i] = crashDataByte(stamp: stamp, offset: offset + i) }
        initialized = count
    }
}

/// Stores crashData(stamp:offset:count:) into `bytes` at `offset` in place (`bytes` reaches
/// that far): the model's writes, without a buffer of their own.
func storeCrashData(_ bytes: inout [UInt8], stamp: Int, offset: Int, count: Int) {
    bytes.withUnsafeMutableBufferPointer { b in
        for i in offset..<offset + count { b[i] = crashDataByte(stamp: stamp, offset: i) }
    }
}

/// Draws a workload's ops from the model's state.
public struct CrashGenerator: Sendable {
    public var random: SeededRandom
    /// The file names the workload uses (3 to 6).
    public let names: [String]
    /// The most files live (named or open) at once.
    public let maxFiles: Int
    /// The next write's stamp.
    public var stamp: Int
    /// The subdirectories mkdir may make.
    public static let directoryNames = ["d", "e"]
    /// The extended attributes setxattr may set.
    public static let xattrNames = ["user.a", "user.b", "user.c"]
    /// No op reaches past this size, so that a few files fit the volume with room for
    /// snapshots and blocks busy until their free commits.
    public static let maxFileSize = 256 << 10
    /// The most symlinks named at once.
    static let maxSymlinks = 3
    static let namePool = ["a", "b", "c", "f", "g", "h"]

    public init(seed: UInt64, stampBase: Int = 1) {
        random = SeededRandom(seed: seed)
        let count = 3 + Int(random.next() % 4)
        names = Array(Self.namePool.prefix(count))
        maxFiles = count
        stamp = stampBase
    }

    /// A generator over exactly `files` names of the pool (1 to 6): fsx's fixed file count.
    public init(seed: UInt64, files: Int, stampBase: Int = 1) {
        precondition((1...Self.namePool.count).contains(files), "1 to \(Self.namePool.count) files, not \(files)")
        random = SeededRandom(seed: seed)
        names = Array(Self.namePool.prefix(files))
        maxFiles = files
        stamp = stampBase
    }

    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(random.next() % UInt64(n)) }
    mutating func coin(_ oneIn: Int) -> Bool { below(oneIn) == 0 }
    mutating func pick<T>(_ items: [T]) -> T? { items.isEmpty ? nil : items[below(items.count)] }

    /// The kinds of op and their weights (out of 100).
    static let weights: [(Kind, Int)] = [
        (.write, 20), (.truncate, 5), (.allocate, 4), (.punch, 4), (.zeroRange, 3), (.mappedStore, 5), (.msync, 3), (.fsync, 8),
        (.fdatasync, 4), (.close, 4), (.create, 9), (.unlink, 5), (.rename, 6), (.link, 3), (.mkdir, 3), (.rmdir, 2),
        (.symlink, 2), (.setxattr, 3), (.removexattr, 2), (.fsyncDirectory, 3), (.sync, 2),
    ]

    enum Kind {
        case write, truncate, allocate, punch, zeroRange, mappedStore, msync, fsync, fdatasync, close, create, unlink, rename, link
        case mkdir, rmdir, symlink, setxattr, removexattr, fsyncDirectory, sync
    }

    /// The next op: a kind by weight, redrawn while the model offers it nothing to act on.
    public mutating func next(_ m: CrashModel) -> CrashOp {
        for _ in 0..<16 {
            var r = below(100)
            var kind = Kind.sync
            for (k, w) in Self.weights {
                if r < w {
                    kind = k
                    break
                }
                r -= w
            }
            if let op = make(kind, m) { return op }
        }
        return .sync
    }

    mutating func make(_ kind: Kind, _ m: CrashModel) -> CrashOp? {
        switch kind {
        case .write, .truncate, .allocate, .punch, .zeroRange, .mappedStore, .msync, .fsync, .fdatasync:
            guard let ino = pick(m.liveFiles) else { return nil }
            return dataOp(kind, ino, size: m.current(ino).count)
        case .close: return pick(m.open.sorted()).map { .close($0) }
        case .create:
            guard m.liveFiles.count < maxFiles, let p = pick(freePaths(m)) else { return nil }
            return .create(p)
        case .unlink: return pick(m.namedFiles + m.namedSymlinks).map { .unlink($0) }
        case .rename: return renameOp(m)
        case .link:
            guard let from = pick(m.namedFiles), let to = pick(freePaths(m)) else { return nil }
            return .link(from, to: to)
        case .mkdir: return pick(Self.directoryNames.filter { m.tree[$0] == nil }).map { .mkdir($0) }
        case .rmdir: return pick(m.directories.filter { !$0.isEmpty && m.isEmptyDirectory($0) }).map { .rmdir($0) }
        case .symlink:
            guard m.namedSymlinks.count < Self.maxSymlinks, let p = pick(freePaths(m)) else { return nil }
            return .symlink(target: symlinkTarget(m), path: p)
        case .setxattr, .removexattr: return xattrOp(kind, m)
        case .fsyncDirectory: return pick(m.directories).map { .fsyncDirectory($0) }
        case .sync: return .sync
        }
    }

    /// A rename of a file or symlink onto a free name or over a file, or (one in eight) of a
    /// subdirectory onto a free directory name.
    mutating func renameOp(_ m: CrashModel) -> CrashOp? {
        if coin(8), let d = pick(m.directories.filter { !$0.isEmpty && !$0.contains("/") }),
            let to = pick(Self.directoryNames.filter { m.tree[$0] == nil })
        {
            return .rename(d, to: to)
        }
        guard let from = pick(m.namedFiles + m.namedSymlinks) else { return nil }
        let over = m.namedFiles.filter { $0 != from }
        let to = coin(3) ? pick(over) : pick(freePaths(m))
        return to.map { .rename(from, to: $0) }
    }

    /// A symlink's target: a name of the workload (which may exist or not), or now and then
    /// a long path (up to the 4095 bytes a target may hold), which the log and the snapshot
    /// must carry whole.
    mutating func symlinkTarget(_ m: CrashModel) -> String {
        stamp += 1
        guard coin(4) else { return pick(freePaths(m) + m.namedFiles) ?? "a" }
        let length = 100 + below(4096 - 100)
        var t = ""
        while t.utf8.count < length { t += "s\(stamp)-\(t.utf8.count)/" }
        return String(t.prefix(length))
    }

    /// setxattr of a name of the pool on a file, a directory or the root (a new value: empty,
    /// small, or now and then of kilobytes), or removexattr of one that is set.
    mutating func xattrOp(_ kind: Kind, _ m: CrashModel) -> CrashOp? {
        if kind == .removexattr {
            let set = m.xattrPaths.flatMap { p in m.xattrNames(at: p).map { (p, $0) } }
            return pick(set).map { .removexattr($0.0, name: $0.1) }
        }
        guard let path = pick(m.namedFiles + m.directories), let name = pick(Self.xattrNames) else { return nil }
        stamp += 1
        let count = coin(3) ? below(17) : coin(6) ? 1000 + below(7000) : 1 + below(200)
        return .setxattr(path, name: name, value: crashData(stamp: stamp, offset: 0, count: count))
    }

    /// Names of the pool not taken, in every directory there is.
    func freePaths(_ m: CrashModel) -> [String] {
        m.directories.flatMap { dir in names.map { CrashModel.join(dir, $0) } }.filter { m.tree[$0] == nil }
    }

    mutating func dataOp(_ kind: Kind, _ ino: InodeNumber, size: Int) -> CrashOp? {
        let cap = Self.maxFileSize
        switch kind {
        case .write:
            var offset: Int
            switch below(3) {
            case 0: offset = size + below(8192)
            case 1: offset = below(max(size, 1))
            default: offset = below(cap)
            }
            var length = 1 + below(64 << 10)
            if coin(3) {
                offset &= ~4095
                length = max(4096, length & ~4095)
            }
            offset = min(offset, cap - 1)
            length = min(length, cap - offset)
            stamp += 1
            return .write(ino, offset: offset, length: length, stamp: stamp)
        case .truncate:
            return .truncate(ino, size: coin(2) ? below(size + 1) : min(cap, size + 1 + below(128 << 10)))
        case .allocate, .zeroRange:
            let offset = min(below(size + (64 << 10)), cap - 1)
            let length = min(1 + below(64 << 10), cap - offset)
            return kind == .allocate
                ? .allocate(ino, offset: offset, length: length, keepSize: coin(2))
                : .zeroRange(ino, offset: offset, length: length, keepSize: coin(2))
        case .punch:
            let offset = below(size + 1)
            return .punch(ino, offset: offset, length: 1 + below(64 << 10))
        case .mappedStore:
            // Inside the size: a store past it is SIGBUS, or lands past EOF in its page.
            guard size > 0 else { return nil }
            let offset = below(size)
            stamp += 1
            return .mappedStore(ino, offset: offset, length: 1 + below(min(size - offset, 64 << 10)), stamp: stamp)
        case .msync: return .msync(ino)
        case .fsync: return .fsync(ino)
        default: return .fdatasync(ino)
        }
    }
}
