// `iomap vol put` and `get`: copy a host file or tree into a volume and back, keeping what
// cp -a keeps: types, modes, owners, times, hard links, symlinks, extended attributes, and
// holes (data is found with SEEK_DATA/SEEK_HOLE on both sides, as cp does).

import ExtentFS
import IOMapBase
import IOMapKernelSide
import Volume

#if canImport(Glibc)
    import Glibc
#endif

/// lseek's SEEK_DATA and SEEK_HOLE (Linux's include/uapi/linux/fs.h values), which Glibc's
/// module does not export.
let seekDataWhence: Int32 = 3
let seekHoleWhence: Int32 = 4

struct HostCopier {
    let volume: Volume
    /// Hard links seen so far: a host (device, inode) to the volume inode made for it, and a
    /// volume inode to the host path written for it.
    var intoVolume: [String: InodeNumber] = [:]
    var outOfVolume: [InodeNumber: String] = [:]

    init(volume: Volume) { self.volume = volume }

    static func hostError(_ what: String) -> VolFailure { VolFailure(errno: Errno(rawValue: errno), what: what) }

    func attempt<T>(_ what: String, _ body: () throws(Errno) -> T) throws -> T {
        do throws(Errno) { return try body() } catch { throw error.about(what) }
    }

    /// The parent directory and last name of an absolute volume path.
    func split(_ path: String) throws -> (InodeNumber, String) {
        let p = try attempt(path) { () throws(Errno) in try volume.state.resolveParent(path, caller: .root()) }
        return (p.directory, String(decoding: p.name, as: UTF8.self))
    }

    // MARK: put

    mutating func put(host: String, path: String) throws {
        var st = stat()
        guard lstat(host, &st) == 0 else { throw Self.hostError(host) }
        let (dir, name) = try split(path)
        let ino: InodeNumber
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
            if let existing = try? volume.lookup(dir, name) {
                ino = existing
            } else {
                ino = try attempt(path) { () throws(Errno) in try volume.mkdir(in: dir, name, permissions: 0o700) }
            }
            for entry in try Self.entries(host) { try put(host: host + "/" + entry, path: path + "/" + entry) }
        case S_IFLNK:
            let target = try Self.readlink(host)
            ino = try attempt(path) { () throws(Errno) in try volume.symlink(in: dir, name, target: target) }
        case S_IFREG:
            let key = "\(st.st_dev):\(st.st_ino)"
            if st.st_nlink > 1, let first = intoVolume[key] {
                try attempt(path) { () throws(Errno) in try volume.link(first, in: dir, name) }
                return
            }
            ino = try attempt(path) { () throws(Errno) in try volume.create(in: dir, name, permissions: 0o600).inode }
            try copyIn(host, to: ino, size: Int(st.st_size), path: path)
            intoVolume[key] = ino
        default:
            let type = FileType(mode: UInt32(st.st_mode)) ?? .fifo
            ino = try attempt(path) { () throws(Errno) in
                try volume.mknod(in: dir, name, type: type, permissions: 0o600, rdev: UInt64(st.st_rdev))
            }
        }
        try copyXattrsIn(host, to: ino, path: path)
        try setAttributes(ino, st, path: path)
    }

    /// The data of the host file, segment by segment (holes stay holes), then its size.
    func copyIn(_ host: String, to ino: InodeNumber, size: Int, path: String) throws {
        let fd = open(host, O_RDONLY)
        guard fd >= 0 else { throw Self.hostError(host) }
        defer { close(fd) }
        let h = try attempt(path) { () throws(Errno) in try volume.open(ino) }
        defer { try? h.close() }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var offset = 0
        while offset < size {
            let data = Int(lseek(fd, off_t(offset), seekDataWhence))
            if data < 0 { break }
            let hole = Swift.min(Int(lseek(fd, off_t(data), seekHoleWhence)), size)
            var pos = data
            while pos < hole {
                let want = Swift.min(buffer.count, hole - pos)
                let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(pos)) }
                guard n > 0 else { throw Self.hostError(host) }
                let bytes = Array(buffer[0..<n])
                let at = pos
                _ = try attempt(path) { () throws(Errno) in try h.write(bytes, at: at) }
                pos += n
            }
            offset = hole
        }
        try attempt(path) { () throws(Errno) in try h.truncate(to: size) }
    }

    func copyXattrsIn(_ host: String, to ino: InodeNumber, path: String) throws {
        for name in HostFiles.xattrNames(host) {
            guard let value = HostFiles.xattr(host, name) else { continue }
            try attempt(path + " " + name) { () throws(Errno) in try volume.setxattr(ino, name, value) }
        }
    }

    /// Mode, owner and times last, so that writing the data does not move the times.
    func setAttributes(_ ino: InodeNumber, _ st: stat, path: String) throws {
        let isLink = st.st_mode & S_IFMT == S_IFLNK
        try attempt(path) { () throws(Errno) in
            // The owner before the mode: a chown clears set-user-id and set-group-id, as
            // Linux's does, so a chmod before it would lose them (cp -a orders them so too).
            try volume.setAttributes(ino, .chown(uid: st.st_uid, gid: st.st_gid))
            if !isLink { try volume.setAttributes(ino, .chmod(UInt16(st.st_mode & 0o7777))) }
            let atime = Timestamp(seconds: Int64(st.st_atim.tv_sec), nanoseconds: UInt32(st.st_atim.tv_nsec))
            let mtime = Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec))
            try volume.setAttributes(ino, .times(atime: .set(atime), mtime: .set(mtime)))
        }
    }

    // MARK: get

    mutating func get(path: String, host: String) throws {
        let ino = try attempt(path) { () throws(Errno) in try volume.resolve(path, followFinalSymlink: false) }
        let st = try attempt(path) { () throws(Errno) in try volume.stat(ino) }
        let a = st.attributes
        switch a.type {
        case .directory:
            if mkdir(host, 0o700) != 0 && errno != EEXIST { throw Self.hostError(host) }
            for e in try attempt(path, { () throws(Errno) in try volume.readdir(ino) }) where e.cookie > 2 {
                let name = String(decoding: e.name, as: UTF8.self)
                try get(path: (path == "/" ? "" : path) + "/" + name, host: host + "/" + name)
            }
        case .symlink:
            let target = String(decoding: try attempt(path) { () throws(Errno) in try volume.readlink(ino) }, as: UTF8.self)
            if symlink(target, host) != 0 { throw Self.hostError(host) }
        case .regular:
            if a.nlink > 1, let first = outOfVolume[ino] {
                if link(first, host) != 0 { throw Self.hostError(host) }
                return
            }
            try copyOut(ino, to: host, path: path)
            outOfVolume[ino] = host
        default:
            let mode = mode_t(a.type.modeBits) | 0o600
            if mknod(host, mode, dev_t(a.rdev)) != 0 { throw Self.hostError(host) }
        }
        for name in try attempt(path, { () throws(Errno) in try volume.listxattr(ino) }) {
            let value = try attempt(path) { () throws(Errno) in try volume.getxattr(ino, name) }
            if let e = HostFiles.setXattr(host, name, value) { throw e.about(host + " " + name) }
        }
        try Self.setHostAttributes(host, a)
    }

    func copyOut(_ ino: InodeNumber, to host: String, path: String) throws {
        let h = try attempt(path) { () throws(Errno) in try volume.open(ino) }
        defer { try? h.close() }
        let fd = open(host, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw Self.hostError(host) }
        defer { close(fd) }
        let size = h.size
        var offset = 0
        while offset < size {
            guard let data = try? h.seekData(from: offset) else { break }
            let hole = min(try attempt(path) { () throws(Errno) in try h.seekHole(from: data) }, size)
            var at = data
            while at < hole {
                let chunk = try attempt(path) { () throws(Errno) in try h.read(count: min(1 << 20, hole - at), at: at) }
                let n = chunk.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(at)) }
                guard n == chunk.count else { throw Self.hostError(host) }
                at += n
            }
            offset = hole
        }
        if ftruncate(fd, off_t(size)) != 0 { throw Self.hostError(host) }
    }

    static func setHostAttributes(_ host: String, _ a: InodeAttributes) throws {
        // The owner before the mode: the host's chown clears set-user-id and set-group-id.
        if geteuid() == 0 && lchown(host, a.uid, a.gid) != 0 { throw hostError(host) }
        if a.type != .symlink && chmod(host, mode_t(a.permissions)) != 0 { throw hostError(host) }
        var times = [
            timespec(tv_sec: Int(a.atime.seconds), tv_nsec: Int(a.atime.nanoseconds)),
            timespec(tv_sec: Int(a.mtime.seconds), tv_nsec: Int(a.mtime.nanoseconds)),
        ]
        if utimensat(AT_FDCWD, host, &times, AT_SYMLINK_NOFOLLOW) != 0 { throw hostError(host) }
    }

    // MARK: Host calls

    /// A directory's entries, without "." and "..", sorted.
    static func entries(_ path: String) throws -> [String] {
        guard let d = opendir(path) else { throw hostError(path) }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func readlink(_ path: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = Glibc.readlink(path, &buffer, buffer.count)
        guard n >= 0 else { throw hostError(path) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
