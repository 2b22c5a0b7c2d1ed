// Counterpart: none in the kernel; `iomap vol put` and `get` of the files without data
// (FIFOs, sockets, character and block devices), which mknod(2) makes: their type and
// device number must come back as the host had them, across processes, with fsck clean.

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The kernel's encoding of a device number (include/linux/kdev_t.h's new_encode_dev, as
/// glibc's makedev): minor's low byte, major's twelve bits, then the rest of each.
func deviceNumber(major: UInt64, minor: UInt64) -> UInt64 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12) | ((major & ~0xfff) << 32)
}

extension VolumeCommandTests.Vol {
    @Test("put and get keep FIFOs, sockets and device nodes: type, device number, mode (root only for devices)")
    func deviceNodes() throws {
        let (dir, image) = try scratchVolume("devnodes")
        defer { dir.remove() }
        let src = dir.path + "/src"
        try HostTree.check(Glibc.mkdir(src, 0o755), src)
        try HostTree.check(mkfifo(src + "/fifo", 0o640), "mkfifo")
        // A socket's inode is made by bind(2); the volume keeps it as a node without data.
        try HostTree.check(mknod(src + "/socket", S_IFSOCK | 0o600, 0), "mknod socket")
        var expected: [String: (type: mode_t, rdev: UInt64)] = ["fifo": (S_IFIFO, 0), "socket": (S_IFSOCK, 0)]
        if geteuid() == 0 {
            // Numbers past the old 8-bit encoding too, so both halves of each field travel.
            let nodes: [(String, mode_t, UInt64)] = [
                ("null-like", S_IFCHR, deviceNumber(major: 1, minor: 3)),
                ("wide-char", S_IFCHR, deviceNumber(major: 4000, minor: 70_000)),
                ("loop-like", S_IFBLK, deviceNumber(major: 7, minor: 200)),
            ]
            for (name, type, rdev) in nodes {
                try HostTree.check(mknod(src + "/" + name, type | 0o600, dev_t(rdev)), "mknod \(name)")
                expected[name] = (type, rdev)
            }
        } else {
            print("skipped: device nodes need root to make (mknod S_IFCHR/S_IFBLK); FIFO and socket checked")
        }
        try vol(image, ["put", src, "/"])
        let out = dir.path + "/out"
        try vol(image, ["get", "/src", out])
        for (name, want) in expected.sorted(by: { $0.key < $1.key }) {
            var st = stat()
            try HostTree.check(lstat(out + "/" + name, &st), "lstat \(name)")
            #expect(st.st_mode & S_IFMT == want.type, "\(name): type 0o\(String(st.st_mode & S_IFMT, radix: 8))")
            #expect(UInt64(st.st_rdev) == want.rdev, "\(name): device number \(st.st_rdev), want \(want.rdev)")
            var host = stat()
            try HostTree.check(lstat(src + "/" + name, &host), "lstat source \(name)")
            #expect(st.st_mode & 0o7777 == host.st_mode & 0o7777, "\(name): mode")
        }
    }
}
