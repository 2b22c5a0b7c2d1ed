// Counterpart: none in the kernel; CrashMonkey's ACE (Automatic Crash Explorer), which
// lists every workload of a bounded length over a small fixed file set: its core file-system
// operations, each followed by a persistence point or none, from a fixed starting tree.
//
// The starting tree (makeCrashFixture): files foo (16 KiB) and bar (100 bytes), directories
// A, B and A/C, a file A/foo with a hole in its middle, and an xattr user.fix on foo and on
// A; synced. The core operations (boundedCoreOps): creat, mkdir, write (overwrite, aligned
// and not; append; into a hole), fallocate (0 and KEEP_SIZE, past the end and into a
// hole), punch hole, zero range (inside, and past the end with and without KEEP_SIZE),
// truncate down and up, a store through a shared mapping (inside the size), link, unlink,
// rmdir, rename (plain, within a directory and across, replacing, and of a directory),
// symlink, setxattr (new, replacing, large, on a directory) and removexattr. Each is
// followed by one of: fsync of its file, fdatasync, fsync of a directory it changed (its
// parent; a new directory itself), sync, msync after a mapped store, or nothing. A
// workload of length 2 is two of those, the second drawn from the model as the first left
// it, so that it is valid there: an op on a name the first removed is not drawn, and an
// unlinked file is fsync'd only while a handle holds it.
//
// CrashOp names files by inode. A workload is planned ahead of any volume, so it is drawn
// from a model of the fixture (CrashModel of a scratch volume the fixture was built on),
// and the model predicts the inode each create, mkdir and symlink makes: the volume hands
// out numbers in order and never reuses one, so a fresh fixture makes the same ones
// (runBoundedWorkload checks that it does).

import ExtentFS
import IOMap
import IOMapBase
import Volume

/// The fixture's tree, as makeCrashFixture built it.
public struct CrashFixture: Sendable {
    /// Every name of the fixture and the inode it names.
    public var inodes: [String: InodeNumber]
}

/// The stamps of the fixture's data (foo, bar, A/foo); a workload's ops use stamps from
/// boundedStamp on, one per op of the workload.
let fixtureStamps = (foo: 1, bar: 2, inA: 3)
let boundedStamp = 10

/// Builds the fixture's tree on `v`, a volume formatted and mounted just before, and syncs
/// it. See the file's opening comment.
public func makeCrashFixture(_ v: Volume) throws(Errno) -> CrashFixture {
    func file(_ dir: InodeNumber, _ name: String, _ pieces: [(offset: Int, count: Int)], stamp: Int) throws(Errno) -> InodeNumber {
        let ino = try v.create(in: dir, name, permissions: 0o644).inode
        let h = try v.open(ino)
        for p in pieces { try h.write(crashData(stamp: stamp, offset: p.offset, count: p.count), at: p.offset) }
        try h.close()
        return ino
    }
    let foo = try file(.root, "foo", [(0, 16384)], stamp: fixtureStamps.foo)
    _ = try file(.root, "bar", [(0, 100)], stamp: fixtureStamps.bar)
    let a = try v.mkdir(in: .root, "A", permissions: 0o755)
    _ = try v.mkdir(in: .root, "B", permissions: 0o755)
    _ = try v.mkdir(in: a, "C", permissions: 0o755)
    _ = try file(a, "foo", [(0, 4096), (12288, 4096)], stamp: fixtureStamps.inA)
    try v.setxattr(foo, "user.fix", crashData(stamp: fixtureStamps.foo, offset: 0, count: 16))
    try v.setxattr(a, "user.fix", crashData(stamp: fixtureStamps.inA, offset: 0, count: 8))
    try v.sync()
    return CrashFixture(inodes: readTree(v.state).tree)
}

/// How a bounded workload's volume is made: formatted the same way every time, so that the
/// fixture's inode numbers are the same.
public enum BoundedVolume {
    public static let blocks = 2048
    public static let blockSize = 4096

    public static var format: FormatOptions {
        var f = FormatOptions()
        f.logBlocks = 64
        f.uuid = VolumeUUID(high: 0xACE, low: 0xF1C5)
        f.time = Timestamp(seconds: 1_700_000_000)
        return f
    }
}

/// The model of a fresh fixture, the start of every bounded workload.
let crashFixtureModel: CrashModel = {
    do throws(VolumeError) {
        let device = MemoryBlockDevice(blockSize: BoundedVolume.blockSize, blockCount: BoundedVolume.blocks)
        try Volume.format(device: device, options: BoundedVolume.format)
        var options = VolumeOptions()
        options.backgroundForce = nil
        let v = try Volume.mount(device: device, options: options)
        do throws(Errno) {
            _ = try makeCrashFixture(v)
            return try CrashModel(volume: v)
        } catch {
            preconditionFailure("the crash fixture cannot be built: \(error)")
        }
    } catch {
        preconditionFailure("the crash fixture's volume cannot be made: \(error)")
    }
}()

/// Every workload of `length` (1 or 2) core operations, each with its persistence point
/// (or none), valid from the fixture. See the file's opening comment.
public func boundedCrashWorkloads(length: Int) -> [[CrashOp]] {
    precondition(length == 1 || length == 2, "bounded workloads are of length 1 or 2")
    let start = crashFixtureModel
    var out: [[CrashOp]] = []
    for first in boundedSteps(start, stamp: boundedStamp) {
        guard length == 2 else {
            out.append(first)
            continue
        }
        var m = start
        m.plan(first)
        for second in boundedSteps(m, stamp: boundedStamp + 1) { out.append(first + second) }
    }
    return out
}

/// One core operation, with what its persistence point may name.
struct BoundedCore {
    var op: CrashOp
    /// The regular file fsync and fdatasync may name (nil: none has a handle to sync).
    var file: InodeNumber?
    /// The directories it changed, for a directory's fsync.
    var directories: [String]
    var mapped = false
}

/// Each core operation valid in `m`, with each of its persistence points.
func boundedSteps(_ m: CrashModel, stamp: Int) -> [[CrashOp]] {
    boundedCoreOps(m, stamp: stamp).flatMap { c -> [[CrashOp]] in
        var out: [[CrashOp]] = [[c.op], [c.op, .sync]]
        if let f = c.file { out += [[c.op, .fsync(f)], [c.op, .fdatasync(f)]] }
        for d in c.directories { out.append([c.op, .fsyncDirectory(d)]) }
        if c.mapped, let f = c.file { out.append([c.op, .msync(f)]) }
        return out
    }
}

/// The directory holding `path`'s last name ("" is the root).
func parentPath(_ path: String) -> String { path.split(separator: "/").dropLast().joined(separator: "/") }

/// The core operations valid in `m`: the file's opening comment lists them.
func boundedCoreOps(_ m: CrashModel, stamp s: Int) -> [BoundedCore] {
    var out = boundedNameOps(m, stamp: s)
    func file(_ p: String) -> InodeNumber? { m.tree[p].flatMap { m.kinds[$0] == .regular ? $0 : nil } }
    func add(_ p: String, _ op: (InodeNumber, Int) -> CrashOp?, mapped: Bool = false) {
        guard let f = file(p), let o = op(f, m.current(f).count) else { return }
        out.append(BoundedCore(op: o, file: f, directories: [parentPath(p)], mapped: mapped))
    }
    // Overwrites aligned and not, appends, and writes into A/foo's hole.
    for (p, o, n) in [
        ("foo", 4096, 4096), ("foo", 1000, 3000), ("foo", -1, 8192), ("bar", -1, 4000), ("A/foo", 4096, 8192), ("A/foo", 6000, 100),
    ] {
        add(p) { f, size in .write(f, offset: o < 0 ? size : o, length: n, stamp: s) }
    }
    for (p, o, n, keep) in [("foo", 16384, 16384, false), ("foo", 16384, 16384, true), ("A/foo", 4096, 8192, false)] {
        add(p) { f, _ in .allocate(f, offset: o, length: n, keepSize: keep) }
    }
    for (o, n) in [(4096, 8192), (5000, 3000)] { add("foo") { f, _ in .punch(f, offset: o, length: n) } }
    for (o, n, keep) in [(4096, 4096, false), (12000, 8000, false), (12000, 8000, true)] {
        add("foo") { f, _ in .zeroRange(f, offset: o, length: n, keepSize: keep) }
    }
    for (p, n) in [("foo", 5000), ("foo", 0), ("foo", 65536), ("bar", 10000)] { add(p) { f, _ in .truncate(f, size: n) } }
    // Stores through the mapping stay inside the size (past it is SIGBUS).
    for (p, o, n) in [("foo", 4096, 4096), ("foo", 100, 50), ("A/foo", 5000, 100)] {
        add(p, { f, size in o + n <= size ? .mappedStore(f, offset: o, length: n, stamp: s) : nil }, mapped: true)
    }
    return out
}

/// The core operations on names valid in `m`: creat, mkdir, link, unlink, rmdir, rename,
/// symlink, setxattr, removexattr.
func boundedNameOps(_ m: CrashModel, stamp s: Int) -> [BoundedCore] {
    var out: [BoundedCore] = []
    func regular(_ p: String) -> InodeNumber? { m.tree[p].flatMap { m.kinds[$0] == .regular ? $0 : nil } }
    func free(_ p: String) -> Bool { m.tree[p] == nil && m.directoryInodes[parentPath(p)] != nil }
    func add(_ op: CrashOp, _ file: InodeNumber?, _ dirs: [String]) {
        var unique: [String] = []
        for d in dirs where !unique.contains(d) { unique.append(d) }
        out.append(BoundedCore(op: op, file: file, directories: unique))
    }
    for p in ["baz", "A/bar", "A/C/foo"] where free(p) { add(.create(p), InodeNumber(m.nextInode), [parentPath(p)]) }
    for p in ["D", "A/C/D"] where free(p) { add(.mkdir(p), nil, [parentPath(p), p]) }
    for (a, b) in [("foo", "A/bar"), ("A/foo", "B/foo")] where free(b) {
        if let f = regular(a) { add(.link(a, to: b), f, [parentPath(b)]) }
    }
    for p in ["foo", "bar", "A/foo"] {
        // An unlinked file can be fsync'd only through a handle the workload holds.
        if let f = regular(p) { add(.unlink(p), m.open.contains(f) ? f : nil, [parentPath(p)]) }
    }
    for p in ["A/C", "B"] where m.directoryInodes[p] != nil && m.isEmptyDirectory(p) { add(.rmdir(p), nil, [parentPath(p)]) }
    for (a, b) in [("foo", "B/foo"), ("foo", "baz"), ("foo", "bar"), ("A/foo", "foo")] {
        // Onto a free name, or over a file.
        guard let f = regular(a), free(b) || regular(b) != nil else { continue }
        add(.rename(a, to: b), f, [parentPath(b), parentPath(a)])
    }
    if m.directoryInodes["A/C"] != nil, free("B/C") { add(.rename("A/C", to: "B/C"), nil, ["B", "A"]) }
    for (t, p) in [("foo", "A/sym"), ("A/C/D/missing", "B/sym")] where free(p) { add(.symlink(target: t, path: p), nil, [parentPath(p)]) }
    for (p, name, n) in [("foo", "user.new", 16), ("foo", "user.fix", 32), ("A", "user.new", 8), ("bar", "user.big", 2000)] {
        guard let i = m.inode(at: p), m.kinds[i] == .regular || m.kinds[i] == .directory else { continue }
        let isDir = m.kinds[i] == .directory
        add(.setxattr(p, name: name, value: crashData(stamp: s, offset: 0, count: n)), isDir ? nil : i, [isDir ? p : parentPath(p)])
    }
    for (p, name) in [("foo", "user.fix"), ("A", "user.fix")] where m.xattrNames(at: p).contains(name) {
        let i = m.inode(at: p)!
        let isDir = m.kinds[i] == .directory
        add(.removexattr(p, name: name), isDir ? nil : i, [isDir ? p : parentPath(p)])
    }
    return out
}

extension CrashModel {
    /// Counts `ops` as if each returned, with the inode the volume will give each that
    /// makes one (the next number: they are handed out in order), and no force: a
    /// workload planned ahead of the volume.
    public mutating func plan(_ ops: [CrashOp]) {
        for op in ops { record(op, created: op.createsInode ? InodeNumber(nextInode) : nil, forced: false) }
    }
}

/// What a bounded workload did on a fresh fixture and found after its crash.
public struct BoundedRun: Sendable {
    public var violations: [String] = []
    /// The model of what the workload did, for the caller's own checks.
    public var model: CrashModel?
}

/// Runs `ops` on a fresh fixture (a volume formatted as BoundedVolume says, with the clock
/// the crash cases use and `bugs`), checking that each op returns and that each create,
/// mkdir and symlink makes the inode the plan expects; then cuts the power, keeping each
/// unflushed write with probability `keepFraction` (seeded), and checks the recovery: fsck
/// of the crashed image, the mount, fsck, and the oracle of CrashModel.
public func runBoundedWorkload(_ ops: [CrashOp], bugs: DeliberateBugs = [], keepFraction: Double = 0, seed: UInt64 = 1) -> BoundedRun {
    var run = BoundedRun()
    let disk = MemoryBlockDevice(blockSize: BoundedVolume.blockSize, blockCount: BoundedVolume.blocks)
    let device = FaultyBlockDevice(wrapping: disk, seed: seed)
    var options = VolumeOptions()
    options.bugs = bugs
    options.backgroundForce = nil
    let clock = TickingClock()
    options.clock = { clock.tick() }
    // The volume and its handles stay alive until the end: their release must not run on
    // the volume mounted after the crash.
    var handles: [InodeNumber: FileHandle] = [:]
    var model: CrashModel
    let v: Volume
    do throws(VolumeError) {
        try Volume.format(device: device, options: BoundedVolume.format)
        v = try Volume.mount(device: device, options: options)
        do throws(Errno) {
            _ = try makeCrashFixture(v)
            model = try CrashModel(volume: v)
        } catch {
            return BoundedRun(violations: ["the fixture cannot be built: \(error)"])
        }
    } catch {
        return BoundedRun(violations: ["the fixture's volume cannot be made: \(error)"])
    }
    for (k, op) in ops.enumerated() {
        let expected = op.createsInode ? InodeNumber(model.nextInode) : nil
        let before = v.journal.stats
        let done: CrashOpDone
        do throws(Errno) { done = try performCrashOp(op, on: v, handles: &handles, model: model) } catch {
            run.violations.append("op \(k) (\(op)) failed: \(error)")
            return run
        }
        if done.created != expected {
            run.violations.append("op \(k) (\(op)) made #\(done.created?.rawValue ?? 0), planned as #\(expected?.rawValue ?? 0)")
        }
        if let n = done.shortWrite { run.violations.append("op \(k) (\(op)) wrote \(n) bytes") }
        let after = v.journal.stats
        model.record(op, created: done.created, forced: after.checkpoints != before.checkpoints || after.snapshots != before.snapshots)
    }
    device.crash(keepFraction: keepFraction)
    device.revive()
    run.violations += boundedRecoveryViolations(device, model)
    run.model = model
    withExtendedLifetime((v, handles)) {}
    return run
}

/// fsck of the crashed image, the mount, fsck, and the oracle.
func boundedRecoveryViolations(_ device: FaultyBlockDevice, _ model: CrashModel) -> [String] {
    var out = fsckViolations(device, "of the crashed image")
    var options = VolumeOptions()
    options.backgroundForce = nil
    do throws(VolumeError) {
        let w = try Volume.mount(device: device, options: options)
        out += fsckViolations(device, "after the mount")
        out += model.check(w).violations
    } catch {
        out.append("the mount after the crash failed: \(error)")
    }
    return out
}
