// The kernel side of the differential tester: KernelFile's syscalls give the answers and
// errnos the kernel documents, on the temp directory's file system and on a fresh XFS.

import Foundation
import IOMapBase
import IOMapKernelSide
import IOMapTesting
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

/// Runs `body` with a fresh file in a fresh temporary directory, removed afterwards.
private func withKernelFile(_ body: (KernelFile) throws -> Void) throws {
    try HostFiles.withTemporaryDirectory(prefix: "kernelfile") { try body(try KernelFile(directory: $0, name: "file")) }
}

private func pattern(_ count: Int, seed: Int = 7) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed &+ ($0 >> 8)) }
}

private let canMountXFS = geteuid() == 0 && FileManager.default.fileExists(atPath: "/dev/loop-control")

@Suite("KernelFile")
struct KernelFileTests {
    @Test("write then read round-trips, and a read at EOF is short")
    func roundTrip() throws {
        try withKernelFile { file in
            let data = pattern(10_000)
            #expect(try file.write(data, at: 100).get() == 10_000)
            #expect(file.size == 10_100)
            let all = try file.read(count: 10_100, at: 0).get()
            #expect(all == [UInt8](repeating: 0, count: 100) + data)
            #expect(try file.read(count: 500, at: 9_900).get() == Array(data[9_800...]))
            #expect(try file.read(count: 10, at: 10_100).get() == [])
        }
    }

    @Test("invalid arguments come back as EINVAL, not as a bad fd")
    func invalidArguments() throws {
        try withKernelFile { file in
            #expect(file.read(count: 10, at: -1).failure == .invalidArgument)
            #expect(file.write([1, 2, 3], at: -1).failure == .invalidArgument)
            #expect(file.fallocate(offset: 0, length: 0, mode: .allocate(keepSize: false)).failure == .invalidArgument)
        }
    }

    @Test("growing with truncate exposes zeroes")
    func truncateGrow() throws {
        try withKernelFile { file in
            _ = try file.write(pattern(10), at: 0).get()
            try file.truncate(to: 8192).get()
            #expect(file.size == 8192)
            #expect(try file.read(count: 8192, at: 0).get() == pattern(10) + [UInt8](repeating: 0, count: 8182))
        }
    }

    @Test("punching a hole zeroes the range and keeps the size")
    func punchHole() throws {
        try withKernelFile { file in
            let data = pattern(3 << 16)
            _ = try file.write(data, at: 0).get()
            try file.fallocate(offset: 1 << 16, length: 1 << 16, mode: .punchHole).get()
            #expect(file.size == 3 << 16)
            var expected = data
            expected.replaceSubrange((1 << 16)..<(2 << 16), with: repeatElement(0, count: 1 << 16))
            #expect(try file.read(count: 3 << 16, at: 0).get() == expected)
        }
    }

    @Test("zero_range grows the file without KEEP_SIZE and not with it")
    func zeroRange() throws {
        try withKernelFile { file in
            _ = try file.write(pattern(4096), at: 0).get()
            try file.fallocate(offset: 8192, length: 4096, mode: .zeroRange(keepSize: true)).get()
            #expect(file.size == 4096)
            try file.fallocate(offset: 8192, length: 4096, mode: .zeroRange(keepSize: false)).get()
            #expect(file.size == 12_288)
            try file.fallocate(offset: 100, length: 100, mode: .zeroRange(keepSize: false)).get()
            var expected = pattern(4096) + [UInt8](repeating: 0, count: 8192)
            expected.replaceSubrange(100..<200, with: repeatElement(0, count: 100))
            #expect(try file.read(count: 12_288, at: 0).get() == expected)
        }
    }

    @Test("copy_range copies bytes and stops at the source's EOF")
    func copyRange() throws {
        try withKernelFile { file in
            let data = pattern(10_000)
            _ = try file.write(data, at: 0).get()
            #expect(try file.copyRange(from: 1000, length: 5000, to: 20_000).get() == 5000)
            #expect(file.size == 25_000)
            #expect(try file.read(count: 5000, at: 20_000).get() == Array(data[1000..<6000]))
            // Short at the source's EOF even though the copy itself grows the file.
            #expect(try file.copyRange(from: 24_000, length: 5000, to: 40_000).get() == 1000)
            #expect(file.size == 41_000)
            #expect(try file.read(count: 1000, at: 40_000).get() == Array(data[5000..<6000]))
            #expect(try file.copyRange(from: 50_000, length: 10, to: 0).get() == 0)
        }
    }

    @Test("SEEK_DATA at or past EOF is ENXIO")
    func seekDataPastEOF() throws {
        try withKernelFile { file in
            _ = try file.write(pattern(4096), at: 0).get()
            #expect(try file.seekData(from: 0).get() == 0)
            #expect(file.seekData(from: 4096).failure == .noSuchAddressOrDevice)
            #expect(file.seekData(from: 1 << 20).failure == .noSuchAddressOrDevice)
            #expect(file.seekHole(from: 1 << 20).failure == .noSuchAddressOrDevice)
        }
    }

    @Test("a mapped store is seen by read; past the EOF page it is EFAULT, not SIGBUS")
    func mappedStore() throws {
        try withKernelFile { file in
            _ = try file.write(pattern(3 * 4096), at: 0).get()
            let stored = pattern(3000, seed: 99)
            try file.mappedStore(stored, at: 3000).get()  // crosses a page boundary
            var expected = pattern(3 * 4096)
            expected.replaceSubrange(3000..<6000, with: stored)
            #expect(try file.read(count: 3 * 4096, at: 0).get() == expected)
            #expect(file.size == 3 * 4096)
            #expect(file.mappedStore([1], at: 3 * 4096).failure == .badAddress)
        }
    }

    @Test("a mapped load returns written bytes, and zeroes past EOF in the EOF page")
    func mappedLoad() throws {
        try withKernelFile { file in
            let data = pattern(10_000)
            _ = try file.write(data, at: 0).get()
            #expect(try file.mappedLoad(count: 3000, at: 1000).get() == Array(data[1000..<4000]))
            #expect(try file.mappedLoad(count: 100, at: 10_000).get() == [UInt8](repeating: 0, count: 100))
        }
    }

    @Test("dropping the cache drops it (where the file system allows) and keeps the data")
    func dropCache() throws {
        try withKernelFile { file in
            let data = pattern(1 << 17)
            let length = (1 << 17) + 4096
            _ = try file.write(data, at: 4096).get()
            #expect(try file.residentPages(length: length).get() > 0, "written pages are cached")
            try file.dropCache().get()
            // tmpfs keeps a file's pages: they are the file. Elsewhere the clean pages go.
            if file.fileSystemType != "tmpfs" {
                #expect(try file.residentPages(length: length).get() == 0, "the drop left pages cached on \(file.fileSystemType)")
            }
            #expect(try file.read(count: length, at: 0).get() == [UInt8](repeating: 0, count: 4096) + data)
        }
    }

    @Test("the file system type has a name")
    func fileSystemType() throws {
        try withKernelFile { file in
            #expect(!file.fileSystemType.isEmpty)
            #expect(!file.fileSystemType.hasPrefix("unknown"))
        }
    }

    @Test("on a loop-mounted XFS, SEEK_DATA and SEEK_HOLE find a written extent", .enabled(if: canMountXFS))
    func xfsSeek() throws {
        let mount = try XFSLoopMount.make()
        defer {
            // Runs even when an expectation below fails, so no mount or loop device stays.
            #expect(mount.unmount() == [])
            let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
            #expect(!mounts.contains(mount.mountPoint))
            #expect(!FileManager.default.fileExists(atPath: mount.directory))
        }
        // In its own function so the file is closed before the unmount.
        try checkSparseFile(in: mount.mountPoint)
    }

    private func checkSparseFile(in directory: String) throws {
        let file = try KernelFile(directory: directory, name: "sparse")
        #expect(file.fileSystemType == "xfs")
        try file.truncate(to: 4 << 20).get()
        _ = try file.write(pattern(64 << 10), at: 1 << 20).get()
        try file.fsync().get()
        #expect(try file.seekData(from: 0).get() == 1 << 20)
        #expect(try file.seekHole(from: 1 << 20).get() == (1 << 20) + (64 << 10))
        #expect(try file.seekHole(from: 0).get() == 0)
        #expect(file.seekData(from: (1 << 20) + (64 << 10)).failure == .noSuchAddressOrDevice)
        #expect(try file.read(count: 64 << 10, at: 1 << 20).get() == pattern(64 << 10))
    }
}
