// Counterpart: none in the kernel; tests of the namespace plans (Sources/Volume/Namespace)
// on their own: the records they give, link counts, times, the fate of unreferenced inodes,
// path walks, readdir cookies, the link limit. NamespaceDifferentialTests checks the errnos
// and the resulting trees against tmpfs.

import IOMapBase
import Testing
import Volume

@Suite("Namespace: plans")
struct NamespaceTests {
    let t0 = Timestamp(seconds: 1_700_000_000)

    func root(_ s: Int64) -> Caller { .root(now: Timestamp(seconds: 1_700_000_000 + s)) }

    @Test("a plan changes nothing; its records, applied, make the change")
    func pure() throws {
        let s = MetadataState.newVolume(time: t0)
        let p = try s.planMkdir(in: .root, b("d"), permissions: 0o755, caller: root(1))
        #expect(s == MetadataState.newVolume(time: t0))
        var t = s
        try t.apply(p.records)
        #expect(t[p.value]?.attributes.nlink == 2)
        #expect(t[.root]?.attributes.nlink == 3)
        #expect(t[p.value]?.directory?.parent == .root)
    }

    @Test("create, mkdir, mknod, symlink: owner, times, parent times, sizes")
    func creation() throws {
        var s = MetadataState.newVolume(time: t0)
        let user = Caller(uid: 1000, gid: 100, now: Timestamp(seconds: 1_700_000_005))
        try s.commit { try $0.planSetAttributes(.root, .chmod(0o777), caller: root(1)) }
        let f = try s.commit { try $0.planCreate(in: .root, b("f"), permissions: 0o640, exclusive: true, caller: user) }
        let a = try #require(s[f.inode]?.attributes)
        #expect(f.created && a.uid == 1000 && a.gid == 100 && a.permissions == 0o640 && a.nlink == 1)
        #expect(a.atime == user.now && a.mtime == user.now && a.ctime == user.now && a.btime == user.now)
        #expect(s[.root]?.attributes.mtime == user.now && s[.root]?.attributes.ctime == user.now)
        let again = try s.commit { try $0.planCreate(in: .root, b("f"), permissions: 0o600, exclusive: false, caller: user) }
        #expect(again == CreateResult(inode: f.inode, created: false))
        #expect(s.errno { try $0.planCreate(in: .root, b("f"), permissions: 0o600, exclusive: true, caller: user) } == .fileExists)
        let l = try s.commit { try $0.planSymlink(in: .root, b("l"), target: b("f/../x"), caller: user) }
        #expect(s[l]?.attributes.size == 6 && s[l]?.attributes.permissions == 0o777)
        #expect(try s.readlink(l) == b("f/../x"))
        #expect(throws: Errno.invalidArgument) { try s.readlink(f.inode) }
        let dev = try s.commit {
            try $0.planMknod(in: .root, b("null"), type: .characterDevice, permissions: 0o666, rdev: 0x103, caller: root(6))
        }
        #expect(s[dev]?.attributes.rdev == 0x103)
        #expect(s.errno { try $0.planMknod(in: .root, b("c"), type: .characterDevice, permissions: 0o666, caller: user) } == .notPermitted)
        let fifo = try s.commit { try $0.planMknod(in: .root, b("p"), type: .fifo, permissions: 0o600, rdev: 9, caller: user) }
        #expect(s[fifo]?.attributes.rdev == 0)
    }

    @Test("a set-group-id directory gives its group, and set-group-id to new directories")
    func setgidDirectory() throws {
        var s = MetadataState.newVolume(time: t0)
        let d = try s.commit { try $0.planMkdir(in: .root, b("d"), permissions: 0o777, caller: root(1)) }
        try s.commit { try $0.planSetAttributes(d, AttributeChange(permissions: 0o2777, ownership: Ownership(gid: 500)), caller: root(2)) }
        let user = Caller(uid: 1000, gid: 100)
        let sub = try s.commit { try $0.planMkdir(in: d, b("sub"), permissions: 0o755, caller: user) }
        #expect(s[sub]?.attributes.gid == 500 && s[sub]?.attributes.permissions == 0o2755)
        let f = try s.commit { try $0.planCreate(in: d, b("f"), permissions: 0o2775, exclusive: true, caller: user) }
        #expect(s[f.inode]?.attributes.gid == 500 && s[f.inode]?.attributes.permissions == 0o775)
        let g = try s.commit { try $0.planCreate(in: d, b("g"), permissions: 0o2775, exclusive: true, caller: root(3)) }
        #expect(s[g.inode]?.attributes.permissions == 0o2775)
        let top = try s.commit { try $0.planMkdir(in: .root, b("top"), permissions: 0o6755, caller: root(4)) }
        #expect(s[top]?.attributes.permissions == 0o755)
    }

    @Test("link and unlink: counts and times; the last unlink frees or orphans")
    func linkUnlink() throws {
        var s = MetadataState.newVolume(time: t0)
        let f = try s.commit { try $0.planCreate(in: .root, b("f"), permissions: 0o644, exclusive: true, caller: root(1)) }.inode
        try s.commit { try $0.planLink(f, in: .root, b("g"), caller: root(2)) }
        #expect(s[f]?.attributes.nlink == 2 && s[f]?.attributes.ctime == root(2).now)
        var gone = try s.commit { try $0.planUnlink(in: .root, b("f"), caller: root(3)) }
        #expect(gone == nil && s[f]?.attributes.nlink == 1 && s[f]?.attributes.ctime == root(3).now)
        #expect(s[.root]?.attributes.mtime == root(3).now)
        gone = try s.commit { try $0.planUnlink(in: .root, b("g"), caller: root(4), isOpen: { $0 == f }) }
        #expect(gone == .orphaned(f) && s.orphans == [f] && s[f]?.attributes.nlink == 0)
        #expect(s.errno { try $0.planLink(f, in: .root, b("h"), caller: root(5)) } == .noSuchFileOrDirectory)
        try s.commit { try $0.planFreeInode(f) }
        #expect(s[f] == nil && s.orphans.isEmpty)
        #expect(s.errno { try $0.planFreeInode(f) } == .noSuchFileOrDirectory)
        let e = try s.commit { try $0.planCreate(in: .root, b("e"), permissions: 0o644, exclusive: true, caller: root(6)) }.inode
        #expect(try s.commit { try $0.planUnlink(in: .root, b("e"), caller: root(7)) } == .freed(e))
        #expect(s[e] == nil)
    }

    @Test("a closed file that still maps blocks is orphaned, to be freed once they are unmapped")
    func orphanWithBlocks() throws {
        var s = MetadataState.newVolume(time: t0)
        let f = try s.commit { try $0.planCreate(in: .root, b("f"), permissions: 0o644, exclusive: true, caller: root(1)) }.inode
        try s.apply(.allocateUnwritten(f, DiskExtent(fileBlock: 0, diskBlock: 10, count: 2, unwritten: true)))
        #expect(try s.commit { try $0.planUnlink(in: .root, b("f"), caller: root(2)) } == .orphaned(f))
        #expect(s.errno { try $0.planFreeInode(f) } == .resourceBusy)
        try s.apply([.unmapAndIntendFree(f, fromBlock: 0, toBlock: 2, intent: 1), .freeDone(intent: 1)])
        let p = try s.planFreeInode(f)
        #expect(p.records == [.removeOrphan(f), .freeInode(f)])
        try s.apply(p.records)
        #expect(s[f] == nil)
    }

    @Test("rmdir: parent count, the directory freed; ENOTEMPTY, EINVAL, EBUSY")
    func rmdir() throws {
        var s = MetadataState.newVolume(time: t0)
        let d = try s.commit { try $0.planMkdir(in: .root, b("d"), permissions: 0o755, caller: root(1)) }
        try s.commit { try $0.planMkdir(in: d, b("e"), permissions: 0o755, caller: root(2)) }
        #expect(s[d]?.attributes.nlink == 3)
        #expect(s.errno { try $0.planRmdir(in: .root, b("d"), caller: root(3)) } == .directoryNotEmpty)
        #expect(s.errno { try $0.planRmdir(in: d, b("."), caller: root(3)) } == .invalidArgument)
        #expect(s.errno { try $0.planRmdir(in: d, b(".."), caller: root(3)) } == .directoryNotEmpty)
        #expect(s.errno { try $0.planRmdir(in: .root, [], caller: root(3)) } == .resourceBusy)
        let e = try #require(s.inode(at: "/d/e"))
        #expect(try s.commit { try $0.planRmdir(in: d, b("e"), caller: root(4)) } == .freed(e))
        #expect(s[d]?.attributes.nlink == 2 && s[e] == nil)
        #expect(try s.commit { try $0.planRmdir(in: .root, b("d"), caller: root(5), isOpen: { _ in true }) } == .orphaned(d))
        #expect(s.errno { try $0.planMkdir(in: d, b("x"), permissions: 0o755, caller: root(6)) } == .noSuchFileOrDirectory)
        #expect(s[.root]?.attributes.nlink == 2)
    }

    @Test("rename: a directory between parents, over an empty directory, exchanged with a file")
    func renameCounts() throws {
        var s = MetadataState.newVolume(time: t0)
        let a = try s.commit { try $0.planMkdir(in: .root, b("a"), permissions: 0o755, caller: root(1)) }
        let bb = try s.commit { try $0.planMkdir(in: .root, b("b"), permissions: 0o755, caller: root(1)) }
        let sub = try s.commit { try $0.planMkdir(in: a, b("sub"), permissions: 0o755, caller: root(1)) }
        let victim = try s.commit { try $0.planMkdir(in: bb, b("v"), permissions: 0o755, caller: root(1)) }
        #expect(s[a]?.attributes.nlink == 3 && s[bb]?.attributes.nlink == 3)
        let gone = try s.commit { try $0.planRename(from: a, b("sub"), to: bb, b("v"), caller: root(2)) }
        #expect(gone == .freed(victim) && s[victim] == nil)
        #expect(s[a]?.attributes.nlink == 2 && s[bb]?.attributes.nlink == 3 && s[sub]?.directory?.parent == bb)
        #expect(s[sub]?.attributes.ctime == root(2).now && s[a]?.attributes.mtime == root(2).now)
        let f = try s.commit { try $0.planCreate(in: a, b("f"), permissions: 0o644, exclusive: true, caller: root(3)) }.inode
        try s.commit { try $0.planRename(from: a, b("f"), to: bb, b("v"), flags: .exchange, caller: root(4)) }
        #expect(s[a]?.attributes.nlink == 3 && s[bb]?.attributes.nlink == 2)
        #expect(s.inode(at: "/a/f") == sub && s.inode(at: "/b/v") == f && s[sub]?.directory?.parent == a)
        #expect(s[f]?.attributes.ctime == root(4).now)
    }

    @Test("rename onto a hard link of itself changes nothing; over a file frees it")
    func renameSelf() throws {
        var s = MetadataState.newVolume(time: t0)
        let f = try s.commit { try $0.planCreate(in: .root, b("f"), permissions: 0o644, exclusive: true, caller: root(1)) }.inode
        try s.commit { try $0.planLink(f, in: .root, b("g"), caller: root(1)) }
        let p = try s.planRename(from: .root, b("f"), to: .root, b("g"), caller: root(2))
        #expect(p.records.isEmpty && p.value == nil)
        let h = try s.commit { try $0.planCreate(in: .root, b("h"), permissions: 0o644, exclusive: true, caller: root(3)) }.inode
        #expect(try s.commit { try $0.planRename(from: .root, b("f"), to: .root, b("h"), caller: root(4)) } == .freed(h))
        #expect(s.inode(at: "/h") == f && s.inode(at: "/f") == nil && s[f]?.attributes.nlink == 2)
    }

    @Test("the link limit: link, mkdir and a rename into a full directory are EMLINK")
    func linkLimit() throws {
        var s = MetadataState.newVolume(time: t0)
        let limits = NamespaceLimits(maxLinks: 4)
        let f = try s.commit { try $0.planCreate(in: .root, b("f"), permissions: 0o644, exclusive: true, caller: root(1)) }.inode
        for n in 1...3 { try s.commit { try $0.planLink(f, in: .root, b("l\(n)"), caller: root(1), limits: limits) } }
        #expect(s.errno { try $0.planLink(f, in: .root, b("l4"), caller: root(1), limits: limits) } == .tooManyLinks)
        let d = try s.commit { try $0.planMkdir(in: .root, b("d"), permissions: 0o755, caller: root(1), limits: limits) }
        try s.commit { try $0.planMkdir(in: d, b("1"), permissions: 0o755, caller: root(1), limits: limits) }
        try s.commit { try $0.planMkdir(in: d, b("2"), permissions: 0o755, caller: root(1), limits: limits) }
        #expect(s.errno { try $0.planMkdir(in: d, b("3"), permissions: 0o755, caller: root(1), limits: limits) } == .tooManyLinks)
        try s.commit { try $0.planMkdir(in: .root, b("e"), permissions: 0o755, caller: root(1), limits: limits) }
        #expect(s.errno { try $0.planRename(from: .root, b("e"), to: d, b("e"), caller: root(1), limits: limits) } == .tooManyLinks)
        try s.commit { try $0.planRename(from: d, b("1"), to: d, b("3"), caller: root(1), limits: limits) }
        try s.commit { try $0.planRename(from: .root, b("e"), to: d, b("2"), caller: root(1), limits: limits) }
    }

    @Test("paths: relative and absolute symlinks, 40 links and not 41, ENOTDIR, trailing slashes")
    func paths() throws {
        var s = MetadataState.newVolume(time: t0)
        let d = try s.commit { try $0.planMkdir(in: .root, b("d"), permissions: 0o755, caller: root(1)) }
        let f = try s.commit { try $0.planCreate(in: d, b("f"), permissions: 0o644, exclusive: true, caller: root(1)) }.inode
        try s.commit { try $0.planSymlink(in: d, b("rel"), target: b("f"), caller: root(1)) }
        try s.commit { try $0.planSymlink(in: .root, b("abs"), target: b("/d/"), caller: root(1)) }
        try s.commit { try $0.planSymlink(in: .root, b("l0"), target: b("d/f"), caller: root(1)) }
        for n in 1...40 { try s.commit { try $0.planSymlink(in: .root, b("l\(n)"), target: b("l\(n - 1)"), caller: root(1)) } }
        let r = root(2)
        #expect(try s.resolve("/d/rel", caller: r) == f)
        #expect(try s.resolve("../abs/rel", from: d, caller: r) == f)
        #expect(try s.resolve("/abs/../d/./f", caller: r) == f)
        #expect(try s.resolve("/../../d", caller: r) == d)
        #expect(try s.resolve("/l39", caller: r) == f)
        #expect(throws: Errno.tooManySymbolicLinkLevels) { try s.resolve("/l40", caller: r) }
        #expect(try s.resolve("/l40", followFinalSymlink: false, caller: r) == s.inode(at: "/l40"))
        #expect(throws: Errno.notDirectory) { try s.resolve("/d/f/x", caller: r) }
        #expect(throws: Errno.notDirectory) { try s.resolve("/d/f/", caller: r) }
        #expect(throws: Errno.noSuchFileOrDirectory) { try s.resolve("", caller: r) }
        #expect(throws: Errno.fileNameTooLong) { try s.resolve("/" + String(repeating: "a", count: 256), caller: r) }
        #expect(try s.resolve("/abs/", followFinalSymlink: false, caller: r) == d)
        let pn = try s.resolveParent("/abs/new/", caller: r)
        #expect(pn.directory == d && pn.name == b("new") && pn.trailingSlash)
        #expect(try s.resolveParent("//", caller: r) == ParentAndName(directory: .root, name: [], trailingSlash: true))
        #expect(try s.lookup(in: d, "..", caller: r) == .root)
        #expect(try s.lookup(in: .root, "..", caller: r) == .root)
        #expect(throws: Errno.notDirectory) { try s.lookup(in: f, "x", caller: r) }
    }

    @Test("the fs.protected_* policies: symlinks (the last one only), regular files and fifos, hard links")
    func protections() throws {
        var s = MetadataState.newVolume(time: t0)
        let alice = Caller(uid: 1000, gid: 1000)
        let bob = Caller(uid: 2000, gid: 2000)
        let tmp = try s.commit { try $0.planMkdir(in: .root, b("tmp"), permissions: 0o777, caller: root(1)) }
        try s.commit { try $0.planSetAttributes(tmp, .chmod(0o1777), caller: root(1)) }
        let f = try s.commit { try $0.planCreate(in: tmp, b("f"), permissions: 0o666, exclusive: true, caller: alice) }.inode
        try s.commit { try $0.planSymlink(in: tmp, b("l"), target: b("f"), caller: alice) }
        try s.commit { try $0.planSymlink(in: tmp, b("up"), target: b("/tmp"), caller: alice) }
        let p = try s.commit { try $0.planMknod(in: tmp, b("p"), type: .fifo, permissions: 0o666, caller: alice) }
        let on = NamespaceLimits()
        let off = NamespaceLimits(protectedHardlinks: false, protectedSymlinks: false, protectedRegular: 0, protectedFifos: 0)
        #expect(throws: Errno.permissionDenied) { try s.resolve("/tmp/l", caller: bob, limits: on) }
        #expect(try s.resolve("/tmp/l", caller: bob, limits: off) == f)
        #expect(try s.resolve("/tmp/l", caller: alice, limits: on) == f)
        #expect(try s.resolve("/tmp/up/f", caller: bob, limits: on) == f)
        #expect(
            s.errno { try $0.planCreate(in: tmp, b("f"), permissions: 0, exclusive: false, caller: bob, limits: on) } == .permissionDenied)
        #expect(s.errno { try $0.planCreate(in: tmp, b("f"), permissions: 0, exclusive: false, caller: bob, limits: off) } == nil)
        #expect(
            s.errno { try $0.planCreate(in: tmp, b("p"), permissions: 0, exclusive: false, caller: root(2), limits: on) }
                == .permissionDenied)
        #expect(throws: Errno.permissionDenied) { try s.checkCreateInSticky(p, in: tmp, caller: bob, limits: on) }
        try s.commit { try $0.planSetAttributes(tmp, .chmod(0o1775), caller: root(3)) }
        #expect(s.errno { try $0.planCreate(in: tmp, b("f"), permissions: 0, exclusive: false, caller: bob, limits: on) } == nil)
        let level2 = NamespaceLimits(protectedRegular: 2)
        #expect(
            s.errno { try $0.planCreate(in: tmp, b("f"), permissions: 0, exclusive: false, caller: bob, limits: level2) }
                == .permissionDenied)
        let secret = try s.commit { try $0.planCreate(in: .root, b("secret"), permissions: 0o600, exclusive: true, caller: root(4)) }.inode
        #expect(s.errno { try $0.planLink(secret, in: tmp, b("mine"), caller: alice, limits: on) } == .notPermitted)
        #expect(s.errno { try $0.planLink(secret, in: .root, b("mine"), caller: root(5), limits: on) } == nil)
        try s.commit { try $0.planSetAttributes(tmp, .chmod(0o1777), caller: root(6)) }
        #expect(s.errno { try $0.planLink(secret, in: tmp, b("mine"), caller: alice, limits: off) } == nil)
    }

    @Test("trailing slashes: mkdir and rmdir take them, other creations and unlink refuse them, rename wants a directory")
    func trailingSlashes() throws {
        var s = MetadataState.newVolume(time: t0)
        try s.commit { try $0.planCreate(in: .root, b("f"), permissions: 0o644, exclusive: true, caller: root(1)) }
        let d = try s.commit { try $0.planMkdir(in: .root, b("d/"), permissions: 0o755, caller: root(1)) }
        #expect(s.inode(at: "/d") == d)
        #expect(s.errno { try $0.planCreate(in: .root, b("g/"), permissions: 0o644, exclusive: true, caller: root(2)) } == .isDirectory)
        #expect(
            s.errno { try $0.planMknod(in: .root, b("g/"), type: .fifo, permissions: 0o644, caller: root(2)) } == .noSuchFileOrDirectory)
        #expect(s.errno { try $0.planSymlink(in: .root, b("f/"), target: b("x"), caller: root(2)) } == .fileExists)
        #expect(s.errno { try $0.planUnlink(in: .root, b("f/"), caller: root(2)) } == .notDirectory)
        #expect(s.errno { try $0.planUnlink(in: .root, b("d/"), caller: root(2)) } == .isDirectory)
        #expect(s.errno { try $0.planRename(from: .root, b("f/"), to: .root, b("g"), caller: root(2)) } == .notDirectory)
        #expect(s.errno { try $0.planRename(from: .root, b("f"), to: .root, b("g/"), caller: root(2)) } == .notDirectory)
        try s.commit { try $0.planRename(from: .root, b("d/"), to: .root, b("e/"), caller: root(3)) }
        let pn = try s.resolveParent("/e//", caller: root(3))
        #expect(pn.lastComponent == b("e/"))
        try s.commit { try $0.planRmdir(in: pn.directory, pn.lastComponent, caller: root(4)) }
        #expect(s.inode(at: "/e") == nil)
    }

    @Test("readdir: dot and dot-dot first, resumable from any cookie while entries come and go")
    func readdir() throws {
        var s = MetadataState.newVolume(time: t0)
        let d = try s.commit { try $0.planMkdir(in: .root, b("d"), permissions: 0o755, caller: root(1)) }
        for n in ["a", "b", "c", "e"] {
            try s.commit { try $0.planCreate(in: d, b(n), permissions: 0o644, exclusive: true, caller: root(1)) }
        }
        let first = try s.readdir(d, limit: 3)
        #expect(first.map(\.name) == [b("."), b(".."), b("a")] && first.map(\.cookie) == [1, 2, 3])
        #expect(first[1].inode == .root && first[0].inode == d)
        try s.commit { try $0.planUnlink(in: d, b("b"), caller: root(2)) }
        try s.commit { try $0.planRename(from: d, b("a"), to: d, b("z"), caller: root(2)) }
        let rest = try s.readdir(d, after: first.last!.cookie)
        #expect(rest.map(\.name) == [b("c"), b("e"), b("z")] && rest.allSatisfy { $0.type == .regular })
        #expect(try s.readdir(d, after: 1, limit: 1).map(\.name) == [b("..")])
        #expect(throws: Errno.notDirectory) { try s.readdir(s.inode(at: "/d/c")!) }
    }

    @Test("setattr: chmod and chown rules, set-id clearing, times")
    func setattr() throws {
        var s = MetadataState.newVolume(time: t0)
        try s.commit { try $0.planSetAttributes(.root, .chmod(0o777), caller: root(1)) }
        let user = Caller(uid: 1000, gid: 100, groups: [200], now: Timestamp(seconds: 1_700_000_010))
        let f = try s.commit { try $0.planCreate(in: .root, b("f"), permissions: 0o6755, exclusive: true, caller: user) }.inode
        #expect(s.errno { try $0.planSetAttributes(f, .chown(uid: 0), caller: user) } == .notPermitted)
        #expect(s.errno { try $0.planSetAttributes(f, .chown(gid: 300), caller: user) } == .notPermitted)
        let a = try s.commit { try $0.planSetAttributes(f, .chown(gid: 200), caller: user) }
        #expect(a.gid == 200 && a.permissions == 0o755 && a.ctime == user.now)
        try s.commit { try $0.planSetAttributes(f, .chown(gid: 999), caller: root(11)) }
        let m = try s.commit { try $0.planSetAttributes(f, .chmod(0o2755), caller: user) }
        #expect(m.permissions == 0o755)
        let other = Caller(uid: 2000, gid: 2000, now: Timestamp(seconds: 1_700_000_012))
        #expect(s.errno { try $0.planSetAttributes(f, .chmod(0o777), caller: other) } == .notPermitted)
        #expect(s.errno { try $0.planSetAttributes(f, .times(atime: .now, mtime: .now), caller: other) } == .permissionDenied)
        #expect(s.errno { try $0.planSetAttributes(f, .times(atime: .set(t0), mtime: nil), caller: other) } == .notPermitted)
        let t = try s.commit { try $0.planSetAttributes(f, .times(atime: .set(t0), mtime: .now), caller: user) }
        #expect(t.atime == t0 && t.mtime == user.now)
        let l = try s.commit { try $0.planSymlink(in: .root, b("l"), target: b("f"), caller: user) }
        #expect(s.errno { try $0.planSetAttributes(l, .chmod(0o700), caller: user) } == .notSupported)
    }

    @Test("clearing set-id for a write: an unprivileged writer only, regular files only")
    func clearSetID() throws {
        var s = MetadataState.newVolume(time: t0)
        let f = try s.commit { try $0.planCreate(in: .root, b("f"), permissions: 0o6755, exclusive: true, caller: root(1)) }.inode
        #expect(try s.planClearSetID(f, caller: root(2)).records.isEmpty)
        let writer = Caller(uid: 1000, gid: 0)
        try s.commit { try $0.planClearSetID(f, caller: writer) }
        #expect(s[f]?.attributes.permissions == 0o755)
        let g = try s.commit { try $0.planCreate(in: .root, b("g"), permissions: 0o2745, exclusive: true, caller: root(1)) }.inode
        #expect(try s.planClearSetID(g, caller: writer).records.isEmpty)
        try s.commit { try $0.planClearSetID(g, caller: Caller(uid: 1000, gid: 7)) }
        #expect(s[g]?.attributes.permissions == 0o745)
    }

    @Test("xattrs: namespaces, flags, limits, hiding trusted.* from the unprivileged")
    func xattrs() throws {
        var s = MetadataState.newVolume(time: t0)
        let f = try s.commit { try $0.planCreate(in: .root, b("f"), permissions: 0o666, exclusive: true, caller: root(1)) }.inode
        try s.commit { try $0.planSetXattr(f, name: b("user.b"), value: b("2"), caller: root(2)) }
        try s.commit { try $0.planSetXattr(f, name: b("user.a"), value: [], flags: .create, caller: root(2)) }
        try s.commit { try $0.planSetXattr(f, name: b("trusted.t"), value: b("t"), caller: root(2)) }
        #expect(s[f]?.attributes.ctime == root(2).now)
        #expect(try s.listxattr(f, caller: root(3)) == [b("trusted.t"), b("user.a"), b("user.b")])
        let user = Caller(uid: 1000, gid: 1000)
        #expect(try s.listxattr(f, caller: user) == [b("user.a"), b("user.b")])
        #expect(throws: Errno.noData) { try s.getxattr(f, name: b("trusted.t"), caller: user) }
        #expect(try s.getxattr(f, name: b("user.b"), caller: user) == b("2"))
        let long = b("user." + String(repeating: "x", count: 251))
        #expect(s.errno { try $0.planSetXattr(f, name: long, value: [], caller: root(4)) } == .outOfRange)
        #expect(
            s.errno { try $0.planSetXattr(f, name: b("user.c"), value: Array(repeating: 0, count: 65537), caller: root(4)) }
                == .argListTooLong)
        #expect(s.errno { try $0.planSetXattr(f, name: b("user.a"), value: [], flags: .create, caller: root(4)) } == .fileExists)
        #expect(s.errno { try $0.planSetXattr(f, name: b("user.z"), value: [], flags: .replace, caller: root(4)) } == .noData)
        #expect(s.errno { try $0.planSetXattr(f, name: b("system.x"), value: [], caller: root(4)) } == .notSupported)
        #expect(s.errno { try $0.planSetXattr(f, name: b("user."), value: [], caller: root(4)) } == .invalidArgument)
        #expect(s.errno { try $0.planSetXattr(f, name: b("trusted.u"), value: [], caller: user) } == .notPermitted)
        #expect(s.errno { try $0.planRemoveXattr(f, name: b("user.z"), caller: root(4)) } == .noData)
        try s.commit { try $0.planRemoveXattr(f, name: b("user.a"), caller: root(5)) }
        #expect(try s.listxattr(f, caller: user) == [b("user.b")])
    }
}

@Suite("Namespace: invariants over random steps")
struct NamespaceInvariantTests {
    /// What must hold after every transaction: each directory's entries name inodes of
    /// their type, a subdirectory's ".." is the directory holding it, every link count is
    /// the number of names (plus "." and the subdirectories' ".." for a directory), every
    /// inode is reachable from the root or on the orphan list with no name left.
    static func problems(_ s: MetadataState) -> [String] {
        var names: [InodeNumber: UInt32] = [:]
        var subdirectories: [InodeNumber: UInt32] = [:]
        var out: [String] = []
        for (dir, rec) in s.inodes {
            guard let d = rec.directory else { continue }
            for (name, entry) in d.entries(after: 0) {
                names[entry.inode, default: 0] += 1
                guard let target = s[entry.inode] else {
                    out.append("\(dir)/\(name) names no inode")
                    continue
                }
                if target.attributes.type != entry.type { out.append("\(dir)/\(name) has the wrong type") }
                if entry.type == .directory {
                    subdirectories[dir, default: 0] += 1
                    if target.directory?.parent != dir {
                        out.append("\(dir)/\(name): its .. is \(String(describing: target.directory?.parent))")
                    }
                }
            }
        }
        for (ino, rec) in s.inodes {
            let n = names[ino, default: 0]
            let expected =
                rec.attributes.type == .directory ? (ino == .root ? 2 : (n == 0 ? 0 : n + 1)) + subdirectories[ino, default: 0] : n
            if rec.attributes.nlink != expected { out.append("\(ino): nlink \(rec.attributes.nlink), names say \(expected)") }
            if n == 0 && ino != .root && !s.orphans.contains(ino) { out.append("\(ino) has no name and is not an orphan") }
            if n > 0 && s.orphans.contains(ino) { out.append("\(ino) is named and an orphan") }
        }
        return out
    }

    @Test("link counts, parents and orphans stay consistent", arguments: Array(UInt64(1)...UInt64(12)))
    func consistent(seed: UInt64) throws {
        var model = ModelRunner()
        model.isOpen = { $0.rawValue % 2 == 0 }
        var generator = StepGenerator(seed: seed)
        var orphansFreed = 0
        for step in RandomCases.setup + (0..<600).map({ _ in generator.next() }) {
            _ = model.perform(step)
            if let first = Self.problems(model.state).first {
                Issue.record("seed \(seed), after \(step): \(first)")
                return
            }
            if model.clock % 50 == 0 {
                for ino in model.state.orphans.sorted() {
                    try model.state.commit { try $0.planFreeInode(ino) }
                    orphansFreed += 1
                }
            }
        }
        #expect(orphansFreed > 0, "the steps of seed \(seed) orphaned nothing")
    }
}
