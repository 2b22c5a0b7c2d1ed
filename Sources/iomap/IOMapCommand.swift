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
        ],
        defaultSubcommand: Race.self)
}

/// Exit codes shared by every subcommand.
enum ExitStatus {
    static let holds = ExitCode(0)
    static let violation = ExitCode(1)
}

extension CleanupPolicy: ExpressibleByArgument {}

/// What a printed replay command starts with so that it poisons folio memory as the run did,
/// in any build.
var poisonPrefix: String { FolioMemory.fill == .poison ? "IOMAP_POISON_FOLIOS=1 " : "" }

func printJSON(_ object: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}
