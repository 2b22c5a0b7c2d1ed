// Counterpart: fstests' generic/346 ("holetest -f -w", src/holetest.c), made harsher.
//
// holetest maps a file shared and has two threads store their own 8-byte id into every
// page, one of them with pwrite; afterwards every page must hold both ids. Here N mapped
// writers and M pwrite writers each own a slot in every page; faults are injected into the
// pwrite path (short and zero-byte copies, stale mappings, ENOSPC) so that failure cleanup
// runs all the time; writeback and reclaim run on threads of their own; and the writers
// move through the file together, a stripe of pages at a time, each in its own random
// order, so that a failing write keeps finding mapped stores landing in its folio. The file
// is laid out afresh every round (holes, unwritten extents or written blocks), so every
// round has new delalloc to reserve and to clean up. At the end of each round, and again
// after writeback and a full cache drop, every slot must hold its owner's value for that
// round: a value that carries the writer, the layout, the round and the page, so a store
// that was lost, misplaced or left over from an earlier round is told apart from the right
// one.
//
// Threads run for real, so a run is not replayable step by step; the seed fixes the fault
// decisions' random stream and the writers' page orders, and is printed so that a failing
// configuration can be run again.

import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Synchronization

/// How the file is laid out before each round (holetest's three runs).
public enum RaceLayout: String, CaseIterable, Sendable {
    /// ftruncate only: every page is a hole, so every first store or write reserves delalloc.
    case hole
    /// posix_fallocate: unwritten extents under every page.
    case unwritten
    /// Zero-filled through the mapping and written back: written extents.
    case written
}

/// The workload's shape, which the race on the engine and the race on a real file
/// (`iomap race --dir`) share: one place sets it from the command's options.
public protocol RaceShape {
    var sizeMiB: Int { get set }
    var layouts: [RaceLayout] { get set }
    var mappedWriters: Int { get set }
    var pwriteWriters: Int { get set }
    var rounds: Int { get set }
    var failRate: Double { get set }
    var stripePages: Int { get set }
}

/// How a race run is set up.
public struct RaceConfig: Sendable, RaceShape {
    /// File size in MiB.
    public var sizeMiB = 16
    public var layouts: [RaceLayout] = RaceLayout.allCases
    /// Threads storing through the shared mapping.
    public var mappedWriters = 2
    /// Threads writing their slot with pwrite (the failing writes).
    public var pwriteWriters = 1
    /// Rounds per layout.
    public var rounds = 8
    /// The engine's file system alone, or a file of a volume.
    public var backing: FileBacking = .engine
    /// The probability that a buffered write meets an injected fault.
    public var failRate = 0.05
    public var policy: CleanupPolicy = .preserveDirty
    public var blockSize = 4096
    /// Pages the writers work through together before waiting for each other.
    public var stripePages = 8
    /// How long a pwrite writer is held up, a quarter of the time, after its iomapBegin and
    /// before it locks a folio (hook point H1), as XFS's write_delay_ms error tag holds a
    /// write: the window in which a mapped store lands inside a write that then fails. 0
    /// turns it off.
    public var writeDelayMicros = 20
    public var seed: UInt64

    public init(seed: UInt64) { self.seed = seed }

    /// Writers in all; each owns one slot in every page.
    public var writers: Int { mappedWriters + pwriteWriters }
    public var pages: Int { (sizeMiB << 20) / pageSize }
    public var fileSize: Int { sizeMiB << 20 }

    /// The largest file the harness makes, in MiB.
    public static let maxSizeMiB = 4096

    /// What is wrong with this configuration, naming the option; nil when it is usable.
    public var problem: String? {
        if sizeMiB < 1 || sizeMiB > Self.maxSizeMiB { return "--size must be from 1 to \(Self.maxSizeMiB) MiB, got \(sizeMiB)" }
        if layouts.isEmpty { return "--layout must name at least one layout" }
        if mappedWriters < 0 { return "--mapped-writers must not be negative, got \(mappedWriters)" }
        if pwriteWriters < 0 { return "--pwrite-writers must not be negative, got \(pwriteWriters)" }
        if writers < 1 { return "at least one writer is needed (--mapped-writers plus --pwrite-writers is 0)" }
        if writers > 64 { return "at most 64 writers fit their slots in a page, got \(writers)" }
        if rounds < 1 { return "--rounds must be at least 1, got \(rounds)" }
        if !(failRate >= 0 && failRate <= 1) { return "--fail-rate must be from 0 to 1, got \(failRate)" }
        if ![512, 1024, 2048, 4096].contains(blockSize) { return "--block-size must be 512, 1024, 2048 or 4096, got \(blockSize)" }
        if stripePages < 1 { return "--stripe-pages must be at least 1, got \(stripePages)" }
        if writeDelayMicros < 0 || writeDelayMicros > 1_000_000 {
            return "--write-delay-us must be from 0 to 1000000, got \(writeDelayMicros)"
        }
        return nil
    }

    /// The offset inside each page of writer `w`'s 8-byte slot: spread evenly, as holetest
    /// puts its two threads at 1024 and 3072.
    public func slotOffset(writer w: Int) -> Int {
        roundDown((2 * w + 1) * pageSize / (2 * writers), 8)
    }

    /// Writers `0..<pwriteWriters` use pwrite; the rest store through the mapping.
    public func isPwriteWriter(_ w: Int) -> Bool { w < pwriteWriters }

    /// The value writer `w` stores into page `page` in a round; never zero.
    public func value(writer w: Int, layout: Int, round: Int, page: Int) -> UInt64 {
        UInt64(w + 1) << 56 | UInt64(layout + 1) << 48 | UInt64(round + 1) << 32 | UInt64(page)
    }

    /// The engine's fault rates for the pwrite path: half of `failRate`. The other half is
    /// spent on user buffers that cannot be read past some byte (see `racePwrite`).
    var faultRates: [FaultSite: Double] {
        [
            .shortCopy: failRate * 0.15, .zeroCopy: failRate * 0.15, .staleBeforeFolioLock: failRate * 0.1,
            .staleMidMapping: failRate * 0.05, .reserveENOSPC: failRate * 0.05,
        ]
    }

    /// The command that runs this configuration again.
    public var command: String {
        "iomap race --size \(sizeMiB) --layout \(layouts.count == RaceLayout.allCases.count ? "all" : layouts.map(\.rawValue).joined(separator: ","))"
            + " --mapped-writers \(mappedWriters) --pwrite-writers \(pwriteWriters) --rounds \(rounds)"
            + " --fail-rate \(failRate) --policy \(policy.rawValue) --block-size \(blockSize)"
            + " --stripe-pages \(stripePages) --write-delay-us \(writeDelayMicros) --seed \(seed)"
    }
}

/// One slot that did not hold its owner's value.
public struct RaceLoss: Sendable, CustomStringConvertible {
    public var layout: RaceLayout
    public var round: Int
    public var page: Int
    public var writer: Int
    public var byPwrite: Bool
    /// "end of round" or "after writeback and cache drop".
    public var check: String
    public var expected: UInt64
    public var found: UInt64
    /// The slot's file offset.
    public var offset: Int

    public var description: String {
        // A slot's 8 bytes hold the poison of their offsets when memory the engine never
        // wrote or zeroed reached the reader.
        let foundBytes = (0..<8).map { UInt8(truncatingIfNeeded: found >> (8 * UInt64($0))) }
        let expectedBytes = (0..<8).map { UInt8(truncatingIfNeeded: expected >> (8 * UInt64($0))) }
        let poison = PoisonCheck.firstPoison(foundBytes, expected: expectedBytes, fileOffset: offset).map {
            PoisonCheck.message(offset: offset + $0) + ": "
        }
        return (poison ?? "")
            + "layout \(layout.rawValue) round \(round + 1), page \(page): \(byPwrite ? "pwrite" : "mapped") writer \(writer)'s slot "
            + "holds 0x\(String(found, radix: 16)), expected 0x\(String(expected, radix: 16)) (\(check))"
    }
}

/// What a race run found.
public struct RaceReport: Sendable {
    public var config: RaceConfig
    public var roundsRun = 0
    public var slotsChecked = 0
    public var slotsLost = 0
    public var lostByLayout: [String: Int] = [:]
    /// Buffered writes that returned an error or wrote fewer bytes than asked.
    public var failedWrites = 0
    public var cleanupCalls = 0
    public var punchCalls = 0
    /// Mappings found stale after a folio lock (writeback got there first, or injected).
    public var staleMappings = 0
    public var faultsInjected: [String: Int] = [:]
    public var writebackPasses = 0
    public var foliosReclaimed = 0
    /// Writes held up at H1.
    public var writeDelays = 0
    public var elapsedSeconds = 0.0
    /// The first few lost slots.
    public var losses: [RaceLoss] = []
    /// Anything else that went wrong: unexpected errors, invariant violations.
    public var errors: [String] = []

    /// True when no slot was lost and nothing else went wrong.
    public var passed: Bool { slotsLost == 0 && errors.isEmpty }
}

/// The write-delay hook: holds up a pwrite writer at H1 (never a thread exempt from faults,
/// such as a mapped writer's page fault, which also passes H1).
final class RaceDelays: Sendable {
    let micros: Int
    let random: HarnessMutex<SeededRandom>
    let count = Atomic<Int>(0)

    init(_ config: RaceConfig) {
        micros = config.writeDelayMicros
        random = HarnessMutex(SeededRandom(seed: config.seed ^ 0xDE1A))
    }

    func fire(_ event: HookEvent) {
        guard micros > 0, event.point == .afterIomapBegin, !FaultInjector.isExempt else { return }
        guard random.withLock({ Int.random(in: 0..<4, using: &$0) == 0 }) else { return }
        count.add(1, ordering: .relaxed)
        sleepMicroseconds(micros)
    }
}

/// Counters and findings the threads of one run share.
final class RaceShared: Sendable {
    let stop = Atomic<Bool>(false)
    let failedWrites = Atomic<Int>(0)
    let writebackPasses = Atomic<Int>(0)
    let reclaimed = Atomic<Int>(0)
    let errors = HarnessMutex<[String]>([])

    func record(_ error: String) {
        errors.withLock { if $0.count < 20 { $0.append(error) } }
    }
}

/// Runs the race workload and checks every slot; see the file comment.
public func runRace(_ config: RaceConfig, progress: ((String) -> Void)? = nil) -> RaceReport {
    precondition(config.problem == nil, config.problem ?? "")
    var report = RaceReport(config: config)
    let start = ContinuousClock.now
    let injector = FaultInjector(seed: config.seed ^ 0x7261_6365, rates: config.faultRates)
    let delays = RaceDelays(config)
    let fsConfig = ExtentFSConfig(
        blockSize: config.blockSize, maxFolioSize: 2 << 20, cleanupPolicy: config.policy,
        environment: IOMapEnvironment(faults: injector, hook: { delays.fire($0) }))
    // Room for the file twice over: an injected ENOSPC is the only kind there is.
    let fileSystem = TestFileSystem(config.backing, dataBytes: 2 * config.fileSize + (16 << 20), config: fsConfig)
    let fs = fileSystem.fs
    let file = fileSystem.createFile()
    let shared = RaceShared()

    func elapsed() -> Double { (ContinuousClock.now - start).inSeconds }

    layoutLoop: for (layoutIndex, layout) in config.layouts.enumerated() {
        for round in 0..<config.rounds {
            if let problem = FaultInjector.exempting({ raceLayOut(file, layout, size: config.fileSize) }) {
                shared.record("laying out \(layout.rawValue) for round \(round + 1): \(problem)")
                break layoutLoop
            }
            raceRound(file, config, layout: layoutIndex, round: round, shared: shared)
            FaultInjector.exempting {
                raceCheck(file, fs, config, layout: layoutIndex, round: round, shared: shared, report: &report)
            }
            report.roundsRun += 1
            progress?(
                "race: \(layout.rawValue) round \(round + 1)/\(config.rounds): \(report.slotsChecked) slots checked, "
                    + "\(report.slotsLost) lost, \(shared.failedWrites.load(ordering: .relaxed)) failed writes, "
                    + "\(file.inode.stats.cleanups) cleanups (\(String(format1: elapsed())) s)")
            if !shared.errors.withLock({ $0.isEmpty }) { break layoutLoop }
        }
    }
    report.writeDelays = delays.count.load(ordering: .relaxed)
    report.failedWrites = shared.failedWrites.load(ordering: .relaxed)
    report.writebackPasses = shared.writebackPasses.load(ordering: .relaxed)
    report.foliosReclaimed = shared.reclaimed.load(ordering: .relaxed)
    report.cleanupCalls = file.inode.stats.cleanups
    report.punchCalls = file.inode.stats.punches
    report.staleMappings = file.inode.stats.staleMappings
    for (site, n) in injector.injectedCounts { report.faultsInjected[site.rawValue] = n }
    report.errors = shared.errors.withLock { $0 }
    report.elapsedSeconds = elapsed()
    return report
}

extension String {
    /// `x` with one decimal.
    init(format1 x: Double) {
        let tenths = Int((x * 10).rounded())
        self = "\(tenths / 10).\(abs(tenths % 10))"
    }
}

/// Empties the file and lays it out afresh, clean and out of the cache; returns what failed.
func raceLayOut(_ file: ExtentFile, _ layout: RaceLayout, size: Int) -> String? {
    do throws(Errno) {
        try file.truncate(to: 0)
        switch layout {
        case .hole:
            try file.truncate(to: size)
        case .unwritten:
            try file.allocate(offset: 0, length: size, keepSize: false)
        case .written:
            try file.truncate(to: size)
            let zeroes = [UInt8](repeating: 0, count: 1 << 20)
            for offset in stride(from: 0, to: size, by: zeroes.count) {
                try file.mappedStore(Array(zeroes.prefix(size - offset)), at: offset)
            }
        }
        try file.fsync()
    } catch {
        return "failed with \(error.symbolicName)"
    }
    file.dropCaches()
    return nil
}

/// One round: the writers store their values into every page while writeback and reclaim
/// run beside them.
func raceRound(_ file: ExtentFile, _ config: RaceConfig, layout: Int, round: Int, shared: RaceShared) {
    shared.stop.store(false, ordering: .relaxed)
    let background = [
        JoinableThread { FaultInjector.exempting { raceFlusher(file, config, layout: layout, round: round, shared: shared) } },
        JoinableThread { FaultInjector.exempting { raceReclaimer(file, config, layout: layout, round: round, shared: shared) } },
    ]
    let barrier = ThreadBarrier(count: config.writers)
    runOnThreads(config.writers) { w in
        var rng = SeededRandom(seed: config.seed ^ UInt64(layout) << 40 ^ UInt64(round) << 20 ^ UInt64(w + 1) &* 0x9E37_79B9)
        let slot = config.slotOffset(writer: w)
        let pwrite = config.isPwriteWriter(w)
        var order: [Int] = []
        for stripeStart in stride(from: 0, to: config.pages, by: config.stripePages) {
            order = Array(stripeStart..<min(stripeStart + config.stripePages, config.pages))
            order.shuffle(using: &rng)
            barrier.wait()
            for page in order {
                let value = config.value(writer: w, layout: layout, round: round, page: page)
                let offset = page * pageSize + slot
                if pwrite {
                    racePwrite(file, value, at: offset, faultRate: config.failRate / 2, rng: &rng, shared: shared)
                } else {
                    FaultInjector.exempting { raceStore(file, value, at: offset, shared: shared) }
                }
            }
        }
        barrier.wait()
    }
    shared.stop.store(true, ordering: .relaxed)
    for t in background { t.join() }
}

/// Writes the 8 bytes of `value` at `offset` with pwrite, again and again until they are
/// all written, as a program that checks write()'s result does. With probability
/// `faultRate` a call's buffer cannot be read from a random byte on, as if that part of it
/// were unmapped: the write fails with EFAULT or comes back short, the seed commit's
/// failing write.
func racePwrite(
    _ file: ExtentFile, _ value: UInt64, at offset: Int, faultRate: Double, rng: inout SeededRandom, shared: RaceShared
) {
    withUnsafeBytes(of: value.littleEndian) { bytes in
        var done = 0
        var attempts = 0
        while done < bytes.count {
            attempts += 1
            if attempts > 10_000 {
                shared.record("pwrite of 8 bytes at \(offset) made no progress in 10000 attempts")
                return
            }
            let remaining = bytes.count - done
            let faultOffset = Double.random(in: 0..<1, using: &rng) < faultRate ? Int.random(in: 0..<remaining, using: &rng) : nil
            do throws(Errno) {
                let n = try file.write(
                    UnsafeRawBufferPointer(rebasing: bytes[done...]), at: offset + done, faultOffset: faultOffset)
                if n < bytes.count - done { shared.failedWrites.add(1, ordering: .relaxed) }
                done += n
            } catch {
                shared.failedWrites.add(1, ordering: .relaxed)
                if error != .badAddress && error != .noSpace {
                    shared.record("pwrite of 8 bytes at \(offset) failed with \(error.symbolicName)")
                    return
                }
            }
        }
    }
}

/// Stores the 8 bytes of `value` at `offset` through the shared mapping.
func raceStore(_ file: ExtentFile, _ value: UInt64, at offset: Int, shared: RaceShared) {
    withUnsafeBytes(of: value.littleEndian) { bytes in
        do throws(Errno) {
            try file.mappedStore(bytes, at: offset)
        } catch {
            shared.record("mapped store of 8 bytes at \(offset) failed with \(error.symbolicName)")
        }
    }
}

/// Writes back random stretches of the file until the round ends, as the flusher does.
func raceFlusher(_ file: ExtentFile, _ config: RaceConfig, layout: Int, round: Int, shared: RaceShared) {
    var rng = SeededRandom(seed: config.seed ^ 0xF1 ^ UInt64(layout) << 40 ^ UInt64(round) << 20)
    let span = max(pageSize, config.fileSize / 8)
    while !shared.stop.load(ordering: .relaxed) {
        let start = roundDown(Int.random(in: 0..<config.fileSize, using: &rng), pageSize)
        let result = file.writeback(ByteRange(start: start, length: span))
        if let error = result.error { shared.record("writeback failed with \(error.symbolicName)") }
        shared.writebackPasses.add(1, ordering: .relaxed)
        yieldProcessor()
    }
}

/// Evicts clean folios until the round ends, as memory pressure does.
func raceReclaimer(_ file: ExtentFile, _ config: RaceConfig, layout: Int, round: Int, shared: RaceShared) {
    var rng = SeededRandom(seed: config.seed ^ 0xEC ^ UInt64(layout) << 40 ^ UInt64(round) << 20)
    while !shared.stop.load(ordering: .relaxed) {
        let target = Int.random(in: 0...(file.mapping.cachedBytes / 2), using: &rng)
        shared.reclaimed.add(file.reclaim(targetBytes: target), ordering: .relaxed)
        yieldProcessor()
    }
}

/// The quiet-point checks after a round: the invariants, every slot, then writeback and a
/// full cache drop and every slot again.
func raceCheck(
    _ file: ExtentFile, _ fs: ExtentFS, _ config: RaceConfig, layout: Int, round: Int, shared: RaceShared,
    report: inout RaceReport
) {
    for problem in file.invariantViolations().prefix(3) { shared.record("after round \(round + 1): \(problem)") }
    if let problem = fs.checkSpaceAccounting() { shared.record("after round \(round + 1): \(problem)") }
    raceCheckSlots(file, config, layout: layout, round: round, check: "end of round", shared: shared, report: &report)
    do throws(Errno) {
        try file.fsync()
    } catch {
        shared.record("fsync after round \(round + 1) failed with \(error.symbolicName)")
    }
    file.dropCaches()
    if file.mapping.cachedBytes != 0 { shared.record("\(file.mapping.cachedBytes) bytes still cached after fsync and a cache drop") }
    if file.delallocBlocks != 0 { shared.record("\(file.delallocBlocks) delalloc blocks left after fsync") }
    raceCheckSlots(
        file, config, layout: layout, round: round, check: "after writeback and cache drop", shared: shared, report: &report)
}

func raceCheckSlots(
    _ file: ExtentFile, _ config: RaceConfig, layout: Int, round: Int, check: String, shared: RaceShared,
    report: inout RaceReport
) {
    let chunk = 1 << 20
    var buffer = [UInt8](repeating: 0, count: chunk)
    for chunkStart in stride(from: 0, to: config.fileSize, by: chunk) {
        let result = buffer.withUnsafeMutableBytes { p in
            Result { () throws(Errno) -> Int in try file.read(into: p, at: chunkStart) }
        }
        guard case .success(let n) = result else {
            if case .failure(let error) = result {
                shared.record("read of [\(chunkStart), \(chunkStart + chunk)) failed with \(error.symbolicName)")
            }
            return
        }
        if n != min(chunk, config.fileSize - chunkStart) {
            shared.record("read at \(chunkStart) returned \(n) bytes; the file is \(file.size) bytes, expected \(config.fileSize)")
            return
        }
        for pageOffset in stride(from: 0, to: n, by: pageSize) {
            let page = (chunkStart + pageOffset) / pageSize
            for w in 0..<config.writers {
                let at = pageOffset + config.slotOffset(writer: w)
                let found = buffer.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)) }
                let expected = config.value(writer: w, layout: layout, round: round, page: page)
                report.slotsChecked += 1
                guard found != expected else { continue }
                report.slotsLost += 1
                report.lostByLayout[config.layouts[layout].rawValue, default: 0] += 1
                if report.losses.count < 10 {
                    report.losses.append(
                        RaceLoss(
                            layout: config.layouts[layout], round: round, page: page, writer: w,
                            byPwrite: config.isPwriteWriter(w), check: check, expected: expected, found: found,
                            offset: chunkStart + at))
                }
            }
        }
    }
}
