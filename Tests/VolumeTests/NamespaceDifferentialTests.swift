// Counterpart: none in the kernel; the namespace plans checked against Linux itself. The
// same steps run on a fresh tmpfs directory (/dev/shm) through the system calls and on a
// new MetadataState through the plans; after every step the errnos, what the call returned,
// the trees (names, types, permissions, owners, link counts, sizes, device numbers, symlink
// targets, xattrs) and which inodes' mtime and ctime changed must agree. tmpfs stamps a
// fine-grained time on an inode whose time was read since its last change (multigrain
// timestamps), and every step reads them all, so "changed" is exact there.
//
// The scripted run covers every errno case of the namespace, each step with the errno Linux
// is known to give; the random runs print their seed, and a failure names the step, the
// seed and the environment variables that replay it (NAMESPACE_DIFF_SEED,
// NAMESPACE_DIFF_STEPS).

import Foundation
import Glibc
import IOMapBase
import Testing
import Volume

@Suite("Namespace: differential against tmpfs", .serialized)
struct NamespaceDifferentialTests {
    /// Why the run cannot be made here, or nil.
    static var unavailable: String? {
        if getuid() != 0 { return "needs root (chroot, setfsuid and capset on its own thread)" }
        let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        if !mounts.split(separator: "\n").contains(where: { $0.hasPrefix("tmpfs /dev/shm tmpfs ") }) { return "/dev/shm is not tmpfs" }
        return nil
    }

    @Test("every errno case of the namespace, as Linux gives it")
    func scripted() throws {
        if let why = Self.unavailable {
            print("namespace differential skipped: \(why)")
            return
        }
        var steps = ScriptedCases.all
        if (try? String(contentsOfFile: "/proc/sys/fs/protected_hardlinks", encoding: .utf8))?.hasPrefix("1") != true {
            print("namespace differential: fs.protected_hardlinks is not 1 here; its cases are left out")
            steps.removeAll { $0.op == ScriptedCases.protectedLink }
        }
        try differential(steps, replay: "the scripted cases of NamespaceDifferentialTests")
    }

    @Test("random sequences", arguments: [1, 2, 3, 4] as [UInt64])
    func random(seed: UInt64) throws {
        if let why = Self.unavailable {
            print("namespace differential skipped: \(why)")
            return
        }
        let env = ProcessInfo.processInfo.environment
        let chosen = env["NAMESPACE_DIFF_SEED"].flatMap { UInt64($0) } ?? seed
        let count = env["NAMESPACE_DIFF_STEPS"].flatMap { Int($0) } ?? 400
        print("namespace differential: seed \(chosen), \(count) steps")
        var generator = StepGenerator(seed: chosen)
        let steps = RandomCases.setup + (0..<count).map { _ in generator.next() }
        try differential(steps, replay: "NAMESPACE_DIFF_SEED=\(chosen) NAMESPACE_DIFF_STEPS=\(count)")
    }

    /// Runs `steps` on both sides and records the first step where they differ.
    func differential(_ steps: [Step], replay: String) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let host = runOnHost(directory: dir, steps: steps)
        var model = ModelRunner()
        model.limits = Self.hostPolicies()
        var hostBefore = host.initial
        var modelBefore = model.snapshot()
        #expect(hostBefore.nodes == modelBefore.nodes, "the two empty roots differ")
        var compareOrder = true
        for (i, step) in steps.enumerated() {
            let (e, output) = model.perform(step)
            let modelAfter = model.snapshot()
            let h = host.outcomes[i]
            if case .rename(_, _, let flags) = step.op, flags & 2 != 0, h.errno == 0 { compareOrder = false }
            let problems = compare(
                step, host: h, hostBefore: hostBefore, model: Outcome(errno: e, output: output, after: modelAfter),
                modelBefore: modelBefore, compareOrder: compareOrder)
            if !problems.isEmpty {
                let context = steps[max(0, i - 8)..<i].enumerated().map { "  \($0.offset + max(0, i - 8)): \($0.element)" }
                Issue.record(
                    Comment(
                        rawValue: "step \(i): \(step)\n" + problems.joined(separator: "\n") + "\nreplay: \(replay)\nthe steps before:\n"
                            + context.joined(separator: "\n")))
                return
            }
            hostBefore = h.after
            modelBefore = modelAfter
        }
        var tally: [String: Int] = [:]
        for o in host.outcomes { tally[errnoName(o.errno), default: 0] += 1 }
        print(
            "namespace differential (\(replay)): \(steps.count) steps agree: "
                + tally.sorted { $0.value > $1.value }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
    }

    /// The differences after one step. readdir order is compared until the first
    /// RENAME_EXCHANGE: tmpfs lists newest first (its offsets, reversed) and gives exchanged
    /// names new places, where our cookies, as XFS's directory entries, stay with the names.
    func compare(
        _ step: Step, host: Outcome, hostBefore: Snapshot, model: Outcome, modelBefore: Snapshot, compareOrder: Bool
    ) -> [String] {
        var out: [String] = []
        if let expected = step.expect, errnoName(host.errno) != expected {
            out.append("Linux gave \(errnoName(host.errno)), the case expects \(expected)")
        }
        if host.errno != model.errno { out.append("errno: Linux \(errnoName(host.errno)), plans \(errnoName(model.errno))") }
        if host.output != model.output { out.append("output: Linux \(host.output.prefix(200)), plans \(model.output.prefix(200))") }
        for path in Set(host.after.nodes.keys).union(model.after.nodes.keys).sorted()
        where host.after.nodes[path] != model.after.nodes[path] {
            out.append("\(path): Linux \(describe(host.after.nodes[path])), plans \(describe(model.after.nodes[path]))")
        }
        for (path, names) in host.after.listings.sorted(by: { $0.key < $1.key })
        where compareOrder && model.after.listings[path] != names.reversed() {
            out.append("\(path) readdir order: Linux \(names), plans \(model.after.listings[path] ?? [])")
        }
        if case .truncate = step.op { return out }
        let hostChanges = hostBefore.changes(to: host.after)
        let modelChanges = modelBefore.changes(to: model.after)
        for path in Set(hostChanges.keys).union(modelChanges.keys).sorted() where hostChanges[path] != modelChanges[path] {
            out.append("\(path) times (mtime, ctime changed): Linux \(hostChanges[path] ?? "gone"), plans \(modelChanges[path] ?? "gone")")
        }
        return out
    }

    func describe(_ n: Node?) -> String {
        guard let n else { return "nothing" }
        let xattrs = n.xattrs.keys.map { String(decoding: $0, as: UTF8.self) }.sorted()
        return "\(n.type) \(String(n.permissions, radix: 8)) \(n.uid):\(n.gid) nlink \(n.nlink) size \(n.size) rdev \(n.rdev)"
            + (n.target.map { " -> \(String(decoding: $0.prefix(40), as: UTF8.self))" } ?? "") + " xattrs \(xattrs)"
    }

    /// The host's fs.protected_* sysctls, for the plans to follow the same policies.
    static func hostPolicies() -> NamespaceLimits {
        func sysctl(_ name: String) -> UInt8 {
            let text = (try? String(contentsOfFile: "/proc/sys/fs/\(name)", encoding: .utf8)) ?? "0"
            return UInt8(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }
        return NamespaceLimits(
            protectedHardlinks: sysctl("protected_hardlinks") != 0, protectedSymlinks: sysctl("protected_symlinks") != 0,
            protectedRegular: sysctl("protected_regular"), protectedFifos: sysctl("protected_fifos"))
    }

    func temporaryDirectory() throws -> String {
        var template = Array("/dev/shm/namespace-diff-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw Errno(rawValue: errno) }
        let path = String(cString: p)
        chmod(path, 0o755)
        return path
    }
}
