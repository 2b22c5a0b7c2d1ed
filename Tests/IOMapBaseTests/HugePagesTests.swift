// Base layer: the huge-page advice for large structures (HugePages.swift).

@testable import IOMapBase
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Huge pages")
struct HugePagesTests {
    /// Maps `bytes` of anonymous memory starting `skew` bytes past a huge page boundary.
    func mapping(_ bytes: Int, skew: Int) -> (UnsafeMutableRawBufferPointer, unmap: () -> Void) {
        let total = bytes + 2 * HugePages.size
        let raw = mmap(nil, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        precondition(raw != MAP_FAILED, "mmap of \(total) bytes failed")
        let aligned = (UInt(bitPattern: raw) + UInt(HugePages.size) - 1) & ~UInt(HugePages.size - 1)
        let start = UnsafeMutableRawPointer(bitPattern: aligned + UInt(skew))!
        return (UnsafeMutableRawBufferPointer(start: start, count: bytes), { munmap(raw, total) })
    }

    @Test(
        "advice covers exactly the whole aligned huge pages inside the memory",
        arguments: [(6 << 20, 0, 6 << 20), (6 << 20, 4096, 4 << 20), (3 << 20, 4096, 0), (1 << 20, 0, 0), (4 << 20 + 1, 0, 4 << 20)])
    func wholePages(bytes: Int, skew: Int, expected: Int) throws {
        // Without transparent huge pages in the kernel, madvise refuses the advice.
        guard access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0 else {
            print("skipped: this kernel has no transparent huge pages (/sys/kernel/mm/transparent_hugepage)")
            return
        }
        let (memory, unmap) = mapping(bytes, skew: skew)
        defer { unmap() }
        #expect(HugePages.advise(memory) == expected)
    }

    @Test("advice on no memory is nothing")
    func empty() {
        #expect(HugePages.advise(UnsafeMutableRawBufferPointer(start: nil, count: 0)) == 0)
    }
}
