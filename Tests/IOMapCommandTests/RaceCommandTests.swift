// The `iomap` command's contract, run as a user runs it: exit status 0 when what it checks
// holds, 1 when it found a violation, 2 for bad usage; `--json` prints one object with the
// documented fields. The main job, `iomap race`, is run here on its defaults.

import Foundation
import IOMapKernelSide
import Testing

/// The `iomap` executable built beside this test bundle.
func iomapExecutable() throws -> URL {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [dir, dir.deletingLastPathComponent()] {
        let url = candidate.appendingPathComponent("iomap")
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    throw CommandTestError.notFound(dir.path)
}

enum CommandTestError: Error { case notFound(String) }

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String

    /// stdout parsed as the one JSON object `--json` promises.
    func json() throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(stdout.utf8))
        return try #require(object as? [String: Any], "stdout is not one JSON object: \(stdout)")
    }
}

/// Runs `iomap` with `arguments`, with `environment` added to this process's; with a
/// `launcher` (a command and its arguments, such as setpriv's), runs that with the
/// executable's path and `arguments` after its own.
func runIOMap(_ arguments: [String], environment: [String: String] = [:], launcher: [String] = []) throws -> CommandResult {
    if let command = launcher.first {
        return try runExecutable(
            URL(fileURLWithPath: command), Array(launcher.dropFirst()) + [try iomapExecutable().path] + arguments, environment: environment)
    }
    return try runExecutable(try iomapExecutable(), arguments, environment: environment)
}

/// How long one command may take before its test fails naming it. Far above the longest
/// command the tests run (about a minute), it is there so that a hang fails one test with a
/// reason instead of stalling the whole suite until CI gives up on it.
let commandTimeout: Double = 900

/// Runs `executable` with `arguments`, with `environment` added to this process's, in
/// `directory` (default: this one); its status and output. Throws, naming the command and
/// what it still waited for, when the command has not ended within `timeout` seconds.
func runExecutable(
    _ executable: URL, _ arguments: [String], environment: [String: String] = [:], in directory: String? = nil,
    timeout: Double = commandTimeout
) throws -> CommandResult {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let (outData, errData) = try runToEnd(process, reading: [out.fileHandleForReading, err.fileHandleForReading], timeout: timeout)
    return CommandResult(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self))
}

let seedForCommands = ProcessInfo.processInfo.environment["IOMAP_RANDOM_SEED"] ?? "20221128"

@Suite("iomap race, as a command")
struct RaceCommandTests {
    @Test("on defaults it exits 0: no slot lost, and writes failed and cleanups ran")
    func defaultsHold() throws {
        let r = try runIOMap(["race", "--json", "--seed", seedForCommands])
        let j = try r.json()
        #expect(r.status == 0, "exit \(r.status)\n\(r.stderr)")
        #expect(j["slots_lost"] as? Int == 0)
        #expect((j["failed_writes"] as? Int ?? 0) > 0)
        #expect((j["cleanup_calls"] as? Int ?? 0) > 0)
        #expect(j["policy"] as? String == "preserve-dirty")
        #expect(j["pages"] as? Int == 4096 && j["rounds"] as? Int == 8)
        #expect(j["layouts"] as? [String] == ["hole", "unwritten", "written"])
        #expect((j["slots_checked"] as? Int) == 2 * 4096 * 3 * 8 * 3)
        #expect(j["elapsed_s"] is Double && j["seed"] != nil)
        // The seed and the progress go to stderr.
        #expect(r.stderr.contains("seed \(seedForCommands)") && r.stderr.contains("round 8/8"))
    }

    @Test("with the pre-seed cleanup on defaults it exits 1 with slots lost, and says how to run it again")
    func truncatePageCacheLoses() throws {
        let r = try runIOMap(["race", "--policy", "truncate-page-cache", "--json", "--seed", seedForCommands])
        let j = try r.json()
        #expect(r.status == 1, "exit \(r.status)\n\(r.stderr)")
        #expect((j["slots_lost"] as? Int ?? 0) > 0)
        #expect(j["result"] as? String == "violation")
        #expect(r.stderr.contains("lost: layout hole"))
        #expect(r.stderr.contains("run again: iomap race") && r.stderr.contains("--seed \(seedForCommands)"))
    }

    @Test("--dir on a temporary directory exits 0 with no slot lost; --canary exits 1 with mapped writers' slots lost")
    func onFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("iomap-race-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = ["race", "--dir", dir, "--size", "2", "--rounds", "1", "--fail-rate", "0.3", "--seed", "346", "--json"]
        let good = try runIOMap(base)
        #expect(good.status == 0, "\(good.stderr)")
        let g = try good.json()
        #expect(g["slots_lost"] as? Int == 0 && (g["failed_writes"] as? Int ?? 0) > 0 && g["result"] as? String == "pass", "\(g)")
        let bad = try runIOMap(base + ["--canary"])
        #expect(bad.status == 1)
        let b = try bad.json()
        #expect((b["mapped_slots_lost"] as? Int ?? 0) > 0 && b["result"] as? String == "violation", "\(b)")
        #expect(bad.stderr.contains("run again: iomap race --dir \(dir)") && bad.stderr.contains("--canary --seed 346"), "\(bad.stderr)")
        #expect(try runIOMap(Array(base.dropLast()) + ["--canary"]).status == 1, "the same without --json")
    }

    @Test(
        "bad usage exits 2 with a message naming what was wrong",
        arguments: [
            (["--size", "0"], "--size"),
            (["--fail-rate", "-0.1"], "--fail-rate"),
            (["--fail-rate", "2"], "--fail-rate"),
            (["--policy", "nope"], "nope"),
            (["--bogus"], "--bogus"),
            (["--layout", "sideways"], "sideways"),
            (["--rounds", "0"], "--rounds"),
            (["--block-size", "3000"], "--block-size"),
            (["--mapped-writers", "0", "--pwrite-writers", "0"], "writer"),
            (["--dir", "/no/such/dir"], "/no/such/dir"),
            (["--canary"], "--canary needs --dir"),
            (["--drop-caches", "global"], "--drop-caches needs --dir"),
            (["--dir", "/tmp", "--volume"], "--volume"),
            (["--dir", "/tmp", "--policy", "truncate-page-cache"], "--policy"),
            (["--dir", "/tmp", "--drop-caches", "sometimes"], "sometimes"),
            (["--dir", "/tmp", "--size", "0"], "--size"),
        ])
    func badUsage(arguments: [String], named: String) throws {
        let r = try runIOMap(["race"] + arguments)
        #expect(r.status == 2, "exit \(r.status) for \(arguments)")
        #expect(r.stderr.contains(named), "\(r.stderr)")
        #expect(r.stdout.isEmpty)
    }
}
