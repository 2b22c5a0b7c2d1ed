// `iomap kernel-probe eof-block` as a user runs it. What the host kernel does is the probe's
// finding, not the test's: the tests check that the probe is consistent (the stalled write
// always hits the window, the aligned control and our engine keep the data, the exit status
// follows the count) and that it leaves no mount or loop device behind.

import Foundation
import Testing

@Suite("iomap kernel-probe eof-block, as a command")
struct KernelProbeCommandTests {
    /// Whether this machine can make and loop-mount an XFS image.
    static var canMount: Bool { geteuid() == 0 && FileManager.default.fileExists(atPath: "/dev/loop-control") }

    static func leftovers() -> [String] {
        let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        return mounts.split(separator: "\n").filter { $0.contains("iomap-xfs-") }.map(String.init)
    }

    @Test("userfaultfd on a fresh XFS image: every attempt hits the window; control and engine keep the data; nothing left mounted",
          .enabled(if: canMount, "needs root and loop devices"))
    func userfaultfdOnXFS() throws {
        let r = try runIOMap(["kernel-probe", "eof-block", "--method", "userfaultfd", "--attempts", "5", "--json"])
        let j = try r.json()
        let lost = try #require(j["lost"] as? Int)
        #expect(r.status == (lost > 0 ? 1 : 0), "exit \(r.status)\n\(r.stderr)")
        #expect(j["fs"] as? String == "xfs")
        #expect(j["window_hits"] as? Int == 5)
        #expect(j["control_lost"] as? Int == 0)
        #expect(j["engine_lost"] as? Int == 0)
        #expect(j["writes_not_failed"] as? Int == 0)
        for key in ["kernel", "block_size", "isize", "method", "attempts", "control_attempts"] { #expect(j[key] != nil, "\(key)") }
        print("kernel-probe on \(j["kernel"] ?? "?"): \(lost) of 5 lost")
        #expect(Self.leftovers() == [])
    }

    @Test("on a directory of tmpfs (no delalloc): nothing is lost, exit 0")
    func tmpfsNotAffected() throws {
        let r = try runIOMap(["kernel-probe", "eof-block", "--dir", "/dev/shm", "--method", "userfaultfd", "--attempts", "3", "--json"])
        #expect(r.status == 0, "exit \(r.status)\n\(r.stderr)")
        let j = try r.json()
        #expect(j["fs"] as? String == "tmpfs")
        #expect(j["lost"] as? Int == 0 && j["control_lost"] as? Int == 0 && j["engine_lost"] as? Int == 0)
    }

    @Test("bad usage exits 2 naming what was wrong", arguments: [
        (["--isize", "8192"], "multiple of the block size"),
        (["--block-size", "3000"], "--block-size"),
        (["--attempts", "0"], "--attempts"),
        (["--method", "telepathy"], "telepathy"),
        (["--dir", "/nonexistent-iomap-dir"], "/nonexistent-iomap-dir"),
    ])
    func badUsage(arguments: [String], named: String) throws {
        let r = try runIOMap(["kernel-probe", "eof-block"] + arguments)
        #expect(r.status == 2, "exit \(r.status) for \(arguments)")
        #expect(r.stderr.contains(named), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }
}
