// The folio allocator: blocks aligned to their size, zero when handed out (fresh or
// recycled). Its counters are process-wide and other tests allocate folios in parallel, so
// they are not asserted here.

import IOMapBase
import PageCache
import Testing

@Suite("Folio memory")
struct FolioMemoryTests {
    @Test("every block is aligned to its size and zero-filled, also when it is handed out again", arguments: [12, 13, 16, 20, 21])
    func alignedAndZero(shift: Int) {
        let size = 1 << shift
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<3 {
            let p = FolioMemory.allocate(shift: shift)
            #expect(UInt(bitPattern: p) & UInt(size - 1) == 0, "block of \(size) bytes at \(p) is not aligned")
            let bytes = p.assumingMemoryBound(to: UInt8.self)
            #expect(bytes[0] == 0 && bytes[size / 2] == 0 && bytes[size - 1] == 0)
            p.initializeMemory(as: UInt8.self, repeating: 0xA5, count: size)
            blocks.append(p)
        }
        #expect(Set(blocks).count == 3)
        for p in blocks { FolioMemory.free(p, shift: shift) }
        // Handed out again (from the free list for sizes below 2 MiB): zero once more.
        for _ in 0..<3 {
            let p = FolioMemory.allocate(shift: shift)
            let bytes = p.assumingMemoryBound(to: UInt8.self)
            var nonZero = 0
            for i in stride(from: 0, to: size, by: 512) where bytes[i] != 0 { nonZero += 1 }
            #expect(nonZero == 0, "a recycled \(size)-byte block was not zeroed")
            blocks.append(p)
        }
        for p in blocks.suffix(3) { FolioMemory.free(p, shift: shift) }
    }

    @Test("a folio's bytes are aligned to the folio's size")
    func folioUsesIt() {
        for size in [4096, 16384, 2 << 20] {
            let f = Folio(pos: 4 << 20, size: size, blockShift: 12)
            #expect(UInt(bitPattern: f.data) & UInt(size - 1) == 0)
        }
    }

    @Test("trim releases free blocks, which come back zero-filled")
    func trim() {
        let p = FolioMemory.allocate(shift: 14)
        p.initializeMemory(as: UInt8.self, repeating: 0x5A, count: 16384)
        FolioMemory.free(p, shift: 14)
        // (Other tests allocate in parallel, so how much is released is not asserted.)
        FolioMemory.trim()
        let q = FolioMemory.allocate(shift: 14)
        let bytes = q.assumingMemoryBound(to: UInt8.self)
        #expect(bytes[0] == 0 && bytes[16383] == 0)
        FolioMemory.free(q, shift: 14)
    }
}
