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

/// The rare half of warnOnce: traps in a verify build, else prints once per site.
@usableFromInline @inline(never)
func warned(_ message: String, file: StaticString, line: UInt) {
    #if IOMAP_VERIFY
        fatalError("warning: \(message)", file: file, line: line)
    #else
        let site = "\(file):\(line)"
        let first = warnedSites.withLock { $0.insert(site).inserted }
        if first { print("swift-iomap warning at \(site): \(message)") }
    #endif
}
