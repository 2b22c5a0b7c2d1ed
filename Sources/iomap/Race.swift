// `iomap race`: the main job. fstests' generic/346 workload on the engine, made harsher:
// mapped writers and failing pwrite writers storing into every page while writeback and
// reclaim run, and every slot checked after each round and after a full flush.

import ArgumentParser
import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapKernelSide
import IOMapTesting

struct Race: SeededRunCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the generic/346 mmap-vs-failing-write race on the engine and check that no store is lost.",
        discussion: """
            Exit status: 0 when every slot held its owner's value, 1 when a slot was lost (or \
            anything else went wrong), 2 for bad usage. With --policy truncate-page-cache the \
            failure cleanup truncates the page cache as Linux did before commit f43dc4dc3eff, \
            and mapped stores are lost.

            With --dir DIR the race runs through real system calls on a new file in DIR \
            (tmpfs, XFS, an `iomap mount`...): the mapped writers store through a MAP_SHARED \
            mapping, the pwrite writers write from buffers whose tail is a PROT_NONE page \
            (--fail-rate of the attempts), so the kernel's copy faults and the write comes \
            back short or EFAULT. Every slot is read back with pread while the mapping is \
            live, and again after munmap, fsync and a cache drop (--drop-caches fadvise: \
            posix_fadvise DONTNEED on the file; global: also /proc/sys/vm/drop_caches, root \
            only). --canary punches the page of every failed write, so slots must be lost. \
            --policy and --volume are the engine's and are refused with --dir; --block-size \
            and --write-delay-us have no effect there.
            """)

    @Option(parsing: .unconditional, help: "File size in MiB.") var size = 16
    @Option(help: "File layout before each round: hole, unwritten, written or all (comma-separated list allowed).")
    var layout = "all"
    @Option(parsing: .unconditional, help: "Threads storing their id through the shared mapping.") var mappedWriters = 2
    @Option(parsing: .unconditional, help: "Threads writing their id with pwrite, with faults injected.") var pwriteWriters = 1
    @Option(parsing: .unconditional, help: "Rounds per layout.") var rounds = 8
    @Option(parsing: .unconditional, help: "Probability that a buffered write meets an injected fault (0 to 1).") var failRate = 0.05
    @Option(help: "Failure-cleanup policy: preserve-dirty or truncate-page-cache.") var policy = CleanupPolicy.preserveDirty
    @Option(parsing: .unconditional, help: "File-system block size in bytes: 512, 1024, 2048 or 4096.") var blockSize = 4096
    @Option(parsing: .unconditional, help: "Pages the writers work through together before waiting for each other.") var stripePages = 8
    @Option(
        parsing: .unconditional,
        help: "Microseconds a pwrite writer is held up (a quarter of the time) between iomap_begin and its folio lock; 0: never.")
    var writeDelayUs = 20
    @Option(help: "Seed (default: chosen at random and printed).") var seed: UInt64?
    @Flag(help: "Print one JSON object on stdout.") var json = false
    @Option(help: "Run the race through system calls on a new file in this directory instead of on the engine.")
    var dir: String?
    @Option(help: "With --dir: how the cache is dropped after each round's fsync: fadvise or global (root).")
    var dropCaches = "fadvise"
    @Flag(help: "With --dir: punch the page of every failed pwrite, so that stores are lost (the check's canary).")
    var canary = false
    @OptionGroup var campaign: SeedCampaignOptions

    func layouts() throws -> [RaceLayout] {
        if layout == "all" { return RaceLayout.allCases }
        return try layout.split(separator: ",").map { name in
            guard let l = RaceLayout(rawValue: String(name)) else {
                throw ValidationError("--layout must be hole, unwritten, written or all, got '\(name)'")
            }
            return l
        }
    }

    @Flag(help: "Run on a file of a new in-memory volume (its journal logs every allocation; fsync is a log force).")
    var volume = false

    func config(seed: UInt64) throws -> RaceConfig {
        var c = RaceConfig(seed: seed)
        c.backing = volume ? .volume : .engine
        try shape(&c)
        c.policy = policy
        c.blockSize = blockSize
        c.writeDelayMicros = writeDelayUs
        return c
    }

    func validate() throws {
        try throwUsageError(config(seed: 0).problem)
        try campaign.check(seed: seed, json: json)
        guard let dir else {
            if canary { throw ValidationError("--canary needs --dir (on the engine, use --policy truncate-page-cache)") }
            if dropCaches != "fadvise" { throw ValidationError("--drop-caches needs --dir") }
            return
        }
        if volume { throw ValidationError("--volume and --dir are exclusive: --dir runs on a real file") }
        if policy != .preserveDirty { throw ValidationError("--policy is the engine's; with --dir use --canary") }
        guard isDirectory(dir) else { throw ValidationError("--dir: '\(dir)' is not a directory") }
        try throwUsageError(try fileConfig(seed: 0).problem)
    }

    /// The workload's shape from the options, for either race.
    func shape<C: RaceShape>(_ c: inout C) throws {
        c.sizeMiB = size
        c.layouts = try layouts()
        c.mappedWriters = mappedWriters
        c.pwriteWriters = pwriteWriters
        c.rounds = rounds
        c.failRate = failRate
        c.stripePages = stripePages
    }

    func fileConfig(seed: UInt64) throws -> FileRaceConfig {
        var c = FileRaceConfig(directory: dir ?? ".", seed: seed)
        try shape(&c)
        guard let drop = RaceCacheDrop(rawValue: dropCaches) else {
            throw ValidationError("--drop-caches must be fadvise or global, got '\(dropCaches)'")
        }
        c.cacheDrop = drop
        c.canary = canary
        return c
    }

    func run() throws {
        if dir != nil {
            // The file race's campaign: the options of its command other than the seed.
            let options = try fileConfig(seed: 0).command.replacingOccurrences(of: "iomap race ", with: "")
                .replacingOccurrences(of: " --seed 0", with: "")
            return try runSeedCampaign(tool: "race", campaign: options, options: campaign, seed: seed) { seed, quiet in
                try runOneOnFile(fileConfig(seed: seed), quiet: quiet)
            }
        }
        try runSeedCampaign(tool: "race", campaign: resultOptions.joined(separator: " "), options: campaign, seed: seed) { seed, quiet in
            try runOne(config(seed: seed), quiet: quiet)
        }
    }

    /// The options that decide a seed's run on the engine, as flags, every one spelled out:
    /// a campaign's identity and, after --seed, the command that runs a seed again.
    var resultOptions: [String] {
        [
            "--size \(size)", "--layout \(layout)", "--mapped-writers \(mappedWriters)", "--pwrite-writers \(pwriteWriters)",
            "--rounds \(rounds)", "--fail-rate \(failRate)", "--policy \(policy.rawValue)", "--block-size \(blockSize)",
            "--stripe-pages \(stripePages)", "--write-delay-us \(writeDelayUs)",
        ] + (volume ? ["--volume"] : [])
    }

    /// One seed's race on the engine, its report printed on stdout, or on stderr when `quiet`.
    func runOne(_ config: RaceConfig, quiet: Bool) throws -> SeedOutcome {
        let stderr = FileHandle.standardError
        stderr.write(
            Data(
                "iomap race: seed \(config.seed), policy \(config.policy.rawValue), \(config.pages) pages, \(config.writers) writers, \(config.rounds) rounds per layout\(config.backing == .volume ? ", on a volume" : "")\n"
                    .utf8))
        let report = runRace(config) { line in stderr.write(Data((line + "\n").utf8)) }
        let print = reportPrinter(quiet: quiet)
        if json && !quiet {
            printJSON(RaceJSON(config, report))
        } else {
            print(
                "seed \(config.seed), policy \(config.policy.rawValue): \(report.roundsRun) rounds, \(report.slotsChecked) slots checked, \(report.slotsLost) lost"
            )
            print(
                "\(report.failedWrites) failed writes, \(report.cleanupCalls) failure cleanups, \(report.punchCalls) punches, \(report.staleMappings) stale mappings, \(report.writebackPasses) writeback passes, \(report.foliosReclaimed) folios reclaimed, \(String(format: "%.1f", report.elapsedSeconds)) s"
            )
            print(
                "faults injected: \(report.faultsInjected.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"
            )
            if report.passed { print("every slot held its owner's value") }
        }
        var outcome = SeedOutcome()
        outcome.counts = [
            "rounds": report.roundsRun, "slots_checked": report.slotsChecked, "slots_lost": report.slotsLost,
            "failed_writes": report.failedWrites, "cleanup_calls": report.cleanupCalls, "punch_calls": report.punchCalls,
        ]
        if !report.passed {
            var lines = report.losses.map { "lost: \($0)" }
            if report.slotsLost > report.losses.count { lines.append("... \(report.slotsLost - report.losses.count) more lost slots") }
            lines += report.errors.map { "error: \($0)" }
            let command = "iomap race --seed \(config.seed) " + resultOptions.joined(separator: " ")
            lines.append("run again: \(command)")
            stderr.write(Data((lines.joined(separator: "\n") + "\n").utf8))
            let what = report.losses.first.map { "\(report.slotsLost) slots lost, first \($0)" } ?? report.errors.first ?? "failed"
            outcome.violations = [(what, poisonPrefix + command)]
        }
        return outcome
    }
}

extension Race {
    /// `iomap race --dir`: one seed's race through system calls on a real file, its report on
    /// stdout, or on stderr when `quiet`.
    func runOneOnFile(_ config: FileRaceConfig, quiet: Bool) throws -> SeedOutcome {
        say(
            "iomap race --dir: seed \(config.seed), \(config.pages) pages, \(config.writers) writers (\(config.mappedWriters) mapped, \(config.pwriteWriters) pwrite), \(config.rounds) rounds per layout, cache drop \(config.cacheDrop.rawValue)\(config.canary ? ", CANARY: failed writes punch their page" : "")"
        )
        let report: FileRaceReport
        do {
            report = try runFileRace(config)
        } catch {
            throw ValidationError("cannot create a file in \(config.directory): \(error.symbolicName)")
        }
        let print = reportPrinter(quiet: quiet)
        if json && !quiet {
            printJSON(FileRaceJSON(config, report))
        } else {
            print(
                "seed \(config.seed) on \(report.dirFSType) (\(config.directory)): \(report.roundsRun) rounds, \(report.slotsChecked) slots checked, \(report.slotsLost) lost (\(report.mappedSlotsLost) of mapped writers)"
            )
            print(
                "\(report.failedWrites) failed writes (\(report.shortWrites) short, \(report.efaultWrites) EFAULT), \(report.canaryPunches) canary punches, \(String(format: "%.1f", report.elapsedSeconds)) s"
            )
            if report.passed { print("every slot held its owner's value") }
        }
        if !report.passed {
            var lines = report.losses.map { "lost: \($0)" }
            if report.slotsLost > report.losses.count { lines.append("... \(report.slotsLost - report.losses.count) more lost slots") }
            lines += report.errors.map { "error: \($0)" }
            lines.append("run again: \(config.command)")
            say(lines.joined(separator: "\n"))
        }
        var outcome = SeedOutcome()
        outcome.counts = [
            "rounds": report.roundsRun, "slots_checked": report.slotsChecked, "slots_lost": report.slotsLost,
            "mapped_slots_lost": report.mappedSlotsLost, "failed_writes": report.failedWrites, "short_writes": report.shortWrites,
            "efault_writes": report.efaultWrites, "canary_punches": report.canaryPunches,
        ]
        if !report.passed {
            let what = report.losses.first.map { "\(report.slotsLost) slots lost, first \($0)" } ?? report.errors.first ?? "failed"
            outcome.violations = [(what, config.command)]
        }
        return outcome
    }
}

/// `iomap race --dir --json`.
struct FileRaceJSON: Encodable {
    var result, dir, dir_fstype, drop_caches: String
    var seed: UInt64
    var rounds, rounds_run, pages, size_mib, mapped_writers, pwrite_writers, stripe_pages: Int
    var slots_checked, slots_lost, mapped_slots_lost, failed_writes, short_writes, efault_writes, canary_punches: Int
    var canary: Bool
    var layouts, errors: [String]
    var lost_by_layout: [String: Int]
    @KeepNull var first_loss: String?
    var fail_rate, elapsed_s: Double
}

extension FileRaceJSON {
    init(_ config: FileRaceConfig, _ report: FileRaceReport) {
        self.init(
            result: report.passed ? "pass" : "violation", dir: config.directory, dir_fstype: report.dirFSType,
            drop_caches: config.cacheDrop.rawValue, seed: config.seed, rounds: config.rounds, rounds_run: report.roundsRun,
            pages: config.pages, size_mib: config.sizeMiB, mapped_writers: config.mappedWriters, pwrite_writers: config.pwriteWriters,
            stripe_pages: config.stripePages, slots_checked: report.slotsChecked, slots_lost: report.slotsLost,
            mapped_slots_lost: report.mappedSlotsLost, failed_writes: report.failedWrites, short_writes: report.shortWrites,
            efault_writes: report.efaultWrites,
            canary_punches: report.canaryPunches, canary: config.canary, layouts: config.layouts.map(\.rawValue),
            errors: report.errors, lost_by_layout: report.lostByLayout, first_loss: report.losses.first.map { String(describing: $0) },
            fail_rate: config.failRate, elapsed_s: report.elapsedSeconds)
    }
}

/// `iomap race --json`.
struct RaceJSON: Encodable {
    var policy, result: String
    var seed: UInt64
    var rounds, rounds_run, pages, size_mib, block_size, mapped_writers, pwrite_writers, stripe_pages, write_delay_us: Int
    var write_delays, slots_checked, slots_lost, failed_writes, cleanup_calls, punch_calls, stale_mappings: Int
    var writeback_passes, folios_reclaimed: Int
    var layouts, errors: [String]
    var lost_by_layout, faults_injected: [String: Int]
    @KeepNull var first_loss: String?
    var fail_rate, elapsed_s: Double
}

extension RaceJSON {
    init(_ config: RaceConfig, _ report: RaceReport) {
        self.init(
            policy: config.policy.rawValue, result: report.passed ? "pass" : "violation", seed: config.seed, rounds: config.rounds,
            rounds_run: report.roundsRun, pages: config.pages, size_mib: config.sizeMiB, block_size: config.blockSize,
            mapped_writers: config.mappedWriters, pwrite_writers: config.pwriteWriters, stripe_pages: config.stripePages,
            write_delay_us: config.writeDelayMicros, write_delays: report.writeDelays, slots_checked: report.slotsChecked,
            slots_lost: report.slotsLost, failed_writes: report.failedWrites, cleanup_calls: report.cleanupCalls,
            punch_calls: report.punchCalls, stale_mappings: report.staleMappings, writeback_passes: report.writebackPasses,
            folios_reclaimed: report.foliosReclaimed, layouts: config.layouts.map(\.rawValue), errors: report.errors,
            lost_by_layout: report.lostByLayout, faults_injected: report.faultsInjected,
            first_loss: report.losses.first.map { String(describing: $0) }, fail_rate: config.failRate,
            elapsed_s: report.elapsedSeconds)
    }
}
