// Counterpart: none in the kernel; the volume's persistence, checked across processes: a
// tree built through the Volume API on an image file (nested directories, hard links,
// symlinks, xattrs, sparse and fallocated files, a file unlinked while open), unmounted,
// and then read back by `iomap vol` in new processes must be the same in every name, type,
// mode, owner, size, time, byte and extent, and `iomap fsck` must find it clean.

import ExtentFS
import Foundation
import IOMapBase
import Testing
import Volume

@Suite("The volume across processes")
struct VolumePersistenceTests {
    /// What `vol stat --json` prints that must survive: everything but the inode's blocks,
    /// whose count is a function of the extents.
    static let fields = ["inode", "type", "mode", "nlink", "uid", "gid", "size", "mtime", "ctime", "btime", "atime", "extents", "symlink"]

    /// Builds the tree on `image`; returns the paths whose stat must come back, and the bytes
    /// of the files.
    func build(_ image: String) throws -> (paths: [String], contents: [String: [UInt8]]) {
        let device = try FileBlockDevice(path: image, blockSize: 4096, blockCount: 8192, create: true)
        try Volume.format(device: device)
        var options = VolumeOptions()
        options.backgroundForce = nil
        let v = try Volume.mount(device: device, options: options)
        let a = try v.mkdir(in: .root, "a", permissions: 0o750)
        let b = try v.mkdir(in: a, "b", permissions: 0o700)
        let f = try v.create(in: b, "data", permissions: 0o640).inode
        let h = try v.open(f)
        let bytes = (0..<20000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        try h.write(bytes, at: 0)
        try h.write(Array(bytes[0..<100]), at: 1 << 20)  // a hole between
        try h.allocate(offset: 2 << 20, length: 16384, keepSize: true)
        try h.close()
        try v.link(f, in: a, "hard")
        _ = try v.symlink(in: .root, "link", target: "a/b/data")
        _ = try v.symlink(in: .root, "dangling", target: "nowhere")
        try v.setxattr(f, "user.colour", Array("blue".utf8))
        try v.setAttributes(a, .chown(uid: 1000, gid: 100))
        let open = try v.open(try v.create(in: .root, "gone", permissions: 0o600).inode)
        try open.write(Array(bytes[0..<5000]), at: 0)
        try v.unlink(in: .root, "gone")
        try open.fsync()
        try v.unmount()
        let full = bytes + [UInt8](repeating: 0, count: (1 << 20) - 20000) + Array(bytes[0..<100])
        return (["/a", "/a/b", "/a/b/data", "/a/hard", "/link", "/dangling"], ["/a/b/data": full])
    }

    @Test("a tree unmounted in this process reads back the same in new ones; fsck is clean; the open-unlinked file is gone")
    func acrossProcesses() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vol-persist-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = dir + "/vol.img"
        let (paths, contents) = try build(image)
        // The same figures through the API in this process, from a fresh mount of the image.
        var options = VolumeOptions()
        options.backgroundForce = nil
        let device = try FileBlockDevice(path: image, blockSize: 4096, blockCount: 8192, create: false)
        let v = try Volume.mount(device: device, options: options)
        for path in paths {
            let ino = try v.resolve(path, followFinalSymlink: false)
            let st = try v.stat(ino)
            let r = try runIOMap(["vol", image, "stat", path, "--json"])
            #expect(r.status == 0, "\(path): \(r.stderr)")
            let j = try r.json()
            #expect(j["inode"] as? UInt64 == ino.rawValue, "\(path)")
            #expect(j["size"] as? Int == st.size, "\(path)")
            #expect(j["mode"] as? String == "0" + String(st.mode, radix: 8), "\(path)")
            #expect(j["uid"] as? UInt32 == st.attributes.uid && j["gid"] as? UInt32 == st.attributes.gid, "\(path)")
            #expect(j["nlink"] as? UInt32 == st.attributes.nlink, "\(path)")
            #expect(j["mtime"] as? String == "\(st.attributes.mtime)" && j["ctime"] as? String == "\(st.attributes.ctime)", "\(path)")
            let extents = (v.state[ino]?.extents ?? []).map { [$0.fileBlock, $0.diskBlock, $0.count, $0.unwritten ? 1 : 0] }
            #expect((j["extents"] as? [[Int64]] ?? []) == extents, "\(path)")
        }
        #expect(try v.readlink(try v.resolve("/dangling", followFinalSymlink: false)) == Array("nowhere".utf8))
        #expect((try? v.lookup(.root, "gone")) == nil)
        #expect(v.state.orphans.isEmpty)
        // The bytes, as a host file (stdout is decoded as text here).
        let out = dir + "/data.out"
        let get = try runIOMap(["vol", image, "get", "/a/b/data", out])
        #expect(get.status == 0, "\(get.stderr)")
        #expect(FileManager.default.contents(atPath: out).map(Array.init) == contents["/a/b/data"]!, "the file's bytes")
        let attr = try runIOMap(["vol", image, "getfattr", "-n", "user.colour", "/a/hard"])
        #expect(attr.status == 0 && attr.stdout.contains("user.colour=\"blue\""), "\(attr.stdout)\(attr.stderr)")
        let fsck = try runIOMap(["fsck", image, "--json"])
        #expect(fsck.status == 0, "\(fsck.stdout)")
        #expect(try fsck.json()["clean"] as? Bool == true)
    }
}
