// Counterpart: fstests' generic/346 (the holetest workload) run through real system calls:
// threads storing through a MAP_SHARED mapping of a file while other threads pwrite into the
// same pages from user buffers whose tail is a PROT_NONE page, so the kernel's copy faults.
//
// `runRace` (IOMapTesting) runs this race on the engine, with injected faults. This is the
// same race on a real file in a directory, so the running kernel's page cache (tmpfs, XFS)
// or a FUSE mount (the engine behind /dev/fuse) is what must keep every store. The faults
// are real: a pwrite whose buffer becomes unreadable after k of its 8 bytes returns k, or
// EFAULT when k is 0, and the writer writes the rest again from a readable buffer. Every
// writer owns an 8-byte slot in every page; the value it puts there names the writer, the
// layout, the round and the page, so a slot that reads back as anything else (zero, an
// earlier round's value, another page's) was lost. Slots are checked with pread twice per
// round: while the mapping is still live (its dirty pages not yet written back), and after
// munmap, fsync and a cache drop.
//
// Threads run for real, so a run is not replayable step by step; the seed fixes which
// writes fault and where, and each writer's page order, and is printed.

import CKernelShim
import Foundation
import IOMapBase
import IOMapTesting

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// How the page cache is dropped after each round's fsync.
public enum RaceCacheDrop: String, Sendable, CaseIterable {
    /// posix_fadvise(POSIX_FADV_DONTNEED) on the file: its clean pages only; needs no privilege.
    case fadvise
    /// `echo 1 > /proc/sys/vm/drop_caches` as well: every clean page of the machine (root only).
    case global
}

/// A race on a real file: the options of `iomap race --dir`.
public struct FileRaceConfig: Sendable, RaceShape {
    public var directory: String
    public var seed: UInt64
    public var sizeMiB = 16
    public var layouts: [RaceLayout] = RaceLayout.allCases
    public var mappedWriters = 2
    public var pwriteWriters = 1
    public var rounds = 8
    /// The probability that a pwrite's buffer turns unreadable partway.
    public var failRate = 0.05
    public var stripePages = 8
    public var cacheDrop: RaceCacheDrop = .fadvise
    /// After every failed pwrite, punch the page it failed in (as Linux's failure cleanup
    /// truncated the page cache before commit f43dc4dc3eff): stores there are lost.
    public var canary = false

    public init(directory: String, seed: UInt64) {
        self.directory = directory
        self.seed = seed
    }

    /// The engine harness's configuration with these counts: it fixes the slot layout and
    /// the values, so both harnesses put the same bytes in the same places.
    var slots: RaceConfig {
        var c = RaceConfig(seed: seed)
        c.sizeMiB = sizeMiB
        c.mappedWriters = mappedWriters
        c.pwriteWriters = pwriteWriters
        c.rounds = rounds
        c.failRate = failRate
        c.stripePages = stripePages
        c.layouts = layouts
        return c
    }

    public var pages: Int { slots.pages }
    public var writers: Int { mappedWriters + pwriteWriters }

    public var problem: String? {
        if let p = slots.problem { return p }
        if cacheDrop == .global && geteuid() != 0 { return "--drop-caches global writes /proc/sys/vm/drop_caches and needs root" }
        return nil
    }

    /// The command that runs this configuration again.
    public var command: String {
        let all = layouts.count == RaceLayout.allCases.count
        return "iomap race --dir \(directory) --size \(sizeMiB) --layout \(all ? "all" : layouts.map(\.rawValue).joined(separator: ","))"
            + " --mapped-writers \(mappedWriters) --pwrite-writers \(pwriteWriters) --rounds \(rounds) --fail-rate \(failRate)"
            + " --stripe-pages \(stripePages) --drop-caches \(cacheDrop.rawValue)\(canary ? " --canary" : "") --seed \(seed)"
    }
}

/// One slot that did not hold its owner's value.
public struct FileRaceLoss: Sendable, CustomStringConvertible {
    public var layout: RaceLayout
    public var round: Int
    public var page: Int
    public var writer: Int
    public var mapped: Bool
    /// "live mapping" or "after fsync and cache drop".
    public var when: String
    public var expected: UInt64
    public var found: UInt64

    public var description: String {
        let kind = mapped ? "mapped writer" : "pwrite writer"
        return
            "\(layout.rawValue) round \(round) page \(page), \(kind) \(writer), \(when): expected 0x\(String(expected, radix: 16)), read 0x\(String(found, radix: 16))"
    }
}

/// What a race on a real file found.
public struct FileRaceReport: Sendable {
    public var dirFSType = ""
    public var roundsRun = 0
    public var slotsChecked = 0
    public var slotsLost = 0
    /// Of those, the mapped writers' slots (the stores the generic/346 race is about).
    public var mappedSlotsLost = 0
    /// pwrites that wrote less than asked (a short count or EFAULT).
    public var failedWrites = 0
    public var shortWrites = 0
    public var efaultWrites = 0
    /// Pages the canary punched.
    public var canaryPunches = 0
    public var lostByLayout: [String: Int] = [:]
    /// The first losses (at most 20).
    public var losses: [FileRaceLoss] = []
    /// System calls that failed in a way the race does not allow (with the call and errno).
    public var errors: [String] = []
    public var elapsedSeconds = 0.0
    public var passed: Bool { slotsLost == 0 && errors.isEmpty }
}

/// Runs the race on a new file in `config.directory` (removed afterwards).
public func runFileRace(_ config: FileRaceConfig, progress: (String) -> Void = { _ in }) throws(Errno) -> FileRaceReport {
    let start = ContinuousClock.now
    let file = try KernelFile(directory: config.directory, name: "iomap-race-\(config.seed)")
    defer { try? FileManager.default.removeItem(atPath: file.path) }
    var report = FileRaceReport()
    report.dirFSType = file.fileSystemType
    for (l, layout) in config.layouts.enumerated() {
        for round in 0..<config.rounds {
            let tally = runFileRaceRound(config, file, layout: layout, layoutIndex: l, round: round, report: &report)
            progress("\(layout.rawValue) round \(round): \(tally)")
            report.roundsRun += 1
            if !report.errors.isEmpty { break }
        }
        if !report.errors.isEmpty { break }
    }
    report.elapsedSeconds = (ContinuousClock.now - start).inSeconds
    return report
}

/// The state the writer threads of one round share: the mapping, the barrier, and what
/// they counted.
// Guarded by: `lock` for the counters and errors; the mapping is written only at slot
// offsets each writer owns, and set up and torn down while no writer runs.
private final class RoundShared: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let barrier: Barrier
    let lock = NSLock()
    var failed = 0
    var short = 0
    var efault = 0
    var punches = 0
    var errors: [String] = []

    init(base: UnsafeMutableRawPointer, parties: Int) {
        self.base = base
        barrier = Barrier(parties: parties)
    }

    func record(_ error: String) { lock.withLock { if errors.count < 20 { errors.append(error) } } }
}

/// A reusable barrier for the writers' stripes.
// Guarded by: `condition` (its lock) for every field.
private final class Barrier: @unchecked Sendable {
    let condition = NSCondition()
    let parties: Int
    var waiting = 0
    var generation = 0

    init(parties: Int) { self.parties = parties }

    func wait() {
        condition.lock()
        defer { condition.unlock() }
        let mine = generation
        waiting += 1
        if waiting == parties {
            waiting = 0
            generation += 1
            condition.broadcast()
            return
        }
        while generation == mine { condition.wait() }
    }
}

/// One round: lay the file out, map it, run the writers, check every slot live, then
/// unmap, fsync, drop the cache and check again. Returns a one-line tally.
private func runFileRaceRound(
    _ config: FileRaceConfig, _ file: KernelFile, layout: RaceLayout, layoutIndex: Int, round: Int, report: inout FileRaceReport
) -> String {
    let size = config.slots.fileSize
    if let e = layOut(file, layout, size: size) {
        report.errors.append("laying out \(layout.rawValue) round \(round): \(e)")
        return "layout failed"
    }
    guard let map = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, file.fd, 0), map != MAP_FAILED else {
        report.errors.append("mmap of \(size) bytes: \(Errno(rawValue: errno).symbolicName)")
        return "mmap failed"
    }
    let shared = RoundShared(base: map, parties: config.writers)
    let group = DispatchGroup()
    for w in 0..<config.writers {
        group.enter()
        let thread = Thread {
            fileRaceWriter(config, file, writer: w, layoutIndex: layoutIndex, round: round, shared: shared)
            group.leave()
        }
        thread.start()
    }
    group.wait()
    report.failedWrites += shared.failed
    report.shortWrites += shared.short
    report.efaultWrites += shared.efault
    report.canaryPunches += shared.punches
    report.errors += shared.errors
    let before = report.slotsLost
    checkSlots(config, file, layout: layout, layoutIndex: layoutIndex, round: round, when: "live mapping", report: &report)
    if munmap(map, size) != 0 { report.errors.append("munmap: \(Errno(rawValue: errno).symbolicName)") }
    if case .failure(let e) = file.fsync() { report.errors.append("fsync after round \(round): \(e.symbolicName)") }
    if let e = dropCache(file, config.cacheDrop) { report.errors.append("cache drop after round \(round): \(e)") }
    checkSlots(config, file, layout: layout, layoutIndex: layoutIndex, round: round, when: "after fsync and cache drop", report: &report)
    return "\(shared.failed) failed writes, \(report.slotsLost - before) slots lost"
}

/// Truncates the file to nothing and lays it out again: a hole, unwritten extents
/// (fallocate), or written zeroes (pwrite and fsync).
private func layOut(_ file: KernelFile, _ layout: RaceLayout, size: Int) -> String? {
    if case .failure(let e) = file.truncate(to: 0) { return "ftruncate 0: \(e.symbolicName)" }
    switch layout {
    case .hole:
        if case .failure(let e) = file.truncate(to: size) { return "ftruncate \(size): \(e.symbolicName)" }
    case .unwritten:
        if case .failure(let e) = file.fallocate(offset: 0, length: size, mode: .allocate(keepSize: false)) {
            return "fallocate \(size): \(e.symbolicName)"
        }
    case .written:
        let zeroes = [UInt8](repeating: 0, count: 1 << 20)
        var at = 0
        while at < size {
            let n = min(zeroes.count, size - at)
            if case .failure(let e) = file.write(Array(zeroes[0..<n]), at: at) { return "pwrite of zeroes at \(at): \(e.symbolicName)" }
            at += n
        }
        if case .failure(let e) = file.fsync() { return "fsync: \(e.symbolicName)" }
    }
    return nil
}

/// fsync'd pages out of the cache, so the second check reads what the file system kept.
private func dropCache(_ file: KernelFile, _ how: RaceCacheDrop) -> String? {
    if case .failure(let e) = file.dropCache() { return "posix_fadvise(DONTNEED): \(e.symbolicName)" }
    if how == .global {
        do {
            try "1\n".write(toFile: "/proc/sys/vm/drop_caches", atomically: false, encoding: .utf8)
        } catch {
            return "writing /proc/sys/vm/drop_caches: \(error)"
        }
    }
    return nil
}

/// One writer: through the file a stripe of pages at a time (all writers in the same
/// stripe, each in its own random order), putting its value into its slot of every page.
private func fileRaceWriter(
    _ config: FileRaceConfig, _ file: KernelFile, writer w: Int, layoutIndex: Int, round: Int, shared: RoundShared
) {
    let slots = config.slots
    var rng = SeededRandom(seed: config.seed ^ UInt64(w + 1) << 52 ^ UInt64(layoutIndex + 1) << 44 ^ UInt64(round + 1) << 24)
    let guarded = GuardedBuffer()
    let slot = slots.slotOffset(writer: w)
    var stripe = 0
    while stripe < slots.pages {
        let end = min(slots.pages, stripe + config.stripePages)
        for page in Array(stripe..<end).shuffled(using: &rng) {
            let value = slots.value(writer: w, layout: layoutIndex, round: round, page: page)
            let offset = page * pageSize + slot
            if slots.isPwriteWriter(w) {
                failingPwrite(file, value, at: offset, config: config, guarded: guarded, rng: &rng, shared: shared)
            } else {
                shared.base.storeBytes(of: value.littleEndian, toByteOffset: offset, as: UInt64.self)
            }
        }
        shared.barrier.wait()
        stripe = end
    }
}

/// Two anonymous pages, the second PROT_NONE: bytes placed to end at the first page's end
/// are readable, and a write from them that runs on faults there.
private final class GuardedBuffer {
    let base: UnsafeMutableRawPointer
    var edge: UnsafeMutableRawPointer { base + pageSize }

    init() {
        guard let p = mmap(nil, 2 * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED,
            mprotect(p + pageSize, pageSize, PROT_NONE) == 0
        else { fatalError("iomap race: cannot map a guarded buffer: \(Errno(rawValue: errno).symbolicName)") }
        base = p
    }

    deinit { munmap(base, 2 * pageSize) }
}

/// Writes the 8 bytes of `value` at `offset` with pwrite, until all are written. With
/// probability failRate an attempt's buffer holds only the first k of the bytes still to
/// write (k random, possibly 0) before the PROT_NONE page: the kernel returns k, or EFAULT.
private func failingPwrite(
    _ file: KernelFile, _ value: UInt64, at offset: Int, config: FileRaceConfig, guarded: GuardedBuffer,
    rng: inout SeededRandom, shared: RoundShared
) {
    let bytes = withUnsafeBytes(of: value.littleEndian) { Array($0) }
    var done = 0
    var attempts = 0
    while done < 8 {
        attempts += 1
        if attempts > 1000 {
            shared.record("pwrite of 8 bytes at \(offset) made no progress in 1000 attempts")
            return
        }
        let remaining = 8 - done
        let readable = Double.random(in: 0..<1, using: &rng) < config.failRate ? Int.random(in: 0..<remaining, using: &rng) : remaining
        // The readable bytes end where the guard page begins; an unfaulting attempt has all
        // of them before it.
        let source = guarded.edge - readable
        for i in 0..<readable { source.storeBytes(of: bytes[done + i], toByteOffset: i, as: UInt8.self) }
        let n = cks_pwrite_once(file.fd, source, remaining, Int64(offset + done))
        if n == Int64(remaining) {
            done += remaining
            continue
        }
        if n < 0 && n != -Int64(EFAULT) {
            shared.record("pwrite of \(remaining) bytes at \(offset + done) failed with \(Errno(rawValue: Int32(-n)).symbolicName)")
            return
        }
        if n > Int64(readable) {
            shared.record("pwrite at \(offset + done) wrote \(n) bytes from a buffer with \(readable) readable")
            return
        }
        shared.lock.withLock {
            shared.failed += 1
            if n < 0 { shared.efault += 1 } else { shared.short += 1 }
        }
        if n > 0 { done += Int(n) }
        if config.canary { canaryPunch(file, at: offset + done, shared: shared) }
    }
}

/// The canary: the page a write failed in is punched, as Linux's failure cleanup once
/// truncated the page cache over a failed write's range, mapped stores there included.
private func canaryPunch(_ file: KernelFile, at offset: Int, shared: RoundShared) {
    if case .failure(let e) = file.fallocate(offset: roundDown(offset, pageSize), length: pageSize, mode: .punchHole) {
        shared.record("canary punch at \(offset): \(e.symbolicName)")
        return
    }
    shared.lock.withLock { shared.punches += 1 }
}

/// Reads the whole file with pread and compares every writer's slot in every page.
private func checkSlots(
    _ config: FileRaceConfig, _ file: KernelFile, layout: RaceLayout, layoutIndex: Int, round: Int, when: String,
    report: inout FileRaceReport
) {
    let slots = config.slots
    let content: [UInt8]
    switch file.read(count: slots.fileSize, at: 0) {
    case .success(let bytes): content = bytes
    case .failure(let e):
        report.errors.append("pread of the file (\(when)): \(e.symbolicName)")
        return
    }
    for page in 0..<slots.pages {
        for w in 0..<config.writers {
            let offset = page * pageSize + slots.slotOffset(writer: w)
            let expected = slots.value(writer: w, layout: layoutIndex, round: round, page: page)
            var found: UInt64 = 0
            if offset + 8 <= content.count {
                for i in 0..<8 { found |= UInt64(content[offset + i]) << (8 * i) }
            }
            report.slotsChecked += 1
            guard found != expected else { continue }
            report.slotsLost += 1
            if !slots.isPwriteWriter(w) { report.mappedSlotsLost += 1 }
            report.lostByLayout[layout.rawValue, default: 0] += 1
            if report.losses.count < 20 {
                report.losses.append(
                    FileRaceLoss(
                        layout: layout, round: round, page: page, writer: w, mapped: !slots.isPwriteWriter(w), when: when,
                        expected: expected, found: found))
            }
        }
    }
}
