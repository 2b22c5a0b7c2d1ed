// The system-call level: bad input is rejected with the kernel's errno and changes nothing;
// writeback errors reach every fsync caller once; the cache's memory limit reclaims only
// clean, unlocked folios not under writeback.

@testable import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import PageCache
import Testing

/// A file holding 8 KiB of known bytes, written back and cached.
func fileWithData(blockSize: Int = 4096, device: (any BlockDevice)? = nil) throws -> (ExtentFS, ExtentFile, [UInt8]) {
    let config = ExtentFSConfig(blockSize: blockSize, maxFolioSize: 16 << 10)
    let fs = device.map { ExtentFS(device: $0, config: config) } ?? ExtentFS(memoryBytes: 16 << 20, config: config)
    let file = fs.createFile()
    let data = (0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
    try file.write(data, at: 0)
    return (fs, file, data)
}

/// Everything observable about a file, to show that a rejected call changed nothing.
func snapshot(_ file: ExtentFile) throws -> String {
    let bytes = try file.read(count: file.size + 100, at: 0)
    return
        "\(file.size) \(file.extentRecords) \(file.delallocBlocks) \(bytes.hashValue) \(file.fs.space.freeBlocks) \(file.fs.space.reservedBlocks)"
}

@Suite("Bad input")
struct BadInputTests {
    @Test("negative offsets and lengths are EINVAL and change nothing")
    func negative() throws {
        let (_, file, _) = try fileWithData()
        let before = try snapshot(file)
        #expect(throws: Errno.invalidArgument) { try file.write([1, 2, 3], at: -1) }
        #expect(throws: Errno.invalidArgument) { _ = try file.read(count: 4, at: -4096) }
        #expect(throws: Errno.invalidArgument) { _ = try file.read(count: -1, at: 0) }
        #expect(throws: Errno.invalidArgument) { try file.truncate(to: -1) }
        #expect(throws: Errno.invalidArgument) { try file.punchHole(offset: -1, length: 10) }
        #expect(throws: Errno.invalidArgument) { try file.punchHole(offset: 0, length: 0) }
        #expect(throws: Errno.invalidArgument) { try file.zeroRange(offset: 0, length: -5, keepSize: true) }
        #expect(throws: Errno.invalidArgument) { try file.allocate(offset: -4096, length: 4096, keepSize: false) }
        #expect(throws: Errno.invalidArgument) { try file.mappedStore([1], at: -1) }
        #expect(throws: Errno.invalidArgument) { _ = try file.mappedLoad(count: 1, at: -1) }
        #expect(try snapshot(file) == before)
        #expect(file.invariantViolations().isEmpty)
    }

    @Test("lengths whose end overflows are EINVAL (I/O) or EFBIG (fallocate), and change nothing")
    func overflow() throws {
        let (_, file, _) = try fileWithData()
        let before = try snapshot(file)
        let big = [UInt8](repeating: 9, count: 16)
        #expect(throws: Errno.invalidArgument) { try file.write(big, at: Int.max - 8) }
        var buffer = [UInt8](repeating: 0, count: 16)
        let overflowRead = buffer.withUnsafeMutableBytes { p in
            Result { () throws(Errno) -> Int in try file.read(into: p, at: Int.max - 8) }
        }
        #expect(overflowRead == .failure(.invalidArgument))
        #expect(throws: Errno.fileTooLarge) { try file.punchHole(offset: Int.max - 8, length: 16) }
        #expect(throws: Errno.fileTooLarge) { try file.allocate(offset: 4096, length: Int.max - 100, keepSize: true) }
        #expect(throws: Errno.invalidArgument) { try file.mappedStore(big, at: Int.max - 8) }
        #expect(try snapshot(file) == before)
    }

    @Test("offsets at or past the maximum file size are EFBIG; a write straddling it is cut short")
    func pastMaximum() throws {
        let (_, file, _) = try fileWithData()
        let before = try snapshot(file)
        #expect(throws: Errno.fileTooLarge) { try file.write([1, 2, 3], at: maxFileSize) }
        #expect(throws: Errno.fileTooLarge) { try file.truncate(to: maxFileSize + 1) }
        #expect(throws: Errno.fileTooLarge) { try file.allocate(offset: maxFileSize - 4096, length: 8192, keepSize: true) }
        #expect(throws: Errno.fileTooLarge) { try file.zeroRange(offset: maxFileSize, length: 1, keepSize: true) }
        #expect(try snapshot(file) == before)
        // generic_write_check_limits: the part below the limit is written.
        let n = try file.write([UInt8](repeating: 5, count: 100), at: maxFileSize - 10)
        #expect(n == 10)
        #expect(file.size == maxFileSize)
        #expect(try file.read(count: 20, at: maxFileSize - 10) == [UInt8](repeating: 5, count: 10))
        #expect(file.invariantViolations().isEmpty)
    }

    @Test("seeks outside the file are ENXIO")
    func seeks() throws {
        let (_, file, _) = try fileWithData()
        #expect(throws: Errno.noSuchAddressOrDevice) { _ = try file.seekData(from: -1) }
        #expect(throws: Errno.noSuchAddressOrDevice) { _ = try file.seekHole(from: 8192) }
        #expect(throws: Errno.noSuchAddressOrDevice) { _ = try file.seekData(from: 1 << 40) }
        #expect(try file.seekData(from: 100) == 100)
        #expect(try file.seekHole(from: 100) == 8192)
    }

    @Test("stores and loads wholly past the EOF page are EFAULT (SIGBUS) and store nothing")
    func storesPastEOF() throws {
        let (_, file, data) = try fileWithData()
        try file.truncate(to: 5000)
        let before = try snapshot(file)
        #expect(throws: Errno.badAddress) { try file.mappedStore([1, 2, 3, 4], at: 8192) }
        #expect(throws: Errno.badAddress) { try file.mappedStore([1, 2, 3, 4], at: 8190) }  // straddles the page end
        #expect(throws: Errno.badAddress) { _ = try file.mappedLoad(count: 4, at: 1 << 40) }
        #expect(try snapshot(file) == before)
        // Inside the EOF page past EOF is allowed, and never reaches the file.
        try file.mappedStore([7, 7, 7, 7], at: 6000)
        #expect(file.size == 5000)
        try file.fsync()
        file.dropCaches()
        try file.truncate(to: 8192)
        #expect(try file.read(count: 4, at: 6000) == [0, 0, 0, 0])
        #expect(try file.read(count: 5000, at: 0) == Array(data[0..<5000]))
        #expect(file.invariantViolations().isEmpty)
    }

    @Test("empty reads and writes do nothing")
    func empty() throws {
        let (_, file, _) = try fileWithData()
        let before = try snapshot(file)
        #expect(try file.write([], at: 1 << 40) == 0)
        #expect(try file.read(count: 0, at: 1 << 40) == [])
        #expect(try snapshot(file) == before)
    }
}

@Suite("Writeback errors and fsync")
struct FsyncErrorTests {
    @Test("a writeback I/O error reaches each open handle's fsync exactly once")
    func errorReportedOncePerHandle() throws {
        let device = FaultyBlockDevice(wrapping: MemoryBlockDevice(blockSize: 4096, blockCount: 4096))
        let (_, file, _) = try fileWithData(device: device)
        let a = file.open()
        let b = file.open()
        device.failWrites(blocks: 0...4095)
        #expect(throws: Errno.ioError) { try a.fsync() }
        device.clearFaults()
        #expect(throws: Never.self) { try a.fsync() }
        #expect(throws: Errno.ioError) { try b.fsync() }
        #expect(throws: Never.self) { try b.fsync() }
        // A handle opened after the error is not told of it.
        let c = file.open()
        #expect(throws: Never.self) { try c.fsync() }
        // The written-back folios are clean: the error cleared their dirty state.
        #expect(file.mapping.hasTagged(.dirty) == false)
    }

    @Test("fsync after a successful writeback reports nothing and leaves no delalloc")
    func cleanFsync() throws {
        let (fs, file, data) = try fileWithData(blockSize: 1024)
        try file.fsync()
        #expect(file.delallocBlocks == 0)
        #expect(fs.checkSpaceAccounting() == nil)
        file.dropCaches()
        #expect(try file.read(count: 8192, at: 0) == data)
    }
}

@Suite("Reclaim")
struct ReclaimTests {
    @Test("the memory limit evicts only clean, unlocked folios not under writeback")
    func memoryLimit() throws {
        let fs = ExtentFS(memoryBytes: 64 << 20, config: ExtentFSConfig(blockSize: 4096, maxFolioSize: 4096, memoryLimit: 64 << 10))
        let file = fs.createFile()
        let data = [UInt8](repeating: 0xAB, count: 256 << 10)
        try file.write(data, at: 0)
        // All dirty: nothing may be evicted, the limit is exceeded until writeback.
        #expect(file.mapping.cachedBytes == 256 << 10)
        #expect(file.mapping.evictionCount == 0)
        try file.fsync()
        file.dropCaches()
        #expect(file.mapping.cachedBytes == 0)
        // Reading it back creates folios past the limit: clean ones are evicted as it goes.
        #expect(try file.read(count: 256 << 10, at: 0) == data)
        #expect(file.mapping.cachedBytes <= 64 << 10)
        #expect(file.mapping.evictionCount > 0)
        // A locked folio and a dirty folio survive a full reclaim.
        try file.write([1], at: 4096)
        _ = try file.read(count: 1, at: 0)
        let locked = try #require(file._folio(at: 0))
        #expect(locked.tryLock())
        file.reclaim(targetBytes: 0)
        #expect(file._folio(at: 0) === locked)
        #expect(file._folio(at: 4096)?.isDirty == true)
        locked.unlock()
        file.reclaim(targetBytes: 0)
        #expect(file._folio(at: 0) == nil)
        #expect(try file.read(count: 4097, at: 0) == Array(data[0..<4096]) + [1])
        #expect(file.invariantViolations().isEmpty)
    }

    @Test("drop caches keeps dirty data and the data reads back the same")
    func dropCaches() throws {
        let (_, file, first) = try fileWithData(blockSize: 512)
        let second = [UInt8](repeating: 0x3C, count: 16 << 10)
        try file.write(second, at: 16 << 10)
        let data = first + [UInt8](repeating: 0, count: (16 << 10) - first.count) + second
        try file.fsync()
        try file.write([9, 9], at: 100)
        // Two folios: the first is dirty again and stays, the second is clean and goes.
        let evicted = file.dropCaches()
        #expect(evicted == 1)
        #expect(file._folio(at: 16 << 10) == nil)
        #expect(file._folio(at: 100)?.isDirty == true)
        var want = data
        want[100] = 9
        want[101] = 9
        #expect(try file.read(count: 32 << 10, at: 0) == want)
    }
}
