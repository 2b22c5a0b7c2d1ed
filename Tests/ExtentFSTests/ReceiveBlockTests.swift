// A write whose bytes arrived in a receive block (a FUSE request's payload) lets a new folio
// of the block's size take the block instead of copying it, and only where that is safe:
// the folio keeps the bytes after the block is renewed and reused, a write over cached or
// on-disk data copies, and a partial last block over data on disk is read, not zeroed over
// the write's bytes.

@testable import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Testing

/// A file system whose folios can be as large as a 1 MiB receive block.
func receiveFS() -> (ExtentFS, ExtentFile) {
    let fs = ExtentFS(memoryBytes: 32 << 20, config: ExtentFSConfig(blockSize: 4096, maxFolioSize: 2 << 20))
    return (fs, fs.createFile())
}

/// Fills the receive block with `count` bytes of pattern `tag` and returns them.
func receive(_ block: ReceiveBlock, count: Int, tag: UInt8) -> [UInt8] {
    let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(tag)) }
    bytes.withUnsafeBytes { block.base.copyMemory(from: $0.baseAddress!, byteCount: count) }
    return bytes
}

/// Writes the first `count` bytes of `block` at `offset`, lending the block.
func lentWrite(_ file: ExtentFile, _ block: ReceiveBlock, count: Int, at offset: Int) throws -> Int {
    try file.write(UnsafeRawBufferPointer(start: block.base, count: count), at: offset, lender: block)
}

@Suite("Receive blocks")
struct ReceiveBlockTests {
    @Test("the block is lent whole, once, and renewed only after")
    func lendRules() {
        let block = ReceiveBlock(shift: 20)
        let base = UnsafeRawPointer(block.base)
        #expect(!block.lend(base + 4096, size: 1 << 20))
        #expect(!block.lend(base, size: 1 << 19))
        block.renew()
        #expect(UnsafeRawPointer(block.base) == base, "a block nobody took is kept")
        #expect(block.lend(base, size: 1 << 20))
        #expect(!block.lend(base, size: 1 << 20), "lent twice")
        // The test owns what it borrowed: give it back as a folio would.
        FolioMemory.free(UnsafeMutableRawPointer(mutating: base), shift: 20)
        block.renew()
        #expect(!block.isLent)
    }

    @Test("a whole new folio takes the block; the bytes stay when the block is renewed and reused")
    func adopted() throws {
        let (_, file) = receiveFS()
        let block = ReceiveBlock(shift: 20)
        let base = block.base
        let data = receive(block, count: 1 << 20, tag: 1)
        #expect(try lentWrite(file, block, count: 1 << 20, at: 1 << 20) == 1 << 20)
        #expect(block.isLent)
        #expect(file.inode.mapping.lookup(1 << 20)?.data == base, "the folio did not take the block")
        block.renew()
        #expect(block.base != base)
        _ = receive(block, count: 1 << 20, tag: 2)
        #expect(try file.read(count: 1 << 20, at: 1 << 20) == data)
        #expect(try file.read(count: 1 << 20, at: 0) == [UInt8](repeating: 0, count: 1 << 20))
        try file.fsync()
        _ = file.dropCaches()
        #expect(try file.read(count: 1 << 20, at: 1 << 20) == data)
        #expect(file.invariantViolations().isEmpty)
    }

    @Test("a write 16 bytes short of the block past EOF is taken, its tail zeroed; the 16 bytes then copy")
    func splitWrite() throws {
        let (_, file) = receiveFS()
        let block = ReceiveBlock(shift: 20)
        let base = block.base
        let first = receive(block, count: (1 << 20) - 16, tag: 3)
        #expect(try lentWrite(file, block, count: (1 << 20) - 16, at: 0) == (1 << 20) - 16)
        #expect(file.inode.mapping.lookup(0)?.data == base)
        #expect(file.inode.mapping.lookup(0)?.size == 1 << 20)
        block.renew()
        let tail = receive(block, count: 16, tag: 4)
        #expect(try lentWrite(file, block, count: 16, at: (1 << 20) - 16) == 16)
        #expect(!block.isLent)
        #expect(try file.read(count: 1 << 20, at: 0) == first + tail)
        #expect(file.invariantViolations().isEmpty)
    }

    @Test("over a cached folio of the block's size the write copies, and keeps the bytes it does not reach")
    func cachedCopies() throws {
        let (_, file) = receiveFS()
        let old = [UInt8](repeating: 0x5A, count: 1 << 20)
        try file.write(old, at: 0)
        #expect(file.inode.mapping.lookup(0)?.size == 1 << 20)
        let block = ReceiveBlock(shift: 20)
        let data = receive(block, count: (1 << 20) - 16, tag: 5)
        #expect(try lentWrite(file, block, count: (1 << 20) - 16, at: 0) == (1 << 20) - 16)
        #expect(!block.isLent)
        #expect(try file.read(count: 1 << 20, at: 0) == data + old.suffix(16))
    }

    @Test("a partial last block over data on disk is read around the write, not zeroed over it")
    func partialBlockOnDisk() throws {
        let (_, file) = receiveFS()
        let old = [UInt8](repeating: 0xA5, count: 1 << 20)
        try file.write(old, at: 0)
        try file.fsync()
        _ = file.dropCaches()
        let block = ReceiveBlock(shift: 20)
        let data = receive(block, count: (1 << 20) - 16, tag: 6)
        #expect(try lentWrite(file, block, count: (1 << 20) - 16, at: 0) == (1 << 20) - 16)
        #expect(!block.isLent, "the fill must read the last block, which the block's bytes would not survive")
        #expect(try file.read(count: 1 << 20, at: 0) == data + old.suffix(16))
        #expect(file.invariantViolations().isEmpty)
    }
}
