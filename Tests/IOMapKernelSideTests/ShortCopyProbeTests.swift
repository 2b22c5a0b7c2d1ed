// The short-copy probe's own parts: the engine side with its canary (the kernel's write end
// leaves the uncopied range stale; ours leaves nothing), the settings it refuses, the
// init_on_alloc sources it reads, and the kernel side's counting, checked with planted bytes.

import Foundation
import IOMap
import IOMapKernelSide
import IOMapTesting
import Testing

@Suite("Short-copy probe")
struct ShortCopyProbeTests {
    @Test("our write end leaves no stale byte in any of the engine's writes")
    func engineZeroTail() {
        let results = engineShortCopy()
        #expect(results.count == engineShortCopyWrites.count)
        for r in results {
            #expect(r.error == nil, "\(r.name): \(r.error ?? "")")
            #expect(r.written == r.write.readable, "\(r.name): wrote \(r.written)")
            #expect(r.staleInCache == 0 && r.staleOnDisk == 0, "\(r.name): \(r.staleInCache) in cache, \(r.staleOnDisk) on disk")
        }
    }

    @Test("the canary: Linux's write end leaves the uncopied part of the range as the memory held it")
    func engineKernelWriteEnd() {
        let results = engineShortCopy(writeEnd: .kernel)
        for r in results { #expect(r.error == nil, "\(r.name): \(r.error ?? "")") }
        let byName = Dictionary(uniqueKeysWithValues: results.map { ($0.name, $0) })
        // One 4 KiB block: [8592, 8792), the write's range past the copied bytes.
        #expect(byName["4k-hole"]?.staleInCache == 200)
        #expect(byName["4k-hole"]?.staleOnDisk == 200)
        #expect(byName["unwritten"]?.staleInCache == 200)
        #expect(byName["unwritten"]?.staleOnDisk == 200)
        // 1 KiB blocks: the rejected first copy leaves [8692, 11492) uptodate in the cache;
        // writeback takes only the dirty block, [8692, 9216) of it.
        for name in ["1k-hole, 4 KiB folios", "1k-hole, 64 KiB folios"] {
            #expect(byName[name]?.staleInCache == 2800, "\(name)")
            #expect(byName[name]?.staleOnDisk == 524, "\(name)")
        }
        let total = results.reduce(0) { $0 + $1.staleInCache + $1.staleOnDisk }
        #expect(total > 0)
        for r in results {
            print("engine, kernel write end, \(r.name): wrote \(r.written), stale \(r.staleInCache) in cache, \(r.staleOnDisk) on disk")
        }
    }

    /// A setting changed from the defaults, and what the problem must mention (nil: none).
    static let settings: [(change: @Sendable (inout ShortCopyProbeConfig) -> Void, problem: String?)] = [
        ({ _ in }, nil),
        ({ $0.attempts = 0 }, "--attempts"),
        ({ $0.blockSize = 2048 }, "--block-size must be 1024 or 4096"),
        ({ $0.blockSize = 1024 }, nil),
        (
            {
                $0.blockSize = 1024; $0.directory = "/tmp"
            }, "with --dir"
        ),
        ({ $0.user = 0 }, "--user 0 is root"),
        ({ $0.user = -5 }, "--user must be a uid"),
        ({ $0.user = 65534 }, nil),
    ]

    @Test("settings the probe cannot use are named", arguments: settings.indices)
    func problems(row: Int) {
        var c = ShortCopyProbeConfig()
        Self.settings[row].change(&c)
        expectProblem(c.problem, mentions: Self.settings[row].problem)
    }

    @Test("images: a 4096-byte and a 1024-byte one by default, else the one --block-size names")
    func imageBlockSizes() {
        var c = ShortCopyProbeConfig()
        #expect(c.imageBlockSizes == [4096, 1024])
        c.blockSize = 1024
        #expect(c.imageBlockSizes == [1024])
    }

    @Test("cases fit the block sizes they are made for")
    func fits() {
        #expect(ShortCopyCase.allCases.filter { $0.fits(blockSize: 4096) } == [.hole4k, .largeFolio, .unwritten, .unprivileged])
        #expect(ShortCopyCase.allCases.filter { $0.fits(blockSize: 1024) } == [.hole1k, .unprivileged])
        #expect(ShortCopyCase.unprivileged.write(blockSize: 1024) == ShortCopyCase.hole1k.write(blockSize: 1024))
        #expect(ShortCopyCase.unwritten.write(blockSize: 4096).unwritten)
    }

    @Test("init_on_alloc is read from the boot log, the command line and the config")
    func initOnAllocSources() {
        let log = "[    0.1] Memory: 1k\n[    0.177417] mem auto-init: stack:all(zero), heap alloc:off, heap free:off\n"
        #expect(parseMemAutoInit(log)?.value == "off")
        #expect(parseMemAutoInit(log)?.source.hasPrefix("dmesg: mem auto-init:") == true)
        #expect(parseMemAutoInit("[ 0.2] mem auto-init: stack:off, heap alloc:on, heap free:off")?.value == "on")
        #expect(parseMemAutoInit("nothing here") == nil)
        #expect(parseInitOnAllocParameter("quiet init_on_alloc=1 panic=1")?.value == "on")
        #expect(parseInitOnAllocParameter("init_on_alloc=1 init_on_alloc=off\n")?.value == "off")
        #expect(parseInitOnAllocParameter("quiet") == nil)
        #expect(parseInitOnAllocConfig("A=y\n# CONFIG_INIT_ON_ALLOC_DEFAULT_ON is not set\n")?.value == "off")
        #expect(parseInitOnAllocConfig("CONFIG_INIT_ON_ALLOC_DEFAULT_ON=y")?.value == "on")
        #expect(parseInitOnAllocConfig("CONFIG_X=y") == nil)
        let state = initOnAllocState()
        #expect(["on", "off", "unknown"].contains(state.value), "\(state)")
    }

    @Test("the kernel side counts bytes outside the write: planted marker bytes are found, on tmpfs")
    func countingSeesPlantedBytes() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory), isDirectory.boolValue else {
            print("skipped: no /dev/shm")
            return
        }
        var write = ShortCopyCase.hole4k.write(blockSize: 4096)
        write.planted = 50
        let planted = try shortCopyTally(write, in: "/dev/shm", attempts: 3)
        #expect(planted.attempts == 3)
        #expect(planted.writeReturned == [100])
        #expect(planted.staleInCache == 150 && planted.staleOnDisk == 150, "\(planted)")
        #expect(planted.markerInCache == 150 && planted.markerOnDisk == 150, "\(planted)")
        #expect(planted.maxStaleInCache == 50)
        write.planted = 0
        let clean = try shortCopyTally(write.fullyReadable, in: "/dev/shm", attempts: 2)
        #expect(clean.writeReturned == [300])
        #expect(clean.stale == 0, "\(clean)")
    }
}
