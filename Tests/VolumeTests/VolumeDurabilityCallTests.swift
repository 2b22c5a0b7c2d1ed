// Counterpart: none in the kernel; the volume's other durability calls, tested as
// VolumeDurabilityTests tests fsync: what msync(MS_SYNC) and a directory's fsync returned
// for survives a crash, and the two deliberate bugs of the crash tests (fsyncSkipsForce,
// renameTwoRecords) really lose what they should.

import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import PageCache
import Synchronization
import Testing
import Volume

/// A transaction-boundary hook that forces the log once, at the first boundary after it is
/// armed: a checkpoint boundary put exactly there.
final class BoundaryForce: Sendable {
    let armed = Atomic<Bool>(false)
    let forces = Atomic<Int>(0)

    func hook(_ journal: Journal) {
        guard armed.exchange(false, ordering: .relaxed) else { return }
        try? journal.forceLogged()
        forces.add(1, ordering: .relaxed)
    }
}

/// One of the calls that promise durability, as `fsyncSkipsForce` breaks it.
struct DurabilityCall: Sendable, CustomTestStringConvertible {
    let name: String
    /// Makes `a` (a new file in directory `d`, holding `data`) durable with this call.
    let persist: @Sendable (_ v: Volume, _ d: InodeNumber, _ a: FileHandle) throws -> Void

    var testDescription: String { name }
}

@Suite("Volume: msync, directory fsync, and the crash tests' deliberate bugs")
struct VolumeDurabilityCallTests {
    @Test("fsync of a directory makes a create in it durable; a create after it is lost by the crash")
    func directoryFsyncMakesCreateDurable() throws {
        let rig = try VolumeRig()
        let v = rig.volume
        let d = try v.mkdir(in: .root, "d", permissions: 0o755)
        try v.sync()
        let x = try v.create(in: d, "x", permissions: 0o644).inode
        try v.setxattr(d, "user.k", [1, 2, 3])
        try v.fsyncDirectory(d)
        _ = try v.create(in: d, "y", permissions: 0o644)
        let w = try rig.crashAndMount()
        #expect(try w.lookup(d, "x") == x, "the create the directory's fsync returned for")
        #expect(try w.getxattr(d, "user.k") == [1, 2, 3], "the directory's xattr, logged before its fsync")
        #expect((try? w.lookup(d, "y")) == nil, "a create after the fsync, never forced")
        try rig.expectClean("after the crash")
    }

    @Test("fsync of a directory: ENOTDIR for a file, ENOENT for no inode; with nothing logged it flushes nothing")
    func directoryFsyncErrors() throws {
        let rig = try VolumeRig()
        let v = rig.volume
        let f = try v.create(in: .root, "f", permissions: 0o644).inode
        #expect(throws: Errno.notDirectory) { try v.fsyncDirectory(f) }
        #expect(throws: Errno.noSuchFileOrDirectory) { try v.fsyncDirectory(InodeNumber(9999)) }
        try v.fsyncDirectory(.root)
        let before = v.journal.stats.flushes
        try v.fsyncDirectory(.root)
        #expect(v.journal.stats.flushes == before, "nothing logged since the last force")
    }

    @Test("msync writes back its range and forces: a mapped store in it survives a crash, one outside it does not")
    func msyncMakesMappedStoreDurable() throws {
        let rig = try VolumeRig()
        let v = rig.volume
        let a = try v.createAndOpen("a")
        let old = pattern(3 * 4096, seed: 30)
        try a.write(old, at: 0)
        try a.fsync()
        let inside = pattern(100, seed: 31)
        let outside = pattern(50, seed: 32)
        try a.mappedStore(inside, at: 4096 + 10)
        try a.mappedStore(outside, at: 2 * 4096 + 7)
        try a.msync(offset: 4096, length: 200)
        let w = try rig.crashAndMount()
        let back = try w.open(try w.lookup(.root, "a")).read(count: old.count, at: 0)
        #expect(Array(back[4106..<4206]) == inside, "the store msync covered")
        #expect(Array(back[8199..<8249]) == Array(old[8199..<8249]), "the store outside the range was never written back")
        try rig.expectClean("after the crash")
    }

    @Test("msync checks its range as msync(2) does: EINVAL for an offset off a page or a negative length; 0 bytes do nothing")
    func msyncArguments() throws {
        let rig = try VolumeRig()
        let a = try rig.volume.createAndOpen("a")
        try a.write(pattern(4096, seed: 33), at: 0)
        #expect(throws: Errno.invalidArgument) { try a.msync(offset: 100, length: 10) }
        #expect(throws: Errno.invalidArgument) { try a.msync(offset: 0, length: -1) }
        #expect(throws: Errno.noMemory) { try a.msync(offset: 4096, length: Int.max) }
        try a.msync(offset: 0, length: 0)
        #expect(a.file.mapping.hasTagged(.dirty), "a length of 0 writes nothing back")
        try a.msync(offset: 0, length: 1)
        #expect(!a.file.mapping.hasTagged(.dirty))
        // Past the largest file: nothing to write back there, and no trap.
        try a.msync(offset: maxFileSize, length: 4096)
    }

    static let calls = [
        DurabilityCall(name: "fsync") { _, _, a in try a.fsync() },
        DurabilityCall(name: "fdatasync") { _, _, a in try a.fdatasync() },
        DurabilityCall(name: "msync") { _, _, a in try a.msync(offset: 0, length: a.size) },
        DurabilityCall(name: "fsync of the directory") { v, d, _ in try v.fsyncDirectory(d) },
    ]

    /// Whether a file created in a directory, written and made durable by `call`, is there
    /// after a crash, with its data when the call promised that too.
    static func survives(_ call: DurabilityCall, bugs: DeliberateBugs) throws -> Bool {
        let rig = try VolumeRig(bugs: bugs)
        let v = rig.volume
        let d = try v.mkdir(in: .root, "d", permissions: 0o755)
        try v.sync()
        let a = try v.open(try v.create(in: d, "a", permissions: 0o644).inode)
        let data = pattern(8192, seed: 34)
        try a.write(data, at: 0)
        try call.persist(v, d, a)
        let w = try rig.crashAndMount()
        guard let ino = try? w.lookup(d, "a") else { return false }
        // A directory's fsync makes the name durable, not the data.
        if call.name.hasSuffix("directory") { return true }
        return try w.open(ino).read(count: data.count, at: 0) == data
    }

    @Test("each call's promise holds, and fsyncSkipsForce loses the create it returned for", arguments: calls)
    func fsyncSkipsForce(_ call: DurabilityCall) throws {
        #expect(try Self.survives(call, bugs: []))
        #expect(try !Self.survives(call, bugs: .fsyncSkipsForce), "the canary: returning without the force must lose the create")
    }

    /// The names `a` and `b` after a crash that followed `rename a -> b` with a checkpoint
    /// boundary forced at the first transaction boundary inside the rename.
    static func namesAfterRenameCut(bugs: DeliberateBugs) throws -> (a: Bool, b: Bool, fsckErrors: Int) {
        let boundary = BoundaryForce()
        let rig = try VolumeRig(bugs: bugs, boundary: { boundary.hook($0) })
        let v = rig.volume
        let a = try v.createAndOpen("a")
        try a.write(pattern(5000, seed: 35), at: 0)
        try a.close()
        try v.sync()
        boundary.armed.store(true, ordering: .relaxed)
        try v.rename(from: .root, "a", to: .root, "b")
        #expect(boundary.forces.load(ordering: .relaxed) == 1)
        let w = try rig.crashAndMount()
        let errors = try rig.fsck().checks.reduce(0) { $0 + $1.errors.count }
        return ((try? w.lookup(.root, "a")) != nil, (try? w.lookup(.root, "b")) != nil, errors)
    }

    @Test("a rename is one record: a force inside it cannot split it; renameTwoRecords cut there shows neither name")
    func renameTwoRecords() throws {
        let whole = try Self.namesAfterRenameCut(bugs: [])
        #expect(!whole.a && whole.b && whole.fsckErrors == 0, "the force after the one transaction makes the rename durable")
        let split = try Self.namesAfterRenameCut(bugs: .renameTwoRecords)
        #expect(!split.a && !split.b, "the canary: a checkpoint boundary between the two records must lose both names")
        #expect(split.fsckErrors > 0, "and leave an inode that nothing names")
    }
}
