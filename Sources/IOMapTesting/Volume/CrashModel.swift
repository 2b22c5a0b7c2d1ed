// Counterpart: none in the kernel; the oracle of CrashMonkey's AutoChecker and of the
// fstests that replay dm-log-writes logs (what fsync promised, checked after every crash),
// recast for a volume whose log is ordered.
//
// The model follows a crash workload op by op and says which volumes a crash may leave.
//
// Namespace: the volume's log is one ordered sequence of transactions and recovery applies
// a prefix of it (docs/VOLUME.md "Recovery"); each namespace call is one transaction. So
// the namespace after a crash must equal the namespace after some prefix of the ops: after
// op P for one P between `durable` and the last op begun. The namespace is the tree (every
// name in the root and its subdirectories, with the inode it names) and the extended
// attributes (name and value) of every inode the tree names and of the root; one P must
// give both. Besides, a symlink the tree names holds the target it was made with (targets
// never change), and every inode is of the type it was made as. That one check is every
// namespace promise at once: a file created and then fsync'd is there, a name unlinked
// before a later force is gone, a rename is atomic, whether or not it was forced: exactly
// one of its old and new names exists, never both, never neither (no prefix has both or
// neither); an rmdir leaves the directory or not; a symlink is there with its whole target
// or not at all; an xattr holds its whole new value or what it held before, and xattrs
// changed in two ops are never seen with the later change and not the earlier.
//
// `durable` is a lower bound on the prefix, raised by what returned:
// - sync: every op before it and itself;
// - fsync of a file, and msync of it (which forces as fsync does, after writing back the
//   whole mapping): every op up to the last one that logged a change to that inode (the
//   log forces up to the inode's last checkpoint, and earlier checkpoints come first).
//   Every data op (a mapped store too), create, link, unlink and rename of a file, and
//   setxattr and removexattr on it, logs one (the workload's clock moves at every read, so
//   each data op logs the file's timestamps);
// - fdatasync: the same, counting only changes that are not timestamps alone: create,
//   link, unlink, rename, setxattr, removexattr, and a truncate, fallocate or zero range
//   that changes the size;
// - fsync of a directory: every op up to the last one that logged a change to that
//   directory inode: a create, mkdir, symlink, link, unlink, rmdir or rename of a name in
//   it (a rename changes both directories), its own mkdir or rename, and setxattr and
//   removexattr on it. It makes no file's data durable;
// - any op during which the journal wrote a checkpoint or a snapshot (its counters moved):
//   the ops before it and itself, since a force seals everything logged so far (each op's
//   namespace change is its first transaction, so a force inside the op comes after it).
// An fsync of a file with nothing logged since its last force forces nothing (as in XFS,
// where xfs_file_fsync forces the log only for a pinned inode): it does not make another
// file's unlink durable, and the model does not claim it. The same holds of msync and of a
// directory's fsync.
//
// Data: for each inode the model keeps its contents as they were at its last durability
// point (fsync, fdatasync or msync of it returned, sync returned, or the start of the phase,
// or its creation: empty) and after every data op since. A mapped store is a write inside
// the size; a zero range zeroes its range below the size and, without KEEP_SIZE, extends
// the file with zeroes as fallocate does. After a crash, for a file in the recovered tree:
// - with no data op since that point, its size and every byte are exactly those;
// - otherwise its size lies between the least and the greatest size it had since (the
//   recorded size follows the ops and writeback, never past the live size), and each byte
//   below that size is the byte one of those states had at that offset, zero past a state's
//   size. That is: the fsync'd byte, a byte a later write stored at that offset, or zero
//   where a later truncate, punch, zero range or extension made one. A byte of another file,
//   of a never-written block (the disk starts poisoned with CrashWorkload.poison, even,
//   while written data is odd) or from the wrong offset fails it.
// The bytes are checked one by one, so a mix of states (one block from before an overwrite,
// the next from after) passes: writeback and the device's cache make any such mix possible.
// An op the crash interrupted (at a flush of its own, or of a force at a transaction
// boundary inside it) counts as begun: its data may be there, and so may its namespace
// change (the namespace after it is allowed, as the one before it is), but it promises
// nothing.

import ExtentFS
import IOMapBase
import Volume

/// One inode's extended attributes, by name.
public typealias CrashXattrs = [[UInt8]: [UInt8]]

/// What a crash workload did, as a model of what may survive it.
public struct CrashModel: Sendable {
    /// Every name, files and directories, and the inode it names.
    public private(set) var tree: [String: InodeNumber]
    /// The directories by path ("" is the root).
    public private(set) var directoryInodes: [String: InodeNumber]
    /// The target of every symlink the workload had.
    public private(set) var symlinks: [InodeNumber: String] = [:]
    /// The type each inode the workload had was made as.
    public private(set) var kinds: [InodeNumber: FileType] = [:]
    /// The extended attributes of each inode that has any, now.
    public private(set) var xattrs: [InodeNumber: CrashXattrs] = [:]
    /// For each inode of the phase, the contents since its last durability point; the last
    /// is the current one. Kept for inodes that lost their names: a crash may bring a name
    /// back.
    public private(set) var contents: [InodeNumber: [[UInt8]]]
    /// The inodes the workload holds a handle on.
    public private(set) var open: Set<InodeNumber> = []
    /// trees[k]: the tree after the first k ops.
    public private(set) var trees: CrashHistory<[String: InodeNumber]>
    /// xattrStates[k]: the extended attributes after the first k ops.
    public private(set) var xattrStates: CrashHistory<[InodeNumber: CrashXattrs]>
    /// Ops below this index are durable: the recovered tree is trees[P] for P >= durable.
    public private(set) var durable = 0
    /// Whether the last op counted was interrupted by the crash.
    public private(set) var interrupted = false
    /// The number the volume gives the next inode it makes (numbers are not reused), for a
    /// workload planned ahead of the volume (boundedCrashWorkloads).
    public private(set) var nextInode: UInt64
    var lastLogged: [InodeNumber: Int] = [:]
    var lastDataLogged: [InodeNumber: Int] = [:]

    /// A model starting from a volume as it is (everything on it durable: just mounted, or
    /// synced): its tree, symlinks and xattrs, and each file's contents read through it.
    public init(volume: Volume) throws(Errno) {
        let state = volume.state
        let t = readTree(state)
        tree = t.tree
        directoryInodes = t.directories
        contents = [:]
        nextInode = state.nextInode
        for ino in Set(t.tree.values).union([.root]) {
            guard let rec = state[ino] else { continue }
            kinds[ino] = rec.attributes.type
            if !rec.xattrs.isEmpty { xattrs[ino] = rec.xattrs }
            switch rec.attributes.type {
            case .regular: contents[ino] = [try readContents(volume, ino)]
            case .symlink: symlinks[ino] = String(decoding: rec.symlinkTarget ?? [], as: UTF8.self)
            default: break
            }
        }
        trees = CrashHistory(tree)
        xattrStates = CrashHistory(xattrs)
    }

    /// The ops counted so far (the index the next one gets).
    public var opCount: Int { trees.count - 1 }

    public var directories: [String] { directoryInodes.keys.sorted() }

    /// The names of regular files.
    public var namedFiles: [String] { tree.filter { kinds[$0.value] == .regular }.keys.sorted() }

    public var namedSymlinks: [String] { tree.filter { kinds[$0.value] == .symlink }.keys.sorted() }

    /// Files with a name or an open handle.
    public var liveFiles: [InodeNumber] {
        Set(namedFiles.map { tree[$0]! }).union(open).sorted()
    }

    public func current(_ ino: InodeNumber) -> [UInt8] { contents[ino]?.last ?? [] }

    /// The inode `path` names ("" is the root).
    public func inode(at path: String) -> InodeNumber? { path.isEmpty ? .root : tree[path] }

    /// Whether directory `path` has no entries.
    public func isEmptyDirectory(_ path: String) -> Bool {
        let prefix = path.isEmpty ? "" : path + "/"
        return !tree.keys.contains { $0.hasPrefix(prefix) && $0 != path }
    }

    /// The paths of files and directories (the root as "") with an extended attribute.
    public var xattrPaths: [String] {
        (namedFiles + directories).filter { p in inode(at: p).map { xattrs[$0] != nil } ?? false }
    }

    /// The names of the extended attributes of `path`, sorted.
    public func xattrNames(at path: String) -> [String] {
        guard let i = inode(at: path) else { return [] }
        return (xattrs[i] ?? [:]).keys.map { String(decoding: $0, as: UTF8.self) }.sorted()
    }

    static func join(_ dir: String, _ name: String) -> String { dir.isEmpty ? name : dir + "/" + name }

    /// The directory holding `path`'s last name.
    func parentInode(_ path: String) -> InodeNumber {
        let parts = path.split(separator: "/")
        return directoryInodes[parts.dropLast().joined(separator: "/")] ?? .root
    }

    /// Counts `op`, which returned. `created` is the inode a create, mkdir or symlink made;
    /// `forced` says the journal wrote a checkpoint or snapshot during it.
    public mutating func record(_ op: CrashOp, created: InodeNumber?, forced: Bool) {
        let k = opCount
        applyData(op)
        applyNamespace(op, created: created, at: k)
        switch op {
        case .fsync(let i), .msync(let i):
            raise(to: lastLogged[i].map { $0 + 1 } ?? 0)
            contents[i] = [current(i)]
        case .fdatasync(let i):
            raise(to: lastDataLogged[i].map { $0 + 1 } ?? 0)
            contents[i] = [current(i)]
        case .fsyncDirectory(let p):
            if let d = inode(at: p) { raise(to: lastLogged[d].map { $0 + 1 } ?? 0) }
        case .sync:
            raise(to: k + 1)
            for i in contents.keys { contents[i] = [current(i)] }
        default: break
        }
        if forced { raise(to: k + 1) }
        counted(created)
    }

    /// Counts `op`, which the crash interrupted: its data may have reached the disk, and its
    /// namespace change may be in the log (a force at a transaction boundary inside it), but
    /// it promises nothing. `created` is the inode it made, if it returned one.
    public mutating func recordInterrupted(_ op: CrashOp, created: InodeNumber? = nil) {
        applyData(op)
        applyNamespace(op, created: created, at: opCount)
        counted(created)
        interrupted = true
    }

    mutating func counted(_ created: InodeNumber?) {
        trees.append(tree)
        xattrStates.append(xattrs)
        if let c = created { nextInode = max(nextInode, c.rawValue + 1) }
    }

    mutating func raise(to n: Int) { durable = max(durable, n) }

    mutating func logged(_ i: InodeNumber, at k: Int, data: Bool) {
        lastLogged[i] = k
        if data { lastDataLogged[i] = k }
    }

    /// A new state of `ino`'s contents after a data op.
    mutating func applyData(_ op: CrashOp) {
        guard let i = op.handleInode else { return }
        var c = current(i)
        func zero(_ o: Int, _ n: Int) {
            if o < c.count { c.replaceSubrange(o..<min(o + n, c.count), with: repeatElement(0, count: min(o + n, c.count) - o)) }
        }
        func extend(to end: Int) { if c.count < end { c += [UInt8](repeating: 0, count: end - c.count) } }
        switch op {
        case .write(_, let o, let n, let s):
            extend(to: o + n)
            storeCrashData(&c, stamp: s, offset: o, count: n)
        case .mappedStore(_, let o, let n, let s):
            // Only bytes below the size are the file's (a store past it stays in the EOF page).
            let end = min(o + n, c.count)
            if o < end { storeCrashData(&c, stamp: s, offset: o, count: end - o) }
        case .racedWrite(_, let o, let n, let s, _, let at):
            // The store (past what the write wrote; only bytes below the size count), then
            // what the write wrote.
            let end = min(at + 8, c.count)
            if at < end { storeCrashData(&c, stamp: s + CrashOp.racingStamp, offset: at, count: end - at) }
            extend(to: o + n)
            storeCrashData(&c, stamp: s, offset: o, count: n)
        case .truncate(_, let n):
            if n < c.count { c.removeLast(c.count - n) } else { extend(to: n) }
        case .allocate(_, let o, let n, let keep):
            if !keep { extend(to: o + n) }
        case .zeroRange(_, let o, let n, let keep):
            zero(o, n)
            if !keep { extend(to: o + n) }
        case .punch(_, let o, let n): zero(o, n)
        default: return
        }
        contents[i, default: [[]]].append(c)
    }

    mutating func applyNamespace(_ op: CrashOp, created: InodeNumber?, at k: Int) {
        switch op {
        case .create(let p), .mkdir(let p), .symlink(_, let p):
            guard let i = created else { return }
            logged(parentInode(p), at: k, data: true)
            tree[p] = i
            logged(i, at: k, data: true)
            switch op {
            case .create:
                kinds[i] = .regular
                contents[i] = [[]]
                open.insert(i)
            case .symlink(let target, _):
                kinds[i] = .symlink
                symlinks[i] = target
            default:
                kinds[i] = .directory
                directoryInodes[p] = i
            }
        case .write(let i, _, _, _), .punch(let i, _, _), .mappedStore(let i, _, _, _), .racedWrite(let i, _, _, _, _, _):
            open.insert(i)
            logged(i, at: k, data: false)
        case .fsync(let i), .fdatasync(let i), .msync(let i): open.insert(i)
        // Recorded only when it wrote nothing (EFAULT): no data, no times.
        case .failingWrite(let i, _, _, _, _): open.insert(i)
        case .truncate(let i, _), .allocate(let i, _, _, _), .zeroRange(let i, _, _, _):
            open.insert(i)
            let sizes = contents[i]!.suffix(2).map(\.count)
            logged(i, at: k, data: sizes.count == 2 && sizes[0] != sizes[1])
        case .close(let i): open.remove(i)
        case .unlink(let p), .rmdir(let p):
            guard let i = tree[p] else { return }
            logged(parentInode(p), at: k, data: true)
            tree[p] = nil
            directoryInodes[p] = nil
            logged(i, at: k, data: true)
        case .rename(let from, let to): applyRename(from, to, at: k)
        case .link(let from, let to):
            guard let i = tree[from] else { return }
            logged(parentInode(to), at: k, data: true)
            tree[to] = i
            logged(i, at: k, data: true)
        case .setxattr(let p, let name, let value):
            guard let i = inode(at: p) else { return }
            xattrs[i, default: [:]][Array(name.utf8)] = value
            logged(i, at: k, data: true)
        case .removexattr(let p, let name):
            guard let i = inode(at: p) else { return }
            xattrs[i]?[Array(name.utf8)] = nil
            if xattrs[i]?.isEmpty ?? false { xattrs[i] = nil }
            logged(i, at: k, data: true)
        case .sync, .fsyncDirectory: break
        }
    }

    /// rename(2) in the model: the name moves (a directory with every path under it), the
    /// name it replaces goes; both directories, the moved inode and the replaced one log a
    /// change.
    mutating func applyRename(_ from: String, _ to: String, at k: Int) {
        guard let i = tree[from], tree[to] != i else { return }
        logged(parentInode(from), at: k, data: true)
        logged(parentInode(to), at: k, data: true)
        if let victim = tree[to] {
            logged(victim, at: k, data: true)
            directoryInodes[to] = nil
        }
        let inside = from + "/"
        let moved = tree.filter { $0.key == from || $0.key.hasPrefix(inside) }
        let dirs = directoryInodes.filter { $0.key == from || $0.key.hasPrefix(inside) }
        for p in moved.keys { tree[p] = nil }
        for p in dirs.keys { directoryInodes[p] = nil }
        for (p, ino) in moved { tree[to + p.dropFirst(from.count)] = ino }
        for (p, ino) in dirs { directoryInodes[to + p.dropFirst(from.count)] = ino }
        logged(i, at: k, data: true)
    }
}

/// A volume's tree: every name in the root and in its subdirectories, with the inode it
/// names, and the directories by path.
public func readTree(_ state: MetadataState) -> (tree: [String: InodeNumber], directories: [String: InodeNumber]) {
    var tree: [String: InodeNumber] = [:]
    var dirs: [String: InodeNumber] = ["": .root]
    var queue: [(String, InodeNumber)] = [("", .root)]
    while let (path, ino) = queue.popLast() {
        for (name, entry) in state[ino]?.directory?.entries ?? [:] {
            let p = CrashModel.join(path, name.description)
            tree[p] = entry.inode
            if entry.type == .directory, dirs[p] == nil, p.split(separator: "/").count < 4 {
                dirs[p] = entry.inode
                queue.append((p, entry.inode))
            }
        }
    }
    return (tree, dirs)
}

/// The extended attributes of every inode `tree` names and of the root, as a volume's state
/// has them (inodes with none left out).
public func readXattrs(_ state: MetadataState, _ tree: [String: InodeNumber]) -> [InodeNumber: CrashXattrs] {
    var out: [InodeNumber: CrashXattrs] = [:]
    for ino in Set(tree.values).union([.root]) {
        if let x = state[ino]?.xattrs, !x.isEmpty { out[ino] = x }
    }
    return out
}

/// A regular file's whole contents, read through a handle of its own.
public func readContents(_ volume: Volume, _ ino: InodeNumber) throws(Errno) -> [UInt8] {
    let h = try volume.open(ino)
    defer { try? h.close() }
    // As cat reads: on until the size, since a read that meets an I/O error past its first
    // byte returns what it read (as Linux's filemap_read does) and only the next one fails.
    let size = h.size
    var out: [UInt8] = []
    out.reserveCapacity(size)
    while out.count < size {
        let chunk = try h.read(count: size - out.count, at: out.count)
        if chunk.isEmpty { break }
        out += chunk
    }
    return out
}

/// A value after each of a workload's ops, kept as the distinct values and, per op, which of
/// them it is. A recording keeps a model after every op, and each model the whole history:
/// an array of the values themselves made every op copy (and every model free) one
/// dictionary per op before it, quadratic in a 2,000-op workload. The index is plain
/// integers; only a change adds a value (the namespace changes at few ops).
public struct CrashHistory<Value: Equatable & Sendable>: Sendable {
    private var values: [Value]
    private var index: [Int32]

    init(_ first: Value) {
        values = [first]
        index = [0]
    }

    /// The number of values: ops + 1.
    public var count: Int { index.count }

    public subscript(k: Int) -> Value { values[Int(index[k])] }

    /// Records the value after the next op (a dictionary unchanged since the last compares
    /// equal at once: it is the same storage).
    mutating func append(_ v: Value) {
        if v != values[values.count - 1] { values.append(v) }
        index.append(Int32(values.count - 1))
    }
}
