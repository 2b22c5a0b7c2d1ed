// Counterpart: none in the kernel; the choice fstests makes with TEST_DEV and SCRATCH_DEV
// (which file system the tests run on), for the harnesses: the engine's in-memory file
// system alone, or files of a new in-memory volume.
//
// On a volume every allocation, conversion and size change of a file is logged by its
// journal, and fsync is a log force with the ordering rules' flushes (docs/VOLUME.md); the
// data path is the engine's either way. So a harness must give the same results and the
// same replay logs on both, which the harnesses' tests check by running both.

import ExtentFS
import IOMap
import IOMapBase
import Synchronization
import Volume

/// Where a harness's files live.
public enum FileBacking: String, CaseIterable, Sendable {
    /// ExtentFS on a memory device, its metadata in memory only.
    case engine
    /// Files in the root of a volume formatted on a memory device.
    case volume
}

/// A harness's file system: it makes the files, and keeps the volume and the files' open
/// handles alive as long as it lives. A file outliving it keeps working: its ExtentFS and
/// the journal stay with it, and only the volume's namespace goes.
public final class TestFileSystem: Sendable {
    public let backing: FileBacking
    /// The engine file system the files are on (the volume's, on a volume).
    public let fs: ExtentFS
    public let volume: Volume?
    private let handles = Mutex<[FileHandle]>([])

    /// A file system with room for `dataBytes` of file data, configured as `config` says.
    public init(_ backing: FileBacking, dataBytes: Int, config: ExtentFSConfig) {
        self.backing = backing
        switch backing {
        case .engine:
            fs = ExtentFS(memoryBytes: dataBytes, config: config)
            volume = nil
        case .volume:
            // The log takes 1/64 of the device, the snapshots a little more.
            let bytes = dataBytes + dataBytes / 32 + (4 << 20)
            let device = MemoryBlockDevice(blockSize: config.blockSize, blockCount: bytes / config.blockSize)
            var options = VolumeOptions()
            options.maxFolioSize = config.maxFolioSize
            options.memoryLimit = config.memoryLimit
            options.bugs = config.bugs
            options.environment = config.environment
            options.backgroundForce = nil
            do throws(VolumeError) {
                try Volume.format(device: device)
                let v = try Volume.mount(device: device, options: options)
                volume = v
                fs = v.fs
            } catch {
                preconditionFailure("a test volume could not be made: \(error)")
            }
        }
    }

    /// A new empty file.
    public func createFile() -> ExtentFile {
        guard let volume else { return fs.createFile() }
        return handles.withLock { h in
            do throws(Errno) {
                let ino = try volume.create(in: .root, "file\(h.count)", permissions: 0o644).inode
                let handle = try volume.open(ino)
                h.append(handle)
                return handle.file
            } catch {
                preconditionFailure("a file could not be made on the test volume: \(error)")
            }
        }
    }
}
