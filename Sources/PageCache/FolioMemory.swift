// Counterpart: the page allocator (mm/page_alloc.c), reduced to what folios need: naturally
// aligned blocks of 4 KiB to 2 MiB.
//
// Why not malloc: a calloc'd folio starts 16 bytes past a page boundary (the allocator's
// header), so every 4 KiB copy into it straddles two pages and runs the CPU's string-move
// fast path on a misaligned destination, measured here at about 1.6 times the cost of the
// same copy into page-aligned memory; and posix_memalign(4096, 4096) wastes most of a second
// page per folio. Here every block is aligned to its own size and carries no header.
//
// Blocks come from 2 MiB arenas mapped from the operating system and split into blocks of
// one size; a freed block goes back on its size's free list and is zeroed when handed out
// again (fresh arena memory is zero already). Nothing is coalesced: the cache's folio sizes
// settle quickly for a workload, and a free list per size is enough. Free blocks stay
// mapped, as the kernel keeps free pages: unmapping a 2 MiB folio and mapping a new one
// costs 512 page faults and the kernel's zeroing of every page, which made writing a new
// file several times slower than rewriting one. `trim()` gives them back.

import IOMapBase
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public enum FolioMemory {
    static let arenaShift = 21
    static let minShift = pageShift
    static let classCount = arenaShift - pageShift + 1

    /// Free blocks per size class (class 0: 4 KiB), as addresses; and the count of blocks
    /// handed out, for tests and the memory benchmark.
    struct Pool {
        var free: [[UInt]] = Array(repeating: [], count: FolioMemory.classCount)
        var inUse = 0
        var arenaBytes = 0
    }

    // A leaf in the lock order: a folio may go away (and free its memory) under any lock.
    static let pool = OrderedMutex(.leaf, "folio memory", Pool())

    /// A zero-filled block of `1 << shift` bytes aligned to its size.
    public static func allocate(shift: Int) -> UnsafeMutableRawPointer {
        precondition(shift >= minShift && shift <= arenaShift, "no folio memory of 2^\(shift) bytes")
        let size = 1 << shift
        let c = shift - minShift
        let recycled = pool.withLock { p -> UInt? in
            p.inUse += 1
            return p.free[c].popLast()
        }
        if let address = recycled {
            let p = UnsafeMutableRawPointer(bitPattern: address)!
            memset(p, 0, size)
            return p
        }
        let arena = mapArena()
        let count = 1 << (arenaShift - shift)
        pool.withLock { p in
            p.arenaBytes += 1 << arenaShift
            let base = UInt(bitPattern: arena)
            // Hand out the first block; the rest go on the free list highest first, so the
            // next allocations walk up the arena in address order.
            if count > 1 { p.free[c].append(contentsOf: (1..<count).reversed().map { base + UInt($0 << shift) }) }
        }
        return arena
    }

    /// Returns a block from `allocate(shift:)`.
    public static func free(_ block: UnsafeMutableRawPointer, shift: Int) {
        pool.withLock {
            $0.inUse -= 1
            $0.free[shift - minShift].append(UInt(bitPattern: block))
        }
    }

    /// Returns the memory of every free block to the operating system (the blocks stay
    /// mapped and come back zero-filled on their next use). Returns the bytes released.
    @discardableResult
    public static func trim() -> Int {
        pool.withLock { p in
            var released = 0
            for c in 0..<classCount {
                let size = 1 << (c + minShift)
                for address in p.free[c] {
                    madvise(UnsafeMutableRawPointer(bitPattern: address), size, MADV_DONTNEED)
                    released += size
                }
            }
            return released
        }
    }

    /// Blocks handed out and not yet freed.
    public static var blocksInUse: Int { pool.withLock { $0.inUse } }

    /// Bytes mapped from the operating system for folios.
    public static var mappedBytes: Int { pool.withLock { $0.arenaBytes } }

    /// Maps 2 MiB aligned to 2 MiB: maps twice that and unmaps the unaligned ends.
    static func mapArena() -> UnsafeMutableRawPointer {
        let size = 1 << arenaShift
        guard let raw = mmap(nil, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), raw != MAP_FAILED else {
            fatalError("out of memory mapping \(2 * size) bytes for folios")
        }
        let start = UInt(bitPattern: raw)
        let aligned = (start + UInt(size) - 1) & ~(UInt(size) - 1)
        if aligned > start { munmap(raw, Int(aligned - start)) }
        let tail = aligned + UInt(size)
        let end = start + UInt(2 * size)
        if end > tail { munmap(UnsafeMutableRawPointer(bitPattern: tail), Int(end - tail)) }
        return UnsafeMutableRawPointer(bitPattern: aligned)!
    }
}
