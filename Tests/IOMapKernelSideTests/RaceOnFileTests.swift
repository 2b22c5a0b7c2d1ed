// The generic/346 race through system calls on a real file (`runFileRace`, `iomap race
// --dir`): no slot lost on the kernel's own page cache, in a temporary directory and on a
// loop-mounted XFS, with writes really failing; and the canary, which punches the page of
// every failed write, losing mapped writers' slots on both.

import Foundation
import IOMapKernelSide
import IOMapTesting
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("The race on a real file")
struct RaceOnFileTests {
    func config(_ dir: String, canary: Bool) -> FileRaceConfig {
        var c = FileRaceConfig(directory: dir, seed: randomTestSeed())
        c.sizeMiB = 2
        c.rounds = 1
        c.failRate = 0.3
        c.canary = canary
        return c
    }

    /// Runs the race and its canary in `dir`, checking both.
    func raceAndCanary(_ dir: String, fstype: String? = nil) throws {
        let good = config(dir, canary: false)
        print("race on a file: seed \(good.seed) in \(dir) (replay: \(good.command))")
        let r = try runFileRace(good)
        if let fstype { #expect(r.dirFSType == fstype) }
        #expect(r.passed, "\(r.losses.prefix(3)) \(r.errors)\nreplay: \(good.command)")
        #expect(r.slotsChecked == 2 * 3 * 512 * 3, "two checks of every writer's slot in every page of every round")
        #expect(r.failedWrites > 0 && r.shortWrites > 0, "the PROT_NONE tails made writes fail: \(r.failedWrites)")
        let bad = try runFileRace(config(dir, canary: true))
        #expect(!bad.passed && bad.mappedSlotsLost > 0 && bad.canaryPunches == bad.failedWrites, "the canary: \(bad.slotsLost) lost")
    }

    @Test("in a temporary directory: no slot lost; the canary loses mapped writers' slots")
    func temporaryDirectory() throws {
        try HostFiles.withTemporaryDirectory(prefix: "iomap-race-test") { try raceAndCanary($0) }
    }

    @Test(
        "on a loop-mounted XFS: no slot lost; the canary loses mapped writers' slots",
        .enabled(if: DiffTestTests.canMountXFS, "mounting an XFS image needs root and loop devices"))
    func xfs() throws {
        let mount = try XFSLoopMount.make(sizeBytes: 512 << 20)
        defer { mount.unmount() }
        try raceAndCanary(mount.mountPoint, fstype: "xfs")
    }

    @Test("bad settings name the option")
    func problems() {
        var c = FileRaceConfig(directory: "/tmp", seed: 1)
        c.mappedWriters = 0
        c.pwriteWriters = 0
        #expect(c.problem?.contains("writer") == true)
        c = FileRaceConfig(directory: "/tmp", seed: 1)
        c.failRate = 1.5
        #expect(c.problem?.contains("--fail-rate") == true)
    }
}
