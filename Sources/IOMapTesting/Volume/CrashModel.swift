// Counterpart: none in the kernel; the oracle of CrashMonkey's AutoChecker and of the
// fstests that replay dm-log-writes logs (what fsync promised, checked after every crash),
// recast for a volume whose log is ordered.
//
// The model follows a crash workload op by op and says which volumes a crash may leave.
//
// Namespace: the volume's log is one ordered sequence of transactions and recovery applies
// a prefix of it (docs/VOLUME.md "Recovery"); each namespace call is one transaction. So
// the tree after a crash (every name in the root and its subdirectories, with the inode it
// names) must equal the tree after some prefix of the ops: after op P for one P between
// `durable` and the last op begun. That one check is every namespace promise at once: a
// file created and then fsync'd is there, a name unlinked before a later force is gone, and
// a rename is atomic, whether or not it was forced: exactly one of its old and new names
// exists, never both, never neither (no prefix has both or neither).
//
// `durable` is a lower bound on the prefix, raised by what returned:
// - sync: every op before it and itself;
// - fsync of a file: every op up to the last one that logged a change to that inode (the
//   log forces up to the inode's last checkpoint, and earlier checkpoints come first).
//   Every data op, create, link, unlink and rename of a file logs one (the workload's clock
//   moves at every read, so each data op logs the file's timestamps);
// - fdatasync: the same, counting only changes that are not timestamps alone: create,
//   link, unlink, rename, and a truncate or fallocate that changes the size;
// - any op during which the journal wrote a checkpoint or a snapshot (its counters moved):
//   the ops before it and itself, since a force seals everything logged so far.
// An fsync of a file with nothing logged since its last force forces nothing (as in XFS,
// where xfs_file_fsync forces the log only for a pinned inode): it does not make another
// file's unlink durable, and the model does not claim it.
//
// Data: for each inode the model keeps its contents as they were at its last durability
// point (fsync or fdatasync of it returned, sync returned, or the start of the phase, or
// its creation: empty) and after every data op since. After a crash, for a file in the
// recovered tree:
// - with no data op since that point, its size and every byte are exactly those;
// - otherwise its size lies between the least and the greatest size it had since (the
//   recorded size follows the ops and writeback, never past the live size), and each byte
//   below that size is the byte one of those states had at that offset, zero past a state's
//   size. That is: the fsync'd byte, a byte a later write stored at that offset, or zero
//   where a later truncate, punch or extension made one. A byte of another file, of a
//   never-written block (the disk starts poisoned with CrashWorkload.poison, even, while
//   written data is odd) or from the wrong offset fails it.
// The bytes are checked one by one, so a mix of states (one block from before an overwrite,
// the next from after) passes: writeback and the device's cache make any such mix possible.
// An op the crash interrupted counts as begun (its data may be there) but promises nothing.

import ExtentFS
import IOMapBase
import Volume

/// What a crash workload did, as a model of what may survive it.
public struct CrashModel: Sendable {
    /// Every name, files and directories, and the inode it names.
    public private(set) var tree: [String: InodeNumber]
    /// The directories by path ("" is the root).
    public private(set) var directoryInodes: [String: InodeNumber]
    /// For each inode of the phase, the contents since its last durability point; the last
    /// is the current one. Kept for inodes that lost their names: a crash may bring a name
    /// back.
    public private(set) var contents: [InodeNumber: [[UInt8]]]
    /// The inodes the workload holds a handle on.
    public private(set) var open: Set<InodeNumber> = []
    /// trees[k]: the tree after the first k ops.
    public private(set) var trees: [[String: InodeNumber]]
    /// Ops below this index are durable: the recovered tree is trees[P] for P >= durable.
    public private(set) var durable = 0
    /// Whether the last op counted was interrupted by the crash.
    public private(set) var interrupted = false
    var lastLogged: [InodeNumber: Int] = [:]
    var lastDataLogged: [InodeNumber: Int] = [:]

    /// A model starting from a volume as it is (everything on it durable: just mounted, or
    /// synced): its tree, and each file's contents read through it.
    public init(volume: Volume) throws(Errno) {
        let t = readTree(volume.state)
        tree = t.tree
        directoryInodes = t.directories
        contents = [:]
        for ino in Set(t.tree.values).subtracting(t.directories.values) {
            contents[ino] = [try readContents(volume, ino)]
        }
        trees = [tree]
    }

    /// The ops counted so far (the index the next one gets).
    public var opCount: Int { trees.count - 1 }

    public var directories: [String] { directoryInodes.keys.sorted() }

    public var namedFiles: [String] { tree.keys.filter { directoryInodes[$0] == nil }.sorted() }

    /// Files with a name or an open handle.
    public var liveFiles: [InodeNumber] {
        Set(namedFiles.map { tree[$0]! }).union(open).sorted()
    }

    public func current(_ ino: InodeNumber) -> [UInt8] { contents[ino]?.last ?? [] }

    static func join(_ dir: String, _ name: String) -> String { dir.isEmpty ? name : dir + "/" + name }

    /// Counts `op`, which returned. `created` is the inode a create or mkdir made; `forced`
    /// says the journal wrote a checkpoint or snapshot during it.
    public mutating func record(_ op: CrashOp, created: InodeNumber?, forced: Bool) {
        let k = opCount
        applyData(op)
        applyNamespace(op, created: created, at: k)
        switch op {
        case .fsync(let i):
            raise(to: lastLogged[i].map { $0 + 1 } ?? 0)
            contents[i] = [current(i)]
        case .fdatasync(let i):
            raise(to: lastDataLogged[i].map { $0 + 1 } ?? 0)
            contents[i] = [current(i)]
        case .sync:
            raise(to: k + 1)
            for i in contents.keys { contents[i] = [current(i)] }
        default: break
        }
        if forced { raise(to: k + 1) }
        trees.append(tree)
    }

    /// Counts `op`, which the crash interrupted: its data may have reached the disk, but it
    /// promises nothing. (Only ops that flush can be interrupted, and they change no name.)
    public mutating func recordInterrupted(_ op: CrashOp) {
        applyData(op)
        trees.append(tree)
        interrupted = true
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
        switch op {
        case .write(_, let o, let n, let s):
            if c.count < o + n { c += [UInt8](repeating: 0, count: o + n - c.count) }
            c.replaceSubrange(o..<o + n, with: crashData(stamp: s, offset: o, count: n))
        case .truncate(_, let n):
            if n < c.count { c.removeLast(c.count - n) } else { c += [UInt8](repeating: 0, count: n - c.count) }
        case .allocate(_, let o, let n, let keep):
            if !keep && o + n > c.count { c += [UInt8](repeating: 0, count: o + n - c.count) }
        case .punch(_, let o, let n):
            if o < c.count { c.replaceSubrange(o..<min(o + n, c.count), with: repeatElement(0, count: min(o + n, c.count) - o)) }
        default: return
        }
        contents[i, default: [[]]].append(c)
    }

    mutating func applyNamespace(_ op: CrashOp, created: InodeNumber?, at k: Int) {
        switch op {
        case .create(let p):
            guard let i = created else { return }
            tree[p] = i
            contents[i] = [[]]
            open.insert(i)
            logged(i, at: k, data: true)
        case .mkdir(let p):
            guard let i = created else { return }
            tree[p] = i
            directoryInodes[p] = i
        case .write(let i, _, _, _), .punch(let i, _, _):
            open.insert(i)
            logged(i, at: k, data: false)
        case .fsync(let i), .fdatasync(let i): open.insert(i)
        case .truncate(let i, _), .allocate(let i, _, _, _):
            open.insert(i)
            let sizes = contents[i]!.suffix(2).map(\.count)
            logged(i, at: k, data: sizes.count == 2 && sizes[0] != sizes[1])
        case .close(let i): open.remove(i)
        case .unlink(let p):
            if let i = tree.removeValue(forKey: p) { logged(i, at: k, data: true) }
        case .rename(let from, let to):
            guard let i = tree[from], tree[to] != i else { return }
            if let victim = tree[to] { logged(victim, at: k, data: true) }
            tree[to] = i
            tree[from] = nil
            logged(i, at: k, data: true)
        case .link(let from, let to):
            guard let i = tree[from] else { return }
            tree[to] = i
            logged(i, at: k, data: true)
        case .sync: break
        }
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
