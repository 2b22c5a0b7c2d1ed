// Counterpart: WARN_ON_ONCE() and the kernel's debug assertions (CONFIG_XFS_DEBUG).
//
// Four tiers of checking:
// - `precondition`: O(1) API contracts, always on.
// - `verify(...)`: expensive cross-checks, compiled in only with `-DIOMAP_VERIFY`, which is
//   independent of the optimisation level so that release-mode fuzzing keeps them.
// - `warnOnce(...)`: "cannot happen, but mirror the kernel": traps in a verify build, else
//   prints once per site and lets the caller return EIO, as the kernel degrades.
// `fatalError` is used rather than `precondition` because its message survives `-O`.

import Synchronization

/// True when the package was built with `-DIOMAP_VERIFY`.
public let verifyBuild: Bool = {
    #if IOMAP_VERIFY
        return true
    #else
        return false
    #endif
}()

/// An expensive invariant check; compiled out unless `IOMAP_VERIFY` is defined (inlinable,
/// so that it leaves no call behind either).
@inlinable @inline(__always)
public func verify(
    _ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) {
    #if IOMAP_VERIFY
        if !condition() { fatalError("verify failed: \(message())", file: file, line: line) }
    #endif
}

private let warnedSites = Mutex<Set<String>>([])

/// Reports a condition the kernel guards with WARN_ON_ONCE. Returns `condition` so that
/// callers can write `if warnOnce(x, "...") { throw .ioError }`. Inlinable, so that the
/// common case (the condition is false) costs one test and no call.
@inlinable @inline(__always) @discardableResult
public func warnOnce(
    _ condition: Bool, _ message: @autoclosure () -> String,
    file: StaticString = #fileID, line: UInt = #line
) -> Bool {
    guard condition else { return false }
    warned(message(), file: file, line: line)
    return true
}

/// Where a harness collects the engine's warnings as findings of its own, instead of a verify
/// build dying on the first. A harness that runs random ops against a model (fsx) binds one
/// with `Warnings.$sink.withValue` and turns what it collects into a violation with a replay
/// line; its minimizer's replays then see a warning as a failure rather than a crash. Without
/// one, a verify build traps as before. The engine goes on as it does when the warning is
/// only printed (the release behaviour), which the checkers then judge.
public final class WarningSink: Sendable {
    private let messages = Mutex<[String]>([])

    public init() {}

    func add(_ message: String) { messages.withLock { $0.append(message) } }

    /// The warnings so far, first first.
    public var collected: [String] { messages.withLock { $0 } }
}

public enum Warnings {
    /// The sink of the warnings raised on this task (thread), if a harness bound one.
    @TaskLocal public static var sink: WarningSink?
}

/// The rare half of warnOnce: traps in a verify build, else prints once per site; either way,
/// a harness's sink takes it instead.
@usableFromInline @inline(never)
func warned(_ message: String, file: StaticString, line: UInt) {
    if let sink = Warnings.sink { return sink.add("\(message) (\(file):\(line))") }
    #if IOMAP_VERIFY
        fatalError("warning: \(message)", file: file, line: line)
    #else
        let site = "\(file):\(line)"
        let first = warnedSites.withLock { $0.insert(site).inserted }
        if first { print("swift-iomap warning at \(site): \(message)") }
    #endif
}
