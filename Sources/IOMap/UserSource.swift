// Counterpart: struct iov_iter as the buffered write path uses it:
// fault_in_iov_iter_readable(), copy_folio_from_iter_atomic() and iov_iter_revert().
//
// The user buffer of a write. Bytes at or after `faultOffset` cannot be read, as if that
// part of the buffer were unmapped: fault-in fails there and copies stop there. On top of
// that the environment's fault injector can make any single copy short at an arbitrary byte
// (hook point H7), which a retry then gets past, as a race with munmap or memory pressure
// would. A `SourceProtection` shared with another thread is mprotect on the buffer: it can
// make the rest of the buffer unreadable between the fault-in and the copy.
//
// A buffer inside a ReceiveBlock (a FUSE request's payload) can lend whole folios' worth of
// itself to the cache (`lender`); a copy onto the bytes' own address is then no copy at all.

import IOMapBase
import PageCache
import Synchronization

/// The readable extent of a user buffer that another thread may shrink, as mprotect or
/// munmap on part of it would (the tail becomes unreadable).
public final class SourceProtection: Sendable {
    let readableEndValue = Atomic<Int>(Int.max)
    public init() {}

    /// Makes bytes at and after index `offset` of the buffer unreadable.
    public func revoke(from offset: Int) {
        precondition(offset >= 0, "revoking from \(offset)")
        readableEndValue.store(offset, ordering: .releasing)
    }

    var readableEnd: Int { readableEndValue.load(ordering: .acquiring) }
}

public struct UserSource {
    public let buffer: UnsafeRawBufferPointer
    /// Bytes consumed so far (the iterator's position).
    public private(set) var consumed = 0
    /// Index in `buffer` from which bytes are unreadable, or nil.
    public let faultOffset: Int?
    /// Where another thread can make the buffer unreadable, or nil.
    public let protection: SourceProtection?
    /// The block the buffer lies in, whose pieces the cache may take as folio memory, or nil.
    public let lender: ReceiveBlock?

    public init(
        _ buffer: UnsafeRawBufferPointer, faultOffset: Int? = nil, protection: SourceProtection? = nil,
        lender: ReceiveBlock? = nil
    ) {
        self.buffer = buffer
        self.faultOffset = faultOffset
        self.protection = protection
        // Memory that can become unreadable is not memory the cache could own.
        self.lender = faultOffset == nil && protection == nil ? lender : nil
    }

    /// The address of the next byte to copy.
    public var next: UnsafeRawPointer { buffer.baseAddress! + consumed }

    /// iov_iter_count.
    public var remaining: Int { buffer.count - consumed }

    var readableEnd: Int { min(buffer.count, faultOffset ?? Int.max, protection?.readableEnd ?? Int.max) }

    /// fault_in_iov_iter_readable: how many of the next `bytes` bytes could NOT be faulted in.
    public func faultInReadable(_ bytes: Int) -> Int {
        let readable = max(0, readableEnd - consumed)
        return max(0, bytes - readable)
    }

    /// Copies up to `count` bytes to `destination`, stopping at an unreadable byte or where
    /// the injector's `limit` says; advances and returns the number copied.
    public mutating func copy(to destination: UnsafeMutableRawPointer, count: Int, limit: Int?) -> Int {
        var n = min(count, max(0, readableEnd - consumed))
        if UnsafeRawPointer(destination) == next {
            // The destination is the bytes themselves (a folio took them from the lender):
            // nothing moves, so nothing can fault part way.
            consumed += n
            return n
        }
        if let limit { n = min(n, limit) }
        if n > 0 { destination.copyMemory(from: buffer.baseAddress! + consumed, byteCount: n) }
        consumed += n
        return n
    }

    /// iov_iter_revert.
    public mutating func revert(_ n: Int) {
        precondition(n <= consumed, "reverting \(n) bytes of a source that consumed \(consumed)")
        consumed -= n
    }
}
