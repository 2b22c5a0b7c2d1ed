// Counterpart: the seed commit's race (docs/KERNEL-MODEL.md §8), single-threaded: another
// actor's operation made from inside a write at hook point H3 (iomap_write_iter's copy
// done, its failure cleanup still ahead). fsx itself has nothing of the kind.

import ExtentFS
import IOMap
import IOMapBase
import Synchronization

/// The race a write's H3 hook makes once. Generation asks for a kind: a store at a fraction
/// of the range still ahead of the write's cursor, or a writeback or reclaim at the first
/// copy; replay gives a recorded race, which fires only where it was recorded.
final class FsxRaceBox: Sendable {
    struct State {
        var file: ExtentFile?
        var base = 0
        var request: FsxRaceRequest?
        var replay: FsxRace?
        var writeEnd = 0
        var data: (Int, Int) -> [UInt8] = { _, _ in [] }
        var landed: (FsxRace, [UInt8])?
    }

    /// What an H3 event takes out of the box.
    struct Taken {
        var file: ExtentFile
        var base: Int
        var request: FsxRaceRequest?
        var replay: FsxRace?
        var writeEnd: Int
        var data: (Int, Int) -> [UInt8]
    }

    let state = HarnessMutex(State())

    func fire(_ event: HookEvent) {
        guard event.point == .afterCopy, let t = take(event) else { return }
        let lo = event.range.end - t.base
        guard let race = placed(t, cursor: lo) else { return }
        switch race.kind {
        case .mapwrite:
            let bytes = t.data(race.offset, race.length)
            let stored = FaultInjector.exempting { (try? t.file.mappedStore(bytes, at: t.base + race.offset)) != nil }
            if stored { state.withLock { $0.landed = (race, bytes) } }
        case .writeback:
            // The other actor runs fault-free: only the write is being failed.
            _ = FaultInjector.exempting { t.file.writeback() }
            state.withLock { $0.landed = (race, []) }
        case .reclaim:
            _ = FaultInjector.exempting { t.file.reclaim(targetBytes: 0) }
            state.withLock { $0.landed = (race, []) }
        }
    }

    /// The pending race, taken out of the box: at the write's first copy, except that a
    /// recorded writeback or reclaim waits for the copy that ends at its recorded cursor.
    func take(_ event: HookEvent) -> Taken? {
        state.withLock { s -> Taken? in
            guard let file = s.file, s.request != nil || s.replay != nil else { return nil }
            if let r = s.replay, r.kind != .mapwrite, r.offset != event.range.end - s.base { return nil }
            let t = Taken(file: file, base: s.base, request: s.request, replay: s.replay, writeEnd: s.writeEnd, data: s.data)
            s.request = nil
            s.replay = nil
            return t
        }
    }

    /// Where the race lands with the write's cursor at `lo`, or nil when a store has no room
    /// ahead of it below EOF.
    func placed(_ t: Taken, cursor lo: Int) -> FsxRace? {
        let hi = min(t.writeEnd, t.file.size - t.base)
        if let replay = t.replay {
            if replay.kind != .mapwrite { return replay }
            guard replay.offset >= lo, replay.offset + replay.length <= hi else { return nil }
            return replay
        }
        guard let request = t.request else { return nil }
        if request.kind != .mapwrite { return FsxRace(request.kind, offset: lo) }
        guard hi - lo >= 1 else { return nil }
        let offset = lo + Int(Double(hi - lo - 1) * request.fraction)
        return FsxRace(.mapwrite, offset: offset, length: min(request.length, hi - offset))
    }
}
