import Foundation
import IOMapBase
import IOMapTesting
import Testing

@testable import ExtentFS

// Helpers: whole-block patterns and array-based read/write wrappers.

private func pattern(_ seed: UInt8, blocks: Int, blockSize: Int) -> [UInt8] {
    (0..<blocks * blockSize).map { UInt8(truncatingIfNeeded: Int(seed) &* 31 &+ $0 &* 7 &+ ($0 >> 9)) }
}

/// Reads into a buffer filled with 0xEE first, so that a read that fills nothing shows.
private func readBlocks(_ device: any BlockDevice, _ block: Int, _ count: Int) throws(Errno) -> [UInt8] {
    var bytes = [UInt8](repeating: 0xEE, count: count * device.blockSize)
    let result = bytes.withUnsafeMutableBytes { buffer -> Errno? in
        do throws(Errno) {
            try device.read(block: block, count: count, into: buffer)
            return nil
        } catch {
            return error
        }
    }
    if let result { throw result }
    return bytes
}

private func writeBlocks(_ device: any BlockDevice, _ block: Int, _ bytes: [UInt8]) throws(Errno) {
    try device.writeBlocks(block, bytes)
}

private func temporaryImagePath() -> String {
    let name = "blockdevice-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).img"
    return FileManager.default.temporaryDirectory.appendingPathComponent(name).path
}

@Suite("BlockDevice")
struct BlockDeviceTests {
    // MARK: MemoryBlockDevice

    @Test("memory device round-trips writes, including across chunk boundaries", arguments: [512, 1024, 4096])
    func memoryRoundTrip(blockSize: Int) throws {
        let device = MemoryBlockDevice(blockSize: blockSize, blockCount: 1024)
        let perChunk = MemoryBlockDevice.chunkSize / blockSize
        let data = pattern(3, blocks: 5, blockSize: blockSize)
        // Straddles the first chunk boundary.
        try writeBlocks(device, perChunk - 2, data)
        #expect(try readBlocks(device, perChunk - 2, 5) == data)
        // Partial overlap overwrite.
        let more = pattern(9, blocks: 2, blockSize: blockSize)
        try writeBlocks(device, perChunk - 1, more)
        var expected = data
        expected.replaceSubrange(blockSize..<3 * blockSize, with: more)
        #expect(try readBlocks(device, perChunk - 2, 5) == expected)
        #expect(device.writeCount == 2)
        #expect(device.bytesAllocated == 2 * MemoryBlockDevice.chunkSize)
    }

    @Test("memory device is sparse: unwritten blocks read as zeroes and cost nothing")
    func memorySparse() throws {
        let terabyte = 1 << 40
        let device = MemoryBlockDevice(blockSize: 4096, blockCount: terabyte / 4096)
        #expect(device.bytesAllocated == 0)
        #expect(try readBlocks(device, device.blockCount - 4, 4).allSatisfy { $0 == 0 })
        #expect(device.bytesAllocated == 0)
        let data = pattern(1, blocks: 1, blockSize: 4096)
        try writeBlocks(device, device.blockCount / 2, data)
        #expect(device.bytesAllocated == MemoryBlockDevice.chunkSize)
        let around = try readBlocks(device, device.blockCount / 2 - 1, 3)
        #expect(around[0..<4096].allSatisfy { $0 == 0 })
        #expect(Array(around[4096..<8192]) == data)
        #expect(around[8192...].allSatisfy { $0 == 0 })
    }

    @Test("requests outside the device fail with EIO and change nothing")
    func memoryOutOfRange() throws {
        let device = MemoryBlockDevice(blockSize: 512, blockCount: 16)
        #expect(throws: Errno.ioError) { try readBlocks(device, 15, 2) }
        #expect(throws: Errno.ioError) { try readBlocks(device, -1, 1) }
        #expect(throws: Errno.ioError) { try readBlocks(device, 17, 0) }
        #expect(throws: Errno.ioError) { try writeBlocks(device, 16, pattern(1, blocks: 1, blockSize: 512)) }
        #expect(throws: Errno.ioError) { try writeBlocks(device, Int.max, pattern(1, blocks: 1, blockSize: 512)) }
        #expect(device.writeCount == 0)
        #expect(device.bytesAllocated == 0)
        // The last block and an empty request at the end are fine.
        try writeBlocks(device, 15, pattern(2, blocks: 1, blockSize: 512))
        #expect(try readBlocks(device, 16, 0) == [])
        #expect(try readBlocks(device, 15, 1) == pattern(2, blocks: 1, blockSize: 512))
    }

    @Test("concurrent writers to distinct blocks all land")
    func memoryConcurrent() async throws {
        let device = MemoryBlockDevice(blockSize: 512, blockCount: 4096)
        await withTaskGroup(of: Void.self) { group in
            for t in 0..<8 {
                group.addTask {
                    for i in 0..<64 {
                        try? writeBlocks(device, t * 512 + i * 3, pattern(UInt8(t), blocks: 2, blockSize: 512))
                    }
                }
            }
        }
        #expect(device.writeCount == 8 * 64)
        for t in 0..<8 {
            #expect(try readBlocks(device, t * 512 + 63 * 3, 2) == pattern(UInt8(t), blocks: 2, blockSize: 512))
        }
    }

    // MARK: FileBlockDevice

    @Test("file device round-trips, persists across reopen and reads short files as zeroes")
    func fileDevice() throws {
        let path = temporaryImagePath()
        defer { unlink(path) }
        do {
            let device = try FileBlockDevice(path: path, blockSize: 1024, blockCount: 64, create: true)
            #expect(try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int == 64 * 1024)
            #expect(try readBlocks(device, 0, 64).allSatisfy { $0 == 0 })
            try writeBlocks(device, 10, pattern(5, blocks: 3, blockSize: 1024))
            try device.flush()
            #expect(throws: Errno.ioError) { try readBlocks(device, 63, 2) }
            #expect(throws: Errno.ioError) { try writeBlocks(device, 64, pattern(1, blocks: 1, blockSize: 1024)) }
        }
        // Reopen without create: the data is still there.
        do {
            let device = try FileBlockDevice(path: path, blockSize: 1024, blockCount: 64, create: false)
            #expect(try readBlocks(device, 10, 3) == pattern(5, blocks: 3, blockSize: 1024))
        }
        // Shrink the image: blocks past the end of file read as zeroes.
        #expect(truncate(path, off_t(11 * 1024 + 100)) == 0)
        do {
            let device = try FileBlockDevice(path: path, blockSize: 1024, blockCount: 64, create: false)
            let bytes = try readBlocks(device, 10, 4)
            let original = pattern(5, blocks: 3, blockSize: 1024)
            #expect(Array(bytes[0..<1124]) == Array(original[0..<1124]))
            #expect(bytes[1124...].allSatisfy { $0 == 0 })
        }
    }

    @Test("aligned requests go through O_DIRECT and the buffered ones see them, and the reverse")
    func fileDeviceDirectAndBuffered() throws {
        let path = "/var/tmp/iomap-direct-\(getpid())-\(UInt32.random(in: 0..<UInt32.max)).img"
        defer { unlink(path) }
        let device = try FileBlockDevice(path: path, blockSize: 512, blockCount: 64, create: true)
        let page = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { page.deallocate() }
        page.copyMemory(from: pattern(9, blocks: 8, blockSize: 512), byteCount: 4096)
        // Aligned: direct when the file system allows it (ext4 and XFS do; tmpfs before 6.6 not).
        try device.write(block: 8, count: 8, from: UnsafeRawBufferPointer(start: page, count: 4096))
        // Unaligned (one 512-byte block at an odd position): always buffered, and it sees the
        // direct write.
        #expect(try readBlocks(device, 9, 1) == Array(pattern(9, blocks: 8, blockSize: 512)[512..<1024]))
        try writeBlocks(device, 10, pattern(3, blocks: 1, blockSize: 512))
        // Aligned read after a buffered write: the direct read sees it.
        let back = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { back.deallocate() }
        try device.read(block: 8, count: 8, into: UnsafeMutableRawBufferPointer(start: back, count: 4096))
        var expected = pattern(9, blocks: 8, blockSize: 512)
        expected.replaceSubrange(1024..<1536, with: pattern(3, blocks: 1, blockSize: 512))
        #expect(Array(UnsafeRawBufferPointer(start: back, count: 4096)) == expected)
        try device.flush()
        print("O_DIRECT on \(path): \(device.usesDirectIO)")
    }

    @Test("opening a missing image without create fails with ENOENT")
    func fileMissing() {
        let path = temporaryImagePath()
        #expect(throws: Errno.noSuchFileOrDirectory) {
            _ = try FileBlockDevice(path: path, blockSize: 512, blockCount: 8, create: false)
        }
    }

    // MARK: FaultyBlockDevice

    @Test("injected read and write faults fail exactly the chosen blocks until cleared")
    func faultyChosenBlocks() throws {
        let inner = MemoryBlockDevice(blockSize: 512, blockCount: 128)
        let device = FaultyBlockDevice(wrapping: inner)
        let data = pattern(7, blocks: 4, blockSize: 512)
        try writeBlocks(device, 20, data)
        device.failReads(blocks: 22...22)
        device.failWrites(blocks: 40...49)

        #expect(throws: Errno.ioError) { try readBlocks(device, 20, 4) }
        #expect(throws: Errno.ioError) { try readBlocks(device, 22, 1) }
        #expect(try readBlocks(device, 20, 2) == Array(data[0..<1024]))
        #expect(try readBlocks(device, 23, 1) == Array(data[1536...]))

        #expect(throws: Errno.ioError) { try writeBlocks(device, 38, pattern(1, blocks: 3, blockSize: 512)) }
        #expect(throws: Errno.ioError) { try writeBlocks(device, 49, pattern(1, blocks: 1, blockSize: 512)) }
        try writeBlocks(device, 50, pattern(1, blocks: 1, blockSize: 512))
        // The failed write changed nothing.
        #expect(try readBlocks(device, 38, 2).allSatisfy { $0 == 0 })
        #expect(device.injectedErrors == 4)
        // Out-of-range errors are not injected ones.
        #expect(throws: Errno.ioError) { try readBlocks(device, 127, 2) }
        #expect(device.injectedErrors == 4)

        device.clearFaults()
        #expect(try readBlocks(device, 20, 4) == data)
        try writeBlocks(device, 40, pattern(2, blocks: 10, blockSize: 512))
        #expect(try readBlocks(device, 40, 10) == pattern(2, blocks: 10, blockSize: 512))
        #expect(device.injectedErrors == 4)
    }

    @Test("random failures are seeded and repeatable")
    func faultyRandom() throws {
        func run(seed: UInt64) -> [Bool] {
            let device = FaultyBlockDevice(wrapping: MemoryBlockDevice(blockSize: 512, blockCount: 64), seed: seed)
            device.setRandomFailure(readProbability: 0.3, writeProbability: 0.3)
            var outcomes: [Bool] = []
            for i in 0..<200 {
                let block = i % 64
                do {
                    if i % 2 == 0 {
                        try writeBlocks(device, block, pattern(UInt8(i & 0xFF), blocks: 1, blockSize: 512))
                    } else {
                        _ = try readBlocks(device, block, 1)
                    }
                    outcomes.append(true)
                } catch {
                    outcomes.append(false)
                }
            }
            #expect(device.injectedErrors == outcomes.filter { !$0 }.count)
            return outcomes
        }
        let a = run(seed: 42)
        let failures = a.filter { !$0 }.count
        #expect(failures > 20 && failures < 110, "about 30% of 200 calls should fail, got \(failures)")
        #expect(run(seed: 42) == a)
        #expect(run(seed: 43) != a)
    }

    @Test("writes are cached until flush; reads see the cache")
    func faultyCacheVisibility() throws {
        let inner = MemoryBlockDevice(blockSize: 512, blockCount: 64)
        let device = FaultyBlockDevice(wrapping: inner)
        let a = pattern(1, blocks: 4, blockSize: 512)
        let b = pattern(2, blocks: 2, blockSize: 512)
        try writeBlocks(device, 8, a)
        try writeBlocks(device, 9, b)
        #expect(device.unflushedWriteCount == 2)
        #expect(inner.writeCount == 0)
        var expected = a
        expected.replaceSubrange(512..<1536, with: b)
        // Cached blocks mixed with never-written ones on either side.
        let seen = try readBlocks(device, 7, 6)
        #expect(seen[0..<512].allSatisfy { $0 == 0 })
        #expect(Array(seen[512..<2560]) == expected)
        #expect(seen[2560...].allSatisfy { $0 == 0 })

        try device.flush()
        #expect(device.unflushedWriteCount == 0)
        #expect(inner.writeCount == 2)
        #expect(try readBlocks(inner, 8, 4) == expected)
        #expect(try readBlocks(device, 8, 4) == expected)
    }

    @Test("a crash loses unflushed writes and keeps flushed ones")
    func faultyCrash() throws {
        let inner = MemoryBlockDevice(blockSize: 1024, blockCount: 64)
        let device = FaultyBlockDevice(wrapping: inner, seed: 7)
        let durable = pattern(1, blocks: 2, blockSize: 1024)
        try writeBlocks(device, 0, durable)
        try device.flush()
        try writeBlocks(device, 0, pattern(2, blocks: 1, blockSize: 1024))  // overwrites flushed data
        try writeBlocks(device, 10, pattern(3, blocks: 2, blockSize: 1024))
        #expect(device.unflushedWriteCount == 2)
        device.crash()
        #expect(device.unflushedWriteCount == 0)
        #expect(try readBlocks(device, 0, 2) == durable)
        #expect(try readBlocks(device, 10, 2).allSatisfy { $0 == 0 })
        #expect(inner.writeCount == 1)
    }

    @Test("crash with keepFraction keeps about that share of writes, all or nothing each")
    func faultyCrashKeepFraction() throws {
        // keepFraction 1 keeps everything, in submission order.
        do {
            let inner = MemoryBlockDevice(blockSize: 512, blockCount: 64)
            let device = FaultyBlockDevice(wrapping: inner, seed: 1)
            try writeBlocks(device, 5, pattern(1, blocks: 2, blockSize: 512))
            try writeBlocks(device, 6, pattern(2, blocks: 1, blockSize: 512))
            device.crash(keepFraction: 1)
            #expect(try readBlocks(inner, 5, 1) == pattern(1, blocks: 1, blockSize: 512))
            #expect(try readBlocks(inner, 6, 1) == pattern(2, blocks: 1, blockSize: 512))
        }
        // keepFraction 0.5 over many writes: each write survives whole or not at all.
        let inner = MemoryBlockDevice(blockSize: 512, blockCount: 1024)
        let device = FaultyBlockDevice(wrapping: inner, seed: 99)
        for i in 0..<400 {
            try writeBlocks(device, i * 2, pattern(UInt8(i & 0xFF), blocks: 2, blockSize: 512))
        }
        device.crash(keepFraction: 0.5)
        var kept = 0
        for i in 0..<400 {
            let bytes = try readBlocks(device, i * 2, 2)
            if bytes == pattern(UInt8(i & 0xFF), blocks: 2, blockSize: 512) {
                kept += 1
            } else {
                #expect(bytes.allSatisfy { $0 == 0 }, "write \(i) was torn")
            }
        }
        #expect(kept > 140 && kept < 260, "kept \(kept) of 400 writes at keepFraction 0.5")
        #expect(inner.writeCount == kept)
    }

    @Test("a failing inner device during flush keeps the unpushed writes cached")
    func faultyFlushFailure() throws {
        let disk = FaultyBlockDevice(wrapping: MemoryBlockDevice(blockSize: 512, blockCount: 64))
        let cache = FaultyBlockDevice(wrapping: disk)
        try writeBlocks(cache, 1, pattern(1, blocks: 1, blockSize: 512))
        try writeBlocks(cache, 2, pattern(2, blocks: 1, blockSize: 512))
        try writeBlocks(cache, 3, pattern(3, blocks: 1, blockSize: 512))
        disk.failWrites(blocks: 2...2)
        #expect(throws: Errno.ioError) { try cache.flush() }
        #expect(cache.unflushedWriteCount == 2)
        #expect(disk.unflushedWriteCount == 1)
        #expect(
            try readBlocks(cache, 1, 3) == pattern(1, blocks: 1, blockSize: 512)
                + pattern(2, blocks: 1, blockSize: 512) + pattern(3, blocks: 1, blockSize: 512))
        disk.clearFaults()
        try cache.flush()
        #expect(cache.unflushedWriteCount == 0)
        #expect(disk.unflushedWriteCount == 0)
    }
}
