// Counterpart: none in the kernel; the system calls a crash workload makes, on a volume
// (what CrashMonkey's workloads make through the VFS). Shared by the crash cases
// (CrashCase.swift) and the crash-state explorer (CrashExplorer/).

import ExtentFS
import IOMapBase
import Volume

/// What one op did: the inode a create or mkdir made, and the byte count of a write that
/// came back short (a failure of the volume: the workload's writes always fit).
public struct CrashOpDone: Sendable {
    public var created: InodeNumber?
    public var shortWrite: Int?
}

/// Does `op` on `v`, with the workload's open handles in `handles` (a create opens one; a
/// data op on an inode without one opens it), paths resolved in the model's tree.
public func performCrashOp(
    _ op: CrashOp, on v: Volume, handles: inout [InodeNumber: FileHandle], model m: CrashModel
) throws(Errno) -> CrashOpDone {
    func place(_ path: String) -> (InodeNumber, String) {
        let parts = path.split(separator: "/").map(String.init)
        let dir = parts.dropLast().joined(separator: "/")
        return (m.directoryInodes[dir] ?? .root, parts.last!)
    }
    func handle(_ ino: InodeNumber) throws(Errno) -> FileHandle {
        if let h = handles[ino] { return h }
        let h = try v.open(ino)
        handles[ino] = h
        return h
    }
    var done = CrashOpDone()
    switch op {
    case .create(let p):
        let (d, n) = place(p)
        let ino = try v.create(in: d, n, permissions: 0o644).inode
        handles[ino] = try v.open(ino)
        done.created = ino
    case .mkdir(let p):
        let (d, n) = place(p)
        done.created = try v.mkdir(in: d, n, permissions: 0o755)
    case .write(let i, let o, let n, let s):
        let wrote = try handle(i).write(crashData(stamp: s, offset: o, count: n), at: o)
        if wrote != n { done.shortWrite = wrote }
    case .truncate(let i, let n): try handle(i).truncate(to: n)
    case .allocate(let i, let o, let n, let keep): try handle(i).allocate(offset: o, length: n, keepSize: keep)
    case .punch(let i, let o, let n): try handle(i).punchHole(offset: o, length: n)
    case .fsync(let i): try handle(i).fsync()
    case .fdatasync(let i): try handle(i).fdatasync()
    case .close(let i): try handles.removeValue(forKey: i)?.close()
    case .unlink(let p):
        let (d, n) = place(p)
        try v.unlink(in: d, n)
    case .rename(let a, let b):
        let (da, na) = place(a)
        let (db, nb) = place(b)
        try v.rename(from: da, na, to: db, nb)
    case .link(let a, let b):
        let (db, nb) = place(b)
        try v.link(m.tree[a]!, in: db, nb)
    case .sync: try v.sync()
    }
    return done
}
