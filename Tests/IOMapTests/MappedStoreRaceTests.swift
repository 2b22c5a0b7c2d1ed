// The S2 interleaving of docs/KERNEL-MODEL.md §10.2 driven through real operations: a buffered write
// reserves new delalloc, a store through a shared mapping dirties a folio inside that range
// (finding the write's reservation and adding none), then the write fails having written
// nothing. The seed's release keeps the store's data and reservation; the truncating
// behaviour it replaced (CleanupPolicy.truncatePageCache) throws the stored bytes away.

import IOMap
import IOMapBase
import PageCache
import Synchronization
import Testing

@testable import ExtentFS

private let K = 1024

/// At the write's first H1 (after iomapBegin reserved its delalloc), stores `bytes` at
/// `offset` through the mapping, as a racing thread would; keeps what it saw.
private final class RacingStore: Sendable {
    struct Seen: Sendable, Equatable {
        var delallocAtStore: [Int]
        var storeError: Errno?
    }

    let offset: Int
    let bytes: [UInt8]
    private let state = Mutex<(file: ExtentFile?, fired: Bool, seen: Seen?)>((nil, false, nil))

    init(offset: Int, bytes: [UInt8]) {
        self.offset = offset
        self.bytes = bytes
    }

    var environment: IOMapEnvironment { IOMapEnvironment(hook: { [self] in fire($0) }) }
    func attach(_ file: ExtentFile) { state.withLock { $0.file = file } }
    var seen: Seen? { state.withLock { $0.seen } }

    func fire(_ event: HookEvent) {
        guard event.point == .afterIomapBegin else { return }
        let file = state.withLock { s -> ExtentFile? in
            defer { s.fired = true }
            return s.fired ? nil : s.file
        }
        guard let file else { return }
        var seen = Seen(delallocAtStore: file.delallocBlockIndices(), storeError: nil)
        do { try file.mappedStore(bytes, at: offset) } catch { seen.storeError = error }
        state.withLock { $0.seen = seen }
    }
}

/// What the race left behind.
private struct RaceResult {
    let fs: ExtentFS
    let file: ExtentFile
    let store: RacingStore
    let writeError: Errno?
}

/// Truncates a new file to `size`, then writes `writeLength` bytes at 0 from a buffer that
/// faults at its first byte, while the racing store runs at H1.
private func race(
    policy: CleanupPolicy, blockSize: Int, size: Int, writeLength: Int, storeAt: Int, bytes: [UInt8]
) throws -> RaceResult {
    let store = RacingStore(offset: storeAt, bytes: bytes)
    let config = ExtentFSConfig(
        blockSize: blockSize, maxFolioSize: 4 * K, cleanupPolicy: policy, environment: store.environment)
    let fs = ExtentFS(memoryBytes: 64 << 20, config: config)
    let file = fs.createFile()
    try file.truncate(to: size)
    store.attach(file)
    file.recordPunches()
    var writeError: Errno?
    do {
        try file.write([UInt8](repeating: 0x57, count: writeLength), at: 0, faultOffset: 0)
    } catch {
        writeError = error
    }
    return RaceResult(fs: fs, file: file, store: store, writeError: writeError)
}

private let stored: [UInt8] = [0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8]

@Suite("Mapped store racing a failed write (S2 through real operations)")
struct MappedStoreRaceTests {
    @Test("S2 race, preserveDirty: the stored bytes and block 2's reservation survive")
    func preserveDirtyKeepsStore() throws {
        // Goal: punches [0,8K) and [12K,16K) only; block 2 stays delalloc until writeback; the 8 bytes survive fsync + dropCaches.
        let o = try race(policy: .preserveDirty, blockSize: 4 * K, size: 16 * K, writeLength: 16 * K, storeAt: 8 * K + 512, bytes: stored)
        #expect(o.writeError == .badAddress)
        #expect(o.store.seen == RacingStore.Seen(delallocAtStore: [0, 1, 2, 3], storeError: nil))
        #expect(o.file.recordedPunches == [ByteRange(0, 8 * K), ByteRange(12 * K, 16 * K)])
        #expect(o.file.delallocBlockIndices() == [2])
        #expect(o.file._folio(at: 8 * K)?.isDirty == true)
        #expect(try o.file.mappedLoad(count: 8, at: 8 * K + 512) == stored)
        #expect(o.file.invariantViolations() == [])
        try o.file.fsync()
        #expect(o.file.delallocBlockIndices() == [])
        #expect(o.file.blockState(2) == .written)
        o.file.dropCaches()
        var expected = [UInt8](repeating: 0, count: 16 * K)
        expected.replaceSubrange((8 * K + 512)..<(8 * K + 520), with: stored)
        #expect(try o.file.read(count: 16 * K, at: 0) == expected)
        #expect(o.fs.checkSpaceAccounting() == nil)
    }

    @Test("S2 race, truncatePageCache: the stored bytes are lost")
    func truncatePageCacheLosesStore() throws {
        // Goal: the pre-seed cleanup truncates the dirty folio and punches [0,16K); the 8 stored bytes read back as zero.
        let o = try race(
            policy: .truncatePageCache, blockSize: 4 * K, size: 16 * K, writeLength: 16 * K, storeAt: 8 * K + 512, bytes: stored)
        #expect(o.writeError == .badAddress)
        #expect(o.store.seen == RacingStore.Seen(delallocAtStore: [0, 1, 2, 3], storeError: nil))
        #expect(o.file.recordedPunches == [ByteRange(0, 16 * K)])
        #expect(o.file.delallocBlockIndices() == [])
        #expect(o.file._folio(at: 8 * K) == nil)
        #expect(o.file.invariantViolations() == [])
        o.file.writeback()
        o.file.dropCaches()
        #expect(try o.file.read(count: 8, at: 8 * K + 512) == [UInt8](repeating: 0, count: 8))
        #expect(o.file.blockState(2) == nil)
        #expect(o.fs.checkSpaceAccounting() == nil)
    }

    @Test("1K blocks: the store lands in the failed write's own folio and keeps all of it", arguments: CleanupPolicy.allCases)
    func sameFolio(policy: CleanupPolicy) throws {
        // Goal: a store dirties the failed write's first folio [0,4K): preserveDirty punches [4K,8K) and keeps blocks 0–3 and the bytes; truncatePageCache loses them.
        let o = try race(policy: policy, blockSize: K, size: 16 * K, writeLength: 8 * K, storeAt: 1536, bytes: stored)
        #expect(o.writeError == .badAddress)
        #expect(o.store.seen == RacingStore.Seen(delallocAtStore: Array(0..<8), storeError: nil))
        var expected = [UInt8](repeating: 0, count: 4 * K)
        switch policy {
        case .preserveDirty:
            let folio = o.file._folio(at: 1536)
            #expect(folio?.range == ByteRange(0, 4 * K))
            #expect(folio?.isDirty == true)
            #expect(o.file.recordedPunches == [ByteRange(4 * K, 8 * K)])
            #expect(o.file.delallocBlockIndices() == [0, 1, 2, 3])
            #expect(o.file.invariantViolations() == [])
            expected.replaceSubrange(1536..<1544, with: stored)
        case .truncatePageCache:
            #expect(o.file._folio(at: 1536) == nil)
            #expect(o.file.recordedPunches == [ByteRange(0, 8 * K)])
            #expect(o.file.delallocBlockIndices() == [])
        }
        try o.file.fsync()
        o.file.dropCaches()
        #expect(o.file.delallocBlockIndices() == [])
        #expect(try o.file.read(count: 4 * K, at: 0) == expected)
        #expect(o.fs.checkSpaceAccounting() == nil)
    }
}
