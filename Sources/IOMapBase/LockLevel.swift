// Counterpart: the lock hierarchy written above iomap_write_delalloc_release() in
// fs/iomap/buffered-io.c and in Documentation/filesystems/iomap/design.rst.
//
// The engine's locks, in the only order a thread may take them (outermost first):
//
//   namespace lock                  a volume's directory operations (docs/VOLUME.md)
//   inode-table lock                a volume's in-memory inodes
//   inode I/O lock (i_rwsem)        buffered writes, truncate, fallocate: exclusive; reads: shared
//   log-force lock                  a volume's checkpoint and snapshot writes (fsync)
//     invalidate lock               faults, reads: shared; truncate, punch, failure cleanup: exclusive
//       folio lock                  one folio at a time, held across write_begin..write_end
//         punch callback            runs with a folio locked and must never lock a folio
//           extent-map lock (ILOCK) the file system's mapping lock
//             metadata lock         a volume's metadata state and current checkpoint
//             page-cache index lock the xarray lock; a leaf for index and tag updates
//             space lock            free-space and reservation counters; a leaf
//               device lock         a leaf inside the block device
//
// Faults take the invalidate lock shared and never the inode lock. Writeback and reclaim
// take folio locks and the extent-map lock only. A verify build (-DIOMAP_LOCKDEP) checks
// this order on every acquisition and traps naming both locks when it is broken.

/// Lock classes; a thread may only acquire a lock whose level is greater than every level
/// it already holds.
public enum LockLevel: Int, Comparable, Sendable, CustomStringConvertible {
    // In the order of the table above; the volume's four (namespace, inode table, log
    // force, metadata) are docs/VOLUME.md's "Locks".
    case namespace = 2, inodeTable = 4, inodeIO = 10, logForce = 15, invalidate = 20, folio = 30, extentMap = 40
    case metadata = 45, cacheIndex = 50, space = 60, device = 70
    /// Locks of test and tool infrastructure (models, recorders) that nest inside anything.
    case leaf = 100

    public static func < (l: Self, r: Self) -> Bool { l.rawValue < r.rawValue }

    /// Whether taking a lock of this class is a yield point for an interleaver: the sleeping
    /// locks of docs/KERNEL-MODEL.md §9 (i_rwsem, the invalidate lock, folio locks, ILOCK) are. The
    /// leaf locks beneath (page-cache index, space counters, device, recorders) are not:
    /// their critical sections are single atomic steps, like the kernel's xa_lock and
    /// per-CPU counters, and nothing that could yield runs inside them.
    /// The volume's locks are not: the explorer's scenarios run on the engine's alone. (A
    /// volume's log force takes folio locks inside, writing back the blocks size raises
    /// expose; a scenario on a volume would have to make the log-force lock a yield point.)
    @inlinable @inline(__always) public var isInterleaved: Bool {
        switch self {
        case .inodeIO, .invalidate, .folio, .extentMap: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .namespace: return "namespace lock"
        case .inodeTable: return "inode-table lock"
        case .inodeIO: return "inode I/O lock"
        case .logForce: return "log-force lock"
        case .metadata: return "metadata lock"
        case .invalidate: return "invalidate lock"
        case .folio: return "folio lock"
        case .extentMap: return "extent-map lock"
        case .cacheIndex: return "page-cache index lock"
        case .space: return "space lock"
        case .device: return "device lock"
        case .leaf: return "leaf lock"
        }
    }
}
