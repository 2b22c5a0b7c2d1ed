// SEEK_DATA / SEEK_HOLE (docs/KERNEL-MODEL.md §4): mapping_seek_hole_data over the page cache alone
// (§4.1: "data" is uptodate, block-aligned answers inside partly uptodate folios, never past
// `end`, ENXIO when `end <= start`), and lseek over a file (§4.2: holes, delalloc, unwritten
// probed in the cache, written, ENXIO outside [0, i_size)). Every check runs at offset 0,
// above 2^32 and just below 2^44 (docs/DESIGN.md decision 3).

import IOMap
import IOMapBase
import PageCache
import Testing

@testable import ExtentFS

private let K = 1024
private let bases = [0, (1 << 32) + (1 << 20), (1 << 44) - (1 << 20)]

/// Inserts a folio of `size` bytes at `pos` whose blocks are uptodate where `uptodate` has "1".
private func install(_ m: AddressSpace, pos: Int, size: Int, uptodate: String) {
    let folio = m.getFolio(pos, length: size)
    defer { folio.unlock() }
    precondition(folio.pos == pos && folio.size == size, "unexpected folio shape at \(pos)")
    folio.attachBlockState()
    let bs = m.geometry.blockSize
    for (b, bit) in uptodate.enumerated() where bit == "1" { folio.setRangeUptodate(offset: b * bs, length: bs) }
}

/// 1K blocks, relative to the base: [4K,8K) uptodate; [16K,32K) uptodate only in blocks 2–3
/// and 12–15; [32K,36K) cached but not uptodate; [40K,44K) uptodate.
private func cacheFixture(base b: Int) -> AddressSpace {
    let m = AddressSpace(geometry: BlockGeometry(blockSize: K), maxFolioSize: 2 << 20)
    install(m, pos: b + 4 * K, size: 4 * K, uptodate: "1111")
    install(m, pos: b + 16 * K, size: 16 * K, uptodate: "0011000000001111")
    install(m, pos: b + 32 * K, size: 4 * K, uptodate: "0000")
    install(m, pos: b + 40 * K, size: 4 * K, uptodate: "1111")
    return m
}

private func tryOrNil(_ body: () throws(Errno) -> Int) -> Result<Int, Errno> {
    do { return .success(try body()) } catch { return .failure(error) }
}

@Suite("SEEK_DATA and SEEK_HOLE (docs/KERNEL-MODEL.md §4)")
struct SeekTests {
    @Test("mapping_seek_hole_data: uptodate is data, block-aligned answers in partly uptodate folios", arguments: bases)
    func cacheSeek(base b: Int) {
        // Goal: every SEEK_DATA/SEEK_HOLE answer over the fixture, with end = base + 64K, is exact.
        let m = cacheFixture(base: b)
        let end = b + 64 * K
        func data(_ s: Int) -> Int? { m.seekHoleData(start: b + s, end: end, whence: .data).map { $0 - b } }
        func hole(_ s: Int) -> Int? { m.seekHoleData(start: b + s, end: end, whence: .hole).map { $0 - b } }
        #expect(data(0) == 4 * K)
        #expect(hole(0) == 0)
        #expect(hole(4 * K) == 8 * K)
        #expect(data(5000) == 5000)
        #expect(hole(5000) == 8 * K)
        #expect(hole(8 * K) == 8 * K)
        #expect(data(8 * K) == 18 * K)
        #expect(hole(16 * K) == 16 * K)
        #expect(data(18 * K + 100) == 18 * K + 100)
        #expect(hole(18 * K + 100) == 20 * K)
        #expect(data(20 * K) == 28 * K)
        #expect(data(20 * K + 1) == 28 * K)
        #expect(hole(28 * K) == 32 * K)
        #expect(data(32 * K) == 40 * K)
        #expect(hole(32 * K + 100) == 32 * K + 100)
        #expect(hole(40 * K) == 44 * K)
        #expect(data(44 * K) == nil)
        #expect(hole(44 * K) == 44 * K)
    }

    @Test("mapping_seek_hole_data: never past end; ENXIO when end <= start", arguments: bases)
    func cacheSeekClamp(base b: Int) {
        // Goal: answers clamp to `end` (the implicit hole there) and an empty or inverted range is ENXIO.
        let m = cacheFixture(base: b)
        func seek(_ s: Int, _ e: Int, _ w: SeekWhence) -> Int? { m.seekHoleData(start: b + s, end: b + e, whence: w).map { $0 - b } }
        #expect(seek(4 * K, 6 * K, .hole) == 6 * K)
        #expect(seek(0, 6 * K, .data) == 4 * K)
        #expect(seek(0, 4 * K, .data) == nil)
        #expect(seek(0, 4 * K, .hole) == 0)
        #expect(seek(18 * K + 100, 18 * K + 200, .hole) == 18 * K + 200)
        #expect(seek(18 * K + 100, 18 * K + 200, .data) == 18 * K + 100)
        #expect(seek(28 * K, 30 * K, .hole) == 30 * K)
        // Data found at or past `end` inside a folio clamps to `end` (the kernel's return), not ENXIO.
        #expect(seek(16 * K, 18 * K, .data) == 18 * K)
        #expect(seek(20 * K, 24 * K, .data) == 24 * K)
        #expect(seek(5 * K, 5 * K, .data) == nil)
        #expect(seek(5 * K, 5 * K, .hole) == nil)
        #expect(seek(6 * K, 5 * K, .data) == nil)
        #expect(seek(6 * K, 5 * K, .hole) == nil)
    }

    @Test("lseek: holes, delalloc, written and unwritten probed in the cache; ENXIO outside the file", arguments: bases)
    func fileSeek(base b: Int) throws {
        // Goal (offsets from base): exact lseek answers over hole|delalloc [8K,12K)|hole|written [16K,20K)|hole|unwritten [32K,48K) cached at [40K,44K)|hole|delalloc [60K,64K)|hole to EOF 72K.
        let fs = ExtentFS(memoryBytes: 64 << 20, config: ExtentFSConfig(blockSize: 4 * K, maxFolioSize: 4 * K))
        let file = fs.createFile()
        try file.truncate(to: b + 72 * K)
        try file.write([UInt8](repeating: 0x11, count: 4 * K), at: b + 16 * K)
        try file.fsync()
        try file.write([UInt8](repeating: 0x22, count: 4 * K), at: b + 8 * K)
        try file.allocate(offset: b + 32 * K, length: 16 * K, keepSize: true)
        try file.write([UInt8](repeating: 0x33, count: 100), at: b + 40 * K + 100)
        try file.write([UInt8](repeating: 0x44, count: 4 * K), at: b + 60 * K)
        #expect(file.blockState(b / (4 * K) + 2) == .delalloc)
        #expect(file.blockState(b / (4 * K) + 4) == .written)
        #expect(file.blockState(b / (4 * K) + 10) == .unwritten)
        func data(_ s: Int) -> Result<Int, Errno> { tryOrNil { () throws(Errno) in try file.seekData(from: b + s) - b } }
        func hole(_ s: Int) -> Result<Int, Errno> { tryOrNil { () throws(Errno) in try file.seekHole(from: b + s) - b } }
        #expect(data(0) == .success(8 * K))
        #expect(hole(0) == .success(0))
        #expect(hole(8 * K) == .success(12 * K))
        #expect(data(9 * K) == .success(9 * K))
        #expect(data(12 * K) == .success(16 * K))
        #expect(hole(16 * K) == .success(20 * K))
        #expect(data(20 * K) == .success(40 * K))
        #expect(hole(32 * K) == .success(32 * K))
        #expect(hole(40 * K) == .success(44 * K))
        #expect(hole(41000) == .success(44 * K))
        #expect(data(41000) == .success(41000))
        #expect(data(44 * K) == .success(60 * K))
        #expect(hole(48 * K) == .success(48 * K))
        #expect(hole(60 * K) == .success(64 * K))
        #expect(data(64 * K) == .failure(.noSuchAddressOrDevice))
        #expect(hole(72 * K - 1) == .success(72 * K - 1))
        #expect(data(72 * K) == .failure(.noSuchAddressOrDevice))
        #expect(hole(72 * K) == .failure(.noSuchAddressOrDevice))
        #expect(data(-b - 1) == .failure(.noSuchAddressOrDevice))
        #expect(hole(-b - 1) == .failure(.noSuchAddressOrDevice))
        if b > 0 { #expect(data(-b) == .success(8 * K)) }
        // The implicit hole at EOF: with data up to EOF, SEEK_HOLE returns i_size.
        try file.truncate(to: b + 64 * K)
        #expect(hole(60 * K) == .success(64 * K))
        #expect(hole(62 * K) == .success(64 * K))
        #expect(fs.checkSpaceAccounting() == nil)
    }
}
