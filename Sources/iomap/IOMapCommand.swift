// The `iomap` command: thin front ends over the engine and its test support.
//
// Exit status, for every subcommand: 0 when what it checks holds, 1 when it found a
// violation, 2 for bad usage. With --json it prints exactly one JSON object on stdout.

import ArgumentParser
import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapKernelSide
import IOMapTesting
import PageCache

@main
struct Entry {
    /// Runs the command, mapping ArgumentParser's exit codes onto ours: usage errors exit 2.
    static func main() {
        if let problem = FolioMemory.environmentProblem {
            FileHandle.standardError.write(Data("iomap: \(problem)\n".utf8))
            exit(2)
        }
        do {
            var command = try IOMapCommand.parseAsRoot()
            try command.run()
        } catch {
            let code = IOMapCommand.exitCode(for: error)
            let message = IOMapCommand.fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { print(message) }
                exit(0)
            }
            if code == ExitStatus.violation { exit(1) }
            // fsck(8)'s statuses: errors left, could not run.
            if code.rawValue == 4 || code.rawValue == 8 { exit(code.rawValue) }
            if !message.isEmpty { FileHandle.standardError.write(Data((message + "\n").utf8)) }
            exit(2)
        }
    }
}

struct IOMapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "iomap",
        abstract: "A user-space implementation of Linux's iomap buffered write path, and the tools that test it.",
        subcommands: [
            Race.self, Demo.self, Fsx.self, DiffTestCommand.self, Random.self, Stress.self, Explore.self, Bench.self, KernelProbe.self,
            Mkfs.self, FsckCommand.self, Vol.self, Crash.self, MountCommand.self,
            InstallMountHelper.self, Campaign.self,
        ],
        defaultSubcommand: Race.self)
}

/// Exit codes shared by every subcommand.
enum ExitStatus {
    static let holds = ExitCode(0)
    static let violation = ExitCode(1)
    /// A command that could not do what it was asked (exit 1, as a violation).
    static let failure = ExitCode(1)
}

extension CleanupPolicy: ExpressibleByArgument {}

/// What a printed replay command starts with so that it poisons folio memory as the run did,
/// in any build.
var poisonPrefix: String { FolioMemory.fill == .poison ? "IOMAP_POISON_FOLIOS=1 " : "" }

/// Prints a command's --json report, the one object on stdout. Each command's report is a
/// struct of its own whose property names are the JSON keys, so they are snake_case.
/// JSONEncoder escapes "/" as "\/" and prints numbers as JSONSerialization did, which the
/// commands used before: scripts see the same bytes. Its sorted keys go by code point, not
/// JSONSerialization's case-insensitive numeric order; for every key these reports print
/// the two agree. A report fails to encode only if it holds a non-finite number, a bug.
func printJSON(_ report: some Encodable) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try! encoder.encode(report), as: UTF8.self))
}

/// A report field that is printed as null when absent: scripts look the key up, and
/// JSONEncoder would leave a nil optional out.
@propertyWrapper
struct KeepNull<Value: Encodable>: Encodable {
    var wrappedValue: Value?

    init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}

/// Two reports' fields printed as one JSON object: a probe case's tally beside its name.
struct MergedJSON<First: Encodable, Second: Encodable>: Encodable {
    var first: First
    var second: Second

    func encode(to encoder: any Encoder) throws {
        try first.encode(to: encoder)
        try second.encode(to: encoder)
    }
}

/// Settings that can say what is wrong with them, naming the option: a usage error.
protocol CheckedSettings {
    var problem: String? { get }
}

extension RaceConfig: CheckedSettings {}
extension FsxConfig: CheckedSettings {}

/// Throws `problem`, if there is one, as the command's usage error (exit 2).
func throwUsageError(_ problem: String?) throws {
    if let problem { throw ValidationError(problem) }
}

/// The seed of a run: --seed, or one chosen at random (and printed by the command, so that
/// the run can be repeated).
func runSeed(_ seed: UInt64?) -> UInt64 { seed ?? UInt64.random(in: 0..<1 << 48) }

/// A command whose options make its run's configuration for a given seed: the usage check
/// is that configuration's own, made with any seed, and the run uses --seed or a random one.
protocol SeededRunCommand: ParsableCommand {
    associatedtype Config: CheckedSettings
    var seed: UInt64? { get }
    /// The configuration the options make; throws a usage error for an option that does not parse.
    func config(seed: UInt64) throws -> Config
}

extension SeededRunCommand {
    func validate() throws { try throwUsageError(config(seed: 0).problem) }

    /// The configuration of the run itself.
    func runConfig() throws -> Config { try config(seed: runSeed(seed)) }
}

/// Whether `path` names a directory.
func isDirectory(_ path: String) -> Bool {
    var isDirectory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
}

/// The help of --write-end, an option of every command that runs the write path's short copies.
let writeEndHelp = ArgumentHelp(
    "What a short copy leaves of a write's range: zero-tail, or kernel (Linux's as its source reads, which leaves stale memory; wrong on purpose)."
)
