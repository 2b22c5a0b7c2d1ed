// Counterpart: none in the kernel. Running the host's programs (mkfs, mount, fio, sbatch, the
// iomap command itself) to their end, for the kernel side and for the tests.
//
// One runner, bounded: Foundation's Process learns that its child ended when a socket it
// hands the child closes, so a daemon the child starts without closing the descriptors it
// inherited keeps the child's end from ever being reported (munged did this to the test that
// brings up Slurm, and the suite waited until CI stopped it). Every wait here has a deadline,
// and an overrun says which command it was and what never came.

import Foundation

/// A command that did not end within its deadline: what it was and what never came.
public struct CommandTimeout: Error, CustomStringConvertible {
    public let description: String
}

/// Starts `process` and waits, for at most `timeout` seconds, until it has exited and every
/// handle in `reading` (read ends of its pipes, at most two) is at end of file; returns what
/// was read from the first and the second. The pipes are read while it runs, so a full pipe
/// cannot stall it. Past the deadline it kills the process if it still runs and throws
/// `CommandTimeout`.
public func runToEnd(_ process: Process, reading: [FileHandle], timeout: Double) throws -> (Data, Data) {
    precondition(reading.count <= 2, "runToEnd reads at most stdout and stderr")
    let exited = DispatchSemaphore(value: 0)
    process.terminationHandler = { _ in exited.signal() }
    try process.run()
    let read = DispatchSemaphore(value: 0)
    let results = reading.map { handle -> ReadResult in
        let box = ReadResult()
        Thread {
            box.set(handle.readDataToEndOfFile())
            read.signal()
        }
        .start()
        return box
    }
    let deadline = DispatchTime.now() + timeout
    let outputClosed = results.allSatisfy { _ in read.wait(timeout: deadline) == .success }
    let reported = exited.wait(timeout: deadline) == .success
    guard outputClosed && reported else {
        throw CommandTimeout(description: abandon(process, outputClosed: outputClosed, after: timeout))
    }
    return (results.first?.get() ?? Data(), results.dropFirst().first?.get() ?? Data())
}

/// Kills a command that overran its deadline, if it still runs, and says what it was and
/// what never came.
private func abandon(_ process: Process, outputClosed: Bool, after timeout: Double) -> String {
    let pid = process.processIdentifier
    let command = ([process.executableURL?.path ?? "?"] + (process.arguments ?? [])).joined(separator: " ")
    // The field after the parenthesised name in /proc/PID/stat is the state; Z is a process
    // that exited and has not been reaped.
    let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
    let state = stat.split(separator: ")").last?.split(separator: " ").first.map(String.init) ?? "gone"
    let why: String
    if state == "Z" {
        why =
            "it exited, but its end was never reported: a process it left running (a daemon that kept "
            + "the descriptors it inherited) holds the socket Foundation watches"
    } else if state == "gone" {
        why = "it exited, but a process it left running holds its stdout or stderr open"
    } else {
        kill(pid, SIGKILL)
        why = "it was still running (state \(state)) and was killed"
    }
    return "`\(command)` did not end within \(Int(timeout)) s: \(why)"
}

/// A one-shot box for a reader thread's result.
private final class ReadResult: @unchecked Sendable {
    // Guarded by: lock.
    private let lock = NSLock()
    private var data: Data?
    func set(_ d: Data) { lock.withLock { data = d } }
    func get() -> Data { lock.withLock { data ?? Data() } }
}
