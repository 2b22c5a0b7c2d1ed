// Counterpart: the kernel's per-connection counters in fs/fuse/control.c (waiting requests)
// and the opcode names of fs/fuse/dev.c's tracepoints, kept daemon-side: what `iomap mount
// --json-stats` reports.
//
// One relaxed atomic per opcode: the request threads count without sharing a lock, and a
// report taken while they run is a set of independent counts, each exact for its own
// moment, which is all a counter report promises.

import Synchronization

/// One counter (an Atomic cannot be an array's element: it is not copyable).
final class Counter: Sendable {
    let value = Atomic<Int>(0)
    func add(_ n: Int = 1) { value.add(n, ordering: .relaxed) }
    var count: Int { value.load(ordering: .relaxed) }
}

/// The daemon's counters.
public final class Stats: Sendable {
    /// Requests per opcode number (0..<64; larger opcodes count in the last slot).
    let requests: [Counter]
    /// ENOSYS answers per opcode number.
    let enosys: [Counter]
    /// Requests answered with an errno (ENOSYS included).
    let errors = Atomic<Int>(0)
    /// Requests that did not decode (short, garbled, a bad name).
    let badRequests = Atomic<Int>(0)
    /// fsync, fdatasync and fsyncdir calls that reached the volume.
    let engineFsyncs = Atomic<Int>(0)
    let bytesRead = Atomic<Int>(0)
    let bytesWritten = Atomic<Int>(0)

    static let slots = 64

    public init() {
        requests = (0..<Self.slots).map { _ in Counter() }
        enosys = (0..<Self.slots).map { _ in Counter() }
    }

    static func slot(_ opcode: UInt32) -> Int { min(Int(opcode), slots - 1) }

    func request(_ opcode: UInt32) { requests[Self.slot(opcode)].add() }

    func notImplemented(_ opcode: UInt32) { enosys[Self.slot(opcode)].add() }

    /// A copy of the counters.
    public func snapshot() -> StatsSnapshot {
        func named(_ counters: [Counter]) -> [String: Int] {
            var out: [String: Int] = [:]
            for (i, c) in counters.enumerated() {
                let n = c.count
                guard n > 0 else { continue }
                out[Opcode(rawValue: UInt32(i))?.name ?? "opcode_\(i)"] = n
            }
            return out
        }
        let enosysByOpcode = named(enosys)
        return StatsSnapshot(
            requests: named(requests), enosys: enosysByOpcode.values.reduce(0, +), enosysByOpcode: enosysByOpcode,
            errors: errors.load(ordering: .relaxed), badRequests: badRequests.load(ordering: .relaxed),
            engineFsyncs: engineFsyncs.load(ordering: .relaxed), bytesRead: bytesRead.load(ordering: .relaxed),
            bytesWritten: bytesWritten.load(ordering: .relaxed))
    }
}

/// The counters at one moment.
public struct StatsSnapshot: Sendable, Hashable {
    /// Requests by opcode name.
    public var requests: [String: Int]
    /// ENOSYS answers in all, and by opcode name.
    public var enosys: Int
    public var enosysByOpcode: [String: Int]
    public var errors: Int
    public var badRequests: Int
    public var engineFsyncs: Int
    public var bytesRead: Int
    public var bytesWritten: Int
}
