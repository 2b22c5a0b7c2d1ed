// Base layer: rounding helpers, range checks, the lock-order checker and the sleeping locks.

@testable import IOMapBase
import Testing

@Suite("Units and ranges")
struct UnitsTests {
    @Test(
        "rounding and block arithmetic are 64-bit, at offsets near 2^44 too", arguments: [0, (1 << 32) + (1 << 20), (1 << 44) - (1 << 20)])
    func rounding(base: Int) {
        let g = BlockGeometry(blockSize: 1024)
        #expect(g.roundDownToBlock(base + 1500) == base + 1024)
        #expect(g.roundUpToBlock(base + 1500) == base + 2048)
        #expect(g.blockIndex(of: base + 2047) == (base >> 10) + 1)
        #expect(g.blocksCovering(base + 1) == (base >> 10) + 1)
        #expect(pageIndex(of: base + 4096) == (base >> 12) + 1)
        #expect(roundUp(base + 4097, 4096) == base + 8192)
    }

    @Test("user ranges: negative is EINVAL, overflow is EINVAL, past the maximum is EFBIG")
    func userRanges() {
        #expect(throws: Errno.invalidArgument) { try checkUserRange(offset: -1, length: 1) }
        #expect(throws: Errno.invalidArgument) { try checkUserRange(offset: 1, length: -1) }
        #expect(throws: Errno.invalidArgument) { try checkUserRange(offset: Int.max, length: 1) }
        #expect(throws: Errno.fileTooLarge) { try checkUserRange(offset: maxFileSize, length: 1) }
        #expect(throws: Never.self) { try checkUserRange(offset: maxFileSize - 1, length: 1) }
    }

    @Test("ByteRange intersection and containment")
    func byteRange() {
        let a = ByteRange(10, 20)
        #expect(a.clamped(to: ByteRange(15, 30)) == ByteRange(15, 20))
        #expect(a.clamped(to: ByteRange(20, 30)) == nil)
        #expect(a.contains(10) && !a.contains(20))
        #expect(a.overlaps(ByteRange(19, 25)) && !a.overlaps(ByteRange(20, 25)))
    }

    @Test("SplitMix64 gives the same sequence for the same seed")
    func seededRandom() {
        var a = SeededRandom(seed: 7)
        var b = SeededRandom(seed: 7)
        var c = SeededRandom(seed: 8)
        let sa = (0..<8).map { _ in a.next() }
        #expect(sa == (0..<8).map { _ in b.next() })
        #expect(sa != (0..<8).map { _ in c.next() })
    }
}

@Suite("Locks")
struct LockTests {
    @Test("the lock-order checker traps on an inversion and names both locks", .enabled(if: LockDep.isEnabled))
    func inversionTraps() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let outer = RWSleepLock(level: .inodeIO, name: "inode I/O lock")
            let inner = RWSleepLock(level: .invalidate, name: "invalidate lock")
            inner.lockExclusive()
            outer.lockExclusive()  // inode lock inside the invalidate lock: inverted
        }
        let message = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(message.contains("acquiring inode I/O lock (order 10) while holding invalidate lock (order 20)"), "\(message)")
    }

    @Test("the checker accepts the documented order and tracks releases", .enabled(if: LockDep.isEnabled))
    func documentedOrder() {
        let io = RWSleepLock(level: .inodeIO, name: "inode I/O lock")
        let inv = RWSleepLock(level: .invalidate, name: "invalidate lock")
        let ilock = OrderedMutex(.extentMap, "extent-map lock", 0)
        io.lockExclusive()
        inv.lockShared()
        ilock.withLock { $0 += 1 }
        #expect(LockDep.heldLevels() == [.inodeIO, .invalidate])
        inv.unlockShared()
        io.unlockExclusive()
        #expect(LockDep.heldLevels().isEmpty)
    }

    @Test("a hook acting as another thread may take outer locks")
    func otherThreadContext() {
        let inv = RWSleepLock(level: .invalidate, name: "invalidate lock")
        let ilock = OrderedMutex(.extentMap, "extent-map lock", 0)
        ilock.withLock { _ in
            LockDep.asOtherThread {
                inv.lockShared()
                inv.unlockShared()
            }
        }
        #expect(LockDep.heldLevels().isEmpty)
    }

    @Test("shared holders exclude an exclusive holder; exclusive ownership is per thread")
    func rwSemantics() {
        let l = RWSleepLock(level: .invalidate, name: "invalidate lock")
        #expect(l.tryLockShared())
        #expect(l.tryLockShared())
        #expect(!l.tryLockExclusive())
        l.unlockShared()
        l.unlockShared()
        l.lockExclusive()
        #expect(l.isHeldExclusiveByCurrentThread)
        #expect(!l.tryLockShared())
        l.unlockExclusive()
        #expect(!l.isLocked)
    }
}

@Suite("Fault injector")
struct FaultInjectorTests {
    @Test("random faults are reproducible from the seed and counted per site")
    func reproducible() {
        func run(_ seed: UInt64) -> [Bool] {
            let f = FaultInjector(seed: seed, rates: [.reserveENOSPC: 0.3])
            return (0..<200).map { f.fails(.reserveENOSPC, offset: $0, length: 1) }
        }
        #expect(run(1) == run(1))
        #expect(run(1) != run(2))
        let f = FaultInjector(seed: 3, rates: [.shortCopy: 1.0])
        let n = f.copyLimit(offset: 0, length: 100)
        #expect(n != nil && n! >= 1 && n! < 100)
        #expect(f.injectedCounts[.shortCopy] == 1)
    }

    @Test("a disabled injector injects nothing")
    func disabled() {
        let f = FaultInjector(seed: 3, rates: [.reserveENOSPC: 1.0])
        f.setEnabled(false)
        #expect(!f.fails(.reserveENOSPC, offset: 0, length: 1))
        f.setEnabled(true)
        #expect(f.fails(.reserveENOSPC, offset: 0, length: 1))
    }
}

@Suite("Warnings")
struct WarningTests {
    @Test("a harness's sink collects the warnings raised on its task, with their site, instead of the verify build trapping")
    func sinkCollects() {
        let sink = WarningSink()
        let raised = Warnings.$sink.withValue(sink) {
            (warnOnce(false, "not raised"), warnOnce(true, "raised once"), warnOnce(true, "raised twice"))
        }
        #expect(raised == (false, true, true))
        #expect(sink.collected.count == 2)
        #expect(sink.collected.first?.hasPrefix("raised once (") == true)
        #expect(sink.collected.first?.contains("IOMapBaseTests.swift") == true, "\(sink.collected)")
        #expect(Warnings.sink == nil, "the sink is bound only inside withValue")
    }
}
