// The verbs of `iomap vol` on a mounted volume: each resolves its paths, calls the Volume
// API and turns an errno into a failure that names the path.

import ArgumentParser
import ExtentFS
import IOMapBase
import Volume

#if canImport(Glibc)
    import Glibc
#endif

struct VolTool {
    let volume: Volume
    let json: Bool

    func run(_ verb: String, _ a: VolArguments) throws {
        switch verb {
        case "ls": try ls(a)
        case "stat": try stat(try a.expect(1, "stat PATH")[0])
        case "cat": try cat(try a.expect(1, "cat PATH")[0])
        case "put":
            let w = try a.expect(2, "put HOSTPATH PATH")
            var copier = HostCopier(volume: volume)
            try copier.put(host: w[0], path: try destination(w[1], host: w[0]))
        case "get":
            let w = try a.expect(2, "get PATH HOSTPATH")
            var copier = HostCopier(volume: volume)
            try copier.get(path: w[0], host: w[1])
        case "mkdir": try mkdir(try a.expect(1, "mkdir [-p] PATH")[0], parents: a.flags["-p"] != nil)
        case "rm": try remove(try a.expect(1, "rm [-r] PATH")[0], recursive: a.flags["-r"] != nil)
        case "mv":
            let w = try a.expect(2, "mv SOURCE DEST")
            let (fromDir, fromName) = try parent(w[0])
            let (toDir, toName) = try parent(w[1])
            try attempt(w[0]) { () throws(Errno) in try volume.rename(from: fromDir, fromName, to: toDir, toName) }
        case "ln": try link(a)
        case "setfattr": try setfattr(a)
        default: try getfattr(a)
        }
    }

    // MARK: Paths

    /// Runs `body`, naming `what` in its failure.
    func attempt<T>(_ what: String, _ body: () throws(Errno) -> T) throws -> T {
        do throws(Errno) { return try body() } catch { throw error.about(what) }
    }

    func resolve(_ path: String, follow: Bool = true) throws -> InodeNumber {
        guard path.hasPrefix("/") else { throw ValidationError("\(path): paths inside the volume are absolute") }
        return try attempt(path) { () throws(Errno) in try volume.resolve(path, followFinalSymlink: follow) }
    }

    /// The directory holding `path`'s last component, and that component.
    func parent(_ path: String) throws -> (InodeNumber, String) {
        guard path.hasPrefix("/") else { throw ValidationError("\(path): paths inside the volume are absolute") }
        let p = try attempt(path) { () throws(Errno) in try volume.state.resolveParent(path, caller: .root()) }
        return (p.directory, String(decoding: p.name, as: UTF8.self))
    }

    /// Where `put` writes: `path`, or `path/basename(host)` when `path` is a directory.
    func destination(_ path: String, host: String) throws -> String {
        guard let ino = try? resolve(path), (try? volume.stat(ino))?.attributes.type == .directory else { return path }
        let base = host.split(separator: "/").last.map(String.init) ?? host
        return (path.hasSuffix("/") ? path : path + "/") + base
    }

    // MARK: Verbs

    func ls(_ a: VolArguments) throws {
        let path = a.words.first ?? "/"
        let dir = try resolve(path)
        let entries = try attempt(path) { () throws(Errno) in try volume.readdir(dir) }.filter { $0.cookie > 2 }
        for e in entries.sorted(by: { $0.name.lexicographicallyPrecedes($1.name) }) {
            let name = String(decoding: e.name, as: UTF8.self)
            guard a.flags["-l"] != nil, let st = try? volume.stat(e.inode) else {
                print(name)
                continue
            }
            let target =
                st.attributes.type == .symlink ? " -> " + String(decoding: (try? volume.readlink(e.inode)) ?? [], as: UTF8.self) : ""
            print("\(modeString(st.mode)) \(st.attributes.nlink) \(st.attributes.uid) \(st.attributes.gid) \(st.size) \(name)\(target)")
        }
    }

    struct StatJSON: Encodable {
        var inode: UInt64
        var type: String
        var mode: String
        var nlink: UInt32
        var uid: UInt32
        var gid: UInt32
        var size: Int
        var blocks: Int
        var atime: String
        var mtime: String
        var ctime: String
        var btime: String
        var generation: UInt32
        /// A regular file's recorded extents: [file block, disk block, count, unwritten 0/1].
        var extents: [[Int64]]
        var symlink: String?
    }

    func stat(_ path: String) throws {
        let ino = try resolve(path, follow: false)
        let st = try attempt(path) { () throws(Errno) in try volume.stat(ino) }
        let a = st.attributes
        let j = StatJSON(
            inode: ino.rawValue, type: "\(a.type)", mode: "0" + String(a.mode, radix: 8), nlink: a.nlink, uid: a.uid, gid: a.gid,
            size: st.size, blocks: st.blocks512, atime: "\(a.atime)", mtime: "\(a.mtime)", ctime: "\(a.ctime)", btime: "\(a.btime)",
            generation: a.generation,
            extents: (volume.state[ino]?.extents ?? []).map { [$0.fileBlock, $0.diskBlock, $0.count, $0.unwritten ? 1 : 0] },
            symlink: a.type == .symlink ? String(decoding: (try? volume.readlink(ino)) ?? [], as: UTF8.self) : nil)
        if json {
            printJSON(j)
            return
        }
        print("  File: \(path)\n  Size: \(j.size)  Blocks: \(j.blocks)  Inode: \(j.inode)  Links: \(j.nlink)  \(j.type)")
        print("Access: (\(j.mode)/\(modeString(a.mode)))  Uid: \(j.uid)  Gid: \(j.gid)  Generation: \(j.generation)")
        print("Access: \(j.atime)\nModify: \(j.mtime)\nChange: \(j.ctime)\n Birth: \(j.btime)")
    }

    func cat(_ path: String) throws {
        let h = try attempt(path) { () throws(Errno) in try volume.open(try volume.resolve(path)) }
        defer { try? h.close() }
        var offset = 0
        while offset < h.size {
            let chunk = try attempt(path) { () throws(Errno) in try h.read(count: min(1 << 20, h.size - offset), at: offset) }
            if chunk.isEmpty { break }
            // print() buffers stdout: flush it, then write the bytes straight to descriptor 1.
            fflush(nil)
            var done = 0
            while done < chunk.count {
                let n = chunk.withUnsafeBytes { Glibc.write(1, $0.baseAddress! + done, $0.count - done) }
                if n <= 0 { throw Errno(rawValue: errno).about("standard output") }
                done += n
            }
            offset += chunk.count
        }
    }

    func mkdir(_ path: String, parents: Bool) throws {
        if parents {
            var sofar = ""
            for part in path.split(separator: "/") {
                sofar += "/" + part
                if (try? resolve(sofar)) == nil { try mkdir(sofar, parents: false) }
            }
            return
        }
        let (dir, name) = try parent(path)
        _ = try attempt(path) { () throws(Errno) in try volume.mkdir(in: dir, name, permissions: 0o755) }
    }

    func remove(_ path: String, recursive: Bool) throws {
        let ino = try resolve(path, follow: false)
        let (dir, name) = try parent(path)
        if (try? volume.stat(ino))?.attributes.type == .directory {
            guard recursive else { throw Errno.isDirectory.about(path + " (rm -r removes a directory)") }
            for e in try attempt(path, { () throws(Errno) in try volume.readdir(ino) }) where e.cookie > 2 {
                try remove(path + "/" + String(decoding: e.name, as: UTF8.self), recursive: true)
            }
            try attempt(path) { () throws(Errno) in try volume.rmdir(in: dir, name) }
        } else {
            try attempt(path) { () throws(Errno) in try volume.unlink(in: dir, name) }
        }
    }

    func link(_ a: VolArguments) throws {
        let w = try a.expect(2, "ln [-s] TARGET PATH")
        let (dir, name) = try parent(w[1])
        if a.flags["-s"] != nil {
            _ = try attempt(w[1]) { () throws(Errno) in try volume.symlink(in: dir, name, target: w[0]) }
        } else {
            let target = try resolve(w[0], follow: false)
            try attempt(w[1]) { () throws(Errno) in try volume.link(target, in: dir, name) }
        }
    }

    func setfattr(_ a: VolArguments) throws {
        let path = try a.expect(1, "setfattr -n NAME [-v VALUE] PATH | -x NAME PATH")[0]
        let ino = try resolve(path, follow: false)
        if let name = a.flags["-x"] {
            try attempt(path) { () throws(Errno) in try volume.removexattr(ino, name) }
        } else if let name = a.flags["-n"] {
            let value = Array((a.flags["-v"] ?? "").utf8)
            try attempt(path) { () throws(Errno) in try volume.setxattr(ino, name, value) }
        } else {
            throw ValidationError("usage: iomap vol IMAGE setfattr -n NAME [-v VALUE] PATH | -x NAME PATH")
        }
    }

    func getfattr(_ a: VolArguments) throws {
        let path = try a.expect(1, "getfattr [-n NAME] PATH")[0]
        let ino = try resolve(path, follow: false)
        let names = try a.flags["-n"].map { [$0] } ?? attempt(path) { () throws(Errno) in try volume.listxattr(ino) }
        for name in names {
            let value = try attempt(path + " " + name) { () throws(Errno) in try volume.getxattr(ino, name) }
            print("\(name)=\"\(String(decoding: value, as: UTF8.self))\"")
        }
    }
}

/// ls -l's mode column.
func modeString(_ mode: UInt32) -> String {
    let type: Character =
        switch FileType(mode: mode) {
        case .directory: "d"
        case .symlink: "l"
        case .fifo: "p"
        case .socket: "s"
        case .characterDevice: "c"
        case .blockDevice: "b"
        default: "-"
        }
    let bits = Array("rwxrwxrwx")
    return String(type) + String((0..<9).map { mode & (0o400 >> UInt32($0)) != 0 ? bits[$0] : "-" })
}
