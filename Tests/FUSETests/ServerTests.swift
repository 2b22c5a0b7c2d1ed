// The dispatcher on a volume in memory, driven by hand-built requests: each served opcode's
// reply, the lookup counts, and bad requests answered with an errno (never a crash).

import CFUSE
import FUSE
import IOMapBase
import Testing
import Volume

#if canImport(Glibc)
    import Glibc
#endif

@Suite("FUSE server, in process")
struct ServerTests {
    @Test("before INIT nothing is served; INIT answers the negotiation")
    func initFirst() throws {
        let h = try Harness()
        #expect(h.call(.getattr, bytes(of: fuse_getattr_in())).error == -Errno.ioError.rawValue)
        let r = try #require(h.send(kernelInit(unique: 3)))
        #expect(r.error == 0 && r.unique == 3 && r.payload.count == 64)
        #expect(r.load(fuse_init_out.self).flags2 & UInt32(CFUSE_FLAGS2_DIRECT_IO_ALLOW_MMAP) != 0)
        #expect(h.server.negotiated?.allowsSharedMmap == true)
    }

    @Test("create, write, read, getattr, fsync, release: the data and the size round-trip")
    func fileRoundTrip() throws {
        let h = try Harness()
        h.initialize()
        let (node, fh) = h.create("f")
        #expect(node > 1 && h.server.nodes.lookups(node) == 1)
        let data = (0..<10000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let w = h.write(fh, nodeid: node, data, at: 1000)
        #expect(w.error == 0 && w.load(fuse_write_out.self).size == 10000)
        let r = h.read(fh, nodeid: node, size: 20000, at: 0)
        #expect(r.error == 0 && r.payload.count == 11000)
        #expect(Array(r.payload[1000...]) == data && r.payload[0..<1000].allSatisfy { $0 == 0 })
        var g = fuse_getattr_in()
        g.getattr_flags = 1
        g.fh = fh
        let a = h.call(.getattr, nodeid: node, bytes(of: g))
        #expect(a.error == 0 && a.load(fuse_attr_out.self).attr.size == 11000)
        var s = fuse_fsync_in()
        s.fh = fh
        #expect(h.call(.fsync, nodeid: node, bytes(of: s)).error == 0)
        #expect(h.server.stats.snapshot().engineFsyncs == 1)
        var rel = fuse_release_in()
        rel.fh = fh
        #expect(h.call(.release, nodeid: node, bytes(of: rel)).error == 0)
        #expect(h.server.handles.count == 0)
        #expect(h.read(fh, nodeid: node, size: 10, at: 0).error == -Errno.badFileDescriptor.rawValue, "a released fh")
    }

    @Test("lookups are counted and forgotten; a node the kernel cannot hold is ESTALE")
    func lookupCounts() throws {
        let h = try Harness()
        h.initialize()
        let (node, fh) = h.create("f")
        var rel = fuse_release_in()
        rel.fh = fh
        _ = h.call(.release, nodeid: node, bytes(of: rel))
        let l = h.call(.lookup, cName("f"))
        #expect(l.error == 0 && l.load(fuse_entry_out.self).nodeid == node && h.server.nodes.lookups(node) == 2)
        #expect(h.call(.lookup, cName("missing")).error == -Errno.noSuchFileOrDirectory.rawValue)
        #expect(h.send(request(.forget, nodeid: node, le64(1))) == nil, "FORGET takes no reply")
        #expect(h.server.nodes.lookups(node) == 1)
        #expect(h.send(request(.batchForget, le32(1) + le32(0) + le64(node) + le64(1))) == nil)
        #expect(!h.server.nodes.knows(node))
        #expect(h.call(.getattr, nodeid: node, bytes(of: fuse_getattr_in())).error == -ESTALE)
        #expect(h.call(.getattr, nodeid: 999, bytes(of: fuse_getattr_in())).error == -ESTALE)
        #expect(h.call(.getattr, nodeid: 1, bytes(of: fuse_getattr_in())).error == 0, "the root is always known")
    }

    @Test("bad requests get an errno with their unique, and the counters say so")
    func badRequests() throws {
        let h = try Harness()
        h.initialize()
        let short = h.send(request(.lookup, unique: 501, Array("no-nul".utf8)))
        #expect(short?.error == -EINVAL && short?.unique == 501)
        #expect(h.send(request(.mkdir, unique: 502, [1, 2]))?.error == -EINVAL)
        #expect(h.send(request(.lookup, unique: 503, cName("a/b")))?.error == -EINVAL)
        #expect(h.send(Array(request(.getattr, unique: 504).prefix(20))) == nil, "no header: nothing to answer")
        #expect(h.send(request(.forget, unique: 505, [1])) == nil, "a bad FORGET is still not answered")
        let unknown = h.send(rawRequest(4000, unique: 506))
        #expect(unknown?.error == -ENOSYS && unknown?.unique == 506)
        #expect(h.send(request(.statx, unique: 507, [UInt8](repeating: 0, count: 24)))?.error == -ENOSYS)
        let s = h.server.stats.snapshot()
        #expect(s.badRequests == 5 && s.enosys == 2 && s.enosysByOpcode["statx"] == 1 && s.enosysByOpcode["opcode_63"] == 1)
    }

    @Test("random requests after INIT never crash the server and are all answered or dropped (seeded)")
    func garbage() throws {
        let h = try Harness()
        h.initialize()
        _ = h.create("f")
        var rng = SplitMix(seed: 0xBAD)
        for i in 0..<5000 {
            let opcode = UInt32(rng.next() % 54)
            if opcode == Opcode.destroy.rawValue || opcode == Opcode.initialize.rawValue { continue }
            let count = Int(rng.next() % 128)
            var args = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if rng.next() % 2 == 0 { args += [0x61, 0] }
            let r = h.send(rawRequest(opcode, nodeid: rng.next() % 3, unique: UInt64(i + 1000), args))
            if let r { #expect(r.unique == UInt64(i + 1000)) }
        }
    }

    @Test("namespace: mkdir, symlink, readlink, link, rename2 NOREPLACE and EXCHANGE, unlink, rmdir")
    func namespace() throws {
        let h = try Harness()
        h.initialize()
        var d = fuse_mkdir_in()
        d.mode = 0o755
        let dir = h.call(.mkdir, bytes(of: d) + cName("d"))
        #expect(dir.error == 0 && dir.load(fuse_entry_out.self).attr.mode == 0o40755)
        let dnode = dir.load(fuse_entry_out.self).nodeid
        let sym = h.call(.symlink, cName("s") + cName("target/path"))
        #expect(sym.error == 0)
        let link = h.call(.readlink, nodeid: sym.load(fuse_entry_out.self).nodeid)
        #expect(link.payload == Array("target/path".utf8))
        let (f, _) = h.create("f")
        var l = fuse_link_in()
        l.oldnodeid = f
        let hard = h.call(.link, nodeid: dnode, bytes(of: l) + cName("hard"))
        #expect(hard.error == 0 && hard.load(fuse_entry_out.self).attr.nlink == 2 && h.server.nodes.lookups(f) == 2)
        var r2 = fuse_rename2_in()
        r2.newdir = dnode
        r2.flags = LinuxABI.renameNoReplace
        #expect(h.call(.rename2, bytes(of: r2) + cName("f") + cName("hard")).error == -EEXIST)
        r2.flags = LinuxABI.renameExchange
        #expect(h.call(.rename2, bytes(of: r2) + cName("s") + cName("hard")).error == 0)
        #expect(h.call(.lookup, nodeid: dnode, cName("hard")).load(fuse_entry_out.self).attr.mode & 0o170000 == 0o120000)
        r2.flags = LinuxABI.renameWhiteout
        #expect(h.call(.rename2, bytes(of: r2) + cName("f") + cName("w")).error == -EINVAL)
        #expect(h.call(.rmdir, cName("d")).error == -ENOTEMPTY)
        #expect(h.call(.unlink, nodeid: dnode, cName("hard")).error == 0)
        #expect(h.call(.unlink, cName("s")).error == 0)
        #expect(h.call(.rmdir, cName("d")).error == 0)
    }

    @Test("readdirplus: entries with attributes and counted lookups, . and .. with node id 0; plain readdir resumes from a cookie")
    func readdir() throws {
        let h = try Harness()
        h.initialize()
        for i in 0..<40 { _ = h.create("file-\(i)") }
        var o = fuse_open_in()
        o.flags = 0
        let open = h.call(.opendir, bytes(of: o))
        let fh = open.load(fuse_open_out.self).fh
        var r = fuse_read_in()
        r.fh = fh
        r.size = 4096
        let plus = h.call(.readdirplus, bytes(of: r))
        #expect(plus.error == 0 && plus.payload.count <= 4096 && plus.payload.count > 0)
        var names: [String] = []
        var at = 0
        var last: UInt64 = 0
        while at < plus.payload.count {
            let e = plus.load(fuse_entry_out.self, at: at)
            let d = plus.load(cfuse_dirent_head.self, at: at + 128)
            let name = String(decoding: plus.payload[(at + 152)..<(at + 152 + Int(d.namelen))], as: UTF8.self)
            if name == "." || name == ".." {
                #expect(e.nodeid == 0)
            } else {
                #expect(e.nodeid == d.ino && h.server.nodes.lookups(e.nodeid) == 2)
            }
            names.append(name)
            last = d.off
            at += Encode.direntplusSize(nameLength: Int(d.namelen))
        }
        #expect(names.prefix(3) == [".", "..", "file-0"] && names.count < 42, "a 4 KiB reply holds some of 42 entries")
        r.offset = last
        r.size = 65536
        let rest = h.call(.readdir, bytes(of: r))
        var more: [String] = []
        at = 0
        while at < rest.payload.count {
            let d = rest.load(cfuse_dirent_head.self, at: at)
            more.append(String(decoding: rest.payload[(at + 24)..<(at + 24 + Int(d.namelen))], as: UTF8.self))
            at += Encode.direntSize(nameLength: Int(d.namelen))
        }
        #expect(Set(names + more) == Set([".", ".."] + (0..<40).map { "file-\($0)" }) && names.count + more.count == 42)
        #expect(
            h.call(
                .fsyncdir,
                bytes(
                    of: {
                        var s = fuse_fsync_in(); s.fh = fh; return s
                    }())
            ).error == 0)
        #expect(
            h.call(
                .readdir, nodeid: 1,
                bytes(
                    of: {
                        var x = r; x.fh = 9999; return x
                    }())
            ).error == -EBADF)
    }

    @Test("setattr: truncate, chmod, chown, times; an unprivileged write clears set-user-id, a writeback one does not")
    func setattrAndSetID() throws {
        let h = try Harness()
        h.initialize()
        let (node, fh) = h.create("f", mode: 0o104777)
        var s = fuse_setattr_in()
        s.valid = SetattrValid.mode
        s.mode = 0o104777
        #expect(h.call(.setattr, nodeid: node, bytes(of: s)).load(fuse_attr_out.self).attr.mode == 0o104777)
        // A writeback of mmap pages clears nothing.
        _ = h.write(fh, nodeid: node, [1, 2, 3], at: 0, flags: ProtocolFlags.writeCache, uid: 1000)
        #expect(h.call(.getattr, nodeid: node, bytes(of: fuse_getattr_in())).load(fuse_attr_out.self).attr.mode == 0o104777)
        // A write by uid 1000 does.
        #expect(h.write(fh, nodeid: node, [4], at: 3, uid: 1000).error == 0)
        #expect(h.call(.getattr, nodeid: node, bytes(of: fuse_getattr_in())).load(fuse_attr_out.self).attr.mode == 0o100777)
        s.valid = SetattrValid.size | SetattrValid.uid | SetattrValid.gid | SetattrValid.mtime
        s.size = 2
        s.uid = 1000
        s.gid = 100
        s.mtime = 1_600_000_000
        let a = h.call(.setattr, nodeid: node, bytes(of: s)).load(fuse_attr_out.self).attr
        #expect(a.size == 2 && a.uid == 1000 && a.gid == 100 && a.mtime == 1_600_000_000)
        // chown by another user is EPERM (after the groups retry finds nothing to add).
        s.valid = SetattrValid.uid
        s.uid = 0
        #expect(h.call(.setattr, nodeid: node, uid: 2000, bytes(of: s)).error == -EPERM)
    }

    @Test("xattrs: set, get with size 0 and too small a buffer, list, remove; statfs; access")
    func xattrsStatfsAccess() throws {
        let h = try Harness()
        h.initialize()
        let (node, _) = h.create("f")
        #expect(h.call(.setxattr, nodeid: node, le32(5) + le32(0) + cName("user.k") + Array("value".utf8)).error == 0)
        #expect(h.call(.getxattr, nodeid: node, le32(0) + le32(0) + cName("user.k")).load(fuse_getxattr_out.self).size == 5)
        #expect(h.call(.getxattr, nodeid: node, le32(4) + le32(0) + cName("user.k")).error == -ERANGE)
        #expect(h.call(.getxattr, nodeid: node, le32(64) + le32(0) + cName("user.k")).payload == Array("value".utf8))
        #expect(h.call(.getxattr, nodeid: node, le32(64) + le32(0) + cName("user.none")).error == -ENODATA)
        #expect(h.call(.listxattr, nodeid: node, le32(64) + le32(0)).payload == cName("user.k"))
        #expect(h.call(.removexattr, nodeid: node, cName("user.k")).error == 0)
        #expect(h.call(.listxattr, nodeid: node, le32(0) + le32(0)).load(fuse_getxattr_out.self).size == 0)
        let st = h.call(.statfs).load(fuse_statfs_out.self).st
        #expect(st.bsize == 4096 && st.blocks == 4096 && st.namelen == 255 && st.bfree > 0)
        #expect(h.call(.access, nodeid: node, le32(4) + le32(0)).error == 0)
        #expect(h.call(.access, nodeid: node, uid: 1000, gid: 1000, le32(2) + le32(0)).error == -EACCES)
    }

    @Test("fallocate's four modes and lseek's SEEK_DATA/SEEK_HOLE; other modes EOPNOTSUPP, never ENOSYS")
    func fallocateAndSeek() throws {
        let h = try Harness()
        h.initialize()
        let (node, fh) = h.create("f")
        func fallocate(_ mode: UInt32, _ off: UInt64, _ len: UInt64) -> Int32 {
            var a = fuse_fallocate_in()
            a.fh = fh
            a.offset = off
            a.length = len
            a.mode = mode
            return h.call(.fallocate, nodeid: node, bytes(of: a)).error
        }
        func seek(_ whence: UInt32, _ off: UInt64) -> (Int32, UInt64) {
            var l = fuse_lseek_in()
            l.fh = fh
            l.offset = off
            l.whence = whence
            let r = h.call(.lseek, nodeid: node, bytes(of: l))
            return (r.error, r.error == 0 ? r.load(fuse_lseek_out.self).offset : 0)
        }
        _ = h.write(fh, nodeid: node, [UInt8](repeating: 0xAB, count: 65536), at: 1 << 20)
        #expect(seek(LinuxABI.seekData, 0) == (0, 1 << 20))
        #expect(seek(LinuxABI.seekHole, 1 << 20) == (0, (1 << 20) + 65536))
        #expect(seek(LinuxABI.seekData, 1 << 22).0 == -ENXIO)
        #expect(fallocate(LinuxABI.fallocPunchHole | LinuxABI.fallocKeepSize, 1 << 20, 4096) == 0)
        #expect(seek(LinuxABI.seekData, 1 << 20) == (0, (1 << 20) + 4096))
        #expect(fallocate(0, 1 << 22, 4096) == 0)
        #expect(h.call(.getattr, nodeid: node, bytes(of: fuse_getattr_in())).load(fuse_attr_out.self).attr.size == (1 << 22) + 4096)
        #expect(fallocate(LinuxABI.fallocKeepSize, 1 << 23, 4096) == 0)
        #expect(fallocate(LinuxABI.fallocZeroRange, (1 << 20) + 8192, 100) == 0)
        #expect(h.read(fh, nodeid: node, size: 200, at: (1 << 20) + 8192).payload.prefix(100).allSatisfy { $0 == 0 })
        #expect(fallocate(LinuxABI.fallocPunchHole, 0, 4096) == -EOPNOTSUPP, "punch without KEEP_SIZE")
        #expect(fallocate(0x08, 0, 4096) == -EOPNOTSUPP, "collapse range")
        #expect(seek(0, 0).0 == -EINVAL, "SEEK_SET is the kernel's")
        let s = h.server.stats.snapshot()
        #expect(s.enosys == 0)
    }

    @Test("what a page-cache READ (no lock owner) brought into the kernel is data for SEEK_DATA until the last release")
    func kernelCachedRangesAreData() throws {
        let h = try Harness()
        h.initialize()
        let (node, fh) = h.create("f")
        var s = fuse_setattr_in()
        s.valid = SetattrValid.size
        s.size = 1 << 20
        #expect(h.call(.setattr, nodeid: node, bytes(of: s)).error == 0)
        func seek(_ whence: UInt32, _ off: UInt64, _ handle: UInt64) -> (Int32, UInt64) {
            var l = fuse_lseek_in()
            l.fh = handle
            l.offset = off
            l.whence = whence
            let r = h.call(.lseek, nodeid: node, bytes(of: l))
            return (r.error, r.error == 0 ? r.load(fuse_lseek_out.self).offset : 0)
        }
        func read(_ handle: UInt64, at: UInt64, flags: UInt32) {
            var r = fuse_read_in()
            r.fh = handle
            r.offset = at
            r.size = 4096
            r.read_flags = flags
            #expect(h.call(.read, nodeid: node, bytes(of: r)).error == 0)
        }
        #expect(seek(LinuxABI.seekData, 0, fh).0 == -ENXIO, "all hole")
        read(fh, at: 200_000, flags: ProtocolFlags.readLockOwner)
        #expect(seek(LinuxABI.seekData, 0, fh).0 == -ENXIO, "a read(2) leaves nothing in the kernel's cache")
        read(fh, at: 65536, flags: 0)
        #expect(seek(LinuxABI.seekData, 0, fh) == (0, 65536), "a fault's read: the kernel may hold (and dirty) it")
        #expect(seek(LinuxABI.seekHole, 65536, fh) == (0, 69632))
        #expect(seek(LinuxABI.seekHole, 0, fh) == (0, 0))
        #expect(seek(LinuxABI.seekData, 69632, fh).0 == -ENXIO)
        var rel = fuse_release_in()
        rel.fh = fh
        _ = h.call(.release, nodeid: node, bytes(of: rel))
        var o = fuse_open_in()
        o.flags = UInt32(O_RDWR)
        let again = h.call(.open, nodeid: node, bytes(of: o)).load(fuse_open_out.self).fh
        #expect(seek(LinuxABI.seekData, 0, again).0 == -ENXIO, "after the last release the kernel holds nothing dirty")
    }
}
