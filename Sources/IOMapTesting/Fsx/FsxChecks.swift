// Counterpart: fstests' fsx (ltp/fsx.c): check_buffers, check_size and check_eofpage, and
// its close-and-reopen check of the whole file; plus the engine's own invariants
// (docs/KERNEL-MODEL.md §8) and space accounting, which fsx cannot see.

import ExtentFS
import IOMap
import IOMapBase
import PageCache

extension FsxRun {
    /// fsx's check_eofpage: the bytes of the EOF page past EOF read as zero through the mapping.
    mutating func checkEOFPage(_ what: String) {
        let size = model.size
        let pageEnd = roundUp(size, pageSize)
        guard size > 0, pageEnd > size else { return }
        let tail = FaultInjector.exempting {
            Result { () throws(Errno) -> [UInt8] in try file.mappedLoad(count: pageEnd - size, at: base + size) }
        }
        if case .success(let bytes) = tail, let i = bytes.indices.first(where: { bytes[$0] != 0 && !model.isUnknown(size + $0) }) {
            fail(
                "\(what): byte \(size + i) of the EOF page, past EOF, reads \(bytes[i]) through the mapping, not 0",
                bad: [FsxBadByte(offset: size + i, good: 0, bad: bytes[i])])
        }
    }

    /// The engine's bytes of the run's range, read fault-free.
    func engineImage() -> [UInt8] {
        FaultInjector.exempting {
            (try? file.read(count: model.size + pageSize, at: base)) ?? []
        }
    }

    /// Compares the whole file and checks the invariants.
    mutating func check(_ when: String) {
        let got = engineImage()
        if got.count != model.size { return fail("\(when): the file reads \(got.count) bytes, the model has \(model.size)") }
        let bad = model.badBytes(got, at: 0)
        if !bad.isEmpty { return fail("\(when): the file differs from the model", bad: bad) }
        checkInvariants(when)
    }

    /// The engine's invariants and the file system's space accounting.
    mutating func checkInvariants(_ when: String) {
        if let p = file.invariantViolations().first { return fail("\(when): \(p)") }
        if let p = fs.checkSpaceAccounting() { fail("\(when): \(p)") }
    }

    /// fsync and drop the cache (fault-free), then expect no delalloc block and compare all:
    /// what reaches the disk is what the model holds.
    mutating func flushCheck(_ label: String) {
        let synced = FaultInjector.exempting { Result { () throws(Errno) in try file.fsync() } }
        if case .failure(let e) = synced, !(e == .ioError && writebackErrorPending) {
            fail("\(label) fsync failed with \(e.symbolicName)")
        }
        // The fsync reported the pending writeback error, if any.
        writebackErrorPending = false
        file.dropCaches()
        if file.delallocBlocks != 0 { fail("\(file.delallocBlocks) delalloc blocks left after the \(label) fsync") }
        check("after the \(label) fsync and cache drop")
    }

    /// The random runner's check after every entry: the invariants, and the bytes around what
    /// the entry changed, so that a violation is reported at the op that caused it.
    mutating func checkAround(_ entry: FsxEntry, _ when: String) {
        checkInvariants(when)
        guard report.violation == nil, case .op(let op) = entry, !op.skip else { return }
        let bs = config.blockSize
        let range: (Int, Int)
        switch op.name {
        case .write, .write_dontcache, .fallocate, .punch_hole, .zero_range: range = (max(0, op.offset - bs), op.offset + op.length + bs)
        case .mapwrite: range = (op.offset, op.offset + op.length)
        case .truncate: range = (max(0, op.newSize - bs), op.newSize + bs)
        case .copy_range: range = (op.destination, op.destination + op.length)
        default: return
        }
        let count = range.1 - range.0
        let got = FaultInjector.exempting { Result { () throws(Errno) -> [UInt8] in try file.read(count: count, at: base + range.0) } }
        switch got {
        case .failure(let e): fail("\(when): read of [\(range.0), \(range.1)) failed with \(e.symbolicName)")
        case .success(let bytes):
            let want = model.read(offset: range.0, count: count).count
            if bytes.count != want {
                return fail("\(when): read of [\(range.0), \(range.1)) returned \(bytes.count) bytes, the model has \(want)")
            }
            let bad = model.badBytes(bytes, at: range.0)
            if !bad.isEmpty { fail("\(when) (\(op.name.rawValue)): [\(range.0), \(range.1)) differs from the model", bad: bad) }
        }
    }
}
