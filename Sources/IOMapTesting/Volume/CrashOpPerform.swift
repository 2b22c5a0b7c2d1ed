// Counterpart: none in the kernel; the system calls a crash workload makes, on a volume
// (what CrashMonkey's workloads make through the VFS). Shared by the crash cases
// (CrashCase.swift), the bounded workloads (CrashBounded.swift) and the crash-state
// explorer (CrashExplorer/).

import ExtentFS
import IOMapBase
import Synchronization
import Volume

/// What one op did: the inode a create, mkdir or symlink made, and the byte count of a
/// write that came back short (a failure of the volume: the workload's writes always fit).
public struct CrashOpDone: Sendable {
    public var created: InodeNumber?
    public var shortWrite: Int?
    /// What a failing write wrote (0: EFAULT).
    public var wrote: Int?
}

/// The store of a racedWrite, made from inside the write as a second CPU would make it: armed
/// before the write, it fires at the first H1 (after iomap_begin returned a mapping) whose
/// range holds its offset, that is once the write has reserved the store's block and before
/// its copy faults (the seed's order of events). When no H1 covers it (the write's copy
/// faulted in an earlier mapping), the store is made after the write returns: the model is
/// the same, only the race did not happen. The volume's IOMapEnvironment hook calls `fire`.
public final class RacingStore: Sendable {
    struct Armed {
        let handle: FileHandle
        let offset: Int
        let bytes: [UInt8]
    }
    private let state = Mutex<(armed: Armed?, error: Errno?, raced: Int, late: Int)>((nil, nil, 0, 0))

    public init() {}

    /// The environment that carries this store's hook.
    public var environment: IOMapEnvironment { IOMapEnvironment(hook: { [self] in fire($0) }) }

    /// Stores made from inside their write, and after it.
    public var counts: (raced: Int, late: Int) { state.withLock { ($0.raced, $0.late) } }

    public func fire(_ event: HookEvent) {
        guard event.point == .afterIomapBegin else { return }
        let armed = state.withLock { s -> Armed? in
            guard let a = s.armed, event.range.start <= a.offset, a.offset < event.range.end else { return nil }
            s.armed = nil
            s.raced += 1
            return a
        }
        guard let armed else { return }
        do throws(Errno) { try armed.handle.mappedStore(armed.bytes, at: armed.offset) } catch {
            state.withLock { $0.error = error }
        }
    }

    /// Runs `write` with the store armed; makes the store afterwards if no H1 took it.
    func race<T>(_ h: FileHandle, storeAt offset: Int, bytes: [UInt8], _ write: () throws(Errno) -> T) throws(Errno) -> T {
        state.withLock { $0 = (Armed(handle: h, offset: offset, bytes: bytes), nil, $0.raced, $0.late) }
        let result = Result { () throws(Errno) -> T in try write() }
        let (left, error) = state.withLock { s in
            defer { s.armed = nil }
            if s.armed != nil { s.late += 1 }
            return (s.armed, s.error)
        }
        if let error { throw error }
        if let left { try h.mappedStore(left.bytes, at: left.offset) }
        return try result.get()
    }
}

/// Does `op` on `v`, with the workload's open handles in `handles` (a create opens one; a
/// data op on an inode without one opens it), paths resolved in the model's tree. A
/// racedWrite needs `racing`, the RacingStore whose environment the volume was mounted with.
public func performCrashOp(
    _ op: CrashOp, on v: Volume, handles: inout [InodeNumber: FileHandle], model m: CrashModel, racing: RacingStore? = nil
) throws(Errno) -> CrashOpDone {
    var done = CrashOpDone()
    if case .close(let i) = op {
        try handles.removeValue(forKey: i)?.close()
        return done
    }
    if let i = op.handleInode {
        try performDataOp(op, try crashHandle(i, v, &handles), done: &done, racing: racing)
        return done
    }
    switch op {
    case .create(let p):
        let (d, n) = crashPlace(p, m)
        let ino = try v.create(in: d, n, permissions: 0o644).inode
        handles[ino] = try v.open(ino)
        done.created = ino
    case .mkdir(let p):
        let (d, n) = crashPlace(p, m)
        done.created = try v.mkdir(in: d, n, permissions: 0o755)
    case .symlink(let target, let p):
        let (d, n) = crashPlace(p, m)
        done.created = try v.symlink(in: d, n, target: target)
    case .unlink(let p):
        let (d, n) = crashPlace(p, m)
        try v.unlink(in: d, n)
    case .rmdir(let p):
        let (d, n) = crashPlace(p, m)
        try v.rmdir(in: d, n)
    case .rename(let a, let b):
        let (da, na) = crashPlace(a, m)
        let (db, nb) = crashPlace(b, m)
        try v.rename(from: da, na, to: db, nb)
    case .link(let a, let b):
        let (db, nb) = crashPlace(b, m)
        try v.link(m.tree[a]!, in: db, nb)
    case .setxattr(let p, let name, let value): try v.setxattr(try crashNamed(p, m), name, value)
    case .removexattr(let p, let name): try v.removexattr(try crashNamed(p, m), name)
    case .fsyncDirectory(let p):
        guard let d = m.directoryInodes[p] else { throw .notDirectory }
        try v.fsyncDirectory(d)
    case .sync: try v.sync()
    default: preconditionFailure("\(op) works through a handle")
    }
    return done
}

/// The ops through a file's handle `h`.
func performDataOp(_ op: CrashOp, _ h: FileHandle, done: inout CrashOpDone, racing: RacingStore?) throws(Errno) {
    switch op {
    case .write(_, let o, let n, let s):
        let wrote = try h.write(crashData(stamp: s, offset: o, count: n), at: o)
        if wrote != n { done.shortWrite = wrote }
    case .failingWrite(_, let o, let n, let s, let f):
        do throws(Errno) {
            done.wrote = try h.write(crashData(stamp: s, offset: o, count: n), at: o, faultOffset: f)
        } catch  where error == .badAddress {
            done.wrote = 0
        }
    case .racedWrite(_, let o, let n, let s, let f, let at):
        guard let racing else { preconditionFailure("\(op) needs the RacingStore the volume was mounted with") }
        let store = crashData(stamp: s + CrashOp.racingStamp, offset: at, count: 8)
        done.wrote = try racing.race(h, storeAt: at, bytes: store) { () throws(Errno) -> Int in
            do throws(Errno) { return try h.write(crashData(stamp: s, offset: o, count: n), at: o, faultOffset: f) } catch
                where error
                == .badAddress
            {
                return 0
            }
        }
    case .truncate(_, let n): try h.truncate(to: n)
    case .allocate(_, let o, let n, let keep): try h.allocate(offset: o, length: n, keepSize: keep)
    case .punch(_, let o, let n): try h.punchHole(offset: o, length: n)
    case .zeroRange(_, let o, let n, let keep): try h.zeroRange(offset: o, length: n, keepSize: keep)
    case .mappedStore(_, let o, let n, let s): try h.mappedStore(crashData(stamp: s, offset: o, count: n), at: o)
    case .fsync: try h.fsync()
    case .fdatasync: try h.fdatasync()
    case .msync: try h.msync(offset: 0, length: CrashGenerator.maxFileSize)
    default: preconditionFailure("\(op) works on names")
    }
}

/// The directory that holds `path`'s last name, and that name.
func crashPlace(_ path: String, _ m: CrashModel) -> (InodeNumber, String) {
    let parts = path.split(separator: "/").map(String.init)
    return (m.directoryInodes[parts.dropLast().joined(separator: "/")] ?? .root, parts.last!)
}

/// The inode `path` names in the model ("" is the root).
func crashNamed(_ path: String, _ m: CrashModel) throws(Errno) -> InodeNumber {
    guard let ino = m.inode(at: path) else { throw .noSuchFileOrDirectory }
    return ino
}

/// The workload's handle on `ino`, opened on first use.
func crashHandle(_ ino: InodeNumber, _ v: Volume, _ handles: inout [InodeNumber: FileHandle]) throws(Errno) -> FileHandle {
    if let h = handles[ino] { return h }
    let h = try v.open(ino)
    handles[ino] = h
    return h
}
