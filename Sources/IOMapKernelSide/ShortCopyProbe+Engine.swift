// Counterpart: none in the kernel; the engine side of the short-copy probe: the kernel
// cases' writes through ExtentFile, with every new folio poisoned, so that memory the write
// path neither zeroed nor wrote is recognisable wherever it surfaces.

import ExtentFS
import Foundation
import IOMap
import IOMapBase
import IOMapTesting
import PageCache

/// What one engine write left outside the bytes it reported written.
public struct ShortCopyEngineResult: Sendable {
    public var name: String
    public var blockSize: Int
    public var maxFolioSize: Int
    public var write: ShortCopyWrite
    /// What the write returned; 0 when it wrote nothing and failed.
    public var written = 0
    public var staleInCache = 0
    public var staleOnDisk = 0
    /// Set when the sequence failed somewhere it should not have.
    public var error: String?
}

/// The engine's versions of the kernel cases: name, block size, largest folio, write.
public let engineShortCopyWrites: [(name: String, blockSize: Int, maxFolioSize: Int, write: ShortCopyWrite)] = [
    ("4k-hole", 4096, 2 << 20, ShortCopyCase.hole4k.write(blockSize: 4096)),
    ("1k-hole, 4 KiB folios", 1024, 4096, ShortCopyCase.hole1k.write(blockSize: 1024)),
    ("1k-hole, 64 KiB folios", 1024, 64 << 10, ShortCopyCase.hole1k.write(blockSize: 1024)),
    ("large-folio", 4096, 64 << 10, ShortCopyCase.largeFolio.write(blockSize: 4096)),
    ("unwritten", 4096, 2 << 20, ShortCopyCase.unwritten.write(blockSize: 4096)),
]

/// Runs the engine's writes with new folio memory poisoned. With the engine's own write end
/// (`.zeroTail`) every one must leave nothing stale; `.kernel` leaves the uncopied part of
/// the range as the memory held it, as Linux's iomap does.
public func engineShortCopy(writeEnd: WriteEndPolicy = .zeroTail) -> [ShortCopyEngineResult] {
    let saved = FolioMemory.fill
    FolioMemory.fill = .poison
    defer { FolioMemory.fill = saved }
    return engineShortCopyWrites.map {
        engineShortCopy($0.write, name: $0.name, blockSize: $0.blockSize, maxFolioSize: $0.maxFolioSize, writeEnd: writeEnd)
    }
}

func engineShortCopy(
    _ write: ShortCopyWrite, name: String, blockSize: Int, maxFolioSize: Int, writeEnd: WriteEndPolicy
) -> ShortCopyEngineResult {
    var result = ShortCopyEngineResult(name: name, blockSize: blockSize, maxFolioSize: maxFolioSize, write: write)
    let fs = ExtentFS(
        memoryBytes: 16 << 20, config: ExtentFSConfig(blockSize: blockSize, maxFolioSize: maxFolioSize, writeEnd: writeEnd))
    let file = fs.createFile()
    do throws(Errno) {
        if write.unwritten {
            try file.allocate(offset: 0, length: write.fileSize, keepSize: false)
        } else {
            try file.truncate(to: write.fileSize)
        }
        try file.fsync()
        file.dropCaches()
        let data = [UInt8](repeating: 0x77, count: write.length)
        // A write that copies nothing fails (EFAULT) and has written nothing.
        result.written = (try? file.write(data, at: write.offset, faultOffset: write.readable)) ?? 0
        let written = write.offset..<(write.offset + result.written)
        result.staleInCache = staleBytes(try file.read(count: write.fileSize, at: 0), outside: written)
        try file.fsync()
        file.dropCaches()
        result.staleOnDisk = staleBytes(try file.read(count: write.fileSize, at: 0), outside: written)
    } catch {
        result.error = "\(name): \(error)"
    }
    return result
}

/// The bytes of `data` (the file from offset 0) outside `written` that are not zero.
func staleBytes(_ data: [UInt8], outside written: Range<Int>) -> Int {
    var count = 0
    for (offset, byte) in data.enumerated() where byte != 0 && !written.contains(offset) { count += 1 }
    return count
}
