// Counterpart: none in the kernel; what the namespace tests share: a plan applied as the
// volume applies it, byte names, errno names for messages.

import IOMapBase
import Testing
import Volume

extension MetadataState {
    /// Runs a plan as the volume does: plans, then applies its records. A plan whose records
    /// do not apply is a bug of the plan, recorded as an issue (and thrown as EIO).
    @discardableResult
    mutating func commit<V>(
        _ plan: (MetadataState) throws -> NamespacePlan<V>, sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> V {
        let p = try plan(self)
        do {
            try apply(p.records)
        } catch {
            Issue.record("the plan's records do not apply: \(error)", sourceLocation: sourceLocation)
            throw Errno.ioError
        }
        return p.value
    }

    /// The errno a plan throws, or nil if it succeeds (nothing is applied).
    func errno<V>(_ plan: (MetadataState) throws -> NamespacePlan<V>) -> Errno? {
        do {
            _ = try plan(self)
            return nil
        } catch {
            return error as? Errno ?? .ioError
        }
    }

    /// The inode at an absolute path, or nil.
    func inode(at path: String) -> InodeNumber? { try? resolve(path, followFinalSymlink: false, caller: .root()) }
}

/// The bytes of a name.
func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// errno's symbolic name.
func errnoName(_ e: Int32) -> String {
    let names: [Int32: String] = [
        0: "ok", 1: "EPERM", 2: "ENOENT", 5: "EIO", 6: "ENXIO", 7: "E2BIG", 13: "EACCES", 16: "EBUSY", 17: "EEXIST",
        18: "EXDEV", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 31: "EMLINK", 34: "ERANGE", 36: "ENAMETOOLONG",
        39: "ENOTEMPTY", 40: "ELOOP", 61: "ENODATA", 95: "EOPNOTSUPP",
    ]
    return names[e] ?? "errno \(e)"
}

func errnoName(_ e: Errno?) -> String { errnoName(e?.rawValue ?? 0) }
