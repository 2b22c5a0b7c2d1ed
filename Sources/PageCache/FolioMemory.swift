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
// one size; a freed block goes back on its size's free list and is handed out again as it
// is. Nothing is coalesced: the cache's folio sizes
// settle quickly for a workload, and a free list per size is enough. Free blocks stay
// mapped, as the kernel keeps free pages: unmapping a 2 MiB folio and mapping a new one
// costs 512 page faults and the kernel's zeroing of every page, which made writing a new
// file several times slower than rewriting one. `trim()` gives them back.
//
// What a new folio holds is `FolioMemory.fill`. As from the kernel's page allocator (without
// init_on_alloc), memory handed out may hold anything: a recycled block keeps the bytes of
// whatever folio had it last. The engine must zero or read every byte it lets a reader see,
// and the poison fill proves it does: every block handed out is filled with a recognisable
// pattern, and the checkers name a poison byte that reaches a reader, a mapping, the disk or
// a model comparison. Verify builds poison by default; `IOMAP_POISON_FOLIOS=1` (or `0`)
// turns it on (or off) in any build, for every tool.

import IOMapBase
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What the memory of a new folio holds.
public enum FolioFill: UInt8, Sendable, CaseIterable {
    /// Whatever the block held before: zeroes from a fresh arena, a previous folio's bytes
    /// from a free list (the kernel's page allocator without init_on_alloc).
    case asIs
    /// Zeroes (init_on_alloc=1).
    case zero
    /// The poison pattern (`FolioMemory.poisonPattern`), so that memory never written or
    /// zeroed is recognisable wherever it surfaces.
    case poison
}

public enum FolioMemory {
    static let arenaShift = 21
    static let minShift = pageShift
    static let classCount = arenaShift - pageShift + 1

    /// Free blocks per size class (class 0: 4 KiB), as addresses. The process has one, `pool`;
    /// a test makes its own to watch blocks no other test can take.
    struct Pool {
        var free: [[UInt]] = Array(repeating: [], count: FolioMemory.classCount)

        /// A free block of `1 << shift` bytes, if the pool has one.
        mutating func popFree(shift: Int) -> UnsafeMutableRawPointer? {
            free[shift - minShift].popLast().map { UnsafeMutableRawPointer(bitPattern: $0)! }
        }

        /// Splits a new arena into blocks of `1 << shift` bytes and keeps all but the first,
        /// which it returns.
        mutating func carve(_ arena: UnsafeMutableRawPointer, shift: Int) -> UnsafeMutableRawPointer {
            let count = 1 << (arenaShift - shift)
            let base = UInt(bitPattern: arena)
            // The rest go on the free list highest first, so the next allocations walk up the
            // arena in address order.
            if count > 1 { free[shift - minShift].append(contentsOf: (1..<count).reversed().map { base + UInt($0 << shift) }) }
            return arena
        }

        mutating func push(_ block: UnsafeMutableRawPointer, shift: Int) {
            free[shift - minShift].append(UInt(bitPattern: block))
        }

        /// Gives the memory of every free block back to the operating system; the bytes released.
        func trim() -> Int {
            var released = 0
            for c in 0..<classCount {
                let size = 1 << (c + minShift)
                for address in free[c] {
                    madvise(UnsafeMutableRawPointer(bitPattern: address), size, MADV_DONTNEED)
                    released += size
                }
            }
            return released
        }
    }

    // A leaf in the lock order: a folio may go away (and free its memory) under any lock.
    static let pool = OrderedMutex(.leaf, "folio memory", Pool())

    /// The fill of a build with nothing in the environment: poison in verify builds, so that
    /// every test run proves the engine never shows memory it did not write or zero; as-is
    /// otherwise, since nothing depends on zeroes and zeroing a recycled block cost a new
    /// file's 1 MiB writes about a third more time (`iomap bench`, append-1m: 154–166 µs
    /// zeroing, 120–126 µs as-is), with no difference in the other workloads.
    public static let defaultFill: FolioFill = verifyBuild ? .poison : .asIs

    static let fillValue = Atomic<UInt8>(environmentFill.fill.rawValue)

    /// What new folios hold from now on. Set it before the folios it is meant for are made.
    public static var fill: FolioFill {
        get { FolioFill(rawValue: fillValue.load(ordering: .relaxed))! }
        set { fillValue.store(newValue.rawValue, ordering: .relaxed) }
    }

    /// What is wrong with `IOMAP_POISON_FOLIOS`, if anything; the fill is then the default.
    /// Tools check it before they start and refuse to run (with this message) when it is set.
    public static var environmentProblem: String? { environmentFill.problem }

    /// `IOMAP_POISON_FOLIOS`: 1 poisons, 0 does not (as-is); unset, the default.
    static let environmentFill: (fill: FolioFill, problem: String?) = {
        guard let raw = getenv("IOMAP_POISON_FOLIOS") else { return (defaultFill, nil) }
        switch String(cString: raw) {
        case "1": return (.poison, nil)
        case "0": return (.asIs, nil)
        case let other: return (defaultFill, "IOMAP_POISON_FOLIOS must be 0 or 1, got '\(other)'")
        }
    }()

    /// The poison pattern, repeated through a block from its first byte: "dead f011 0dea df01".
    /// Blocks are aligned to at least a page and hold file data at the same offset modulo the
    /// page size, and every block device keeps the offset modulo 512, so the poison byte that
    /// belongs at a file offset is `poisonPattern[offset % 8]` wherever it is found.
    public static let poisonPattern: [UInt8] = [0xDE, 0xAD, 0xF0, 0x11, 0x0D, 0xEA, 0xDF, 0x01]
    static let poisonWord: UInt64 = poisonPattern.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) }

    /// The poison byte that belongs at file offset `offset`.
    @inlinable @inline(__always) public static func poisonByte(atFileOffset offset: Int) -> UInt8 {
        // The pattern again, as a literal: an inlinable function cannot read the array's
        // storage without a call.
        let word: UInt64 = 0x01DF_EA0D_11F0_ADDE
        return UInt8(truncatingIfNeeded: word >> (8 * UInt64(offset & 7)))
    }

    /// Whether `byte` is the poison byte that belongs at file offset `offset`.
    @inlinable @inline(__always) public static func isPoison(_ byte: UInt8, atFileOffset offset: Int) -> Bool {
        byte == poisonByte(atFileOffset: offset)
    }

    /// A block of `1 << shift` bytes aligned to its size, holding what `fill` says.
    public static func allocate(shift: Int) -> UnsafeMutableRawPointer { allocate(shift: shift, fill: fill) }

    /// A block of `1 << shift` bytes aligned to its size, holding what `fill` says.
    public static func allocate(shift: Int, fill: FolioFill) -> UnsafeMutableRawPointer {
        let block = take(shift: shift)
        switch fill {
        case .asIs: break
        case .zero: memset(block, 0, 1 << shift)
        case .poison:
            block.initializeMemory(as: UInt64.self, repeating: poisonWord, count: (1 << shift) / 8)
        }
        return block
    }

    /// A block off its free list, or the first of a new arena.
    static func take(shift: Int) -> UnsafeMutableRawPointer {
        precondition(shift >= minShift && shift <= arenaShift, "no folio memory of 2^\(shift) bytes")
        // Addresses cross the lock as integers: a pointer is not Sendable.
        if let address = pool.withLock({ $0.popFree(shift: shift).map { UInt(bitPattern: $0) } }) {
            return UnsafeMutableRawPointer(bitPattern: address)!
        }
        // The arena is mapped outside the lock: mmap may take a while, and other sizes' free
        // lists need not wait for it.
        let arena = mapArena()
        let base = UInt(bitPattern: arena)
        pool.withLock { _ = $0.carve(UnsafeMutableRawPointer(bitPattern: base)!, shift: shift) }
        return arena
    }

    /// Returns a block from `allocate(shift:)`.
    public static func free(_ block: UnsafeMutableRawPointer, shift: Int) {
        pool.withLock { $0.push(block, shift: shift) }
    }

    /// Returns the memory of every free block to the operating system (the blocks stay
    /// mapped, and read as zeroes until written again). Returns the bytes released.
    @discardableResult
    public static func trim() -> Int {
        pool.withLock { $0.trim() }
    }

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
        let arena = UnsafeMutableRawPointer(bitPattern: aligned)!
        // One huge page per arena (HugePages.swift): copies into a cache of gigabytes would
        // otherwise miss the TLB, where the kernel's, through its direct map, do not.
        HugePages.advise(UnsafeMutableRawBufferPointer(start: arena, count: size))
        return arena
    }
}
