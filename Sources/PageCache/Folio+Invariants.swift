// Counterpart: the consistency checks of ifs_free() and the folio dump of dump_page()
// (fs/iomap/buffered-io.c, mm/debug.c): a folio's per-block state against its flags.

extension Folio {
    /// Cross-checks the per-block state against the folio flags (the pair of checks in
    /// ifs_free): the folio is uptodate exactly when every block is, and every dirty block is
    /// uptodate (K1).
    public func checkInvariants() {
        guard state != nil else { return }
        if allBitsSet(0) != isUptodate {
            fatalError("folio at \(pos): uptodate flag \(isUptodate) disagrees with its block bitmap")
        }
        for b in 0..<blockCount where bit(stateWords, b) && !bit(0, b) {
            fatalError("folio at \(pos): block \(b) is dirty but not uptodate (K1)")
        }
    }

    /// Runs `checkInvariants` in a verify build; nothing otherwise. The caller holds the lock.
    @inline(__always)
    public func verifyInvariants() {
        #if IOMAP_VERIFY
            checkInvariants()
        #endif
    }

    /// A short description for failure messages.
    public var debugState: String {
        var s = "folio [\(pos), \(end)) \(isUptodate ? "U" : "-")\(isDirty ? "D" : "-")\(isWriteback ? "W" : "-")"
        if state != nil {
            s += " up=" + (0..<blockCount).map { bit(0, $0) ? "1" : "0" }.joined()
            s += " dirty=" + (0..<blockCount).map { bit(stateWords, $0) ? "1" : "0" }.joined()
        }
        return s
    }
}
