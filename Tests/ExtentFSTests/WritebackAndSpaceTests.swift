// Writeback ordering and write protection, size changes, fallocate and real ENOSPC: the
// engine's behaviour through its system-call API.

@testable import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Synchronization
import Testing

/// A file system on a memory device of `memoryBytes`, with its configuration, and one new file.
private func makeFile(
    memoryBytes: Int = 16 << 20, blockSize: Int, maxFolioSize: Int = 2 << 20, environment: IOMapEnvironment = .live
) -> (ExtentFS, ExtentFile) {
    let config = ExtentFSConfig(blockSize: blockSize, maxFolioSize: maxFolioSize, environment: environment)
    let fs = ExtentFS(memoryBytes: memoryBytes, config: config)
    return (fs, fs.createFile())
}

@Suite("Writeback")
struct WritebackTests {
    @Test("unwritten becomes written before the folio leaves writeback (H6)")
    func conversionBeforeEndOfWriteback() throws {
        // Goal: at hook H6 the extent is already written while the folio is still under
        // writeback; that ordering is what makes the write path's validity check race-free.
        let seen = Mutex<[(ExtentState?, Bool)]>([])
        let fileBox = Mutex<ExtentFile?>(nil)
        let env = IOMapEnvironment(hook: { event in
            guard event.point == .completionBeforeEndWriteback, let f = fileBox.withLock({ $0 }) else { return }
            let state = f.blockState(f.geometry.blockIndex(of: event.range.start))
            let underWriteback = f._folio(at: event.range.start)?.isWriteback ?? false
            seen.withLock { $0.append((state, underWriteback)) }
        })
        let (fs, file) = makeFile(blockSize: 4096, maxFolioSize: 4096, environment: env)
        fileBox.withLock { $0 = file }
        try file.write([UInt8](repeating: 1, count: 8192), at: 0)
        #expect(file.blockState(0) == .delalloc)
        let result = file.writeback()
        #expect(result.folios == 2 && result.bytesWritten == 8192 && result.error == nil)
        let events = seen.withLock { $0 }
        #expect(events.count == 2)
        for (state, underWriteback) in events {
            #expect(state == .written)
            #expect(underWriteback)
        }
        #expect(file._folio(at: 0)?.isWriteback == false)
        #expect(fs.checkSpaceAccounting() == nil)
    }

    @Test("writeback write-protects: the next store faults and dirties the folio again")
    func writeProtectAfterWriteback() throws {
        // Goal: page_mkclean at writeback makes the next mapped store fault, so the folio is
        // dirty again and its new bytes reach the disk.
        let (_, file) = makeFile(blockSize: 1024, maxFolioSize: 4096)
        try file.truncate(to: 8192)
        try file.mappedStore([1, 2, 3], at: 100)
        let folio = try #require(file._folio(at: 0))
        #expect(folio.isWriteMapped && folio.isDirty)
        #expect(file.delallocBlockIndices() == [0, 1, 2, 3])
        file.writeback()
        #expect(!folio.isWriteMapped && !folio.isDirty)
        try file.mappedStore([9], at: 3000)
        #expect(folio.isWriteMapped && folio.isDirty)
        try file.fsync()
        file.dropCaches()
        #expect(try file.read(count: 3, at: 100) == [1, 2, 3])
        #expect(try file.read(count: 1, at: 3000) == [9])
        #expect(file.invariantViolations().isEmpty)
    }

    @Test("the EOF folio's tail past EOF never reaches the disk")
    func eofTailZeroed() throws {
        // Goal: bytes a mapping stored past EOF in the EOF page are zeroed by writeback and
        // read as zero once the file grows.
        let (_, file) = makeFile(blockSize: 4096, maxFolioSize: 4096)
        try file.write([UInt8](repeating: 7, count: 1000), at: 0)
        try file.mappedStore([UInt8](repeating: 8, count: 10), at: 2000)  // past EOF, same page
        try file.fsync()
        #expect(file._folio(at: 0).map { $0.data.load(fromByteOffset: 2000, as: UInt8.self) } == 0)
        file.dropCaches()
        try file.truncate(to: 4096)
        #expect(try file.read(count: 10, at: 2000) == [UInt8](repeating: 0, count: 10))
    }
}

@Suite("Size changes and fallocate")
struct SizeChangeTests {
    @Test("truncate down zeroes the partial EOF block; growing again reads zeroes", arguments: [512, 1024, 4096])
    func truncateZeroesPartialBlock(blockSize: Int) throws {
        let (fs, file) = makeFile(blockSize: blockSize, maxFolioSize: 16 << 10)
        let data = [UInt8](repeating: 0x5A, count: 12288)
        try file.write(data, at: 0)
        try file.fsync()
        try file.truncate(to: 5000)
        try file.truncate(to: 12288)
        #expect(try file.read(count: 5000, at: 0) == Array(data[0..<5000]))
        #expect(try file.read(count: 12288 - 5000, at: 5000) == [UInt8](repeating: 0, count: 12288 - 5000))
        try file.fsync()
        file.dropCaches()
        #expect(try file.read(count: 12288 - 5000, at: 5000) == [UInt8](repeating: 0, count: 12288 - 5000))
        #expect(file.invariantViolations().isEmpty)
        #expect(fs.checkSpaceAccounting() == nil)
    }

    @Test("fallocate allocates unwritten blocks that read as zero, with and without keep-size")
    func fallocate() throws {
        let (fs, file) = makeFile(blockSize: 4096)
        try file.allocate(offset: 4096, length: 8192, keepSize: true)
        #expect(file.size == 0)
        #expect(file.blockState(1) == .unwritten && file.blockState(2) == .unwritten && file.blockState(0) == nil)
        try file.allocate(offset: 0, length: 16384, keepSize: false)
        #expect(file.size == 16384)
        #expect(try file.read(count: 16384, at: 0) == [UInt8](repeating: 0, count: 16384))
        // SEEK_DATA over unwritten blocks with nothing cached finds no data.
        file.dropCaches()
        #expect(throws: Errno.noSuchAddressOrDevice) { _ = try file.seekData(from: 0) }
        try file.write([1], at: 5000)
        try file.fsync()
        #expect(file.blockState(1) == .written)
        #expect(fs.checkSpaceAccounting() == nil)
    }

    @Test("zero range over dirty data in an unwritten extent zeroes it in the cache and on disk")
    func zeroRangeOverDirtyUnwritten() throws {
        let (_, file) = makeFile(blockSize: 1024)
        try file.allocate(offset: 0, length: 16384, keepSize: false)
        try file.write([UInt8](repeating: 3, count: 8000), at: 1000)
        try file.zeroRange(offset: 2000, length: 3000, keepSize: true)
        var want = [UInt8](repeating: 0, count: 16384)
        for i in 1000..<9000 where !(2000..<5000).contains(i) { want[i] = 3 }
        #expect(try file.read(count: 16384, at: 0) == want)
        try file.fsync()
        file.dropCaches()
        #expect(try file.read(count: 16384, at: 0) == want)
        #expect(file.invariantViolations().isEmpty)
    }
}

@Suite("Space")
struct SpaceTests {
    @Test("a full device gives ENOSPC and the accounting still balances")
    func realENOSPC() throws {
        // 32 blocks of 4 KiB. As in XFS, a mapping's reservation is all or nothing: a write
        // whose first mapping needs more than is left fails with ENOSPC having written
        // nothing; one that fits is written whole.
        let (fs, file) = makeFile(memoryBytes: 32 * 4096, blockSize: 4096, maxFolioSize: 4096)
        try file.write([UInt8](repeating: 1, count: 28 * 4096), at: 0)
        #expect(fs.space.availableBlocks == 4)
        #expect(throws: Errno.noSpace) { try file.write([UInt8](repeating: 2, count: 40 * 1024), at: 28 * 4096) }
        #expect(file.size == 28 * 4096 && fs.space.reservedBlocks == 28)
        let n = try file.write([UInt8](repeating: 2, count: 16 * 1024), at: 28 * 4096)
        #expect(n == 4 * 4096)
        #expect(throws: Errno.noSpace) { try file.write([3], at: 32 * 4096) }
        #expect(throws: Errno.noSpace) { try file.allocate(offset: 40 * 4096, length: 4096, keepSize: true) }
        #expect(file.size == 32 * 4096)
        #expect(fs.checkSpaceAccounting() == nil)
        try file.fsync()
        #expect(file.delallocBlocks == 0 && fs.space.reservedBlocks == 0 && fs.space.freeBlocks == 0)
        // Freeing space makes room again.
        try file.punchHole(offset: 0, length: 8192)
        #expect(fs.space.freeBlocks == 2)
        #expect(try file.write([4], at: 32 * 4096) == 1)
        #expect(fs.checkSpaceAccounting() == nil)
    }

    @Test("a file nobody references any more gives its space back")
    func deletedFileFreesSpace() throws {
        let fs = ExtentFS(memoryBytes: 64 * 4096, config: ExtentFSConfig(blockSize: 4096))
        do {
            let file = fs.createFile()
            try file.write([UInt8](repeating: 1, count: 8 * 4096), at: 0)
            try file.fsync()
            try file.write([UInt8](repeating: 1, count: 4096), at: 20 * 4096)
            #expect(fs.space.freeBlocks == 56 && fs.space.reservedBlocks == 1)
        }
        #expect(fs.space.freeBlocks == 64 && fs.space.reservedBlocks == 0)
        #expect(fs.fileCount == 0)
    }
}
