// Request decoding from hand-built buffers: every opcode the daemon serves decodes to its
// typed arguments, and truncated or garbled requests decode to an errno, never a crash.

import CFUSE
import FUSE
import IOMapBase
import Testing

@Suite("FUSE request decoding")
struct RequestDecodingTests {
    @Test("the header's fields, and a message shorter than a header has nothing to answer")
    func header() throws {
        let r = try decode(request(.getattr, nodeid: 42, unique: 9, uid: 1000, gid: 100, pid: 4321, bytes(of: fuse_getattr_in())))
        #expect(r.header.opcode == Opcode.getattr.rawValue && r.header.nodeid == 42 && r.header.unique == 9)
        #expect(r.header.uid == 1000 && r.header.gid == 100 && r.header.pid == 4321)
        let short = Array(request(.getattr, bytes(of: fuse_getattr_in())).prefix(39))
        #expect(throws: RequestDecodeError.noHeader) { _ = try decode(short) }
        #expect(throws: RequestDecodeError.noHeader) { _ = try decode([]) }
    }

    @Test("a length that is not the message's is EINVAL, answered to the header's unique")
    func lengthMismatch() {
        var m = request(.statfs, unique: 5)
        m += [0, 0, 0, 0]
        do throws(RequestDecodeError) {
            _ = try decode(m)
            Issue.record("decoded")
        } catch {
            guard case .badArguments(let h, let e) = error else { Issue.record("\(error)"); return }
            #expect(h.unique == 5 && e == .invalidArgument)
        }
    }

    @Test("names: lookup, unlink, rmdir, with a bad name refused by errno")
    func names() throws {
        guard case .lookup(let n) = try decode(request(.lookup, cName("file.txt"))).operation else { Issue.record("lookup"); return }
        #expect(n == Array("file.txt".utf8))
        guard case .unlink(let u) = try decode(request(.unlink, cName("x"))).operation, u == [0x78] else { Issue.record("unlink"); return }
        guard case .rmdir(let d) = try decode(request(.rmdir, cName("dir"))).operation, d == Array("dir".utf8) else {
            Issue.record("rmdir"); return
        }
        // Not UTF-8: passed through as bytes.
        guard case .lookup(let raw) = try decode(request(.lookup, [0xFF, 0xFE, 0])).operation, raw == [0xFF, 0xFE] else {
            Issue.record("raw bytes")
            return
        }
        for op in [Opcode.lookup, .unlink, .rmdir] {
            #expect(decodeErrno(request(op, Array("no-nul".utf8))) == .invalidArgument, "\(op): no NUL")
            #expect(decodeErrno(request(op, cName("a/b"))) == .invalidArgument, "\(op): a slash")
            #expect(decodeErrno(request(op, [0])) == .invalidArgument, "\(op): empty")
            #expect(decodeErrno(request(op, cName("a") + Array("b".utf8) + [0])) == .invalidArgument, "\(op): a NUL inside")
            #expect(decodeErrno(request(op, cName(String(repeating: "n", count: 256)))) == .fileNameTooLong, "\(op): too long")
            #expect(decodeErrno(request(op, [])) == .invalidArgument, "\(op): nothing")
        }
        #expect(decodeErrno(request(.lookup, cName(String(repeating: "n", count: 255)))) == nil)
    }

    @Test("forget and batch_forget, with a count past the buffer refused")
    func forgets() throws {
        guard case .forget(let n) = try decode(request(.forget, nodeid: 5, le64(3))).operation, n == 3 else {
            Issue.record("forget"); return
        }
        let items = le32(2) + le32(0) + le64(5) + le64(1) + le64(6) + le64(2)
        guard case .batchForget(let b) = try decode(request(.batchForget, items)).operation else { Issue.record("batch"); return }
        #expect(b.map { $0.nodeid } == [5, 6] && b.map { $0.nlookup } == [1, 2])
        #expect(decodeErrno(request(.batchForget, le32(1_000_000) + le32(0) + le64(5) + le64(1))) == .invalidArgument)
        #expect(decodeErrno(request(.forget, [1, 2, 3])) == .invalidArgument)
    }

    @Test("getattr and setattr: the valid bits decode to what is set")
    func attributes() throws {
        var g = fuse_getattr_in()
        g.getattr_flags = 1
        g.fh = 12
        guard case .getattr(let fh) = try decode(request(.getattr, bytes(of: g))).operation, fh == 12 else {
            Issue.record("getattr"); return
        }
        g.getattr_flags = 0
        guard case .getattr(nil) = try decode(request(.getattr, bytes(of: g))).operation else { Issue.record("getattr no fh"); return }
        var s = fuse_setattr_in()
        s.valid = SetattrValid.size | SetattrValid.mode | SetattrValid.uid | SetattrValid.mtime | SetattrValid.atimeNow
        s.size = 4097
        s.mode = 0o104755
        s.uid = 1000
        s.mtime = 1_700_000_000
        s.mtimensec = 5
        guard case .setattr(let a) = try decode(request(.setattr, bytes(of: s))).operation else { Issue.record("setattr"); return }
        #expect(a.size == 4097 && a.mode == 0o104755 && a.uid == 1000 && a.gid == nil && a.fh == nil)
        #expect(a.mtime == .set(seconds: 1_700_000_000, nanoseconds: 5) && a.atime == .now)
        #expect(decodeErrno(request(.setattr, Array(bytes(of: s).dropLast()))) == .invalidArgument)
        #expect(decodeErrno(request(.getattr, [0, 0, 0])) == .invalidArgument)
    }

    @Test("symlink, mknod, mkdir, link, create")
    func making() throws {
        guard case .symlink(let n, let t) = try decode(request(.symlink, cName("ln") + cName("../target"))).operation else {
            Issue.record("symlink")
            return
        }
        #expect(n == Array("ln".utf8) && t == Array("../target".utf8))
        #expect(decodeErrno(request(.symlink, cName("ln") + Array("target".utf8))) == .invalidArgument)
        var m = fuse_mknod_in()
        m.mode = 0o010644
        m.rdev = 0x0801
        guard case .mknod(_, let mode, let rdev) = try decode(request(.mknod, bytes(of: m) + cName("fifo"))).operation else {
            Issue.record("mknod")
            return
        }
        #expect(mode == 0o010644 && rdev == 0x0801)
        var d = fuse_mkdir_in()
        d.mode = 0o755
        guard case .mkdir(let dn, 0o755) = try decode(request(.mkdir, bytes(of: d) + cName("sub"))).operation, dn == Array("sub".utf8)
        else { Issue.record("mkdir"); return }
        var l = fuse_link_in()
        l.oldnodeid = 9
        guard case .link(9, _) = try decode(request(.link, bytes(of: l) + cName("hard"))).operation else { Issue.record("link"); return }
        var c = fuse_create_in()
        c.flags = 0o301
        c.mode = 0o100600
        guard case .create(_, 0o301, 0o100600) = try decode(request(.create, bytes(of: c) + cName("new"))).operation else {
            Issue.record("create")
            return
        }
        #expect(decodeErrno(request(.mkdir, [0, 0, 0, 0])) == .invalidArgument)
        #expect(decodeErrno(request(.create, bytes(of: c) + cName("a/b"))) == .invalidArgument)
        #expect(decodeErrno(request(.link, bytes(of: l))) == .invalidArgument)
    }

    @Test("rename and rename2 with their flags")
    func renames() throws {
        guard case .rename(7, let o, let n, 0) = try decode(request(.rename, le64(7) + cName("a") + cName("b"))).operation else {
            Issue.record("rename")
            return
        }
        #expect(o == [0x61] && n == [0x62])
        var r2 = fuse_rename2_in()
        r2.newdir = 8
        r2.flags = LinuxABI.renameExchange
        guard
            case .rename(8, _, _, LinuxABI.renameExchange) = try decode(request(.rename2, bytes(of: r2) + cName("a") + cName("b")))
                .operation
        else { Issue.record("rename2"); return }
        #expect(decodeErrno(request(.rename2, bytes(of: r2) + cName("a"))) == .invalidArgument)
        #expect(decodeErrno(request(.rename, le64(7) + cName("a") + cName("b/c"))) == .invalidArgument)
    }

    @Test("open, read, write, release, flush, fsync, opendir, readdir(plus), releasedir, fsyncdir")
    func fileOperations() throws {
        var o = fuse_open_in()
        o.flags = 0o1002
        guard case .open(0o1002) = try decode(request(.open, bytes(of: o))).operation else { Issue.record("open"); return }
        guard case .opendir(0o1002) = try decode(request(.opendir, bytes(of: o))).operation else { Issue.record("opendir"); return }
        var r = fuse_read_in()
        r.fh = 3
        r.offset = 1 << 40
        r.size = 131072
        guard case .read(3, 1 << 40, 131072, _) = try decode(request(.read, bytes(of: r))).operation else { Issue.record("read"); return }
        guard case .readdir(3, _, 131072, false) = try decode(request(.readdir, bytes(of: r))).operation else {
            Issue.record("readdir"); return
        }
        guard case .readdir(3, _, _, true) = try decode(request(.readdirplus, bytes(of: r))).operation else { Issue.record("plus"); return }
        var w = fuse_write_in()
        w.fh = 4
        w.offset = 10
        w.size = 5
        w.write_flags = ProtocolFlags.writeCache
        guard
            case .write(4, 10, let data, ProtocolFlags.writeCache, .none) = try decode(
                request(.write, bytes(of: w) + Array("hello".utf8))
            )
            .operation
        else { Issue.record("write"); return }
        #expect(Array(data) == Array("hello".utf8))
        #expect(decodeErrno(request(.write, bytes(of: w) + Array("hell".utf8))) == .invalidArgument, "payload shorter than size")
        #expect(decodeErrno(request(.write, bytes(of: w) + Array("hello!".utf8))) == .invalidArgument, "payload longer than size")
        // The same WRITE read in two pieces, headers and data (Session.serveRead).
        let whole = request(.write, bytes(of: w) + Array("hello".utf8))
        let head = Array(whole.prefix(Request.writeHeadSize))
        let split = { (headBytes: [UInt8], payload: [UInt8]) -> Result<Request, RequestDecodeError> in
            headBytes.withUnsafeBytes { h in
                payload.withUnsafeBytes { p in
                    Result { () throws(RequestDecodeError) -> Request in try Request.decodeWrite(head: h, payload: p) }
                }
            }
        }
        guard case .success(let r) = split(head, Array("hello".utf8)), case .write(4, 10, let d, _, .none) = r.operation,
            Array(d) == Array("hello".utf8)
        else { Issue.record("split write"); return }
        if case .success = split(head, Array("hell".utf8)) { Issue.record("a payload shorter than the header's length decoded") }
        if case .success = split(Array(head.prefix(60)), Array("hello".utf8)) { Issue.record("a short head decoded") }
        var rel = fuse_release_in()
        rel.fh = 6
        guard case .release(6) = try decode(request(.release, bytes(of: rel))).operation else { Issue.record("release"); return }
        guard case .releasedir(6) = try decode(request(.releasedir, bytes(of: rel))).operation else { Issue.record("releasedir"); return }
        var f = fuse_flush_in()
        f.fh = 6
        guard case .flush(6) = try decode(request(.flush, bytes(of: f))).operation else { Issue.record("flush"); return }
        var s = fuse_fsync_in()
        s.fh = 6
        s.fsync_flags = 1
        guard case .fsync(6, true) = try decode(request(.fsync, bytes(of: s))).operation else { Issue.record("fsync"); return }
        guard case .fsyncdir(6, true) = try decode(request(.fsyncdir, bytes(of: s))).operation else { Issue.record("fsyncdir"); return }
        for op in [Opcode.open, .read, .write, .release, .flush, .fsync, .readdir, .fsyncdir] {
            #expect(decodeErrno(request(op, [1])) == .invalidArgument, "\(op) truncated")
        }
    }

    @Test("fallocate and lseek")
    func spaceAndSeek() throws {
        var a = fuse_fallocate_in()
        a.fh = 2
        a.offset = 4096
        a.length = 8192
        a.mode = LinuxABI.fallocPunchHole | LinuxABI.fallocKeepSize
        guard case .fallocate(2, 4096, 8192, 3) = try decode(request(.fallocate, bytes(of: a))).operation else {
            Issue.record("fallocate"); return
        }
        var l = fuse_lseek_in()
        l.fh = 2
        l.offset = 100
        l.whence = LinuxABI.seekHole
        guard case .lseek(2, 100, 4) = try decode(request(.lseek, bytes(of: l))).operation else { Issue.record("lseek"); return }
        #expect(decodeErrno(request(.fallocate, Array(bytes(of: a).prefix(31)))) == .invalidArgument)
        #expect(decodeErrno(request(.lseek, Array(bytes(of: l).prefix(23)))) == .invalidArgument)
    }

    @Test("xattrs: setxattr's 8-byte struct, getxattr, listxattr, removexattr")
    func xattrs() throws {
        let set = le32(3) + le32(1) + cName("user.k") + Array("val".utf8)
        guard case .setxattr(let n, let v, 1) = try decode(request(.setxattr, set)).operation else { Issue.record("setxattr"); return }
        #expect(n == Array("user.k".utf8) && v == Array("val".utf8))
        #expect(decodeErrno(request(.setxattr, le32(4) + le32(0) + cName("user.k") + Array("val".utf8))) == .invalidArgument)
        guard case .getxattr(_, 64) = try decode(request(.getxattr, le32(64) + le32(0) + cName("user.k"))).operation else {
            Issue.record("getxattr")
            return
        }
        guard case .listxattr(0) = try decode(request(.listxattr, le32(0) + le32(0))).operation else { Issue.record("listxattr"); return }
        guard case .removexattr(let r) = try decode(request(.removexattr, cName("user.k"))).operation, r == Array("user.k".utf8) else {
            Issue.record("removexattr")
            return
        }
        #expect(decodeErrno(request(.getxattr, le32(64) + le32(0) + Array("user.k".utf8))) == .invalidArgument)
        #expect(decodeErrno(request(.listxattr, le32(0))) == .invalidArgument)
    }

    @Test("init (both sizes), access, statfs, destroy, interrupt; unknown opcodes decode as unsupported")
    func rest() throws {
        guard case .initialize(7, 45, 131072, let flags) = try decode(kernelInit()).operation else { Issue.record("init"); return }
        #expect(flags.contains(.directIOAllowMmap) && flags.contains(.initExt))
        // A pre-7.36 kernel's 16-byte INIT has no flags2.
        guard
            case .initialize(7, 31, _, let old) = try decode(request(.initialize, le32(7) + le32(31) + le32(0) + le32(0x4000_0001)))
                .operation
        else { Issue.record("short init"); return }
        #expect(old.rawValue >> 32 == 0)
        #expect(decodeErrno(request(.initialize, le32(7) + le32(31))) == .invalidArgument)
        guard case .access(4) = try decode(request(.access, le32(4) + le32(0))).operation else { Issue.record("access"); return }
        guard case .statfs = try decode(request(.statfs)).operation else { Issue.record("statfs"); return }
        guard case .destroy = try decode(request(.destroy)).operation else { Issue.record("destroy"); return }
        guard case .interrupt(99) = try decode(request(.interrupt, le64(99))).operation else { Issue.record("interrupt"); return }
        guard case .unsupported(4000) = try decode(rawRequest(4000)).operation else { Issue.record("unknown"); return }
        guard case .unsupported(Opcode.statx.rawValue) = try decode(request(.statx, [UInt8](repeating: 0, count: 24))).operation else {
            Issue.record("statx")
            return
        }
    }

    @Test("the opcodes and flags named in Swift are the kernel header's")
    func constantsMatchTheHeader() {
        #expect(Opcode.lookup.rawValue == FUSE_LOOKUP.rawValue && Opcode.batchForget.rawValue == FUSE_BATCH_FORGET.rawValue)
        #expect(Opcode.lseek.rawValue == FUSE_LSEEK.rawValue && Opcode.rename2.rawValue == FUSE_RENAME2.rawValue)
        #expect(Opcode.readdirplus.rawValue == FUSE_READDIRPLUS.rawValue && Opcode.syncfs.rawValue == FUSE_SYNCFS.rawValue)
        #expect(Opcode.initialize.rawValue == FUSE_INIT.rawValue && Opcode.fallocate.rawValue == FUSE_FALLOCATE.rawValue)
        #expect(InitFlags.maxPages.rawValue == UInt64(FUSE_MAX_PAGES) && InitFlags.initExt.rawValue == UInt64(FUSE_INIT_EXT))
        #expect(InitFlags.handleKillprivV2.rawValue == UInt64(FUSE_HANDLE_KILLPRIV_V2))
        #expect(InitFlags.explicitInvalData.rawValue == UInt64(FUSE_EXPLICIT_INVAL_DATA))
        #expect(InitFlags.writebackCache.rawValue == UInt64(FUSE_WRITEBACK_CACHE))
        #expect(InitFlags.directIOAllowMmap.rawValue >> 32 == UInt64(CFUSE_FLAGS2_DIRECT_IO_ALLOW_MMAP))
        #expect(OpenReplyFlags.directIO == UInt32(FOPEN_DIRECT_IO) && OpenReplyFlags.keepCache == UInt32(FOPEN_KEEP_CACHE))
        #expect(SetattrValid.killSUIDGID == UInt32(FATTR_KILL_SUIDGID) && SetattrValid.ctime == UInt32(FATTR_CTIME))
        #expect(ProtocolFlags.writeCache == UInt32(FUSE_WRITE_CACHE) && ProtocolFlags.readLockOwner == UInt32(FUSE_READ_LOCKOWNER))
    }

    @Test("random bytes never crash the decoder (seeded)")
    func garbage() {
        var rng = SplitMix(seed: 0x5EED)
        for _ in 0..<20000 {
            let opcode = UInt32(rng.next() % 60)
            let count = Int(rng.next() % 96)
            let args = (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = decodeErrno(rawRequest(opcode, args))
        }
    }
}

/// A small seeded generator for the garbage tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
