// Counterpart: the negative errno convention of the kernel (include/uapi/asm-generic/errno-base.h).
//
// Operating errors are POSIX errnos (docs/DESIGN.md decision 6) so that the differential
// tester can compare them with what the kernel returns for the same call. We use
// swift-system's `Errno` with typed throws. Programmer errors are preconditions.

@_exported import struct SystemPackage.Errno

extension Errno {
    /// A short, stable name for logs and JSON (`ENOSPC`, `EIO`, ...).
    public var symbolicName: String {
        switch self {
        case .noSpace: return "ENOSPC"
        case .ioError: return "EIO"
        case .badAddress: return "EFAULT"
        case .invalidArgument: return "EINVAL"
        case .fileTooLarge: return "EFBIG"
        case .noSuchAddressOrDevice: return "ENXIO"
        case .resourceTemporarilyUnavailable: return "EAGAIN"
        case .interrupted: return "EINTR"
        case .notSupported: return "EOPNOTSUPP"
        case .noMemory: return "ENOMEM"
        // The namespace's errnos, which the volume's tools print.
        case .notPermitted: return "EPERM"
        case .noSuchFileOrDirectory: return "ENOENT"
        case .argListTooLong: return "E2BIG"
        case .badFileDescriptor: return "EBADF"
        case .permissionDenied: return "EACCES"
        case .resourceBusy: return "EBUSY"
        case .fileExists: return "EEXIST"
        case .improperLink: return "EXDEV"
        case .notDirectory: return "ENOTDIR"
        case .isDirectory: return "EISDIR"
        case .tooManyLinks: return "EMLINK"
        case .outOfRange: return "ERANGE"
        case .fileNameTooLong: return "ENAMETOOLONG"
        case .directoryNotEmpty: return "ENOTEMPTY"
        case .tooManySymbolicLinkLevels: return "ELOOP"
        case .noData: return "ENODATA"
        case .readOnlyFileSystem: return "EROFS"
        default: return "errno \(rawValue)"
        }
    }
}

/// Checks a user-supplied offset and length the way the VFS does before any work is
/// done: negative values are EINVAL, a sum that overflows is EINVAL (the kernel's
/// `rw_verify_area`), and a range reaching past `maxFileSize` is EFBIG.
@inlinable @inline(__always)
public func checkUserRange(offset: Int, length: Int) throws(Errno) {
    if offset < 0 || length < 0 { throw .invalidArgument }
    let (end, overflow) = offset.addingReportingOverflow(length)
    if overflow { throw .invalidArgument }
    if end > maxFileSize { throw .fileTooLarge }
}
