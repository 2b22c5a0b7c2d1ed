// Counterpart: none in the kernel; what a read-only mount (`mount -o ro` of a file system on
// a write-protected device) needs from a volume that has no read-only mode of its own: a
// device over the image opened O_RDONLY, whose writes land in memory and are dropped at the
// end.
//
// Why an overlay and not a refusal to write: the volume replays its log at mount, forces it
// in the background and writes a clean snapshot at unmount, whatever the mount's options. On
// the overlay all of that happens as usual, reads see it (a replayed image reads as after a
// read-write mount), and the image stays byte for byte as it was. The kernel refuses every
// change through a read-only mount (MS_RDONLY), so the overlay holds only the volume's own
// bookkeeping: the log replay and the final snapshot.

import CFUSE
import ExtentFS
import IOMapBase
import Synchronization
import Volume

#if canImport(Glibc)
    import Glibc
#endif

final class ReadOnlyImage: BlockDevice {
    let blockSize: Int
    let blockCount: Int
    let path: String
    private let fd: Int32
    /// The blocks written since the mount, by number: what reads see instead of the image's.
    private let written = Mutex<[Int: [UInt8]]>([:])

    private init(path: String, fd: Int32, blockSize: Int, blockCount: Int) {
        self.path = path
        self.fd = fd
        self.blockSize = blockSize
        self.blockCount = blockCount
    }

    deinit { close(fd) }

    /// The image at `path`, opened read-only, with the geometry its superblock gives.
    static func open(_ path: String) throws(ToolError) -> ReadOnlyImage {
        var st = stat()
        guard stat(path, &st) == 0 else { throw ToolError("\(path): \(Errno(rawValue: errno).symbolicName)") }
        let isBlock = (st.st_mode & S_IFMT) == S_IFBLK
        guard (st.st_mode & S_IFMT) == S_IFREG || isBlock else { throw ToolError("\(path) is neither a regular file nor a block device") }
        let size = isBlock ? VolumeImage.blockDeviceSize(path) : Int(st.st_size)
        guard let first = VolumeImage.readPrefix(path), let bs = Volume.peekBlockSize(first) else {
            throw ToolError("\(path): no volume here (block 0 is not a superblock; made by `iomap mkfs`?)")
        }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ToolError("\(path): cannot open: \(Errno(rawValue: errno).symbolicName)") }
        return ReadOnlyImage(path: path, fd: fd, blockSize: bs, blockCount: size / bs)
    }

    /// The blocks the overlay holds (what the volume wrote since the mount).
    var overlaidBlocks: Int { written.withLock { $0.count } }

    func read(block: Int, count: Int, into buffer: UnsafeMutableRawBufferPointer) throws(Errno) {
        try checkRequest(block: block, count: count, bufferCount: buffer.count)
        // The image first, in one pread (zeroes past a short file's end), then the blocks
        // written since the mount over it.
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(block * blockSize + done))
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw Errno(rawValue: errno) }
            if n == 0 {
                (buffer.baseAddress! + done).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - done)
                break
            }
            done += n
        }
        let first = block
        let over: [(Int, [UInt8])] = written.withLock { w in
            w.isEmpty ? [] : (first..<first + count).compactMap { b in w[b].map { (b, $0) } }
        }
        for (b, bytes) in over {
            bytes.withUnsafeBytes { src in
                UnsafeMutableRawBufferPointer(rebasing: buffer[(b - block) * blockSize..<(b - block + 1) * blockSize]).copyMemory(from: src)
            }
        }
    }

    func write(block: Int, count: Int, from buffer: UnsafeRawBufferPointer) throws(Errno) {
        try checkRequest(block: block, count: count, bufferCount: buffer.count)
        let copies = (0..<count).map { i in Array(UnsafeRawBufferPointer(rebasing: buffer[i * blockSize..<(i + 1) * blockSize])) }
        let first = block
        written.withLock { w in
            for (i, bytes) in copies.enumerated() { w[first + i] = bytes }
        }
    }

    /// Nothing to make durable: nothing leaves memory.
    func flush() throws(Errno) {}
}

extension VolumeImage {
    /// Why the image must not be written, or nil when it may: it is a read-only block device
    /// (`losetup -r`), it cannot be opened for writing (a read-only file system, a file this
    /// user may not write), or it has
    /// no write permission bit at all, which root could override but which says that
    /// somebody meant it to stay as it is.
    static func whyNotWritable(_ path: String) -> String? {
        var st = stat()
        if stat(path, &st) == 0, st.st_mode & 0o222 == 0 {
            return "has no write permission (mode \(String(st.st_mode & 0o7777, radix: 8)))"
        }
        if (st.st_mode & S_IFMT) == S_IFBLK, cfuse_block_device_read_only(path) == 1 { return "is a read-only block device" }
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        if fd >= 0 {
            close(fd)
            return nil
        }
        let e = errno
        guard e == EACCES || e == EROFS || e == EPERM || e == ETXTBSY else { return nil }
        return "cannot be opened for writing (\(Errno(rawValue: e).symbolicName))"
    }
}
