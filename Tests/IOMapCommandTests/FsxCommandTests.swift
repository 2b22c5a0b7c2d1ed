// `iomap fsx` and `iomap difftest` as commands: exit statuses, the --json fields scripts
// read, and the evidence a failure leaves behind.

import Foundation
import Testing

@Suite("iomap fsx and difftest, as commands")
struct FsxCommandTests {
    @Test("fsx on the pre-seed cleanup exits 1, leaves a replayable and a minimized log, and the minimized log replays to the same failure")
    func fsxCanary() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("iomap-fsx-cmd-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let r = try runIOMap(["fsx", "--seed", "6", "--ops", "30000", "--policy", "truncate-page-cache", "--artifacts", dir, "--json"])
        #expect(r.status == 1, "exit \(r.status)\n\(r.stderr)")
        let j = try r.json()
        #expect(j["result"] as? String == "violation")
        #expect(j["first_bad_offset"] is Int)
        #expect((j["minimized_entries"] as? Int ?? 99) <= 24)
        for key in ["seed", "ops", "ops_by_kind", "faults_injected", "cleanup_calls"] { #expect(j[key] != nil, "missing \(key)") }
        for file in ["failure.fsxops", "minimized.fsxops", "expected.fsxgood", "actual.fsxbad"] {
            #expect(FileManager.default.fileExists(atPath: "\(dir)/\(file)"), "missing \(file)")
        }
        #expect(r.stderr.contains("OFFSET      GOOD    BAD     RANGE") && r.stderr.contains("operation# (mod 256)"))
        let replay = try runIOMap([
            "fsx", "--replay-ops", "\(dir)/minimized.fsxops", "--policy", "truncate-page-cache", "--no-minimize", "--artifacts",
            dir + "/again",
        ])
        #expect(replay.status == 1)
        let fixed = try runIOMap(["fsx", "--replay-ops", "\(dir)/minimized.fsxops", "--artifacts", dir + "/fixed"])
        #expect(fixed.status == 0, "\(fixed.stderr)")
    }

    @Test("fsx --write-end kernel with poisoned folios exits 1 naming the poison; the printed replay keeps the switch")
    func fsxWriteEndKernel() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("iomap-fsx-we-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let poison = ["IOMAP_POISON_FOLIOS": "1"]
        let r = try runIOMap(
            ["fsx", "--seed", "1", "--ops", "10000", "--write-end", "kernel", "--artifacts", dir, "--json"], environment: poison)
        #expect(r.status == 1, "exit \(r.status)\n\(r.stderr)")
        #expect(r.stderr.contains("poison at offset"), "\(r.stderr)")
        #expect(try r.json()["write_end"] as? String == "kernel")
        #expect(r.stderr.contains("--write-end kernel"), "the replay line must keep the switch")
        let replay = try runIOMap(
            ["fsx", "--replay-ops", "\(dir)/minimized.fsxops", "--write-end", "kernel", "--no-minimize", "--artifacts", dir + "/again"],
            environment: poison)
        #expect(replay.status == 1 && replay.stderr.contains("poison at offset"), "\(replay.stderr)")
        let fixed = try runIOMap(["fsx", "--replay-ops", "\(dir)/minimized.fsxops", "--artifacts", dir + "/fixed"], environment: poison)
        #expect(fixed.status == 0, "\(fixed.stderr)")
    }

    @Test("a bad IOMAP_POISON_FOLIOS is a usage error naming it")
    func badPoisonSwitch() throws {
        let r = try runIOMap(["fsx", "--ops", "10"], environment: ["IOMAP_POISON_FOLIOS": "yes"])
        #expect(r.status == 2)
        #expect(r.stderr.contains("IOMAP_POISON_FOLIOS must be 0 or 1, got 'yes'"), "\(r.stderr)")
    }

    @Test("a malformed log is a usage error naming the line")
    func malformedLog() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bad-\(UUID().uuidString).fsxops").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try "write 0x0 0x10 0x0\nbogus 1 2 3\n".write(toFile: path, atomically: true, encoding: .utf8)
        for tool in ["fsx", "difftest"] {
            let r = try runIOMap([tool, "--replay-ops", path])
            #expect(r.status == 2)
            #expect(r.stderr.contains("line 2: unknown operation 'bogus'"), "\(r.stderr)")
        }
    }

    @Test("difftest --canary exits 1 naming the op index of the first mismatch; the same seed without it exits 0")
    func difftestCanary() throws {
        let bad = try runIOMap(["difftest", "--seed", "1", "--ops", "5000", "--canary", "--json"])
        #expect(bad.status == 1, "\(bad.stderr)")
        let first = try #require(try bad.json()["first_mismatch"] as? [String: Any])
        #expect((first["op_index"] as? Int ?? 0) > 0)
        for key in ["op", "field", "engine", "kernel"] { #expect(first[key] is String, "missing \(key)") }
        #expect(bad.stderr.contains("MISMATCH at op index"))
        let good = try runIOMap(["difftest", "--seed", "1", "--ops", "5000", "--json"])
        #expect(good.status == 0, "\(good.stderr)")
        let j = try good.json()
        #expect(j["mismatches"] as? Int == 0)
        for key in ["ops", "seed", "dir_fstype", "compared"] { #expect(j[key] != nil, "missing \(key)") }
    }

    @Test(
        "bad fsx and difftest usage exits 2",
        arguments: [
            ["fsx", "--faults", "nosuch"], ["fsx", "--disable", "frob"], ["fsx", "--block-size", "3000"], ["fsx", "--ops", "0"],
            ["fsx", "--offset-base", "12"], ["fsx", "--write-end", "sometimes"], ["random", "--write-end", "x"],
            ["explore", "--scenario", "eof-block", "--write-end", "x"], ["difftest", "--seek-oracle", "btrfs"],
            ["difftest", "--dir", "/no/such/dir"], ["difftest", "--seek-canary", "--seek-oracle", "none"],
        ])
    func badUsage(arguments: [String]) throws {
        let r = try runIOMap(arguments)
        #expect(r.status == 2, "exit \(r.status) for \(arguments): \(r.stderr)")
    }
}
