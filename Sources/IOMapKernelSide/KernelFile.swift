// Counterpart: the syscalls fsx (ltp/fsx.c in fstests) issues on a real file: pwrite, pread,
// ftruncate, fallocate, copy_file_range, lseek SEEK_DATA/SEEK_HOLE, mmap+msync, fsync,
// posix_fadvise.
//
// The kernel side of the differential tester. Each operation goes straight to one syscall
// through the CKernelShim C target (Swift's Glibc module lacks SEEK_DATA, SEEK_HOLE,
// fallocate and copy_file_range) and comes back as a `Result` carrying the kernel's errno,
// so the same operation can be compared with what our engine answers.

import CKernelShim
import Foundation
import IOMapBase
import IOMapTesting

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Turns a shim return (>= 0 success, -errno failure) into a Result.
@inline(__always)
private func shimResult<T: SignedInteger>(_ rc: T) -> Result<Int, Errno> {
    rc < 0 ? .failure(Errno(rawValue: Int32(truncatingIfNeeded: 0 - rc))) : .success(Int(rc))
}

/// One real file opened read-write. All state is immutable (an fd and a path), and the
/// kernel serializes concurrent syscalls on one fd itself, so the class is plainly Sendable.
public final class KernelFile: Sendable {
    public enum FallocateMode: Sendable, Equatable {
        /// Mode 0 (extends the size) or FALLOC_FL_KEEP_SIZE.
        case allocate(keepSize: Bool)
        /// FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (the kernel accepts no other form).
        case punchHole
        /// FALLOC_FL_ZERO_RANGE, optionally with FALLOC_FL_KEEP_SIZE.
        case zeroRange(keepSize: Bool)

        var shimCode: Int32 {
            switch self {
            case .allocate(keepSize: false): return Int32(CKS_FALLOC_ALLOCATE)
            case .allocate(keepSize: true): return Int32(CKS_FALLOC_ALLOCATE_KEEP_SIZE)
            case .punchHole: return Int32(CKS_FALLOC_PUNCH_HOLE)
            case .zeroRange(keepSize: false): return Int32(CKS_FALLOC_ZERO_RANGE)
            case .zeroRange(keepSize: true): return Int32(CKS_FALLOC_ZERO_RANGE_KEEP_SIZE)
            }
        }
    }

    public let path: String
    @usableFromInline let fd: Int32

    /// Creates (or truncates to empty) `directory/name`.
    public init(directory: String, name: String) throws(Errno) {
        let path = URL(fileURLWithPath: directory).appendingPathComponent(name).path
        let rc = cks_open(path)
        if rc < 0 { throw Errno(rawValue: -rc) }
        self.path = path
        self.fd = rc
    }

    deinit { _ = cks_close(fd) }

    /// pwrite of all of `bytes`; the count is short only if an error stopped a partial write.
    public func write(_ bytes: [UInt8], at offset: Int) -> Result<Int, Errno> {
        bytes.withUnsafeBytes { shimResult(cks_pwrite(fd, $0.baseAddress, $0.count, Int64(offset))) }
    }

    /// pread of up to `count` bytes; short at EOF.
    public func read(count: Int, at offset: Int) -> Result<[UInt8], Errno> {
        guard count >= 0 else { return .failure(.invalidArgument) }  // size_t cannot say it
        var buffer = [UInt8](repeating: 0, count: count)
        let rc = buffer.withUnsafeMutableBytes { cks_pread(fd, $0.baseAddress, $0.count, Int64(offset)) }
        return shimResult(rc).map { n in
            buffer.removeSubrange(n...)
            return buffer
        }
    }

    public func truncate(to length: Int) -> Result<Void, Errno> {
        shimResult(cks_ftruncate(fd, Int64(length))).map { _ in () }
    }

    public func fallocate(offset: Int, length: Int, mode: FallocateMode) -> Result<Void, Errno> {
        shimResult(cks_fallocate(fd, mode.shimCode, Int64(offset), Int64(length))).map { _ in () }
    }

    /// copy_file_range within this file; returns the bytes copied. The length is clamped to
    /// the source's EOF before the first call, so a copy that grows the file past the old
    /// EOF does not go on to copy the zeroes it exposed.
    public func copyRange(from source: Int, length: Int, to destination: Int) -> Result<Int, Errno> {
        shimResult(cks_copy_range(fd, Int64(source), Int64(destination), Int64(length)))
    }

    /// lseek SEEK_DATA: the first data offset at or after `offset`; ENXIO at or past EOF.
    public func seekData(from offset: Int) -> Result<Int, Errno> {
        shimResult(cks_seek_data(fd, Int64(offset)))
    }

    /// lseek SEEK_HOLE: the first hole at or after `offset` (EOF counts as a hole).
    public func seekHole(from offset: Int) -> Result<Int, Errno> {
        shimResult(cks_seek_hole(fd, Int64(offset)))
    }

    /// Stores through a MAP_SHARED mapping, then msync(MS_SYNC). Bytes past EOF inside the
    /// EOF page are dropped as the kernel drops them; a range reaching past that page is
    /// EFAULT here (the kernel would raise SIGBUS).
    public func mappedStore(_ bytes: [UInt8], at offset: Int) -> Result<Void, Errno> {
        bytes.withUnsafeBytes { shimResult(cks_mapped_store(fd, $0.baseAddress, $0.count, Int64(offset))) }
            .map { _ in () }
    }

    /// Loads through a MAP_SHARED mapping; past EOF inside the EOF page reads zeroes, past
    /// that page is EFAULT (SIGBUS in the kernel).
    public func mappedLoad(count: Int, at offset: Int) -> Result<[UInt8], Errno> {
        guard count >= 0 else { return .failure(.invalidArgument) }
        var buffer = [UInt8](repeating: 0, count: count)
        let rc = buffer.withUnsafeMutableBytes { cks_mapped_load(fd, $0.baseAddress, $0.count, Int64(offset)) }
        return shimResult(rc).map { _ in buffer }
    }

    public func fsync() -> Result<Void, Errno> {
        shimResult(cks_fsync(fd)).map { _ in () }
    }

    /// The size from fstat. fstat of an fd this object owns cannot fail short of a bug.
    public var size: Int {
        let rc = cks_size(fd)
        precondition(rc >= 0, "fstat(\(path)) failed: \(Errno(rawValue: Int32(-rc)).symbolicName)")
        return Int(rc)
    }

    /// fsync, then posix_fadvise(DONTNEED) over the whole file, so the next read comes from
    /// the disk rather than the page cache (DONTNEED only drops clean pages).
    public func dropCache() -> Result<Void, Errno> {
        fsync().flatMap { shimResult(cks_drop_cache(fd)).map { _ in () } }
    }

    /// How many pages of the first `length` bytes are in the page cache.
    public func residentPages(length: Int) -> Result<Int, Errno> {
        let n = cks_resident_pages(fd, Int64(length))
        return n < 0 ? .failure(Errno(rawValue: Int32(-n))) : .success(Int(n))
    }

    /// The statfs f_type of the file system holding the file, by name where known.
    public var fileSystemType: String {
        var type: UInt64 = 0
        let rc = cks_fs_type(fd, &type)
        if rc < 0 { return "unknown (statfs: \(Errno(rawValue: -rc).symbolicName))" }
        switch type {
        case 0x5846_5342: return "xfs"
        case 0xEF53: return "ext4"  // ext2 and ext3 share the magic
        case 0x0102_1994: return "tmpfs"
        case 0x9123_683E: return "btrfs"
        case 0x794C_7630: return "overlayfs"
        case 0x6573_5546: return "fuse"
        default: return "0x" + String(type, radix: 16)
        }
    }
}

/// Why the kernel side of the tester could not be set up.
public struct KernelSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The file system a loop-mounted image is made with.
public enum LoopImageFileSystem: String, Sendable {
    /// XFS, the file system the engine is modelled on.
    case xfs
    /// ext4, whose buffered writes do not go through iomap: a control for the kernel probes.
    case ext4
}

/// A fresh file system on a loop-mounted sparse image in a temporary directory, so the
/// differential tester and the kernel probes compare against the file system the engine is
/// modelled on (or, for a control, another one).
public typealias XFSLoopMount = LoopMount

public struct LoopMount: Sendable {
    public let mountPoint: String
    /// The temporary directory holding the image and the mount point.
    public let directory: String
    public let imagePath: String

    /// Needs root, /dev/loop-control and the file system's mkfs (installed with apt-get if
    /// missing). The image and mount point go in a new directory in `parent` (default: the
    /// temporary directory); `iomap bench` puts them on tmpfs, beside its other targets.
    public static func make(
        sizeBytes: Int = 1 << 30, blockSize: Int? = nil, fileSystem: LoopImageFileSystem = .xfs, parent: String? = nil
    ) throws -> LoopMount {
        let uid = geteuid()
        let name = fileSystem == .xfs ? "an XFS image" : "an ext4 image"
        guard uid == 0 else {
            throw KernelSetupError("mounting \(name) needs root; running as uid \(uid)")
        }
        guard FileManager.default.fileExists(atPath: "/dev/loop-control") else {
            throw KernelSetupError(
                "mounting \(name) needs loop devices; /dev/loop-control does not exist "
                    + "(loop module not loaded, or a container without access to /dev/loop*)")
        }
        let mkfs =
            fileSystem == .xfs
            ? try findOrInstall("mkfs.xfs", package: "xfsprogs") : try findOrInstall("mkfs.ext4", package: "e2fsprogs")
        guard let mountTool = findExecutable("mount") else {
            throw KernelSetupError("mounting \(name) needs mount(8); it is not on PATH, /sbin or /usr/sbin")
        }

        let directory = (parent.map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory)
            .appendingPathComponent("iomap-\(fileSystem.rawValue)-\(UUID().uuidString)").path
        let imagePath = directory + "/\(fileSystem.rawValue).img"
        let mountPoint = directory + "/mnt"
        do {
            try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: imagePath, contents: nil) else {
                throw KernelSetupError("could not create the image file \(imagePath)")
            }
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: imagePath))
            try handle.truncate(atOffset: UInt64(sizeBytes))  // sparse: costs no space yet
            try handle.close()
            let mkfsArguments = mkfsArguments(fileSystem, blockSize: blockSize, image: imagePath)
            let mkfsRun = run(mkfs, mkfsArguments)
            guard mkfsRun.status == 0 else {
                throw KernelSetupError("\(mkfs) \(mkfsArguments.joined(separator: " ")) failed (\(mkfsRun.status)): \(mkfsRun.output)")
            }
            let mountRun = run(mountTool, ["-o", "loop", imagePath, mountPoint])
            guard mountRun.status == 0 else {
                throw KernelSetupError("mount -o loop \(imagePath) \(mountPoint) failed (\(mountRun.status)): \(mountRun.output)")
            }
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            if let error = error as? KernelSetupError { throw error }
            throw KernelSetupError("preparing \(directory) for \(name) failed: \(error)")
        }
        return LoopMount(mountPoint: mountPoint, directory: directory, imagePath: imagePath)
    }

    private static func mkfsArguments(_ fileSystem: LoopImageFileSystem, blockSize: Int?, image: String) -> [String] {
        switch fileSystem {
        case .xfs:
            // No reflink: copy_file_range would share extents (keeping unwritten ones unwritten)
            // where the engine, without reflink, copies through the page cache as XFS then does.
            return ["-q", "-f", "-m", "reflink=0"] + (blockSize.map { ["-b", "size=\($0)"] } ?? []) + [image]
        case .ext4:
            // Initialised up front, so no background thread writes to the image while it is
            // in use or holds up the unmount.
            return ["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"] + (blockSize.map { ["-b", "\($0)"] } ?? []) + [image]
        }
    }

    /// Unmounts, detaches any loop device still bound to the image, and removes the
    /// temporary directory. Best effort (it runs from `defer`); returns what went wrong,
    /// empty on success. Close every file on the mount first, or umount reports EBUSY.
    @discardableResult
    public func unmount() -> [String] {
        var problems: [String] = []
        let umount = findExecutable("umount") ?? "/usr/bin/umount"
        let first = run(umount, [mountPoint])
        if first.status != 0 {
            // A lazy unmount still detaches the tree, so nothing stays mounted under /tmp.
            let lazy = run(umount, ["-l", mountPoint])
            problems.append("umount \(mountPoint) failed: \(first.output)")
            if lazy.status != 0 { problems.append("umount -l \(mountPoint) failed: \(lazy.output)") }
        }
        // mount -o loop sets autoclear, so the loop device normally went with the umount.
        if let losetup = findExecutable("losetup") {
            let bound = run(losetup, ["-j", imagePath])
            for line in bound.output.split(separator: "\n") {
                guard let device = line.split(separator: ":").first, device.hasPrefix("/dev/loop") else { continue }
                let detach = run(losetup, ["-d", String(device)])
                if detach.status != 0 { problems.append("losetup -d \(device) failed: \(detach.output)") }
            }
        }
        do {
            try FileManager.default.removeItem(atPath: directory)
        } catch {
            problems.append("removing \(directory) failed: \(error)")
        }
        return problems
    }
}

/// `tool` from PATH; if absent, `apt-get install -y package`, with `apt-get update` first on
/// a second attempt (a fresh image often has no package lists).
private func findOrInstall(_ tool: String, package: String) throws -> String {
    if let found = findExecutable(tool) { return found }
    guard let apt = findExecutable("apt-get") else {
        throw KernelSetupError("\(tool) is not on PATH and there is no apt-get to install \(package)")
    }
    var install = run(apt, ["install", "-y", package])
    if install.status != 0 {
        let update = run(apt, ["update"])
        if update.status != 0 {
            throw KernelSetupError("\(tool) is not on PATH and `apt-get update` failed: \(tail(update.output))")
        }
        install = run(apt, ["install", "-y", package])
    }
    guard install.status == 0, let found = findExecutable(tool) else {
        throw KernelSetupError(
            "\(tool) is not on PATH and `apt-get install -y \(package)` failed: \(tail(install.output))")
    }
    return found
}

/// The first executable called `name` on PATH or in the sbin directories, which a non-login
/// PATH often omits.
func findExecutable(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let dirs = path.split(separator: ":").map(String.init) + ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
    return dirs.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
}

/// Runs a command to completion, stdout and stderr merged; status -1 with the reason when it
/// cannot start or does not end within `timeout` seconds (an apt-get install takes minutes,
/// mkfs and mount seconds).
func run(_ executable: String, _ arguments: [String], timeout: Double = 1800) -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var environment = ProcessInfo.processInfo.environment
    environment["DEBIAN_FRONTEND"] = "noninteractive"  // apt-get must never prompt
    process.environment = environment
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    process.standardInput = FileHandle.nullDevice
    let data: Data
    do {
        data = try runToEnd(process, reading: [pipe.fileHandleForReading], timeout: timeout).0
    } catch let error as CommandTimeout {
        return (-1, error.description)
    } catch {
        return (-1, "could not run \(executable): \(error)")
    }
    let output = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    return (process.terminationStatus, output)
}

private func tail(_ text: String, lines: Int = 5) -> String {
    text.split(separator: "\n").suffix(lines).joined(separator: "\n")
}
