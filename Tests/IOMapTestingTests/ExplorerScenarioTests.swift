// The explorer on the engine's races: each scenario exhausts every schedule within
// preemption bound 2 with no violation, and each switch that breaks the engine on purpose
// (the pre-seed cleanup, no validity check, the kernel's EOF rounding, the kernel's write
// end) is caught, with a
// schedule that replays to the same violation.

import IOMap
import IOMapTesting
import Testing

@Suite("Explorer scenarios")
struct ExplorerScenarioTests {
    func explore(
        _ scenario: ExploreScenario, bound: Int = 2, _ engine: ExploreEngineOptions = ExploreEngineOptions()
    ) -> ExploreReport {
        var config = ExploreConfig(scenario: scenario)
        config.preemptionBound = bound
        config.engine = engine
        let report = runExplore(config)
        print(
            "explore \(scenario.rawValue) \(engine.flags.joined(separator: " ")) bound \(bound): \(report.schedulesExplored) schedules, exhausted \(report.exhausted), \(report.violations) violations, \(report.seconds) s"
        )
        return report
    }

    /// Replays `violation`'s schedule and expects the same first finding.
    func expectReplays(_ violation: ExploreViolation, _ scenario: ExploreScenario, _ engine: ExploreEngineOptions) throws {
        var config = ExploreConfig(scenario: scenario)
        config.engine = engine
        config.replay = try Schedule(parsing: violation.schedule.description)
        let again = runExplore(config)
        #expect(again.schedulesExplored == 1)
        #expect(again.firstViolation?.finding == violation.finding, "replaying \(violation.schedule)")
        #expect(again.firstViolation?.schedule == violation.schedule)
    }

    @Test("every scenario: all schedules within preemption bound 2 keep every invariant", arguments: ExploreScenario.allCases)
    func exhaustiveAtBound2(_ scenario: ExploreScenario) {
        let report = explore(scenario)
        #expect(report.exhausted)
        #expect(report.violations == 0, "\(report.firstViolation.map { "\($0.finding) under \($0.schedule)" } ?? "")")
        #expect(report.maxPreemptions == 2)
        #expect(report.schedulesExplored > 100)
    }

    /// Explores `scenario` with an engine broken by `engine`, which the explorer must catch:
    /// its first violation breaks `invariant` and its schedule replays to the same finding.
    func caught(
        _ scenario: ExploreScenario, _ engine: ExploreEngineOptions, invariant: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> ExploreViolation {
        let report = explore(scenario, engine)
        let v = try #require(report.firstViolation, sourceLocation: sourceLocation)
        #expect(v.finding.invariant == invariant, sourceLocation: sourceLocation)
        try expectReplays(v, scenario, engine)
        return v
    }

    /// The schedule of `violation` run by the engine as it is (nothing broken) keeps every invariant.
    func expectFixedEngineKeeps(
        _ violation: ExploreViolation, _ scenario: ExploreScenario, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        var fixed = ExploreConfig(scenario: scenario)
        fixed.replay = violation.schedule
        #expect(runExplore(fixed).violations == 0, sourceLocation: sourceLocation)
    }

    @Test("write-fail-vs-mapped-store: the pre-seed cleanup loses the mapped store under a schedule that replays to it")
    func seedCanary() throws {
        let v = try caught(.writeFailVsMappedStore, ExploreEngineOptions(policy: .truncatePageCache), invariant: "lost-data")
        #expect(v.finding.detail.contains("[8256, 8264)"))
        // The same schedule with the seed's cleanup keeps the store.
        expectFixedEngineKeeps(v, .writeFailVsMappedStore)
    }

    @Test("stale-mapping: without the validity check the write zeroes the byte at 40K-1 (V-3)")
    func staleMappingCanary() throws {
        let v = try caught(.staleMapping, ExploreEngineOptions(validityCheck: false), invariant: "lost-data")
        #expect(v.finding.detail.contains("[40959, 40960)"))
    }

    @Test("eof-block: the kernel's EOF rounding breaks D1 and loses the store (O1)")
    func eofBlockCanary() throws {
        let v = try caught(.eofBlock, ExploreEngineOptions(eofRounding: .kernel), invariant: "D1")
        #expect(v.finding.detail.contains("dirty block at 4096 below EOF 6144 has no backing"))
    }

    @Test("short-copy-vs-protect: the kernel's write end leaves poison readable after a write that failed with EFAULT")
    func shortCopyCanary() throws {
        let v = try caught(.shortCopyVsProtect, ExploreEngineOptions(writeEnd: .kernel), invariant: "poison")
        #expect(v.finding.detail.hasPrefix("poison at offset 8492"), "\(v.finding.detail)")
        // The same schedule with our write end leaves zeroes.
        expectFixedEngineKeeps(v, .shortCopyVsProtect)
    }

    @Test("pct and random find the seed's corruption within a few hundred schedules")
    func randomStrategiesFindTheSeedBug() {
        for strategy in [ExploreStrategy.pct, .random] {
            var config = ExploreConfig(scenario: .writeFailVsMappedStore)
            config.strategy = strategy
            config.seed = 20221128
            config.schedules = 500
            config.engine = ExploreEngineOptions(policy: .truncatePageCache)
            let report = runExplore(config)
            #expect(report.firstViolation?.finding.invariant == "lost-data", "\(strategy), seed 20221128")
        }
    }
}
