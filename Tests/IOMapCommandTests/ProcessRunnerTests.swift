// The process runner every command test goes through: a command that does not end fails its
// test, naming the command and what never came, instead of stalling the suite. Both ways a
// command can fail to end are its canaries: one still running, and one that exited leaving a
// background process with its descriptors (what munged did to .ci/slurm/start).

import Foundation
import IOMapKernelSide
import Testing

@Suite("the tests' process runner")
struct ProcessRunnerTests {
    @Test("a command still running at its deadline is killed, and the error names it")
    func overrun() throws {
        let began = Date()
        do {
            _ = try runProgram("sh", ["-c", "sleep 60"], timeout: 1)
            Issue.record("a 60 s sleep ended within a 1 s deadline")
        } catch let error as CommandTimeout {
            #expect("\(error)".contains("sh -c sleep 60` did not end within 1 s: it was still running"), "\(error)")
        }
        #expect(Date().timeIntervalSince(began) < 30, "the runner waited for the sleep instead of killing it")
    }

    @Test("a command that exits leaving a background process with its descriptors fails, saying so")
    func leftBehind() throws {
        // The background sleep keeps the descriptors the shell inherited; stdout and stderr
        // are closed for it, as a daemon's would be.
        do {
            _ = try runProgram("sh", ["-c", "sleep 20 >/dev/null 2>&1 </dev/null & exit 0"], timeout: 2)
            Issue.record("the runner reported the shell's end although a process it left holds its descriptors")
        } catch let error as CommandTimeout {
            #expect("\(error)".contains("it exited, but its end was never reported"), "\(error)")
        }
    }

    @Test("an ordinary command's status and both outputs come back")
    func ordinary() throws {
        let r = try runProgram("sh", ["-c", "echo out; echo err >&2; exit 3"], timeout: 60)
        #expect(r.status == 3 && r.stdout == "out\n" && r.stderr == "err\n", "\(r)")
    }
}
