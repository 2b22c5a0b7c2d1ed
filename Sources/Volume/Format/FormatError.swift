// Counterpart: the verifier failures of XFS (xfs_verifier_error, __this_address, -EFSBADCRC
// against -EFSCORRUPTED in fs/xfs/xfs_error.c), which name the buffer, its daddr and the check.
//
// A reader of the format refuses with one error that names the block kind, its address and
// the first check that failed, in the order docs/FORMAT.md gives, so that a message such as
// "inode block 812: bad CRC" says what to look at. Recovery needs one more distinction XFS
// draws in xlog_find_tail: a log position that simply holds no checkpoint (the end of the
// log), a checkpoint whose head is there but a later block is not (a torn tail), and
// metadata that is checksummed and still impossible (corruption).

/// What a reader found wrong with one block.
public enum FormatCheck: Hashable, Sendable, CustomStringConvertible {
    /// Fewer (or more) bytes than a block.
    case truncated(bytes: Int, expected: Int)
    /// The magic is not this kind's; `found` is the four bytes read as a little-endian word.
    case badMagic(found: UInt32)
    case badCRC
    /// The UUID is not this volume's.
    case otherVolume
    /// The block's own address field is not where it was read from.
    case wrongAddress(says: UInt64)
    /// The sequence that wrote the block is not the one expected.
    case wrongSequence(UInt64, expected: UInt64)
    /// The sequence is older than the least one expected (a log block of an earlier lap).
    case olderSequence(UInt64, atLeast: UInt64)
    /// The block belongs to another structure (another checkpoint, another snapshot).
    case wrongOwner(UInt64, expected: UInt64)
    /// The block is another position of its structure.
    case wrongIndex(UInt32, expected: UInt32)
    /// The payload length is more than the block holds, or not what the kind needs.
    case badPayloadLength(UInt32, limit: Int)
    case unsupportedVersion(UInt32)
    case unknownIncompatibleFeatures(UInt64)
    case unknownReadOnlyCompatibleFeatures(UInt64)
    /// The device could not read the block.
    case readFailed(String)
    /// Checksummed and still impossible: a field out of range, counts that disagree, entries
    /// out of order.
    case malformed(String)

    public var description: String {
        switch self {
        case .truncated(let n, let expected): return "truncated (\(n) of \(expected) bytes)"
        case .badMagic(let found): return "bad magic \(BlockKind.describeMagic(found))"
        case .badCRC: return "bad CRC"
        case .otherVolume: return "belongs to another volume"
        case .wrongAddress(let says): return "wrong self address (says \(says))"
        case .wrongSequence(let s, let expected): return "sequence \(s), expected \(expected)"
        case .olderSequence(let s, let least): return "sequence \(s), expected \(least) or later"
        case .wrongOwner(let o, let expected): return "owner \(o), expected \(expected)"
        case .wrongIndex(let i, let expected): return "index \(i), expected \(expected)"
        case .badPayloadLength(let n, let limit): return "payload length \(n), limit \(limit)"
        case .unsupportedVersion(let v): return "format version \(v), this reader knows \(formatVersion)"
        case .unknownIncompatibleFeatures(let f): return "unknown incompatible feature 0x\(String(f, radix: 16))"
        case .unknownReadOnlyCompatibleFeatures(let f):
            return "unknown read-only-compatible feature 0x\(String(f, radix: 16)) (read-only)"
        case .readFailed(let why): return "read failed: \(why)"
        case .malformed(let why): return why
        }
    }
}

/// A block that a reader refused.
public struct FormatError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What a reader should do about it.
    public enum Category: Hashable, Sendable {
        /// Damaged or impossible metadata: refuse (fsck names it).
        case corrupt
        /// A version or an incompatible feature this reader does not know: refuse to mount.
        case unsupported
        /// The log position holds no checkpoint of the expected sequence: the log ends here
        /// (docs/FORMAT.md "Telling a torn tail from corruption").
        case notACheckpoint
        /// The checkpoint's head is valid but one of its later blocks is not: the last
        /// checkpoint was being written when the volume went down.
        case tornCheckpoint
    }

    /// The kind of block the reader expected at `address`.
    public var kind: BlockKind
    public var address: Int
    public var check: FormatCheck
    public var category: Category
    /// Where in a larger structure the block sits ("checkpoint 7, block 2 of 5"), if anywhere.
    public var context: String?

    public init(_ kind: BlockKind, _ address: Int, _ check: FormatCheck, category: Category? = nil, context: String? = nil) {
        self.kind = kind
        self.address = address
        self.check = check
        self.category = category ?? check.defaultCategory
        self.context = context
    }

    public var description: String {
        "\(kind.name(address)): \(check)" + (context.map { " (\($0))" } ?? "")
    }

    /// The same failure, classed otherwise (the checkpoint reader's verdicts).
    func classed(_ c: Category, context: String? = nil) -> FormatError {
        FormatError(kind, address, check, category: c, context: context ?? self.context)
    }
}

extension FormatCheck {
    var defaultCategory: FormatError.Category {
        switch self {
        case .unsupportedVersion, .unknownIncompatibleFeatures, .unknownReadOnlyCompatibleFeatures: return .unsupported
        default: return .corrupt
        }
    }
}
