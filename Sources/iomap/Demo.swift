// `iomap demo`: the seed commit's race, acted out step by step under both cleanup
// policies: a buffered write reserves delalloc over a sparse range and fails without
// writing anything, while a store through a shared mapping lands in the same range.

import ArgumentParser
import ExtentFS
import IOMap
import IOMapBase
import Synchronization

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a failing write racing a mapped store under both failure-cleanup policies.")

    @Option(help: "File-system block size in bytes (512, 1024, 2048 or 4096).")
    var blockSize = 4096

    @Flag(help: "Print one JSON object instead of the narrative.")
    var json = false

    func validate() throws {
        guard [512, 1024, 2048, 4096].contains(blockSize) else {
            throw ValidationError("--block-size must be 512, 1024, 2048 or 4096, got \(blockSize)")
        }
    }

    struct Outcome {
        var policy: CleanupPolicy
        var writeResult: String
        var storedBytesSurvived: Bool
        var invariantViolations: [String]
        var punches: [ByteRange]
        var delallocAfterFailure: [Int]
    }

    func run(policy: CleanupPolicy) -> Outcome {
        // The store happens from inside the write, after it reserved delalloc and before
        // its failure cleanup runs (hook point H1), as a second CPU would do it.
        let fileBox = Mutex<ExtentFile?>(nil)
        let stored: [UInt8] = Array("mmap was here".utf8)
        let env = IOMapEnvironment(hook: { event in
            guard event.point == .afterIomapBegin, let file = fileBox.withLock({ $0 }) else { return }
            fileBox.withLock { $0 = nil }
            try? file.mappedStore(stored, at: 8192 + 100)
        })
        let fs = ExtentFS(
            memoryBytes: 16 << 20, config: ExtentFSConfig(blockSize: blockSize, maxFolioSize: 4096, cleanupPolicy: policy, environment: env)
        )
        let file = fs.createFile()
        try! file.truncate(to: 16384)
        file.recordPunches()
        fileBox.withLock { $0 = file }
        // The user buffer is unreadable from its first byte: the copy fails, nothing is written.
        let result = Result { () throws(Errno) -> Int in
            try file.write([UInt8](repeating: 0x57, count: 16384), at: 0, faultOffset: 0)
        }
        let delalloc = file.delallocBlockIndices()
        let violations = file.invariantViolations()
        try? file.fsync()
        file.dropCaches()
        let back = (try? file.read(count: stored.count, at: 8192 + 100)) ?? []
        let writeResult: String
        switch result {
        case .success(let n): writeResult = "\(n) bytes"
        case .failure(let e): writeResult = e.symbolicName
        }
        return Outcome(
            policy: policy, writeResult: writeResult, storedBytesSurvived: back == stored,
            invariantViolations: violations, punches: file.recordedPunches, delallocAfterFailure: delalloc)
    }

    func run() throws {
        let outcomes = CleanupPolicy.allCases.map { run(policy: $0) }
        let lost = outcomes.first { $0.policy == .preserveDirty }!.storedBytesSurvived == false
        if json {
            printJSON(DemoJSON(blockSize: blockSize, outcomes: outcomes))
        } else {
            print("A 16 KiB sparse file. A write of [0, 16K) reserves delalloc, then its copy faults;")
            print("meanwhile a store through a shared mapping puts 13 bytes at 8292. After the write's")
            print("failure cleanup the file is fsync'd, the cache dropped, and the 13 bytes read back.\n")
            for o in outcomes {
                print("policy \(o.policy.rawValue):")
                print("  write returned \(o.writeResult); cleanup punched \(o.punches.map(\.description).joined(separator: ", "))")
                print("  delalloc blocks left after the failure: \(o.delallocAfterFailure)")
                print("  invariants: \(o.invariantViolations.isEmpty ? "all hold" : o.invariantViolations.joined(separator: "; "))")
                print("  mapped store \(o.storedBytesSurvived ? "survived" : "LOST")")
            }
        }
        if lost { throw ExitStatus.violation }
    }
}

/// `iomap demo --json`: each policy's outcome.
struct DemoJSON: Encodable {
    struct Result: Encodable {
        var policy, write_result: String
        var stored_bytes_survived: Bool
        /// Each punched range as [start, end].
        var punch_calls: [[Int]]
        var delalloc_blocks_after_failure: [Int]
        var invariant_violations: [String]
    }

    var block_size: Int
    var results: [Result]
}

extension DemoJSON {
    init(blockSize: Int, outcomes: [Demo.Outcome]) {
        let results = outcomes.map { o in
            Result(
                policy: o.policy.rawValue, write_result: o.writeResult, stored_bytes_survived: o.storedBytesSurvived,
                punch_calls: o.punches.map { [$0.start, $0.end] }, delalloc_blocks_after_failure: o.delallocAfterFailure,
                invariant_violations: o.invariantViolations)
        }
        self.init(block_size: blockSize, results: results)
    }
}
