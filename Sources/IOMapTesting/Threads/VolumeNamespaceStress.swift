// Counterpart: fstests' fsstress with several processes in one file system: creates,
// renames, links, unlinks, mkdir/rmdir, chmod, xattrs, writes, truncates and fsyncs from
// real threads at once, on one volume, with its background log force running beside them.
//
// Each worker owns a directory of the root and the names in a shared directory that start
// with its own prefix; it moves files between the two, so that every worker changes the
// shared directory while the others do. Because no two workers touch the same name or
// file, each worker's model predicts its own part of the namespace exactly (names, link
// counts, modes, xattrs, bytes) whatever the others do, while the journal, the allocator,
// the inode table, the orphan list and the shared directory are all contended. At the end
// every worker's part is checked on the live volume, then the volume is synced, the device
// loses its unflushed writes (a crash after the sync: nothing may be lost), and the parts
// are checked again on the mounted survivor, with fsck.
//
// Threads run for real, so a run is not replayable step by step; the seed fixes every
// worker's operations and data. Its purpose is twofold: the checks, and a workload for Thread
// Sanitizer (CI runs it under -sanitize=thread).

import ExtentFS
import IOMap
import IOMapBase
import Synchronization
import Volume

/// How a threaded namespace stress run is set up.
public struct VolumeStressConfig: Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var workers = 3
    public var opsPerWorker = 2000
    /// The journal's periodic force, short so that it runs often during the run.
    public var backgroundForce: Duration = .milliseconds(2)
    /// Test the checker: a rogue thread renames worker 0's files behind its back, which the
    /// run must report.
    public var rogueRename = false

    public init(seed: UInt64) { self.seed = seed }

    public var description: String {
        "VolumeStressConfig(seed: \(seed), workers: \(workers), opsPerWorker: \(opsPerWorker), backgroundForce: \(backgroundForce)"
            + "\(rogueRename ? ", rogueRename: true" : ""))"
    }
}

/// What a threaded namespace stress run found.
public struct VolumeStressReport: Sendable {
    public var opsRun = 0
    public var opsByKind: [String: Int] = [:]
    /// The first thing a worker or a final check found wrong, or nil.
    public var violation: String?
    public var elapsedSeconds = 0.0
}

/// One worker's part of the namespace, as it must be.
struct NamespacePart {
    struct File {
        var inode: InodeNumber
        var bytes: [UInt8] = []
        var permissions: UInt16 = 0o644
        var xattr: [UInt8]?
    }
    /// File ids by name in the worker's own directory and (prefixed) in the shared one.
    var own: [String: Int] = [:]
    var parked: [String: Int] = [:]
    var files: [Int: File] = [:]
    var directories: Set<String> = []
    var nextName = 0
    var nextFile = 0

    func links(_ id: Int) -> Int { own.values.filter { $0 == id }.count + parked.values.filter { $0 == id }.count }
}

/// The operations a worker draws, with their weights.
enum NamespaceStressOp: String, CaseIterable {
    case create, write, truncate, fsync, rename, park, unpark, link, unlink, openUnlink
    case mkdir, rmdir, chmod, xattr, read, readdir, readShared

    var weight: Int {
        switch self {
        case .create, .write: return 12
        case .read, .rename, .unlink: return 8
        case .fsync, .park, .readdir: return 6
        case .unpark, .link, .truncate, .chmod, .mkdir, .rmdir: return 4
        case .xattr, .openUnlink, .readShared: return 3
        }
    }
}

/// A worker's failure: what it did and what it saw.
struct StressFailure: Error, CustomStringConvertible {
    var description: String
}

/// One worker: its directory, its model and its random stream.
final class NamespaceWorker: @unchecked Sendable {
    // Touched only by the worker's own thread while the run goes, and by the checks after
    // every thread was joined.
    let index: Int
    var volume: Volume
    let own: InodeNumber
    let shared: InodeNumber
    var part = NamespacePart()
    var random: SeededRandom
    var counts: [String: Int] = [:]

    init(index: Int, volume: Volume, own: InodeNumber, shared: InodeNumber, seed: UInt64) {
        self.index = index
        self.volume = volume
        self.own = own
        self.shared = shared
        random = SeededRandom(seed: seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
    }

    var prefix: String { "w\(index)-" }

    func call<T>(_ what: @autoclosure () -> String, _ body: () throws(Errno) -> T) throws(StressFailure) -> T {
        do throws(Errno) { return try body() } catch { throw StressFailure(description: "worker \(index): \(what()): \(error)") }
    }

    func expect(_ ok: Bool, _ what: @autoclosure () -> String) throws(StressFailure) {
        if !ok { throw StressFailure(description: "worker \(index): \(what())") }
    }

    func pick(_ names: [String: Int]) -> String? { names.isEmpty ? nil : names.keys.sorted().randomElement(using: &random) }

    func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 1...255, using: &random) } }

    func drawOp() -> NamespaceStressOp {
        var r = Int.random(in: 0..<NamespaceStressOp.allCases.reduce(0) { $0 + $1.weight }, using: &random)
        for op in NamespaceStressOp.allCases {
            if r < op.weight { return op }
            r -= op.weight
        }
        return .create
    }

    func run(ops: Int, stop: borrowing Atomic<Bool>) throws(StressFailure) {
        for _ in 0..<ops where !stop.load(ordering: .relaxed) {
            let op = drawOp()
            counts[op.rawValue, default: 0] += 1
            try step(op)
        }
    }

    func newName() -> String {
        part.nextName += 1
        return "n\(part.nextName)"
    }

    func step(_ op: NamespaceStressOp) throws(StressFailure) {
        switch op {
        case .create, .write, .truncate, .fsync, .chmod, .xattr: try fileStep(op)
        case .read:
            guard let id = pick(part.own).flatMap({ part.own[$0] }) else { return }
            try checkFile(id)
        case .readdir:
            try checkDirectory()
        case .readShared:
            try checkShared()
        default: try nameStep(op)
        }
    }

    /// The operations on a file's data and attributes.
    func fileStep(_ op: NamespaceStressOp) throws(StressFailure) {
        switch op {
        case .create:
            let name = newName()
            let ino = try call("create \(name)") { () throws(Errno) in try volume.create(in: own, name, permissions: 0o644).inode }
            let id = part.nextFile
            part.nextFile += 1
            part.own[name] = id
            part.files[id] = .init(inode: ino)
            try write(id, at: 0, count: Int.random(in: 0...9000, using: &random))
        case .write:
            guard let name = pick(part.own), let id = part.own[name] else { return }
            let size = part.files[id]!.bytes.count
            try write(id, at: Int.random(in: 0...(size + 5000), using: &random), count: Int.random(in: 1...6000, using: &random))
        case .truncate:
            guard let id = pick(part.own).flatMap({ part.own[$0] }) else { return }
            let size = Int.random(in: 0...12_000, using: &random)
            try withHandle(id, "truncate to \(size)") { h throws(Errno) in try h.truncate(to: size) }
            part.files[id]!.bytes = Array(part.files[id]!.bytes.prefix(size))
            part.files[id]!.bytes += [UInt8](repeating: 0, count: max(0, size - part.files[id]!.bytes.count))
        case .fsync:
            guard let id = pick(part.own).flatMap({ part.own[$0] }) else { return }
            try withHandle(id, "fsync") { h throws(Errno) in try h.fsync() }
        case .chmod:
            guard let id = pick(part.own).flatMap({ part.own[$0] }) else { return }
            let permissions = UInt16.random(in: 0...0o777, using: &random)
            let ino = part.files[id]!.inode
            _ = try call("chmod \(ino)") { () throws(Errno) in try volume.setAttributes(ino, .chmod(permissions)) }
            part.files[id]!.permissions = permissions
        case .xattr:
            guard let id = pick(part.own).flatMap({ part.own[$0] }) else { return }
            let value = bytes(Int.random(in: 0...200, using: &random))
            let ino = part.files[id]!.inode
            try call("setxattr \(ino)") { () throws(Errno) in try volume.setxattr(ino, "user.stress", value) }
            part.files[id]!.xattr = value
        default: return
        }
    }

    /// The operations on names: renames, moves, links, unlinks, directories.
    func nameStep(_ op: NamespaceStressOp) throws(StressFailure) {
        switch op {
        case .rename:
            guard let from = pick(part.own) else { return }
            // Half the time over another of the worker's files, which loses that name.
            let to = Bool.random(using: &random) ? (pick(part.own) ?? newName()) : newName()
            try call("rename \(from) to \(to)") { () throws(Errno) in try volume.rename(from: own, from, to: own, to) }
            // Two names of one inode: rename(2) leaves both, as POSIX says.
            if part.own[from] == part.own[to] { return }
            let id = part.own.removeValue(forKey: from)!
            part.own[to] = id
            forgetUnlinked()
        case .park:
            guard let name = pick(part.own) else { return }
            try call("rename \(name) into the shared directory") { () throws(Errno) in
                try volume.rename(from: own, name, to: shared, prefix + name)
            }
            part.parked[prefix + name] = part.own.removeValue(forKey: name)
            forgetUnlinked()
        case .unpark:
            guard let name = pick(part.parked) else { return }
            let back = newName()
            try call("rename \(name) out of the shared directory") { () throws(Errno) in
                try volume.rename(from: shared, name, to: own, back)
            }
            part.own[back] = part.parked.removeValue(forKey: name)
        case .link:
            guard let id = pick(part.own).flatMap({ part.own[$0] }) else { return }
            let name = newName()
            let ino = part.files[id]!.inode
            try call("link \(ino) as \(name)") { () throws(Errno) in try volume.link(ino, in: own, name) }
            part.own[name] = id
        case .unlink:
            guard let name = pick(part.own) else { return }
            try call("unlink \(name)") { () throws(Errno) in try volume.unlink(in: own, name) }
            part.own[name] = nil
            forgetUnlinked()
        case .openUnlink:
            try openUnlink()
        case .mkdir:
            let name = "d" + newName()
            _ = try call("mkdir \(name)") { () throws(Errno) in try volume.mkdir(in: own, name, permissions: 0o755) }
            part.directories.insert(name)
        case .rmdir:
            guard let name = part.directories.sorted().randomElement(using: &random) else { return }
            try call("rmdir \(name)") { () throws(Errno) in try volume.rmdir(in: own, name) }
            part.directories.remove(name)
        default: return
        }
    }

    /// A file whose last name went is gone from the model (the volume freed it, or will at
    /// its last close).
    func forgetUnlinked() {
        for id in part.files.keys where part.links(id) == 0 { part.files[id] = nil }
    }

    func withHandle<T>(_ id: Int, _ what: String, _ body: (FileHandle) throws(Errno) -> T) throws(StressFailure) -> T {
        let ino = part.files[id]!.inode
        return try call("\(what) of \(ino)") { () throws(Errno) -> T in
            let h = try volume.open(ino)
            defer { try? h.close() }
            return try body(h)
        }
    }

    func write(_ id: Int, at offset: Int, count: Int) throws(StressFailure) {
        guard count > 0 else { return }
        let data = bytes(count)
        let n = try withHandle(id, "write [\(offset), +\(count))") { h throws(Errno) in try h.write(data, at: offset) }
        try expect(n == count, "write [\(offset), +\(count)) wrote \(n)")
        var b = part.files[id]!.bytes
        if b.count < offset + count { b += [UInt8](repeating: 0, count: offset + count - b.count) }
        b.replaceSubrange(offset..<offset + count, with: data)
        part.files[id]!.bytes = b
    }

    /// An open file loses its last name, is written and read through its handle, and is
    /// freed at close: the orphan list under load.
    func openUnlink() throws(StressFailure) {
        let name = newName()
        let data = bytes(Int.random(in: 1...5000, using: &random))
        try call("open-unlinked \(name)") { () throws(Errno) in
            let ino = try volume.create(in: own, name, permissions: 0o600).inode
            let h = try volume.open(ino)
            defer { try? h.close() }
            try volume.unlink(in: own, name)
            _ = try h.write(data, at: 0)
            let back = try h.read(count: data.count, at: 0)
            if back != data { throw Errno.ioError }
        }
    }

    func checkFile(_ id: Int) throws(StressFailure) {
        let f = part.files[id]!
        let st = try call("stat \(f.inode)") { () throws(Errno) in try volume.stat(f.inode) }
        try expect(st.size == f.bytes.count, "\(f.inode): size \(st.size), the model says \(f.bytes.count)")
        try expect(Int(st.attributes.nlink) == part.links(id), "\(f.inode): nlink \(st.attributes.nlink), the model says \(part.links(id))")
        try expect(st.attributes.permissions == f.permissions, "\(f.inode): mode 0o\(String(st.attributes.permissions, radix: 8))")
        let back = try withHandle(id, "read") { h throws(Errno) in try h.read(count: f.bytes.count + 100, at: 0) }
        if back != f.bytes {
            let at = zip(back, f.bytes).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(back.count, f.bytes.count)
            throw StressFailure(
                description: "worker \(index): \(f.inode): bytes differ from the model at offset \(at) (\(back.count) read)")
        }
        if let x = f.xattr {
            let got = try call("getxattr \(f.inode)") { () throws(Errno) in try volume.getxattr(f.inode, "user.stress") }
            try expect(got == x, "\(f.inode): user.stress differs from the model")
        }
    }

    func checkDirectory() throws(StressFailure) {
        let listed = try call("readdir") { () throws(Errno) in try volume.readdir(own) }
        let names = Set(listed.filter { $0.cookie > 2 }.map { String(decoding: $0.name, as: UTF8.self) })
        let want = Set(part.own.keys).union(part.directories)
        try expect(
            names == want,
            "readdir of its directory: \(names.subtracting(want).sorted()) not in the model, \(want.subtracting(names).sorted()) missing")
        for (name, id) in part.own {
            let ino = try call("lookup \(name)") { () throws(Errno) in try volume.lookup(own, name) }
            try expect(ino == part.files[id]!.inode, "lookup \(name): \(ino), the model says \(part.files[id]!.inode)")
        }
    }

    func checkShared() throws(StressFailure) {
        let listed = try call("readdir of the shared directory") { () throws(Errno) in try volume.readdir(shared) }
        let mine = Set(listed.map { String(decoding: $0.name, as: UTF8.self) }.filter { $0.hasPrefix(prefix) })
        try expect(
            mine == Set(part.parked.keys), "shared directory: its names \(mine.sorted()), the model says \(part.parked.keys.sorted())")
    }

    /// Everything the worker owns, against the volume.
    func checkAll() throws(StressFailure) {
        try checkDirectory()
        try checkShared()
        for id in part.files.keys.sorted() { try checkFile(id) }
    }
}

/// Runs the threaded namespace stress: format, mount, the workers, the checks, a sync, a
/// crash, a mount and the checks again.
public func runVolumeNamespaceStress(_ config: VolumeStressConfig) -> VolumeStressReport {
    let start = ContinuousClock.now
    var report = runVolumeNamespaceWorkers(config)
    let elapsed = (ContinuousClock.now - start).components
    report.elapsedSeconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
    return report
}

func runVolumeNamespaceWorkers(_ config: VolumeStressConfig) -> VolumeStressReport {
    var report = VolumeStressReport()
    let device = FaultyBlockDevice(wrapping: MemoryBlockDevice(blockSize: 4096, blockCount: 16_384), seed: config.seed)
    var options = VolumeOptions()
    options.backgroundForce = config.backgroundForce
    let volume: Volume
    do throws(VolumeError) {
        try Volume.format(device: device)
        volume = try Volume.mount(device: device, options: options)
    } catch {
        report.violation = "the volume could not be made: \(error)"
        return report
    }
    let workers: [NamespaceWorker]
    do throws(Errno) {
        let shared = try volume.mkdir(in: .root, "shared", permissions: 0o777)
        workers = try (0..<config.workers).map { i throws(Errno) in
            let own = try volume.mkdir(in: .root, "w\(i)", permissions: 0o755)
            return NamespaceWorker(index: i, volume: volume, own: own, shared: shared, seed: config.seed)
        }
    } catch {
        report.violation = "the workers' directories could not be made: \(error)"
        return report
    }
    let failures = HarnessMutex<[String]>([])
    let stop = Atomic<Bool>(false)
    let rogueDone = Atomic<Bool>(false)
    let rogue = config.rogueRename ? JoinableThread { renameBehindWorker0(volume, workers[0].own, done: rogueDone) } : nil
    runOnThreads(workers.count) { i in
        do throws(StressFailure) {
            try workers[i].run(ops: config.opsPerWorker, stop: stop)
        } catch {
            failures.withLock { $0.append(error.description) }
            stop.store(true, ordering: .relaxed)
        }
    }
    rogueDone.store(true, ordering: .relaxed)
    rogue?.join()
    for w in workers {
        report.opsRun += w.counts.values.reduce(0, +)
        report.opsByKind.merge(w.counts, uniquingKeysWith: +)
    }
    if let first = failures.withLock({ $0.first }) {
        report.violation = first
        return report
    }
    report.violation = checkAfterSyncAndCrash(workers, volume: volume, device: device, options: options)
    return report
}

/// The whole namespace on the live volume; then sync, a crash, a mount: the same again, and
/// fsck clean.
func checkAfterSyncAndCrash(_ workers: [NamespaceWorker], volume: Volume, device: FaultyBlockDevice, options: VolumeOptions)
    -> String?
{
    do throws(StressFailure) {
        for w in workers { try w.checkAll() }
    } catch {
        return "at the end, live: \(error)"
    }
    do throws(Errno) { try volume.sync() } catch { return "sync: \(error)" }
    device.crash()
    device.revive()
    let survivor: Volume
    do throws(VolumeError) {
        survivor = try Volume.mount(device: device, options: options)
    } catch {
        return "mount after sync and crash: \(error)"
    }
    do throws(StressFailure) {
        for w in workers {
            w.volume = survivor
            try w.checkAll()
        }
    } catch {
        return "after sync, crash and mount: \(error)"
    }
    do throws(VolumeError) {
        try survivor.unmount()
        let fsck = checkVolume(try DeviceLogStore.open(device), deviceBlocks: device.blockCount)
        let errors = fsck.checks.flatMap { c in c.errors.map { "\(c.code): \($0)" } }
        if !errors.isEmpty { return "fsck after the run: \(errors.prefix(5).joined(separator: "; "))" }
    } catch {
        return "unmount or fsck after the run: \(error)"
    }
    return nil
}

/// The checker's canary: renames names in worker 0's directory, which no model predicts.
func renameBehindWorker0(_ volume: Volume, _ dir: InodeNumber, done: borrowing Atomic<Bool>) {
    var renamed = 0
    while !done.load(ordering: .relaxed) || renamed == 0 {
        let entries = (try? volume.readdir(dir)) ?? []
        if let e = entries.first(where: { $0.cookie > 2 && $0.type == .regular }) {
            let name = String(decoding: e.name, as: UTF8.self)
            if (try? volume.rename(from: dir, name, to: dir, "rogue\(renamed)")) != nil { renamed += 1 }
        }
    }
}
