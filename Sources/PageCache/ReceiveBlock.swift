// Counterpart: page stealing, as splice(SPLICE_F_MOVE) once let a FUSE daemon hand the
// kernel's page cache its own pages (pipe_buf_operations.try_steal, replace_page_cache_folio)
// instead of copying them; here the roles are turned round: the cache takes the memory a
// request's payload arrived in.
//
// Why. A FUSE daemon that keeps file data itself receives a WRITE's bytes into its own
// buffer (the kernel copies them there from the writer) and then copies them again into its
// cache. For large writes that second copy is the daemon's biggest cost: its source is hot,
// but its destination is a new folio, cold, so it runs at the memory's write bandwidth, and
// it doubles the traffic a local file system's one copy makes. A receive block is folio
// memory (one block from FolioMemory) that the payload is read into. When a write starts a
// new folio of the block's size with the block's first byte, the folio takes the block as
// its memory and its own goes back to the pool: the copy becomes a change of owner. The
// request thread then takes a new block for its next read, which is, as a rule, the one the
// folio just gave up.
//
// Only the whole block is ever lent. Lending pieces would scatter the rest over the smaller
// sizes' free lists, which never coalesce (FolioMemory.swift): the block's size would drain
// while the small sizes grew without bound, a new arena per request. Smaller writes are
// copied as before; their cost is the round trip, not the copy.
//
// Guarded by: one request thread owns a receive block; it is lent only from inside the
// write that thread serves, and renewed by that thread between requests.

import IOMapBase

public final class ReceiveBlock: @unchecked Sendable {
    /// log2 of the block's size.
    public let shift: Int
    /// The block's first byte; a new block after every request that took it.
    public private(set) var base: UnsafeMutableRawPointer
    /// Whether a folio owns the block now.
    public private(set) var isLent = false

    /// A block of `1 << shift` bytes (4 KiB to FolioMemory's largest, 2 MiB).
    public init(shift: Int) {
        precondition(shift >= pageShift && shift <= FolioMemory.arenaShift, "no receive block of 2^\(shift) bytes")
        self.shift = shift
        self.base = FolioMemory.allocate(shift: shift)
    }

    deinit { if !isLent { FolioMemory.free(base, shift: shift) } }

    public var size: Int { 1 << shift }

    /// Gives the cache the block as a folio's memory, if `address` is its first byte, `size`
    /// its size, and it is not lent already; true if so. From then on the folio owns it (and
    /// frees it to the pool when it goes).
    public func lend(_ address: UnsafeRawPointer, size: Int) -> Bool {
        guard !isLent, address == UnsafeRawPointer(base), size == self.size else { return false }
        isLent = true
        return true
    }

    /// After a request: a lent block is replaced by a new one.
    public func renew() {
        guard isLent else { return }
        base = FolioMemory.allocate(shift: shift)
        isLent = false
    }
}
