// The engine's lock order under the lock-order checker (-DIOMAP_LOCKDEP): a deliberate
// inversion between two of the engine's own locks traps and names both; the documented
// nesting of a failing write's cleanup does not.

@testable import ExtentFS
import IOMap
import IOMapBase
import PageCache
import Testing

@Suite("Engine lock order")
struct LockOrderTests {
    @Test("taking a folio lock inside the extent-map lock traps, naming both locks", .enabled(if: LockDep.isEnabled))
    func folioInsideExtentMapTraps() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let fs = ExtentFS(memoryBytes: 1 << 20, config: ExtentFSConfig(blockSize: 4096, maxFolioSize: 4096))
            let file = fs.createFile()
            _ = try? file.write([1, 2, 3], at: 0)
            file.extents.withLock { _ in
                // The punch callback order inverted: folio lock (outer) under ILOCK (inner).
                _ = file.mapping.lockFolio(0)
            }
        }
        let message = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(message.contains("acquiring folio lock (order 30) while holding extent-map lock (order 40)"), "\(message)")
    }

    @Test("taking the inode I/O lock inside the invalidate lock traps", .enabled(if: LockDep.isEnabled))
    func ioLockInsideInvalidateTraps() async throws {
        let result = try await #require(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let fs = ExtentFS(memoryBytes: 1 << 20, config: ExtentFSConfig(blockSize: 4096, maxFolioSize: 4096))
            let file = fs.createFile()
            file.mapping.invalidateLock.lockShared()
            // A fault (invalidate lock held) calling into write(): inverted.
            _ = try? file.write([1], at: 0)
        }
        let message = String(decoding: result.standardErrorContent, as: UTF8.self)
        #expect(message.contains("acquiring inode I/O lock (order 10) while holding invalidate lock (order 20)"), "\(message)")
    }

    @Test("a failing write's cleanup, a fault, writeback and a punch nest in the documented order", .enabled(if: LockDep.isEnabled))
    func documentedNesting() throws {
        let fs = ExtentFS(memoryBytes: 4 << 20, config: ExtentFSConfig(blockSize: 1024, maxFolioSize: 16 << 10))
        let file = fs.createFile()
        try file.truncate(to: 64 << 10)
        try file.mappedStore([7], at: 5000)
        #expect(throws: Errno.badAddress) { try file.write([UInt8](repeating: 1, count: 32 << 10), at: 0, faultOffset: 0) }
        try file.punchHole(offset: 20 << 10, length: 8 << 10)
        try file.fsync()
        #expect(LockDep.heldLevels().isEmpty)
        #expect(try file.read(count: 1, at: 5000) == [7])
    }
}
