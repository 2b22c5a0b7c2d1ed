// Counterpart: struct iomap_iter, iomap_iter(), iomap_iter_advance(), iomap_length() and
// iomap_iter_srcmap() in fs/iomap/iter.c and include/linux/iomap.h (the V4 model).
//
// One loop for every operation: ask the file system for a mapping, let the operation's
// body advance through it, hand the mapping back with how far it got, and repeat. Two rules
// carry the stale-mapping fix: a STALE mapping with no progress is remapped at the same
// position, and a mapping without STALE and without progress ends the loop, so that a body
// that cannot make progress never spins.

import IOMapBase

// Inlinable and generic over the operations: a caller that knows its file system (an
// ExtentFile seeking in itself) gets a copy of the loop specialized to it, with direct calls
// into its ->iomap_begin and no existential or witness-table hop per mapping. Callers that
// hold `any IOMapOperations` still work, through the unspecialized copy.
public struct IOMapIterator {
    /// The file, borrowed: every iterator is a local of the call that makes it, and that
    /// call's caller holds the inode for the whole operation, so the iterator takes no
    /// reference of its own (a retain and a release, two atomic operations, per operation),
    /// and hands it to the file system's operations the same way.
    @usableFromInline let borrowedInode: Unmanaged<Inode>
    /// The file.
    @inlinable public var inode: Inode { borrowedInode.takeUnretainedValue() }
    /// The current position; the body advances it.
    @inlinable public var pos: Int { _pos }
    @usableFromInline var _pos: Int
    /// Bytes still to do.
    @inlinable public var length: Int { _length }
    @usableFromInline var _length: Int
    public let flags: IterFlags
    /// The current mapping; `nil` before the first `next`.
    public var mapping: IOMapping?
    /// The copy-on-write source mapping, if any.
    public var sourceMapping: IOMapping?
    /// Where the current mapping's work started (iter_start_pos).
    @inlinable public var startPos: Int { _startPos }
    @usableFromInline var _startPos: Int
    /// The body's status: nil or the error that stops the loop.
    public var status: Errno?
    /// Whether the file system wants iomapEnd for this operation; asked once, at the first
    /// mapping.
    @usableFromInline var callsEnd: Bool?
    /// A report operation's next mapping, handed over by iomapBeginReport with the current
    /// one; used if it still holds when the iteration gets there.
    @usableFromInline var ahead: IOMapping?

    @inlinable
    public init(inode: Inode, pos: Int, length: Int, flags: IterFlags) {
        self.borrowedInode = Unmanaged.passUnretained(inode)
        self._pos = pos
        self._length = length
        self.flags = flags
        self._startPos = pos
    }

    /// The mapping that decides reads and zeroing: the source mapping when there is one
    /// (iomap_iter_srcmap).
    @inlinable public var readMapping: IOMapping { sourceMapping ?? mapping! }

    /// Bytes left in the current mapping, clipped to the request (iomap_length).
    @inlinable public var mappingLength: Int { trimmedLength(from: pos, length) }

    @inlinable
    func trimmedLength(from p: Int, _ len: Int) -> Int {
        guard let mapping else { return 0 }
        var end = mapping.end
        if let sourceMapping { end = min(end, sourceMapping.end) }
        return min(len, end - p)
    }

    /// Runs `body` with the inode as a borrowed reference: no retain, no release.
    @inlinable @inline(__always)
    func withInode<R>(_ body: (Inode) -> R) -> R { borrowedInode._withUnsafeGuaranteedRef(body) }

    /// Moves the position forward by `count` bytes of the current mapping
    /// (iomap_iter_advance); more than the mapping holds is a bug, reported as EIO.
    @inlinable @inline(__always)
    public mutating func advance(_ count: Int) throws(Errno) {
        if warnOnce(count < 0 || count > mappingLength, "advance by \(count) past mapping length \(mappingLength)") {
            throw .ioError
        }
        _pos += count
        _length -= count
    }

    /// Marks the current mapping stale (IOMAP_F_STALE).
    @inlinable public mutating func markStale() { mapping?.flags.insert(.stale) }

    /// Ends the previous mapping and starts the next (iomap_iter). Returns true when the body
    /// should run again, false when the operation is complete; throws the error that ended it.
    @inlinable
    public mutating func next<Ops: IOMapOperations>(_ ops: Ops) throws(Errno) -> Bool {
        // The stale flag only, not a copy of the whole mapping: only iomapEnd needs that.
        if mapping != nil {
            let stale = mapping!.flags.contains(.stale)
            let advanced = pos - startPos
            let originalLength = length + advanced
            if callsEnd! {
                let current = mapping!
                let ended = withInode { inode in
                    Result { () throws(Errno) in
                        try ops.iomapEnd(
                            inode, pos: startPos, length: trimmedLength(from: startPos, originalLength),
                            written: advanced, flags: flags, mapping: current)
                    }
                }
                if case .failure(let error) = ended, advanced == 0 { throw error }
            }
            mapping = nil
            sourceMapping = nil
            if let status { throw status }
            if length == 0 || (advanced == 0 && !stale) { return false }
        }
        if callsEnd == nil { callsEnd = ops.hasIomapEnd(flags) }
        if flags.contains(.report) { return try nextReport(ops) }
        let (m, src) = try withInode { inode in
            Result { () throws(Errno) in try ops.iomapBegin(inode, pos: pos, length: length, flags: flags) }
        }.get()
        // A file system that returns a mapping not covering pos, or one already stale, is
        // broken; the kernel warns and fails the operation.
        if warnOnce(!m.range.contains(pos) || m.flags.contains(.stale), "iomapBegin returned \(m) for position \(pos)") {
            throw .ioError
        }
        mapping = m
        sourceMapping = src.flatMap { $0.kind == .hole ? nil : $0 }
        _startPos = _pos
        return true
    }

    /// The next mapping of a report operation: the one handed over ahead of time if the
    /// position is in it and its cookie still holds (a lock-free check), else a new lookup,
    /// which may hand over the one after it.
    @inlinable @inline(__always)
    mutating func nextReport<Ops: IOMapOperations>(_ ops: Ops) throws(Errno) -> Bool {
        if let next = ahead, next.offset <= pos, pos < next.end, withInode({ ops.iomapValid($0, next) }) {
            ahead = nil
            mapping = next
            _startPos = _pos
            return true
        }
        let (m, next) = try withInode { inode in
            Result { () throws(Errno) in try ops.iomapBeginReport(inode, pos: pos, length: length, flags: flags) }
        }.get()
        if warnOnce(!m.range.contains(pos) || m.flags.contains(.stale), "iomapBeginReport returned \(m) for position \(pos)") {
            throw .ioError
        }
        mapping = m
        ahead = next.flatMap { $0.offset == m.end ? $0 : nil }
        _startPos = _pos
        return true
    }
}
