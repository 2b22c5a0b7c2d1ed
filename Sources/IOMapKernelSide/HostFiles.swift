// Counterpart: none in the kernel; the host's file-system calls the benchmark and the tools
// need beside the engine (directories, removal, raw pread/pwrite/lseek on a real file), so
// that only this module speaks to Foundation and the C shim.

import CKernelShim
import Foundation
import IOMapBase

#if canImport(Glibc)
    import Glibc
#endif

/// Files and directories on the host.
public enum HostFiles {
    /// Removes a file or a directory tree; quietly does nothing when it is not there.
    public static func remove(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    /// The text of a file, or nil when it cannot be read.
    public static func contents(_ path: String) -> String? { try? String(contentsOfFile: path, encoding: .utf8) }

    public static func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    public static func isWritable(_ path: String) -> Bool { FileManager.default.isWritableFile(atPath: path) }

    /// The temporary directory of the host (TMPDIR, else /tmp).
    public static var temporaryDirectory: String { FileManager.default.temporaryDirectory.path }

    /// Makes a new directory `parent/prefix-UUID` and returns its path, or says why it could not.
    public static func makeUniqueDirectory(in parent: String, prefix: String) -> Result<String, HostError> {
        let path = parent + "/\(prefix)-\(UUID().uuidString)"
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            return .success(path)
        } catch {
            return .failure(HostError("cannot create a directory in \(parent): \(error.localizedDescription)"))
        }
    }

    /// Runs `body` with a new directory under the host's temporary directory, named
    /// `prefix-UUID`, and removes the directory and all in it afterwards, however `body` ends.
    public static func withTemporaryDirectory<T>(prefix: String, _ body: (String) throws -> T) throws -> T {
        let path = try makeUniqueDirectory(in: temporaryDirectory, prefix: prefix).get()
        defer { remove(path) }
        return try body(path)
    }

    /// The extended attribute names of `path` (not following a symlink), or [] when it has
    /// none or they cannot be read.
    public static func xattrNames(_ path: String) -> [String] {
        let size = llistxattr(path, nil, 0)
        guard size > 0 else { return [] }
        var buffer = [CChar](repeating: 0, count: size)
        let n = llistxattr(path, &buffer, size)
        guard n > 0 else { return [] }
        return buffer[0..<n].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    }

    /// The value of attribute `name` of `path` (not following a symlink), or nil.
    public static func xattr(_ path: String, _ name: String) -> [UInt8]? {
        let size = lgetxattr(path, name, nil, 0)
        guard size >= 0 else { return nil }
        var value = [UInt8](repeating: 0, count: max(size, 1))
        let n = value.withUnsafeMutableBytes { lgetxattr(path, name, $0.baseAddress, size) }
        return n >= 0 ? Array(value[0..<n]) : nil
    }

    /// Sets attribute `name` of `path` (not following a symlink): nil, or the errno.
    public static func setXattr(_ path: String, _ name: String, _ value: [UInt8]) -> Errno? {
        let rc = value.withUnsafeBytes { lsetxattr(path, name, $0.baseAddress, $0.count, 0) }
        return rc == 0 ? nil : Errno(rawValue: errno)
    }

    /// open(O_CREAT | O_EXCL) and close of a new empty file with mode `mode`: nil, or the
    /// errno. The volume rows of `iomap bench` time it against the volume's create.
    @inlinable
    public static func createExclusive(_ path: String, mode: UInt16 = 0o644) -> Errno? {
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, mode_t(mode))
        if fd < 0 { return Errno(rawValue: errno) }
        close(fd)
        return nil
    }

    /// unlink(2): nil, or the errno (`remove` hides it; a timed loop must see a failure).
    @inlinable
    public static func unlinkFile(_ path: String) -> Errno? { unlink(path) == 0 ? nil : Errno(rawValue: errno) }

    /// rename(2): nil, or the errno.
    @inlinable
    public static func renameFile(_ from: String, to: String) -> Errno? { rename(from, to) == 0 ? nil : Errno(rawValue: errno) }

    /// chmod(2): nil, or the errno.
    @inlinable
    public static func changeMode(_ path: String, _ mode: UInt16) -> Errno? {
        chmod(path, mode_t(mode)) == 0 ? nil : Errno(rawValue: errno)
    }

    /// The permission bits of `path` (stat(2)), or nil: the benchmark's check that a chmod
    /// happened.
    public static func permissions(_ path: String) -> UInt16? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt16(st.st_mode & 0o7777) : nil
    }

    /// malloc_trim(0): gives the allocator's free memory back to the kernel, so that a
    /// measurement of resident memory sees only what is in use. True when memory was released.
    @discardableResult
    public static func releaseFreeHeapMemory() -> Bool { cks_malloc_trim() != 0 }
}

/// What went wrong on the host, said in words.
public struct HostError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension KernelFile {
    /// pwrite of raw bytes, for timed loops that must not bridge arrays: the bytes written,
    /// or the errno.
    @inlinable @inline(__always)
    public func pwrite(raw bytes: UnsafeRawBufferPointer, at offset: Int) -> Result<Int, Errno> {
        let n = cks_pwrite(fd, bytes.baseAddress, bytes.count, Int64(offset))
        return n < 0 ? .failure(Errno(rawValue: Int32(-n))) : .success(Int(n))
    }

    /// pread into raw memory: the bytes read (short at EOF), or the errno.
    @inlinable @inline(__always)
    public func pread(raw buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Result<Int, Errno> {
        let n = cks_pread(fd, buffer.baseAddress, buffer.count, Int64(offset))
        return n < 0 ? .failure(Errno(rawValue: Int32(-n))) : .success(Int(n))
    }

    /// lseek SEEK_DATA or SEEK_HOLE from `offset`: the answer, or -errno (ENXIO past the data).
    @inlinable @inline(__always)
    public func seekRaw(data: Bool, from offset: Int) -> Int64 {
        data ? cks_seek_data(fd, Int64(offset)) : cks_seek_hole(fd, Int64(offset))
    }

    /// Removes the file from its directory (the open descriptor keeps it until released).
    public func unlink() { HostFiles.remove(path) }
}

/// Formats `value` with `digits` digits after the point.
public func formatFixed(_ value: Double, digits: Int) -> String { String(format: "%.\(digits)f", value) }
