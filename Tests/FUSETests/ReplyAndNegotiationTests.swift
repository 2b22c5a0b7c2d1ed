// Reply encoding against the kernel structures' sizes, the INIT negotiation, and the mount
// options: what the daemon sends, checked without a mount.

import CFUSE
import FUSE
import IOMapBase
import Testing
import Volume

@Suite("FUSE replies, INIT and mount options")
struct ReplyAndNegotiationTests {
    @Test("the structures have the kernel ABI's sizes")
    func structureSizes() {
        // The sizes fs/fuse reads and writes (include/uapi/linux/fuse.h at 7.38).
        #expect(MemoryLayout<fuse_in_header>.size == 40)
        #expect(MemoryLayout<fuse_out_header>.size == 16)
        #expect(MemoryLayout<fuse_attr>.size == 88)
        #expect(MemoryLayout<fuse_entry_out>.size == 128)
        #expect(MemoryLayout<fuse_attr_out>.size == 104)
        #expect(MemoryLayout<fuse_open_out>.size == 16)
        #expect(MemoryLayout<fuse_write_out>.size == 8)
        #expect(MemoryLayout<fuse_statfs_out>.size == 80)
        #expect(MemoryLayout<fuse_init_out>.size == 64)
        #expect(MemoryLayout<fuse_lseek_out>.size == 8)
        #expect(MemoryLayout<fuse_getxattr_out>.size == 8)
        #expect(MemoryLayout<cfuse_dirent_head>.size == 24)
        #expect(MemoryLayout<fuse_setattr_in>.size == 88 && MemoryLayout<fuse_write_in>.size == 40)
        #expect(MemoryLayout<fuse_read_in>.size == 40 && MemoryLayout<fuse_init_in>.size == 64)
    }

    @Test("dirent sizes are padded to 8 bytes, with the entry before each READDIRPLUS one")
    func direntSizes() {
        #expect(Encode.direntSize(nameLength: 1) == 32 && Encode.direntSize(nameLength: 8) == 32)
        #expect(Encode.direntSize(nameLength: 9) == 40 && Encode.direntSize(nameLength: 255) == 280)
        #expect(Encode.direntplusSize(nameLength: 1) == 160 && Encode.direntplusSize(nameLength: 9) == 168)
        let r = ReplyBuffer(capacity: 4096)
        Encode.appendDirent(r, inode: 5, cookie: 3, type: 8, name: Array("abcdefghi".utf8))
        #expect(r.payloadCount == 40)
        let head = r.payload.loadUnaligned(as: cfuse_dirent_head.self)
        #expect(head.ino == 5 && head.off == 3 && head.namelen == 9 && head.type == 8)
        #expect(Array(r.payload[33..<40]) == [0, 0, 0, 0, 0, 0, 0], "padding is zero")
    }

    @Test("a reply's header: length, the negated errno, the unique; an error carries no payload")
    func replyHeader() {
        let r = ReplyBuffer(capacity: 4096)
        r.append(fuse_attr_out())
        let ok = r.finish(unique: 12, error: nil)
        let h = ok.loadUnaligned(as: fuse_out_header.self)
        #expect(h.len == 16 + 104 && h.error == 0 && h.unique == 12 && ok.count == 120)
        r.reset()
        r.append(fuse_attr_out())
        let bad = r.finish(unique: 13, error: .noSuchFileOrDirectory)
        let e = bad.loadUnaligned(as: fuse_out_header.self)
        #expect(e.len == 16 && e.error == -2 && e.unique == 13 && bad.count == 16)
    }

    @Test("attributes encode the volume's stat: size, blocks, mode, times, ids")
    func attributes() throws {
        let h = try Harness()
        h.initialize()
        let (node, fh) = h.create("f", mode: 0o100644)
        _ = h.write(fh, nodeid: node, [UInt8](repeating: 1, count: 5000), at: 0)
        var s = fuse_setattr_in()
        s.valid = SetattrValid.mode | SetattrValid.uid | SetattrValid.gid | SetattrValid.mtime
        s.mode = 0o4755
        s.uid = 1000
        s.gid = 100
        s.mtime = 1_700_000_000
        s.mtimensec = 123
        #expect(h.call(.setattr, nodeid: node, bytes(of: s)).error == 0)
        let st = try h.volume.stat(InodeNumber(node))
        let x = Encode.attr(st, blockSize: 4096)
        #expect(x.ino == node && x.size == 5000 && x.blocks == UInt64(st.blocks512) && x.mode == 0o104755 && x.nlink == 1)
        #expect(x.uid == 1000 && x.gid == 100 && x.mtime == 1_700_000_000 && x.mtimensec == 123 && x.blksize == 4096)
        let e = Encode.entry(st, blockSize: 4096, timeouts: CacheTimeouts())
        #expect(e.nodeid == node && e.entry_valid == 1 && e.attr_valid == 1 && e.attr.size == 5000)
    }

    @Test("INIT against what this machine's 6.18 kernel offers: direct I/O with shared mmap, no writeback cache, no locks, no splice")
    func negotiationDirect() throws {
        let offered = InitFlags(rawValue: 0x73ff_fffb | (0x5fd << 32))
        let (out, n) = try Negotiation.reply(major: 7, minor: 45, maxReadahead: 131072, offered: offered, mode: .direct)
        // 257 pages: a 1 MiB write from a buffer that does not start on a page spans 257.
        #expect(out.major == 7 && out.minor == 38 && out.max_write == 1 << 20 && out.max_pages == 257 && out.time_gran == 1)
        #expect(out.flags2 & UInt32(CFUSE_FLAGS2_DIRECT_IO_ALLOW_MMAP) != 0 && n.allowsSharedMmap)
        let accepted = InitFlags(rawValue: UInt64(out.flags) | UInt64(out.flags2) << 32)
        #expect(accepted == n.accepted)
        for f: InitFlags in [
            .asyncRead, .atomicOTrunc, .bigWrites, .maxPages, .handleKillpriv, .handleKillprivV2, .doReaddirplus, .parallelDirops, .initExt,
        ] {
            #expect(accepted.contains(f), "\(f)")
        }
        for f: InitFlags in [.writebackCache, .posixLocks, .flockLocks, .autoInvalData, .dontMask, .posixACL, .exportSupport] {
            #expect(!accepted.contains(f), "\(f)")
        }
        #expect(accepted.rawValue & 0x380 == 0, "no splice")
        #expect(accepted.isSubset(of: offered))
    }

    @Test("INIT: writeback mode asks for the writeback cache and not ALLOW_MMAP; nothing is asked that is not offered")
    func negotiationOther() throws {
        let offered = InitFlags(rawValue: 0x73ff_fffb | (0x5fd << 32))
        let (wb, n) = try Negotiation.reply(major: 7, minor: 45, maxReadahead: 0, offered: offered, mode: .writeback)
        #expect(wb.flags & UInt32(FUSE_WRITEBACK_CACHE) != 0 && !n.allowsSharedMmap)
        // A kernel before 6.6: no ALLOW_MMAP offered, none asked.
        let old = InitFlags(rawValue: 0x73ff_fffb | (0x1 << 32))
        let (_, n2) = try Negotiation.reply(major: 7, minor: 38, maxReadahead: 0, offered: old, mode: .direct)
        #expect(!n2.allowsSharedMmap)
        // Without FUSE_INIT_EXT the high word cannot be answered.
        let noExt = InitFlags(rawValue: (0x73ff_fffb & ~(1 << 30)) | (0x10 << 32))
        let (o3, _) = try Negotiation.reply(major: 7, minor: 45, maxReadahead: 0, offered: noExt, mode: .direct)
        #expect(o3.flags2 == 0)
        #expect(throws: Errno.protocolError) { _ = try Negotiation.reply(major: 8, minor: 0, maxReadahead: 0, offered: [], mode: .direct) }
        #expect(throws: Errno.protocolError) { _ = try Negotiation.reply(major: 7, minor: 20, maxReadahead: 0, offered: [], mode: .direct) }
    }

    @Test("mount options: the accepted ones, and an unknown one refused by name")
    func options() throws {
        let o = try MountOptions.parse(["ro,allow_other", "cache=writeback,fsname=/dev/vol,subtype=iomap", "default_permissions,nosuid"])
        #expect(o.readOnly && o.allowOther && o.cache == .writeback && o.fsname == "/dev/vol" && o.subtype == "iomap" && o.nosuid)
        #expect(o.fsType == "fuse.iomap" && MountOptions().fsType == "fuse")
        #expect(
            o.mountData(fd: 5, rootMode: 0o40755, uid: 0, gid: 0)
                == "fd=5,rootmode=40755,user_id=0,group_id=0,default_permissions,allow_other")
        #expect(
            MountOptions().mountData(fd: 3, rootMode: 0o41777, uid: 1000, gid: 100)
                == "fd=3,rootmode=41777,user_id=1000,group_id=100,default_permissions")
        #expect(try MountOptions.parse(["ro", "rw"]).readOnly == false)
        for (bad, named) in [
            ("dax", "'dax'"), ("ro,bogus=1", "'bogus=1'"), ("cache=none", "cache=none"), ("subtype=a b", "subtype"),
            ("fsname=", "fsname"), ("allow_other=1", "'allow_other=1'"), ("fd=3", "'fd=3'"), ("user_id=0", "'user_id=0'"),
        ] {
            #expect(throws: MountOptionError.self) { _ = try MountOptions.parse([bad]) }
            do throws(MountOptionError) { _ = try MountOptions.parse([bad]) } catch {
                #expect(error.description.contains(named), "\(bad): \(error)")
            }
        }
    }
}
