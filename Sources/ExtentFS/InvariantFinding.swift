// Counterpart: none as such; the names the kernel's assertions and our docs give the write
// path's invariants (docs/KERNEL-MODEL.md §8), as values a check returns and a test asserts
// on, instead of message text.

/// The invariants the file system's checks know.
public enum InvariantID: String, Sendable, CaseIterable, Equatable {
    /// Every dirty block is uptodate; a folio is uptodate exactly when all its blocks are.
    case k1 = "K1"
    /// Delalloc lies exactly under dirty cache below EOF.
    case d1 = "D1"
    /// Every dirty block below EOF has backing.
    case d3 = "D3"
    /// Reservations and free space balance.
    case d4 = "D4"
    /// Every block below EOF of a write-mapped folio is dirty.
    case writeMapped = "write-mapped"
    /// No folio is under writeback at a quiet point.
    case quietWriteback = "quiet-writeback"
}

/// One violated invariant: which, where (a byte offset, or a block for D1), and what was seen.
public struct InvariantFinding: Sendable, Equatable, CustomStringConvertible {
    public let id: InvariantID
    /// The file offset the finding is about, where there is one.
    public let offset: Int?
    public let detail: String

    public init(_ id: InvariantID, at offset: Int? = nil, _ detail: String) {
        self.id = id
        self.offset = offset
        self.detail = detail
    }

    /// "ID: detail", as the harnesses print it.
    public var description: String { "\(id.rawValue): \(detail)" }
}
