// `iomap kernel-probe eof-block` and `short-copy` as a user runs them. What the host kernel
// does is the probe's finding, not the test's: the tests check that the probe is consistent
// (the stalled write always hits the window, the controls and our engine keep the data or
// leave nothing stale, the exit status follows the count) and that it leaves no mount or
// loop device behind. The suite runs serially, so that one test's images are not taken for
// another's leftovers, and its probes make their images in a temporary directory of the
// suite's own (TMPDIR), so that the loop mounts other suites make meanwhile (the bench's,
// the kernel-side tests') are not taken for the probes' either.

import Foundation
import Testing

@Suite("iomap kernel-probe, as a command", .serialized)
struct KernelProbeCommandTests {
    /// Whether this machine can make and loop-mount an XFS image.
    static var canMount: Bool { geteuid() == 0 && FileManager.default.fileExists(atPath: "/dev/loop-control") }

    /// Whether mkfs.xfs is installed where the probe looks for it (it would install it).
    static var hasMkfsXFS: Bool {
        ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"].contains {
            FileManager.default.isExecutableFile(atPath: $0 + "/mkfs.xfs")
        }
    }

    /// The probes' temporary directory: open to every user, as /tmp is, since one test runs
    /// the probe unprivileged.
    static let scratch: String = {
        let path = FileManager.default.temporaryDirectory.path + "/iomap-probe-tests-\(UUID().uuidString)"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o1777])
        _ = chmod(path, 0o1777)
        return path
    }()

    /// `iomap` with the suite's temporary directory.
    func runProbe(_ arguments: [String], launcher: [String] = []) throws -> CommandResult {
        try runIOMap(arguments, environment: ["TMPDIR": Self.scratch], launcher: launcher)
    }

    /// Mounts and loop devices of the probes' images still present.
    static func leftovers() -> [String] {
        let mine = { (s: Substring) in s.contains(scratch + "/iomap-xfs-") || s.contains(scratch + "/iomap-ext4-") }
        let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        let mounted = mounts.split(separator: "\n").filter(mine)
        let loops = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        let bound = loops.filter { $0.hasPrefix("loop") }.compactMap { device -> String? in
            let backing = (try? String(contentsOfFile: "/sys/block/\(device)/loop/backing_file", encoding: .utf8)) ?? ""
            return mine(Substring(backing)) ? "\(device): \(backing)" : nil
        }
        return mounted.map(String.init) + bound
    }

    @Test(
        "userfaultfd on a fresh XFS image: every attempt hits the window; control and engine keep the data; nothing left mounted",
        .enabled(if: canMount, "needs root and loop devices"))
    func userfaultfdOnXFS() throws {
        let r = try runProbe(["kernel-probe", "eof-block", "--method", "userfaultfd", "--attempts", "5", "--json"])
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
        let r = try runProbe(["kernel-probe", "eof-block", "--dir", "/dev/shm", "--method", "userfaultfd", "--attempts", "3", "--json"])
        #expect(r.status == 0, "exit \(r.status)\n\(r.stderr)")
        let j = try r.json()
        #expect(j["fs"] as? String == "tmpfs")
        #expect(j["lost"] as? Int == 0 && j["control_lost"] as? Int == 0 && j["engine_lost"] as? Int == 0)
    }

    @Test(
        "bad usage exits 2 naming what was wrong",
        arguments: [
            (["--isize", "8192"], "multiple of the block size"),
            (["--block-size", "3000"], "--block-size"),
            (["--attempts", "0"], "--attempts"),
            (["--method", "telepathy"], "telepathy"),
            (["--dir", "/nonexistent-iomap-dir"], "/nonexistent-iomap-dir"),
        ])
    func badUsage(arguments: [String], named: String) throws {
        let r = try runProbe(["kernel-probe", "eof-block"] + arguments)
        #expect(r.status == 2, "exit \(r.status) for \(arguments)")
        #expect(r.stderr.contains(named), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }

    @Test(
        "short-copy on fresh XFS images: every case runs; controls and engine leave nothing stale; nothing left mounted",
        .enabled(if: canMount && hasMkfsXFS, "needs root, loop devices and mkfs.xfs"))
    func shortCopyOnXFS() throws {
        let r = try runProbe(["kernel-probe", "short-copy", "--attempts", "2", "--json"])
        let j = try r.json()
        let affected = try #require(j["affected"] as? Bool)
        #expect(r.status == (affected ? 1 : 0), "exit \(r.status)\n\(r.stderr)")
        #expect(j["fs"] as? String == "xfs")
        #expect(j["block_sizes"] as? [Int] == [4096, 1024])
        let initOnAlloc = try #require(j["init_on_alloc"] as? [String: Any])
        #expect(["on", "off", "unknown"].contains(initOnAlloc["value"] as? String ?? ""))
        let cases = try #require(j["cases"] as? [[String: Any]])
        #expect(cases.compactMap { $0["name"] as? String } == ["4k-hole", "1k-hole", "large-folio", "unwritten", "unprivileged"])
        var stale = 0
        for c in cases {
            #expect(c["attempts"] as? Int == 2, "\(c)")
            #expect(c["write_returned"] as? [Int] == [(c["write"] as? [String: Any])?["readable"] as? Int ?? -1], "\(c)")
            stale += (c["stale_in_cache"] as? Int ?? 0) + (c["stale_on_disk"] as? Int ?? 0)
        }
        #expect(affected == (stale > 0))
        #expect(cases.first { $0["name"] as? String == "1k-hole" }?["block_size"] as? Int == 1024)
        #expect(cases.first { $0["name"] as? String == "unprivileged" }?["uid"] as? Int == 65534)
        let controls = try #require(j["controls"] as? [[String: Any]])
        #expect(Set(controls.compactMap { $0["name"] as? String }).isSuperset(of: ["readable-buffer", "tmpfs"]))
        for c in controls {
            #expect(c["stale_in_cache"] as? Int == 0 && c["stale_on_disk"] as? Int == 0, "\(c)")
            #expect((c["attempts"] as? Int ?? 0) > 0, "\(c)")
        }
        #expect(j["engine_stale"] as? Int == 0)
        for key in ["kernel", "elapsed_s", "skipped", "engine"] { #expect(j[key] != nil, "\(key)") }
        print(
            "kernel-probe short-copy on \(j["kernel"] ?? "?"): \(stale) stale bytes over the cases; init_on_alloc \(initOnAlloc["value"] ?? "?")"
        )
        #expect(Self.leftovers() == [])
    }

    @Test("short-copy in a tmpfs directory: the 4 KiB cases run, 1k-hole is skipped, nothing stale, exit 0")
    func shortCopyOnTmpfs() throws {
        let r = try runProbe(["kernel-probe", "short-copy", "--dir", "/dev/shm", "--attempts", "2", "--json"])
        #expect(r.status == 0, "exit \(r.status)\n\(r.stderr)")
        let j = try r.json()
        #expect(j["fs"] as? String == "tmpfs")
        #expect(j["affected"] as? Bool == false)
        #expect(j["engine_stale"] as? Int == 0)
        let cases = try #require(j["cases"] as? [[String: Any]])
        #expect(cases.compactMap { $0["name"] as? String } == ["4k-hole", "large-folio", "unwritten", "unprivileged"])
        let skipped = try #require(j["skipped"] as? [[String: Any]])
        #expect(skipped.contains { $0["name"] as? String == "1k-hole" })
        for c in (j["controls"] as? [[String: Any]] ?? []) {
            #expect(c["stale_in_cache"] as? Int == 0 && c["stale_on_disk"] as? Int == 0, "\(c)")
        }
        #expect(Self.leftovers() == [])
    }

    /// How to run the command unprivileged: as it is when not root, else through setpriv as
    /// nobody; nil when neither works here.
    static var unprivilegedLauncher: [String]? {
        if geteuid() != 0 { return [] }
        let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"].first { FileManager.default.isExecutableFile(atPath: $0) }
        return setpriv.map { [$0, "--reuid=65534", "--regid=65534", "--clear-groups"] }
    }

    @Test(
        "short-copy without --dir and without root cannot run: exit 2 naming root",
        .enabled(if: unprivilegedLauncher != nil, "needs to run unprivileged: not root, or setpriv"))
    func shortCopyNeedsRoot() throws {
        let r = try runProbe(["kernel-probe", "short-copy", "--attempts", "1"], launcher: Self.unprivilegedLauncher ?? [])
        #expect(r.status == 2, "exit \(r.status)\n\(r.stderr)")
        #expect(r.stderr.contains("needs root"), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
        #expect(Self.leftovers() == [])
    }

    @Test(
        "short-copy: bad usage exits 2 naming what was wrong",
        arguments: [
            (["--attempts", "0"], "--attempts"),
            (["--block-size", "2048"], "--block-size must be 1024 or 4096"),
            (["--block-size", "1024", "--dir", "/tmp"], "with --dir"),
            (["--user", "0"], "--user 0 is root"),
            (["--dir", "/nonexistent-iomap-dir"], "/nonexistent-iomap-dir"),
            (["--attempts", "many"], "many"),
        ])
    func shortCopyBadUsage(arguments: [String], named: String) throws {
        let r = try runProbe(["kernel-probe", "short-copy"] + arguments)
        #expect(r.status == 2, "exit \(r.status) for \(arguments)")
        #expect(r.stderr.contains(named), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }
}
