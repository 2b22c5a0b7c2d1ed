// Counterpart: none in the kernel; CrashMonkey's ACE workloads, run: every bounded workload
// of Sources/IOMapTesting/Volume/CrashBounded.swift (length 1, and a sample of length 2)
// runs on a fresh fixture without an error, makes the inodes its plan expects, and after a
// crash that keeps nothing unflushed, and one that keeps everything, recovers to a volume
// the oracle allows (fsck clean, the model's namespace and data rules).
//
// VOLUME_CRASH_BOUNDED=all runs every length-2 workload (and prints how long that took)
// instead of the sample.

import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import Testing
import Volume

/// Runs `workloads` with `bugs`, each cut twice (nothing kept, everything kept); the ones
/// with violations, each with its first.
func runBounded(_ workloads: [[CrashOp]], bugs: DeliberateBugs = []) -> [(ops: [CrashOp], violation: String)] {
    var failed: [(ops: [CrashOp], violation: String)] = []
    for ops in workloads {
        for keep in [0.0, 1.0] {
            let run = runBoundedWorkload(ops, bugs: bugs, keepFraction: keep)
            if let v = run.violations.first {
                failed.append((ops, "kept \(keep): \(v)"))
                break
            }
        }
    }
    return failed
}

func describe(_ ops: [CrashOp]) -> String { ops.map(\.description).joined(separator: "; ") }

@Suite("Volume: bounded crash workloads (ACE)")
struct VolumeCrashBoundedTests {
    static let one = boundedCrashWorkloads(length: 1)
    static let two = boundedCrashWorkloads(length: 2)

    @Test("the fixture is the tree the workloads were planned on")
    func fixture() throws {
        let rig = try VolumeRig()
        let f = try makeCrashFixture(rig.volume)
        #expect(f.inodes.keys.sorted() == ["A", "A/C", "A/foo", "B", "bar", "foo"])
        #expect(try rig.volume.open(f.inodes["foo"]!).size == 16384)
        #expect(try rig.volume.stat(f.inodes["A/foo"]!).blocks512 == 2 * 4096 / 512, "A/foo has a hole between its two blocks")
        try rig.crashAndMount()
        #expect(readTree(rig.volume.state).tree == f.inodes, "the fixture is synced")
    }

    @Test("the lists' counts")
    func counts() {
        print("VolumeCrashBoundedTests: \(Self.one.count) workloads of length 1, \(Self.two.count) of length 2")
        #expect(Self.one.count == 214)
        #expect(Self.two.count == 42_781)
        #expect(Set(Self.one.map(describe)).count == Self.one.count, "no workload twice")
        // Every op kind is drawn, and every persistence point.
        let kinds = Set(Self.one.flatMap { $0 }.map { String($0.description.prefix { $0 != " " && $0 != "#" }) })
        for k in ["create", "mkdir", "write", "fallocate", "punch", "zero", "truncate", "mapped", "msync", "link", "unlink", "rmdir"] {
            #expect(kinds.contains(k), "no \(k)")
        }
        for k in ["rename", "symlink", "setxattr", "removexattr", "fsync", "fdatasync", "sync"] { #expect(kinds.contains(k), "no \(k)") }
    }

    @Test("every length-1 workload runs on a fresh fixture and recovers as the oracle allows")
    func lengthOne() {
        let failed = runBounded(Self.one)
        for f in failed.prefix(10) { print("bounded: \(describe(f.ops)): \(f.violation)") }
        #expect(failed.count == 0, "each failed workload printed its first violation")
    }

    @Test("length-2 workloads (a sample; VOLUME_CRASH_BOUNDED=all: every one) run and recover as the oracle allows")
    func lengthTwo() {
        let all = crashEnvironment("VOLUME_CRASH_BOUNDED") == "all"
        let chosen = all ? Self.two : stride(from: 0, to: Self.two.count, by: 47).map { Self.two[$0] }
        let clock = ContinuousClock()
        let start = clock.now
        let failed = runBounded(chosen)
        print("VolumeCrashBoundedTests: \(chosen.count) length-2 workloads in \(clock.now - start); \(failed.count) failed")
        for f in failed.prefix(10) { print("bounded: \(describe(f.ops)): \(f.violation)") }
        #expect(failed.count == 0, "each failed workload printed its first violation")
    }

    /// A model of `ops` planned on a fresh fixture, and the fixture's volume with `actual`
    /// done on it instead: what the oracle must reject.
    static func oracle(planned ops: [CrashOp], actual: (Volume, CrashFixture) throws -> Void) throws -> [String] {
        let rig = try VolumeRig()
        let fixture = try makeCrashFixture(rig.volume)
        var m = try CrashModel(volume: rig.volume)
        m.plan(ops)
        try actual(rig.volume, fixture)
        return m.check(rig.volume).violations
    }

    @Test("the oracle's canaries: xattrs of another prefix than the tree's, a symlink's other target, an inode's other type")
    func oracleCanaries() throws {
        let planned: [CrashOp] = [.create("baz"), .setxattr("foo", name: "user.new", value: [7])]
        let xattrFirst = try Self.oracle(planned: planned) { v, f in try v.setxattr(f.inodes["foo"]!, "user.new", [7]) }
        #expect(xattrFirst.count == 1 && xattrFirst[0].contains("but the xattrs are those of no op"), "\(xattrFirst)")
        let both = try Self.oracle(planned: planned) { v, f in
            _ = try v.create(in: .root, "baz", permissions: 0o644)
            try v.setxattr(f.inodes["foo"]!, "user.new", [7])
        }
        #expect(both == [], "the state after both ops")
        let target = try Self.oracle(planned: [.symlink(target: "foo", path: "B/sym")]) { v, f in
            _ = try v.symlink(in: f.inodes["B"]!, "sym", target: "fo0")
        }
        #expect(
            target.count == 1 && target[0].contains("the symlink's target is 3 bytes, made with 3; they differ from byte 2"), "\(target)")
        let type = try Self.oracle(planned: [.mkdir("D")]) { v, _ in _ = try v.create(in: .root, "D", permissions: 0o644) }
        #expect(type.count == 1 && type[0].contains("a regular, but the workload made it a directory"), "\(type)")
    }

    /// Not by all of those that end in a force: one after a change the oracle cannot see
    /// (timestamps, blocks fallocate'd under the same bytes) or of a directory the op did
    /// not change promises nothing it checks.
    @Test("the canary: fsyncSkipsForce is caught by the length-1 workloads")
    func canary() {
        let caught = runBounded(Self.one, bugs: .fsyncSkipsForce)
        print("VolumeCrashBoundedTests canary fsyncSkipsForce: caught by \(caught.count) of \(Self.one.count)")
        #expect(caught.count > 0)
    }
}
