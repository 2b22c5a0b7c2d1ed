// The folio allocator: blocks aligned to their size, holding what the fill says when handed
// out (fresh or recycled). Its counters are process-wide and other tests allocate folios in
// parallel, so they are not asserted here.

import IOMapBase
@testable import PageCache
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Folio memory")
struct FolioMemoryTests {
    /// Every 512th byte of a block, and its last.
    static func samples(_ size: Int) -> [Int] { Array(stride(from: 0, to: size, by: 512)) + [size - 1] }

    @Test(
        "every block is aligned to its size and zeroed under the zero fill, also when it is handed out again",
        arguments: [12, 13, 16, 20, 21])
    func alignedAndZero(shift: Int) {
        let size = 1 << shift
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<3 {
            let p = FolioMemory.allocate(shift: shift, fill: .zero)
            #expect(UInt(bitPattern: p) & UInt(size - 1) == 0, "block of \(size) bytes at \(p) is not aligned")
            let bytes = p.assumingMemoryBound(to: UInt8.self)
            #expect(Self.samples(size).allSatisfy { bytes[$0] == 0 })
            p.initializeMemory(as: UInt8.self, repeating: 0xA5, count: size)
            blocks.append(p)
        }
        #expect(Set(blocks).count == 3)
        for p in blocks { FolioMemory.free(p, shift: shift) }
        // Handed out again (from the free list for sizes below 2 MiB): zero once more.
        for _ in 0..<3 {
            let p = FolioMemory.allocate(shift: shift, fill: .zero)
            let bytes = p.assumingMemoryBound(to: UInt8.self)
            #expect(Self.samples(size).allSatisfy { bytes[$0] == 0 }, "a recycled \(size)-byte block was not zeroed")
            blocks.append(p)
        }
        for p in blocks.suffix(3) { FolioMemory.free(p, shift: shift) }
    }

    @Test(
        "under the poison fill every byte of a block holds the poison of its offset, also when handed out again", arguments: [12, 16, 21])
    func poisoned(shift: Int) {
        let size = 1 << shift
        for round in 0..<2 {
            let p = FolioMemory.allocate(shift: shift, fill: .poison)
            let bytes = p.assumingMemoryBound(to: UInt8.self)
            let wrong = (0..<size).first { !FolioMemory.isPoison(bytes[$0], atFileOffset: $0) }
            #expect(wrong == nil, "round \(round): byte \(wrong ?? -1) of a \(size)-byte block is not poison")
            // As a folio at any aligned file offset sees it.
            #expect(FolioMemory.isPoison(bytes[5], atFileOffset: 5 + (7 << 20)))
            p.initializeMemory(as: UInt8.self, repeating: 0, count: size)
            FolioMemory.free(p, shift: shift)
        }
    }

    @Test("the poison pattern is what the checkers look for, and zero is never poison")
    func pattern() {
        #expect(FolioMemory.poisonPattern == [0xDE, 0xAD, 0xF0, 0x11, 0x0D, 0xEA, 0xDF, 0x01])
        for offset in 0..<16 {
            #expect(FolioMemory.poisonByte(atFileOffset: offset) == FolioMemory.poisonPattern[offset % 8])
            #expect(!FolioMemory.isPoison(0, atFileOffset: offset))
        }
    }

    @Test("a freed block is handed out again with the bytes it held")
    func asIs() {
        // A pool of the test's own: the process's pool is shared with tests running in
        // parallel, which may take the freed block first.
        var pool = FolioMemory.Pool()
        let p = pool.carve(FolioMemory.mapArena(), shift: 15)
        p.initializeMemory(as: UInt8.self, repeating: 0x3C, count: 1 << 15)
        pool.push(p, shift: 15)
        let q = pool.popFree(shift: 15)
        #expect(q == p)
        #expect(q?.load(fromByteOffset: 100, as: UInt8.self) == 0x3C)
        munmap(p, 1 << FolioMemory.arenaShift)
    }

    @Test("a folio's bytes are aligned to the folio's size")
    func folioUsesIt() {
        for size in [4096, 16384, 2 << 20] {
            let f = Folio(pos: 4 << 20, size: size, blockShift: 12)
            #expect(UInt(bitPattern: f.data) & UInt(size - 1) == 0)
        }
    }

    @Test("trim releases free blocks, which read as zeroes until written again")
    func trim() {
        var pool = FolioMemory.Pool()
        let arena = FolioMemory.mapArena()
        let p = pool.carve(arena, shift: 14)
        p.initializeMemory(as: UInt8.self, repeating: 0x5A, count: 16384)
        // A block in use keeps its bytes through the trim.
        let held = pool.popFree(shift: 14)!
        held.initializeMemory(as: UInt8.self, repeating: 0x77, count: 16384)
        pool.push(p, shift: 14)
        let blocks = (1 << FolioMemory.arenaShift) / 16384
        #expect(pool.trim() == (blocks - 1) * 16384)
        let q = pool.popFree(shift: 14)
        #expect(q == p)
        let bytes = p.assumingMemoryBound(to: UInt8.self)
        #expect(bytes[0] == 0 && bytes[16383] == 0)
        #expect(held.load(fromByteOffset: 16383, as: UInt8.self) == 0x77)
        munmap(arena, 1 << FolioMemory.arenaShift)
    }

    @Test("the process's pool hands out size-aligned blocks and takes them back")
    func processPool() {
        let p = FolioMemory.allocate(shift: 14, fill: .zero)
        #expect(UInt(bitPattern: p) & 16383 == 0)
        #expect(p.load(fromByteOffset: 16383, as: UInt8.self) == 0)
        FolioMemory.free(p, shift: 14)
    }

    @Test("verify builds poison folio memory unless IOMAP_POISON_FOLIOS says otherwise")
    func defaultFill() {
        #expect(FolioMemory.defaultFill == (verifyBuild ? .poison : .asIs))
    }
}
