// Counterpart: the kernel's direct map, which reaches all of memory through huge pages, and
// madvise(MADV_HUGEPAGE) (mm/khugepaged.c, mm/huge_memory.c), through which user space asks
// for the same.
//
// Why: the kernel's page cache and extent trees live in memory it addresses through 1 GiB
// and 2 MiB pages, so a lookup in a large structure costs cache misses but never a TLB miss
// and page walk. Ours live in process memory of 4 KiB pages unless we ask: the folio arenas
// and the extent map's array of a file of 10^6 extents (40 MB) are large enough that random
// lookups miss the TLB on most of them. Where transparent huge pages are set to `madvise`
// (the usual default), asking for them is all it takes; where they are `never`, the advice
// is ignored and nothing else changes.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

public enum HugePages {
    /// The huge page size of x86-64 and arm64 with 4 KiB pages.
    public static let size = 2 << 20

    /// MADV_HUGEPAGE, which Glibc's module does not export (it needs _GNU_SOURCE).
    static let adviceHugePage: Int32 = 14

    /// Asks for huge pages under the whole 2 MiB pages of `memory`, best before it is first
    /// touched (memory already touched is collapsed later, if at all). Returns the bytes
    /// advised: 0 when `memory` holds no whole aligned huge page or the system refuses.
    @discardableResult
    public static func advise(_ memory: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = memory.baseAddress else { return 0 }
        let start = (UInt(bitPattern: base) + UInt(size) - 1) & ~UInt(size - 1)
        let end = (UInt(bitPattern: base) + UInt(memory.count)) & ~UInt(size - 1)
        guard end > start, madvise(UnsafeMutableRawPointer(bitPattern: start), Int(end - start), adviceHugePage) == 0 else {
            return 0
        }
        return Int(end - start)
    }
}
