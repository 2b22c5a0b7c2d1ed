// Counterpart: fstests' fsx (ltp/fsx.c): doread, dowrite, domapread, domapwrite, dotruncate,
// do_preallocate, do_punch_hole, do_zero_range, do_copy_range and dofsync: each op applied to
// the engine's file and to the model, its answer checked.

import ExtentFS
import IOMap
import IOMapBase
import Synchronization
import PageCache

extension FsxRun {
    mutating func apply(_ op: inout FsxOp) {
        let what = "op \(opNumber) (\(op.line))"
        lastOutcome = .skipped
        switch op.name {
        case .read, .read_dontcache: applyRead(op, what)
        case .write, .write_dontcache: applyWrite(&op, what)
        case .mapread: applyMapread(op, what)
        case .mapwrite: applyMapwrite(op, what)
        case .truncate: applyTruncate(op, what)
        case .fallocate, .punch_hole, .zero_range: applySpace(op, what)
        case .copy_range: applyCopyRange(op, what)
        case .fsync: applyFsync(op, what)
        default: fail("\(what): not supported")
        }
    }

    mutating func applyRead(_ op: FsxOp, _ what: String) {
        let result = Result { () throws(Errno) -> [UInt8] in try file.read(count: op.length, at: base + op.offset) }
        lastOutcome = FsxOutcome(result)
        let injected = plan.end().contains { $0.site == .readIOError }
        switch result {
        case .failure(let e):
            if !(e == .ioError && injected) { fail("\(what): read failed with \(e.symbolicName)") }
        case .success(let got):
            let want = model.read(offset: op.offset, count: op.length)
            // An injected read error may end the read early, as an I/O error does.
            if got.count != want.count && !(injected && got.count < want.count) {
                fail("\(what): read returned \(got.count) bytes, the model has \(want.count)")
            }
            let bad = model.badBytes(got, at: op.offset)
            if !bad.isEmpty { fail("\(what): read returned bytes that differ from the model", bad: bad) }
        }
        if op.name == .read_dontcache { file.mapping.invalidateClean(ByteRange(start: base + op.offset, length: op.length)) }
    }

    mutating func applyWrite(_ op: inout FsxOp, _ what: String) {
        let n = opNumber
        let data = fsxData(op: n, offset: op.offset, count: op.length)
        let (request, replay, writeEnd) = (op.raceRequest, op.race, op.offset + op.length)
        raceBox.state.withLock {
            $0.request = request
            $0.replay = replay
            $0.writeEnd = writeEnd
            $0.data = { offset, count in fsxData(op: n &+ 128, offset: offset, count: count) }
            $0.landed = nil
        }
        let rate = op.raceRequest != nil ? config.raceUserBufferFaultRate : nil
        let faultOffset = plan.userBufferFault(offset: op.offset, length: op.length, rate: rate)
        let result = Result { () throws(Errno) -> Int in
            try file.write(data, at: base + op.offset, faultOffset: faultOffset.map { $0 - op.offset })
        }
        lastOutcome = FsxOutcome(result)
        let landed = raceBox.state.withLock { s in
            let l = s.landed
            s.request = nil
            s.replay = nil
            s.landed = nil
            return l
        }
        op.race = landed?.0
        op.raceRequest = nil
        if let race = landed?.0 { report.racesLanded[race.kind.rawValue, default: 0] += 1 }
        // A store ahead of the cursor is overwritten by whatever the write copies after
        // it, and survives wherever the write stopped first.
        if let (race, bytes) = landed, race.kind == .mapwrite { model.store(bytes[...], at: race.offset) }
        checkWrite(op, result, data, faultOffset: faultOffset, what)
        if op.name == .write_dontcache { _ = file.writeback(ByteRange(start: base + op.offset, length: op.length)) }
    }

    /// A write's answer: an error or a short count only under a fault, never a byte past an
    /// unreadable one; what it wrote goes to the model.
    mutating func checkWrite(_ op: FsxOp, _ result: Result<Int, Errno>, _ data: [UInt8], faultOffset: Int?, _ what: String) {
        let faults = plan.end()
        switch result {
        case .failure(let e):
            report.failedWrites += 1
            if faults.isEmpty || ![Errno.noSpace, .ioError, .badAddress].contains(e) {
                fail("\(what): write failed with \(e.symbolicName)\(faults.isEmpty ? " with no fault injected" : "")")
            }
        case .success(let written):
            if written < op.length { report.shortWrites += 1 }
            if written < op.length && faults.isEmpty { fail("\(what): write returned \(written) with no fault injected") }
            if written <= 0 || written > op.length { fail("\(what): write returned \(written)") }
            if let f = faultOffset, written > f - op.offset {
                fail("\(what): write returned \(written), past the unreadable byte at \(f)")
            }
            model.write(data[0..<min(max(written, 0), op.length)], at: op.offset)
        }
    }

    mutating func applyMapread(_ op: FsxOp, _ what: String) {
        let size = model.size
        guard size > 0, op.offset < size else { return }
        let count = min(op.length, size - op.offset)
        let result = FaultInjector.exempting {
            Result { () throws(Errno) -> [UInt8] in try file.mappedLoad(count: count, at: base + op.offset) }
        }
        lastOutcome = FsxOutcome(result)
        switch result {
        case .failure(let e): fail("\(what): mapped load failed with \(e.symbolicName)")
        case .success(let got):
            let bad = model.badBytes(got, at: op.offset)
            if !bad.isEmpty { fail("\(what): mapped load differs from the model", bad: bad) }
        }
        checkEOFPage(what)
    }

    mutating func applyMapwrite(_ op: FsxOp, _ what: String) {
        let data = fsxData(op: opNumber, offset: op.offset, count: op.length)
        let end = op.offset + op.length
        let result = FaultInjector.exempting {
            Result { () throws(Errno) in
                if end > file.size - base { try file.truncate(to: base + end) }
                try file.mappedStore(data, at: base + op.offset)
                _ = file.writeback(ByteRange(start: base + op.offset, length: op.length))
            }
        }
        lastOutcome = FsxOutcome(result)
        if case .failure(let e) = result { return fail("\(what): mapped write failed with \(e.symbolicName)") }
        if end > model.size { model.truncate(to: end) }
        model.store(data[...], at: op.offset)
        checkEOFPage(what)
    }

    mutating func applyTruncate(_ op: FsxOp, _ what: String) {
        let result = FaultInjector.exempting { Result { () throws(Errno) in try file.truncate(to: base + op.newSize) } }
        lastOutcome = FsxOutcome(result)
        if case .failure(let e) = result { return fail("\(what): truncate failed with \(e.symbolicName)") }
        model.truncate(to: op.newSize)
    }

    /// fallocate, punch_hole and zero_range: not the write path under test, so fault-free.
    mutating func applySpace(_ op: FsxOp, _ what: String) {
        let result = FaultInjector.exempting {
            Result { () throws(Errno) in
                switch op.name {
                case .fallocate: try file.allocate(offset: base + op.offset, length: op.length, keepSize: op.keepSize)
                case .punch_hole: try file.punchHole(offset: base + op.offset, length: op.length)
                default: try file.zeroRange(offset: base + op.offset, length: op.length, keepSize: op.keepSize)
                }
            }
        }
        lastOutcome = FsxOutcome(result)
        if case .failure(let e) = result { return fail("\(what): \(op.name.rawValue) failed with \(e.symbolicName)") }
        if op.name != .fallocate { model.zero(offset: op.offset, length: op.length) }
        if op.name != .punch_hole && !op.keepSize && op.offset + op.length > model.size {
            model.truncate(to: op.offset + op.length)
        }
    }

    mutating func applyCopyRange(_ op: FsxOp, _ what: String) {
        let (src, len, dst) = (op.offset, op.length, op.destination)
        let count = src >= model.size ? 0 : min(len, model.size - src)
        let overlap = dst + count > src && dst < src + count
        let result = FaultInjector.exempting {
            Result { () throws(Errno) -> Int in try file.copyFileRange(from: base + src, length: len, to: base + dst) }
        }
        lastOutcome = FsxOutcome(result)
        switch result {
        case .failure(let e):
            if !(overlap && e == .invalidArgument) { fail("\(what): copy_range failed with \(e.symbolicName)") }
        case .success(let copied):
            if overlap || copied != count {
                return fail("\(what): copy_range copied \(copied), expected \(overlap ? "EINVAL" : String(count))")
            }
            model.copy(from: src, count: count, to: dst)
        }
    }

    mutating func applyFsync(_ op: FsxOp, _ what: String) {
        let result = Result { () throws(Errno) in try file.fsync() }
        lastOutcome = FsxOutcome(result)
        noteWritebackFaults(plan.end())
        if case .failure(let e) = result {
            if !(e == .ioError && writebackErrorPending) { fail("\(what): fsync failed with \(e.symbolicName)") }
        }
        writebackErrorPending = false
    }
}
