// Issue 3's threaded tests: the engine under real threads (the stress workload and the
// generic/346 race harness), each with a canary that shows its checker can fail. Every run
// prints its configuration and seed.

import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapTesting
import Testing

@Suite("Real threads")
struct ThreadedTests {
    static let stressMatrix: [(blockSize: Int, maxFolioSize: Int)] = [(512, 4096), (1024, 16 << 10), (4096, 64 << 10)]

    func stressConfig(_ entry: Int) -> StressConfig {
        var c = StressConfig(seed: baseSeed() &+ UInt64(entry))
        c.workers = 4
        c.opsPerWorker = 12_000
        c.blockSize = Self.stressMatrix[entry].blockSize
        c.maxFolioSize = Self.stressMatrix[entry].maxFolioSize
        return c
    }

    @Test(
        "threaded stress: workers with failing writes, mapped stores, punch, truncate, writeback and reclaim keep every byte and invariant",
        arguments: stressMatrix.indices)
    func stressHolds(entry: Int) {
        let config = stressConfig(entry)
        print("threaded stress: \(config)")
        let r = runThreadedStress(config)
        #expect(r.violation == nil, "\(r.violation ?? "")\nrun again: \(config)")
        #expect(r.opsRun == config.workers * config.opsPerWorker)
        // A run in which nothing failed and nothing was checked proves nothing.
        #expect(r.shortWrites + r.failedWrites > 0)
        #expect(r.cleanups > 0)
        #expect(r.quietChecks == config.opsPerWorker / config.quietEvery + 1)
        #expect(r.opsByKind["truncate", default: 0] > 0 && r.opsByKind["punch_hole", default: 0] > 0)
        #expect(r.writebackPasses > 0)
    }

    @Test("stress canary: a byte changed behind a worker's back is reported")
    func stressCanary() {
        var config = stressConfig(1)
        config.opsPerWorker = 2000
        config.rogueStore = true
        print("threaded stress canary: \(config)")
        let r = runThreadedStress(config)
        #expect(r.violation?.contains("model has") == true, "the rogue store went unnoticed: \(r.violation ?? "no violation")")
    }

    func raceConfig(policy: CleanupPolicy) -> RaceConfig {
        var c = RaceConfig(seed: baseSeed())
        c.sizeMiB = 4
        c.rounds = 4
        c.policy = policy
        return c
    }

    @Test("race (generic/346, harsher): with preserve-dirty no slot is lost while writes fail and cleanups run")
    func racePreserveDirty() {
        let config = raceConfig(policy: .preserveDirty)
        print("race: \(config.command)")
        let r = runRace(config)
        #expect(r.errors.isEmpty, "\(r.errors)")
        #expect(r.slotsLost == 0, "\(r.losses.first.map(String.init(describing:)) ?? "")\nrun again: \(config.command)")
        #expect(r.slotsChecked == 2 * config.pages * config.writers * config.rounds * config.layouts.count)
        #expect(r.failedWrites > 0)
        #expect(r.cleanupCalls > 0)
        #expect(r.faultsInjected.values.reduce(0, +) > 0)
    }

    @Test("race canary: the pre-seed truncate-page-cache cleanup loses mapped stores, and only in the hole layout")
    func raceTruncateLoses() {
        let config = raceConfig(policy: .truncatePageCache)
        print("race: \(config.command)")
        let r = runRace(config)
        print("race canary: \(r.slotsLost) of \(r.slotsChecked) slots lost, \(r.cleanupCalls) cleanups, \(r.writeDelays) write delays")
        #expect(r.errors.isEmpty, "\(r.errors)")
        #expect(r.slotsLost > 0, "no slot lost: run again: \(config.command)")
        // Only a hole gives a write new delalloc to clean up; the losses are mapped writers'.
        #expect(r.lostByLayout.keys.sorted() == ["hole"])
        #expect(r.losses.allSatisfy { !$0.byPwrite })
    }

    @Test("race configurations are checked, naming the option")
    func raceConfigProblems() {
        func problem(_ change: (inout RaceConfig) -> Void) -> String? {
            var c = RaceConfig(seed: 1)
            change(&c)
            return c.problem
        }
        #expect(problem { _ in } == nil)
        #expect(problem { $0.sizeMiB = 0 }?.hasPrefix("--size") == true)
        #expect(problem { $0.failRate = -0.1 }?.hasPrefix("--fail-rate") == true)
        #expect(problem { $0.failRate = .nan }?.hasPrefix("--fail-rate") == true)
        #expect(problem { $0.rounds = 0 }?.hasPrefix("--rounds") == true)
        #expect(problem { $0.blockSize = 3000 }?.hasPrefix("--block-size") == true)
        #expect(
            problem {
                $0.mappedWriters = 0; $0.pwriteWriters = 0
            }?.contains("at least one writer") == true)
        #expect(problem { $0.layouts = [] }?.hasPrefix("--layout") == true)
    }

    @Test("slots are spread over the page as holetest's are")
    func slots() {
        var c = RaceConfig(seed: 1)
        c.mappedWriters = 1
        c.pwriteWriters = 1
        let pair: [Int] = [c.slotOffset(writer: 0), c.slotOffset(writer: 1)]
        #expect(pair == [1024, 3072])
        c.mappedWriters = 63
        let offsets = (0..<c.writers).map { c.slotOffset(writer: $0) }
        #expect(Set(offsets).count == 64 && offsets.allSatisfy { $0 % 8 == 0 && $0 + 8 <= 4096 })
    }
}
