// The write-path scenario tests' kit: a file system on a recording device, a copy-limit rule
// standing in for the user buffer, recorders for the iomap calls, deterministic data, and
// the checks a scenario ends with. Used by WriteLoopTests (docs/KERNEL-MODEL.md §10.1) and
// StaleMappingTests (§10.3).

import IOMap
import IOMapBase
import PageCache
import Synchronization
import Foundation
import Testing

@testable import ExtentFS

/// Fixtures shared by the write-loop and stale-mapping scenario tests.
enum WriteTestKit {
    // MARK: Recording

    /// A thread-safe append-only log.
    final class Recorder<Element: Sendable>: Sendable {
        private let items = Mutex<[Element]>([])
        init() {}
        func append(_ item: Element) { items.withLock { $0.append(item) } }
        var all: [Element] { items.withLock { $0 } }
        var count: Int { items.withLock { $0.count } }
        func reset() { items.withLock { $0 = [] } }
    }

    /// A thread-safe counter; `next()` returns the count including this call (1, 2, ...).
    final class Counter: Sendable {
        private let value = Mutex(0)
        init() {}
        func next() -> Int {
            value.withLock {
                $0 += 1
                return $0
            }
        }
        var current: Int { value.withLock { $0 } }
    }

    // MARK: Device

    /// One device request, in device blocks.
    struct DeviceIO: Equatable, Sendable, CustomStringConvertible {
        let block: Int
        let count: Int
        var description: String { "read(block \(block), count \(count))" }
    }

    /// A memory device that logs every read request.
    final class CountingDevice: BlockDevice {
        let inner: MemoryBlockDevice
        private let readLog = Mutex<[DeviceIO]>([])

        init(blockSize: Int, blockCount: Int) {
            inner = MemoryBlockDevice(blockSize: blockSize, blockCount: blockCount)
        }

        var blockSize: Int { inner.blockSize }
        var blockCount: Int { inner.blockCount }

        func read(block: Int, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) {
            readLog.withLock { $0.append(DeviceIO(block: block, count: count)) }
            try inner.read(block: block, count: count, into: buffer)
        }

        func write(block: Int, count: Int, from buffer: UnsafeRawBufferPointer) throws(Errno) {
            try inner.write(block: block, count: count, from: buffer)
        }

        func flush() throws(Errno) { try inner.flush() }

        /// The reads since the last `resetReads()`.
        var reads: [DeviceIO] { readLog.withLock { $0 } }
        func resetReads() { readLog.withLock { $0 = [] } }
        var writeCount: Int { inner.writeCount }

        /// The raw bytes of one device block, read past the log.
        func rawBlock(_ block: Int) throws -> [UInt8] {
            var out = [UInt8](repeating: 0, count: blockSize)
            let result = out.withUnsafeMutableBytes { p in
                Result { () throws(Errno) in try inner.read(block: block, count: 1, into: p) }
            }
            try result.get()
            return out
        }
    }

    // MARK: Hooks and scripted copies

    /// Records every hook event and runs the action registered for its point.
    final class Hooks: Sendable {
        let events = Recorder<HookEvent>()
        private let actions = Mutex<[HookPoint: @Sendable (HookEvent) -> Void]>([:])
        init() {}

        func on(_ point: HookPoint, _ action: @escaping @Sendable (HookEvent) -> Void) {
            actions.withLock { $0[point] = action }
        }

        func fire(_ event: HookEvent) {
            events.append(event)
            let action = actions.withLock { $0[event.point] }
            action?(event)
        }

        /// The ranges of the events at `point`, in order.
        func ranges(_ point: HookPoint) -> [ByteRange] { events.all.filter { $0.point == point }.map(\.range) }
    }

    /// One copy from the user buffer as the fault injector saw it, with the limit it answered.
    struct CopyAttempt: Equatable, Sendable, CustomStringConvertible {
        let offset: Int
        let length: Int
        let limit: Int?
        var description: String { "copy(\(offset), \(length)) -> \(limit.map(String.init) ?? "full")" }
    }

    /// Decides each copy's limit: `rule(offset, length, earlierAttemptsAtOffset)` returns the
    /// number of bytes the copy delivers, or nil for a full copy. Every attempt is logged.
    final class CopyScript: Sendable {
        typealias Rule = @Sendable (_ offset: Int, _ length: Int, _ earlierAtOffset: Int) -> Int?
        let attempts = Recorder<CopyAttempt>()
        private let rule = Mutex<Rule?>(nil)
        init() {}

        func setRule(_ r: @escaping Rule) { rule.withLock { $0 = r } }

        func answer(_ query: FaultQuery) -> Int? {
            guard query.site == .shortCopy else { return nil }
            let earlier = attempts.all.filter { $0.offset == query.offset }.count
            let r = rule.withLock { $0 }
            let limit = r?(query.offset, query.length, earlier)
            attempts.append(CopyAttempt(offset: query.offset, length: query.length, limit: limit))
            return limit
        }
    }

    // MARK: Rig

    /// A file system on a counting device, with hooks and a copy script wired in.
    struct Rig {
        let fs: ExtentFS
        let file: ExtentFile
        let device: CountingDevice
        let hooks: Hooks
        let copies: CopyScript
        var inode: Inode { file.inode }
    }

    /// Makes a rig. `maxFolioSize` defaults to one page: large folios off, as in the rows
    /// that say "P = 4K" or "large folios off".
    static func makeRig(blockSize: Int, maxFolioSize: Int = pageSize, deviceBytes: Int = 16 << 20) -> Rig {
        let hooks = Hooks()
        let copies = CopyScript()
        let environment = IOMapEnvironment(
            faults: FaultInjector(script: { copies.answer($0) }), hook: { hooks.fire($0) })
        let config = ExtentFSConfig(blockSize: blockSize, maxFolioSize: maxFolioSize, environment: environment)
        let device = CountingDevice(blockSize: blockSize, blockCount: deviceBytes / blockSize)
        let fs = ExtentFS(device: device, config: config)
        return Rig(fs: fs, file: fs.createFile(), device: device, hooks: hooks, copies: copies)
    }

    // MARK: Data

    /// Deterministic bytes, never zero, so that zero-filled bytes stand out.
    static func pattern(_ count: Int, seed: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 8) &+ seed &* 77) | 1 }
    }

    /// `base` with `patch` copied in at `offset` (growing `base` with zeroes if needed).
    static func overlay(_ base: [UInt8], _ patch: [UInt8], at offset: Int) -> [UInt8] {
        var out = base
        if out.count < offset + patch.count { out += [UInt8](repeating: 0, count: offset + patch.count - out.count) }
        out.replaceSubrange(offset..<offset + patch.count, with: patch)
        return out
    }

    /// Makes `file` hold `bytes` from offset 0, written to disk and clean, with an empty cache
    /// (write, fsync, drop caches), then clears the logs of device reads, hooks and copies.
    /// Runs `body` while a second thread holds `folio`'s lock, as a contending task would.
    static func whileAnotherThreadHolds<R>(_ folio: Folio, _ body: () -> R) -> R {
        let locked = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let done = DispatchSemaphore(value: 0)
        let holder = Thread {
            folio.lock()
            locked.signal()
            release.wait()
            folio.unlock()
            done.signal()
        }
        holder.start()
        locked.wait()
        let r = body()
        release.signal()
        done.wait()
        return r
    }

    static func makeCleanFile(
        _ rig: Rig, _ bytes: [UInt8], file: ExtentFile? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let file = file ?? rig.file
        let n = try file.write(bytes, at: 0)
        #expect(n == bytes.count, sourceLocation: sourceLocation)
        try file.fsync()
        file.dropCaches()
        #expect(file.mapping.folioCount == 0, sourceLocation: sourceLocation)
        #expect(file.delallocBlocks == 0, sourceLocation: sourceLocation)
        rig.device.resetReads()
        rig.hooks.events.reset()
        rig.copies.attempts.reset()
    }

    /// The device block holding file block `fileBlock`, or nil when it has none.
    static func diskBlock(of fileBlock: Int, in file: ExtentFile) -> Int? {
        for r in file.extentRecords where r.startBlock <= fileBlock && fileBlock < r.endBlock {
            return r.diskBlock.map { $0 + (fileBlock - r.startBlock) }
        }
        return nil
    }

    /// The per-block uptodate and dirty bits of a folio.
    static func blockBits(_ folio: Folio) -> (uptodate: [Bool], dirty: [Bool]) {
        ((0..<folio.blockCount).map { folio.isBlockUptodate($0) }, (0..<folio.blockCount).map { folio.isBlockDirty($0) })
    }

    /// Bytes `range` of a folio (offsets inside the folio).
    static func bytes(of folio: Folio, _ range: Range<Int>) -> [UInt8] {
        Array(UnsafeRawBufferPointer(start: folio.data + range.lowerBound, count: range.count))
    }

    /// The whole file as a fresh mount sees it: write everything back, drop the cache, read.
    static func contentAfterRemount(_ file: ExtentFile, sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8] {
        try file.fsync()
        file.dropCaches()
        #expect(file.mapping.folioCount == 0, "a folio survived fsync + drop caches", sourceLocation: sourceLocation)
        return try file.read(count: file.size, at: 0)
    }

    /// docs/KERNEL-MODEL.md §8 at a quiet point: K1, D1, D3 for the file and D4 for the file system.
    static func expectQuiet(_ rig: Rig, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(rig.file.invariantViolations() == [], sourceLocation: sourceLocation)
        #expect(rig.fs.checkSpaceAccounting() == nil, sourceLocation: sourceLocation)
    }

    // MARK: Driving the engine directly

    /// iomapFileBufferedWrite as the write system call runs it (inode I/O lock exclusive),
    /// but with chosen operations and iteration flags.
    static func directWrite(
        _ file: ExtentFile, _ bytes: [UInt8], at pos: Int, ops: any IOMapOperations, flags: IterFlags = [],
        faultOffset: Int? = nil
    ) -> Result<Int, Errno> {
        file.inode.ioLock.lockExclusive()
        defer { file.inode.ioLock.unlockExclusive() }
        return bytes.withUnsafeBytes { p in
            var source = UserSource(p, faultOffset: faultOffset)
            return Result { () throws(Errno) -> Int in
                try iomapFileBufferedWrite(file.inode, pos: pos, source: &source, ops: ops, flags: flags)
            }
        }
    }

    /// One ->iomap_begin call and the mapping it produced.
    struct BeginCall: Equatable, Sendable, CustomStringConvertible {
        let pos: Int
        let length: Int
        let kind: IOMapping.Kind
        let isNew: Bool
        var description: String { "begin(\(pos), \(length)) -> \(kind)\(isNew ? " NEW" : "")" }
    }

    /// One ->iomap_end call.
    struct EndCall: Equatable, Sendable, CustomStringConvertible {
        let pos: Int
        let length: Int
        let written: Int
        var description: String { "end(\(pos), \(length), written \(written))" }
    }

    /// The file's own mapping operations, logged. With `validates: false` the validity
    /// check always passes: a file system without ->iomap_valid, as before the series.
    final class RecordingOps: IOMapOperations {
        let file: ExtentFile
        let validates: Bool
        let begins = Recorder<BeginCall>()
        let ends = Recorder<EndCall>()

        init(_ file: ExtentFile, validates: Bool = true) {
            self.file = file
            self.validates = validates
        }

        func iomapBegin(_ inode: Inode, pos: Int, length: Int, flags: IterFlags) throws(Errno) -> (IOMapping, IOMapping?) {
            let result = try file.iomapBegin(inode, pos: pos, length: length, flags: flags)
            begins.append(BeginCall(pos: pos, length: length, kind: result.0.kind, isNew: result.0.flags.contains(.new)))
            return result
        }

        func iomapEnd(_ inode: Inode, pos: Int, length: Int, written: Int, flags: IterFlags, mapping: IOMapping) throws(Errno) {
            ends.append(EndCall(pos: pos, length: length, written: written))
            try file.iomapEnd(inode, pos: pos, length: length, written: written, flags: flags, mapping: mapping)
        }

        func iomapValid(_ inode: Inode, _ mapping: IOMapping) -> Bool {
            validates ? file.iomapValid(inode, mapping) : true
        }

        func readFileRange(_ inode: Inode, mapping: IOMapping, fileOffset: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) {
            try file.readFileRange(inode, mapping: mapping, fileOffset: fileOffset, into: buffer)
        }
    }
}
