// Counterpart: none in the kernel; the steps of the namespace differential test: scripted
// cases, one per errno of each call (with the errno Linux gives, checked on every run), and
// a seeded generator of random steps over a small tree.

import IOMapBase
import Volume

/// A step; `expect` is the errno Linux gives, by name ("ok" for success).
func s(_ op: DiffOp, _ expect: String? = nil, as who: Who = .root) -> Step { Step(op: op, who: who, expect: expect) }

let a256 = String(repeating: "a", count: 256)

enum ScriptedCases {
    static let protectedLink = DiffOp.link("/rootfile", "/pub/l")

    static var all: [Step] { setup + lookups + creates + links + removes + slashes + renames + xattrs + attributes + permissions }

    static let setup: [Step] = [
        s(.mkdir("/d", 0o755)), s(.create("/d/f", 0o644, exclusive: true)), s(.mkdir("/d/sub", 0o755)),
        s(.create("/f", 0o644, exclusive: true)), s(.mkdir("/empty", 0o755)), s(.mkdir("/full", 0o755)),
        s(.create("/full/x", 0o644, exclusive: true)), s(.symlink("/sl", target: "f")), s(.mknod("/fifo", .fifo, 0o644, rdev: 0)),
    ]

    static var lookups: [Step] {
        var out = [
            s(.stat("/f/x", follow: true), "ENOTDIR"), s(.stat("/" + a256, follow: true), "ENAMETOOLONG"),
            s(.stat("/nx", follow: true), "ENOENT"), s(.stat("/nx/" + a256, follow: true), "ENOENT"),
            s(.stat("/f/", follow: false), "ENOTDIR"), s(.stat("/d/../d/./f", follow: true), "ok"),
            s(.symlink("/c0", target: "d/f"), "ok"),
        ]
        out += (1...40).map { s(.symlink("/c\($0)", target: "c\($0 - 1)")) }
        out += [
            s(.stat("/c39", follow: true), "ok"), s(.stat("/c40", follow: true), "ELOOP"), s(.stat("/c40", follow: false), "ok"),
            s(.symlink("/abs", target: "/d")), s(.stat("/abs/f", follow: true), "ok"), s(.symlink("/d/rel", target: "../f")),
            s(.stat("/d/rel", follow: true), "ok"), s(.symlink("/d/up", target: "sub/../../d/")), s(.stat("/d/up/f", follow: true), "ok"),
            s(.symlink("/loop", target: "loop")), s(.stat("/loop", follow: true), "ELOOP"), s(.stat("/loop/x", follow: false), "ELOOP"),
            s(.stat("/abs/", follow: false), "ok"), s(.stat("/sl/", follow: false), "ENOTDIR"), s(.stat("/sl", follow: false), "ok"),
            s(.symlink("/dangling", target: "nowhere")), s(.stat("/dangling", follow: true), "ENOENT"),
            s(.stat("/..", follow: true), "ok"), s(.readlink("/sl"), "ok"), s(.readlink("/f"), "EINVAL"), s(.readlink("/d"), "EINVAL"),
            s(.readlink("/nx"), "ENOENT"), s(.readlink("/abs/rel"), "ok"),
        ]
        return out
    }

    static let creates: [Step] = [
        s(.create("/f", 0o600, exclusive: true), "EEXIST"), s(.create("/f", 0o600, exclusive: false), "ok"),
        s(.create("/d", 0o600, exclusive: false), "EISDIR"), s(.create("/.", 0o600, exclusive: true), "EEXIST"),
        s(.create("/.", 0o600, exclusive: false), "EISDIR"), s(.create("/", 0o600, exclusive: false), "EISDIR"),
        s(.create("/..", 0o600, exclusive: true), "EEXIST"), s(.create("/" + a256, 0o600, exclusive: true), "ENAMETOOLONG"),
        s(.create("/nx/a", 0o600, exclusive: true), "ENOENT"), s(.create("/f/a", 0o600, exclusive: true), "ENOTDIR"),
        s(.create("/sl", 0o600, exclusive: false), "ELOOP"), s(.create("/fifo", 0o600, exclusive: false), "ok"),
        s(.create("/dangling", 0o600, exclusive: true), "EEXIST"),
        s(.mknod("/m", .directory, 0o755, rdev: 0), "EPERM"), s(.mknod("/m", .symlink, 0o755, rdev: 0), "EINVAL"),
        s(.mknod("/nx/m", .symlink, 0o755, rdev: 0), "EINVAL"), s(.mknod("/m1", .fifo, 0o640, rdev: 0), "ok"),
        s(.mknod("/m2", .socket, 0o640, rdev: 0), "ok"), s(.mknod("/m3", .characterDevice, 0o640, rdev: 0x103), "ok"),
        s(.mknod("/m4", .blockDevice, 0o640, rdev: 0x801), "ok"), s(.mknod("/m5", .regular, 0o640, rdev: 0), "ok"),
        s(.mknod("/f", .fifo, 0o640, rdev: 0), "EEXIST"), s(.mknod("/.", .fifo, 0o640, rdev: 0), "EEXIST"),
        s(.create("/m2", 0o600, exclusive: false), "ENXIO"),
        s(.mkdir("/d", 0o755), "EEXIST"), s(.mkdir("/.", 0o755), "EEXIST"), s(.mkdir("/..", 0o755), "EEXIST"),
        s(.mkdir("/", 0o755), "EEXIST"), s(.mkdir("/nd", 0o6755), "ok"), s(.mkdir("/" + a256, 0o755), "ENAMETOOLONG"),
        s(.mkdir("/nx/" + a256, 0o755), "ENOENT"), s(.mkdir("/sl/x", 0o755), "ENOTDIR"), s(.mkdir("/abs/viaabs", 0o755), "ok"),
        s(.symlink("/s0", target: ""), "ENOENT"), s(.symlink("/s1", target: String(repeating: "t", count: 4095)), "ok"),
        s(.symlink("/s2", target: String(repeating: "t", count: 4096)), "ENAMETOOLONG"), s(.symlink("/f", target: ""), "ENOENT"),
        s(.symlink("/nx/s", target: String(repeating: "t", count: 4096)), "ENAMETOOLONG"),
        s(.symlink("/f", target: "x"), "EEXIST"), s(.symlink("/.", target: "x"), "EEXIST"),
    ]

    static let links: [Step] = [
        s(.link("/d", "/dl"), "EPERM"), s(.link("/d", "/f"), "EEXIST"), s(.link("/f", "/."), "EEXIST"),
        s(.link("/f", "/d/.."), "EEXIST"), s(.link("/f", "/d/f2"), "ok"), s(.link("/nx", "/x"), "ENOENT"),
        s(.link("/f", "/nx/x"), "ENOENT"), s(.link("/sl", "/sl2"), "ok"), s(.link("/fifo", "/fifo2"), "ok"),
        s(.link("/f", "/" + a256), "ENAMETOOLONG"), s(.link("/f", "/f/x"), "ENOTDIR"),
        s(.create("/doomed", 0o644, exclusive: true)), s(.linkOrphan("/doomed", "/revived"), "ENOENT"),
    ]

    static let removes: [Step] = [
        s(.unlink("/d"), "EISDIR"), s(.unlink("/."), "EISDIR"), s(.unlink("/.."), "EISDIR"), s(.unlink("/"), "EISDIR"),
        s(.unlink("/nx"), "ENOENT"), s(.unlink("/d/f2"), "ok"), s(.unlink("/sl2"), "ok"), s(.unlink("/f/x"), "ENOTDIR"),
        s(.unlink("/" + a256), "ENAMETOOLONG"), s(.unlink("/m5"), "ok"), s(.unlink("/m4"), "ok"),
        s(.rmdir("/f"), "ENOTDIR"), s(.rmdir("/."), "EINVAL"), s(.rmdir("/.."), "ENOTEMPTY"), s(.rmdir("/"), "EBUSY"),
        s(.rmdir("/d"), "ENOTEMPTY"), s(.rmdir("/d/."), "EINVAL"), s(.rmdir("/d/.."), "ENOTEMPTY"), s(.rmdir("/nx"), "ENOENT"),
        s(.rmdir("/sl"), "ENOTDIR"), s(.rmdir("/abs"), "ENOTDIR"), s(.rmdir("/empty"), "ok"), s(.mkdir("/empty", 0o755), "ok"),
        s(.rmdir("/nd"), "ok"),
    ]

    /// Names a path gave with a trailing slash.
    static let slashes: [Step] = [
        s(.mkdir("/x1/", 0o755), "ok"), s(.mkdir("/f/", 0o755), "EEXIST"), s(.create("/n1/", 0o644, exclusive: false), "EISDIR"),
        s(.create("/n1/", 0o644, exclusive: true), "EISDIR"), s(.create("/f/", 0o644, exclusive: false), "EISDIR"),
        s(.create("/d/", 0o644, exclusive: false), "EISDIR"), s(.mknod("/p1/", .fifo, 0o644, rdev: 0), "ENOENT"),
        s(.mknod("/f/", .fifo, 0o644, rdev: 0), "EEXIST"), s(.symlink("/s3/", target: "t"), "ENOENT"),
        s(.symlink("/f/", target: "t"), "EEXIST"),
        s(.link("/f", "/g1/"), "ENOENT"), s(.link("/f/", "/g1"), "ENOTDIR"), s(.link("/f", "/d/"), "EEXIST"),
        s(.unlink("/f/"), "ENOTDIR"), s(.unlink("/d/"), "EISDIR"), s(.unlink("/nx/"), "ENOENT"), s(.unlink("/sl/"), "ENOTDIR"),
        s(.unlink("/abs/"), "ENOTDIR"), s(.rmdir("/abs/"), "ENOTDIR"), s(.rmdir("/f/"), "ENOTDIR"), s(.rmdir("/x1/"), "ok"),
        s(.mkdir("/x1", 0o755), "ok"), s(.rename("/f/", "/g1", flags: 0), "ENOTDIR"), s(.rename("/f", "/g1/", flags: 0), "ENOTDIR"),
        s(.rename("/x1/", "/x2/", flags: 0), "ok"), s(.mkdir("/x3", 0o755)), s(.rename("/x2", "/x3/", flags: 0), "ok"),
        s(.rename("/f", "/empty/", flags: 0), "ENOTDIR"), s(.rename("/abs/", "/x4", flags: 0), "ENOTDIR"),
        s(.rename("/d", "/f/", flags: 2), "ENOTDIR"), s(.rename("/f/", "/d", flags: 2), "ENOTDIR"),
        s(.rename("/x3/", "/d/sub/", flags: 2), "ok"), s(.rename("/x3", "/d/sub", flags: 2), "ok"), s(.rmdir("/x3/"), "ok"),
    ]

    static let renames: [Step] = [
        s(.rename("/f", "/nx", flags: 3), "EINVAL"), s(.rename("/nx", "/y", flags: 3), "EINVAL"),
        s(.rename("/f", "/d/f", flags: 1), "EEXIST"), s(.rename("/f", "/nx", flags: 2), "ENOENT"),
        s(.rename("/empty", "/f", flags: 0), "ENOTDIR"), s(.rename("/f", "/empty", flags: 0), "EISDIR"),
        s(.rename("/empty", "/full", flags: 0), "ENOTEMPTY"), s(.rename("/d", "/d/sub/x", flags: 0), "EINVAL"),
        s(.rename("/d", "/d/x", flags: 0), "EINVAL"), s(.rename("/d/sub", "/d", flags: 0), "ENOTEMPTY"),
        s(.rename("/d/sub", "/d", flags: 2), "EINVAL"), s(.rename("/d", "/d/sub", flags: 2), "EINVAL"),
        s(.rename("/d/f", "/d", flags: 0), "ENOTEMPTY"), s(.rename("/.", "/x", flags: 0), "EBUSY"),
        s(.rename("/f", "/.", flags: 0), "EBUSY"), s(.rename("/f", "/.", flags: 1), "EEXIST"), s(.rename("/..", "/x", flags: 0), "EBUSY"),
        s(.rename("/f", "/d/..", flags: 0), "EBUSY"), s(.rename("/nx", "/.", flags: 0), "EBUSY"),
        s(.rename("/nx", "/.", flags: 2), "EBUSY"), s(.rename("/", "/x", flags: 0), "EBUSY"),
        s(.rename("/nx", "/y", flags: 0), "ENOENT"), s(.rename("/nx/a", "/y", flags: 0), "ENOENT"),
        s(.rename("/f", "/" + a256, flags: 0), "ENAMETOOLONG"), s(.rename("/f", "/f/x", flags: 0), "ENOTDIR"),
        s(.link("/f", "/f3"), "ok"), s(.rename("/f", "/f3", flags: 0), "ok"), s(.rename("/f", "/f", flags: 1), "EEXIST"),
        s(.rename("/f", "/f", flags: 2), "ok"), s(.rename("/f", "/f3", flags: 1), "EEXIST"), s(.rename("/f", "/f", flags: 0), "ok"),
        s(.rename("/f3", "/d/f", flags: 0), "ok"), s(.mkdir("/e2", 0o755), "ok"), s(.rename("/empty", "/e2", flags: 0), "ok"),
        s(.mkdir("/empty", 0o755), "ok"), s(.rename("/d/sub", "/f", flags: 2), "ok"), s(.rename("/f", "/d/sub", flags: 2), "ok"),
        s(.rename("/d/sub", "/sub", flags: 0), "ok"), s(.rename("/sub", "/d/sub", flags: 1), "ok"),
        s(.rename("/e2", "/full/x", flags: 0), "ENOTDIR"), s(.rename("/sl", "/d/sl", flags: 0), "ok"),
        s(.rename("/d/sl", "/sl", flags: 0), "ok"), s(.rename("/e2", "/d/sub", flags: 2), "ok"),
        s(.rename("/d/sub", "/e2", flags: 2), "ok"),
        s(.rename("/full/x", "/full/y", flags: 0), "ok"), s(.rename("/e2", "/empty", flags: 0), "ok"),
    ]

    static let xattrs: [Step] = [
        s(.setxattr("/f", name: "foo.x", value: "1", flags: 0), "EOPNOTSUPP"),
        s(.setxattr("/f", name: "user.", value: "1", flags: 0), "EINVAL"),
        s(.setxattr("/f", name: "", value: "1", flags: 0), "ERANGE"),
        s(.setxattr("/f", name: "user." + String(repeating: "a", count: 251), value: "1", flags: 0), "ERANGE"),
        s(.setxattr("/f", name: "user." + String(repeating: "a", count: 250), value: "1", flags: 0), "ok"),
        s(.setxattr("/f", name: "user.b", value: String(repeating: "v", count: 65537), flags: 0), "E2BIG"),
        s(.setxattr("/f", name: "user.b", value: String(repeating: "v", count: 65536), flags: 0), "ok"),
        s(.setxattr("/f", name: "user.b", value: "1", flags: 1), "EEXIST"),
        s(.setxattr("/f", name: "user.c", value: "1", flags: 2), "ENODATA"),
        s(.setxattr("/f", name: "user.c", value: "1", flags: 3), "ENODATA"),
        s(.setxattr("/f", name: "user.b", value: "1", flags: 3), "EEXIST"),
        s(.setxattr("/f", name: "user.b", value: "2", flags: 2), "ok"), s(.setxattr("/f", name: "user.c", value: "", flags: 1), "ok"),
        s(.setxattr("/f", name: "user.c", value: "1", flags: 4), "EINVAL"),
        s(.setxattr("/nx", name: "user.c", value: "1", flags: 0), "ENOENT"),
        s(.setxattr("/nx", name: "", value: "1", flags: 0), "ERANGE"), s(.getxattr("/f", name: "user.b"), "ok"),
        s(.getxattr("/f", name: "user.zz"), "ENODATA"), s(.getxattr("/f", name: "foo.x"), "EOPNOTSUPP"),
        s(.getxattr("/f", name: "user."), "EINVAL"), s(.getxattr("/f", name: ""), "ERANGE"), s(.getxattr("/nx", name: "user.b"), "ENOENT"),
        s(.removexattr("/f", name: "user.zz"), "ENODATA"), s(.removexattr("/f", name: "zz"), "EOPNOTSUPP"),
        s(.removexattr("/f", name: "user.c"), "ok"), s(.setxattr("/sl", name: "user.a", value: "1", flags: 0), "EPERM"),
        s(.getxattr("/sl", name: "user.a"), "ENODATA"), s(.removexattr("/sl", name: "user.a"), "EPERM"),
        s(.setxattr("/fifo", name: "user.a", value: "1", flags: 0), "EPERM"),
        s(.setxattr("/sl", name: "trusted.a", value: "1", flags: 0), "ok"),
        s(.setxattr("/sl", name: "security.a", value: "1", flags: 0), "ok"),
        s(.setxattr("/f", name: "system.x", value: "1", flags: 0), "EOPNOTSUPP"),
        s(.setxattr("/d", name: "user.dir", value: "1", flags: 0), "ok"), s(.setxattr("/f", name: "trusted.t", value: "t", flags: 0), "ok"),
        s(.setxattr("/f", name: "security.s", value: "", flags: 0), "ok"), s(.listxattr("/f"), "ok"), s(.listxattr("/sl"), "ok"),
        s(.listxattr("/nx"), "ENOENT"), s(.removexattr("/sl", name: "trusted.a"), "ok"),
    ]

    static let attributes: [Step] = [
        s(.chmod("/sl", 0o700, follow: false), "EOPNOTSUPP"), s(.chmod("/sl", 0o640, follow: true), "ok"),
        s(.chmod("/nx", 0o640, follow: true), "ENOENT"), s(.create("/k", 0o644, exclusive: true)), s(.chmod("/k", 0o4755, follow: true)),
        s(.chown("/k", uid: nil, gid: nil), "ok"), s(.chmod("/k", 0o6755, follow: true)), s(.chown("/k", uid: 0, gid: 0), "ok"),
        s(.chmod("/k", 0o2745, follow: true)), s(.chown("/k", uid: 0, gid: 0), "ok"), s(.mkdir("/kd", 0o755)),
        s(.chmod("/kd", 0o7755, follow: true)), s(.chown("/kd", uid: 5, gid: 5), "ok"), s(.chown("/sl", uid: 7, gid: 7), "ok"),
        s(.utimes("/k", atime: .seconds(1000), mtime: .seconds(2000)), "ok"), s(.utimes("/k", atime: .now, mtime: .now), "ok"),
        s(.utimes("/k", atime: nil, mtime: .now), "ok"), s(.utimes("/sl", atime: .seconds(5), mtime: nil), "ok"),
        s(.utimes("/nx", atime: .now, mtime: .now), "ENOENT"), s(.truncate("/k"), "ok"), s(.truncate("/d"), "EISDIR"),
        s(.truncate("/fifo"), "EINVAL"), s(.chmod("/k", 0o2777, follow: true)), s(.chown("/k", uid: 1000, gid: 5000)),
    ]

    static var permissions: [Step] { permissionSetup + permissionCases + permissionCasesOfAttributes }

    static let permissionSetup: [Step] = [
        s(.mkdir("/pub", 0o777)), s(.mkdir("/ro", 0o755)), s(.mkdir("/sticky", 0o777)), s(.chmod("/sticky", 0o1777, follow: true)),
        s(.create("/sticky/rootowned", 0o666, exclusive: true)), s(.create("/rootfile", 0o644, exclusive: true)),
        s(.create("/rootw", 0o666, exclusive: true)), s(.create("/mine", 0o644, exclusive: true)),
        s(.chown("/mine", uid: 1000, gid: 1000)), s(.chmod("/mine", 0o6755, follow: true)), s(.create("/mine2", 0o644, exclusive: true)),
        s(.chown("/mine2", uid: 1000, gid: 2000)), s(.mkdir("/mydir", 0o755)), s(.chown("/mydir", uid: 1000, gid: 1000)),
        s(.create("/sticky/mine", 0o644, exclusive: true)), s(.chown("/sticky/mine", uid: 1000, gid: 1000)),
        s(.mkdir("/sg", 0o777)), s(.chown("/sg", uid: 0, gid: 5000)), s(.chmod("/sg", 0o2777, follow: true)),
        s(.mkdir("/mydir/nox", 0o700)), s(.mkdir("/pub/rodir", 0o755)), s(.create("/mine3", 0o644, exclusive: true)),
        s(.chown("/mine3", uid: 1000, gid: 1000)), s(.chmod("/mine3", 0o6755, follow: true)), s(.create("/mine4", 0o644, exclusive: true)),
        s(.chown("/mine4", uid: 1000, gid: 1000)), s(.chmod("/mine4", 0o6745, follow: true)),
        s(.setxattr("/rootw", name: "trusted.t", value: "1", flags: 0)), s(.create("/suid", 0o644, exclusive: true)),
        s(.chmod("/suid", 0o4777, follow: true)), s(.create("/mine5", 0o644, exclusive: true)), s(.chown("/mine5", uid: 1000, gid: 1000)),
        s(.chmod("/mine5", 0o2766, follow: true)), s(.create("/mine6", 0o644, exclusive: true)), s(.chown("/mine6", uid: 1000, gid: 5000)),
        s(.chmod("/mine6", 0o2744, follow: true)), s(.create("/pub/y", 0o644, exclusive: true)), s(.chown("/pub/y", uid: 1000, gid: 1000)),
    ]

    static let permissionCases: [Step] = [
        s(.mkdir("/ro/x", 0o755), "EACCES", as: .alice), s(.mkdir("/ro/d", 0o755), "ok", as: .root),
        s(.mkdir("/ro/d", 0o755), "EEXIST", as: .alice), s(.create("/ro/x", 0o644, exclusive: true), "EACCES", as: .alice),
        s(.unlink("/sticky/rootowned"), "EPERM", as: .alice), s(.unlink("/sticky/mine"), "ok", as: .alice),
        s(.unlink("/ro/d"), "EACCES", as: .alice), s(.rmdir("/ro/d"), "EACCES", as: .alice),
        s(.mknod("/pub/chr", .characterDevice, 0o644, rdev: 0x103), "EPERM", as: .alice),
        s(.mknod("/pub/fifo", .fifo, 0o644, rdev: 0), "ok", as: .alice), s(protectedLink, "EPERM", as: .alice),
        s(.link("/rootw", "/pub/l2"), "ok", as: .alice), s(.link("/suid", "/pub/l3"), "EPERM", as: .alice),
        s(.link("/mine", "/pub/l4"), "ok", as: .alice), s(.rename("/pub/rodir", "/mydir/rodir", flags: 0), "EACCES", as: .alice),
        s(.rename("/sticky/rootowned", "/pub/x", flags: 0), "EPERM", as: .alice),
        s(.rename("/pub/y", "/sticky/rootowned", flags: 0), "EPERM", as: .alice),
        s(.create("/sg/f", 0o2775, exclusive: true), "ok", as: .alice),
        s(.mkdir("/sg/d", 0o755), "ok", as: .alice), s(.create("/sg/g", 0o2775, exclusive: true), "ok", as: .root),
        s(.stat("/mydir/nox/a", follow: true), "EACCES", as: .alice), s(.mkdir("/mydir/nox/b", 0o755), "EACCES", as: .alice),
        s(.mkdir("/mydir/nox/.", 0o755), "EACCES", as: .alice), s(.rmdir("/mydir/nox/.."), "EACCES", as: .alice),
        s(.create("/rootfile", 0o644, exclusive: false), "ok", as: .alice),
        s(.create("/mydir/nox", 0o644, exclusive: false), "EISDIR", as: .alice),
        s(.chmod("/mydir/nox", 0o701, follow: true), "ok"), s(.stat("/mydir/nox/a", follow: true), "ENOENT", as: .alice),
        s(.create("/mydir/nox/a", 0o644, exclusive: true), "EACCES", as: .alice),
        s(.mknod("/sticky/asock", .socket, 0o666, rdev: 0), "ok", as: .alice),
        s(.mknod("/sticky/afifo", .fifo, 0o666, rdev: 0), "ok", as: .alice),
        s(.symlink("/sticky/alink", target: "rootowned"), "ok", as: .alice), s(.create("/sticky/asock", 0o644, exclusive: false), "EACCES"),
        s(.create("/sticky/alink", 0o644, exclusive: false), "EACCES"),
        s(.create("/sticky/asock", 0o644, exclusive: false), "EACCES", as: .bob),
        s(.create("/sticky/asock", 0o644, exclusive: false), "ENXIO", as: .alice), s(.create("/sticky/afifo", 0o644, exclusive: false)),
        s(.create("/sticky/mine2", 0o666, exclusive: true), "ok", as: .alice), s(.create("/sticky/mine2", 0o644, exclusive: false)),
        s(.stat("/sticky/alink", follow: true)), s(.stat("/sticky/alink", follow: true), as: .bob),
    ]

    static let permissionCasesOfAttributes: [Step] = [
        s(.chmod("/rootfile", 0o600, follow: true), "EPERM", as: .alice), s(.chmod("/mine2", 0o2755, follow: true), "ok", as: .alice),
        s(.chown("/mine2", uid: 5, gid: nil), "EPERM", as: .alice), s(.chown("/mine2", uid: 1000, gid: nil), "ok", as: .alice),
        s(.chown("/mine2", uid: nil, gid: 3000), "ok", as: .alice), s(.chown("/mine2", uid: nil, gid: 4000), "EPERM", as: .alice),
        s(.chown("/rootfile", uid: nil, gid: 1000), "EPERM", as: .alice), s(.chown("/mine", uid: nil, gid: nil), "ok", as: .alice),
        s(.chown("/suid", uid: nil, gid: nil), "EPERM", as: .alice), s(.chown("/rootfile", uid: nil, gid: nil), "ok", as: .alice),
        s(.utimes("/rootw", atime: .seconds(1), mtime: .seconds(1)), "EPERM", as: .alice),
        s(.utimes("/rootw", atime: .now, mtime: .now), "ok", as: .alice),
        s(.utimes("/rootfile", atime: .now, mtime: .now), "EACCES", as: .alice),
        s(.utimes("/rootw", atime: .now, mtime: nil), "EPERM", as: .alice),
        s(.utimes("/mine2", atime: .seconds(1), mtime: .seconds(1)), "ok", as: .alice),
        s(.setxattr("/mine2", name: "trusted.a", value: "1", flags: 0), "EPERM", as: .alice),
        s(.setxattr("/mine2", name: "security.a", value: "1", flags: 0), "EPERM", as: .alice),
        s(.setxattr("/rootfile", name: "user.a", value: "1", flags: 0), "EACCES", as: .alice),
        s(.setxattr("/rootw", name: "user.a", value: "1", flags: 0), "ok", as: .alice),
        s(.setxattr("/rootfile", name: "foo.a", value: "1", flags: 0), "EACCES", as: .alice),
        s(.getxattr("/rootfile", name: "foo.a"), "EOPNOTSUPP", as: .alice),
        s(.getxattr("/rootw", name: "trusted.t"), "ENODATA", as: .alice),
        s(.getxattr("/rootw", name: "security.r"), "ENODATA", as: .alice), s(.listxattr("/rootw"), "ok", as: .alice),
        s(.removexattr("/rootw", name: "trusted.t"), "EPERM", as: .alice),
        s(.setxattr("/sticky", name: "user.a", value: "1", flags: 0), "EPERM", as: .alice),
        s(.chmod("/mydir", 0o1777, follow: true), "ok", as: .alice),
        s(.setxattr("/mydir", name: "user.a", value: "1", flags: 0), "ok", as: .alice),
        s(.getxattr("/mydir/nox", name: "user.a"), "EACCES", as: .bob), s(.truncate("/mine3"), "ok", as: .alice),
        s(.truncate("/mine4"), "ok", as: .alice), s(.truncate("/rootfile"), "EACCES", as: .alice),
        s(.truncate("/mine4"), "EACCES", as: .bob),
        s(.truncate("/mine5"), "ok", as: .bob), s(.truncate("/mine6"), "ok", as: .alice),
    ]
}

/// A small seeded generator (SplitMix64), so a seed replays the same steps anywhere.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

enum RandomCases {
    /// Directories the random steps start with, writable by everyone so that the users'
    /// steps do more than fail.
    static let setup: [Step] = [
        s(.chmod("/", 0o777, follow: true)), s(.mkdir("/a", 0o777)), s(.mkdir("/b", 0o1777)), s(.create("/a/a", 0o666, exclusive: true)),
    ]
}

/// Random steps over the names a, b, c at two levels, with symlinks among them.
struct StepGenerator {
    var random: SplitMix64

    init(seed: UInt64) { random = SplitMix64(state: seed) }

    static let names = ["a", "b", "c"]
    static let modes: [UInt16] = [0o755, 0o644, 0o777, 0o700, 0o600, 0o1777, 0o2775, 0o4755, 0o6755, 0o2745, 0o000, 0o311, 0o666]
    static let targets = ["a", "../a", "/b", "b/c", "nx", "/", "..", "a/a", "c"]
    static let xattrNames = ["user.a", "user.b", "trusted.t", "security.s", "foo.x", "user."]
    static let who: [Who] = [.root, .root, .root, .alice, .alice, .bob]

    mutating func path() -> String {
        if random.below(12) == 0 { return name() + "/" }
        return name()
    }

    mutating func name() -> String {
        switch random.below(10) {
        case 0: return random.pick(["/.", "/..", "/", "/a/.", "/b/..", "/nx/a"])
        case 1, 2, 3: return "/" + random.pick(Self.names)
        default: return "/" + random.pick(Self.names) + "/" + random.pick(Self.names)
        }
    }

    mutating func next() -> Step {
        let who = random.pick(Self.who)
        let p = path()
        let op: DiffOp
        switch random.below(19) {
        case 0, 1: op = .create(p, random.pick(Self.modes), exclusive: random.below(2) == 0)
        case 2: op = .mknod(p, random.pick([.fifo, .socket, .characterDevice, .regular, .directory]), random.pick(Self.modes), rdev: 0x103)
        case 3, 4: op = .mkdir(p, random.pick(Self.modes))
        case 5: op = .symlink(p, target: random.pick(Self.targets))
        case 6: op = .link(p, path())
        case 7: op = .unlink(p)
        case 8: op = .rmdir(p)
        case 9, 10: op = .rename(p, path(), flags: random.pick([0, 0, 0, 1, 2, 3]))
        case 11: op = .setxattr(p, name: random.pick(Self.xattrNames), value: random.pick(["", "v", "vv"]), flags: Int32(random.below(4)))
        case 12: op = random.below(2) == 0 ? .getxattr(p, name: random.pick(Self.xattrNames)) : .listxattr(p)
        case 13: op = .removexattr(p, name: random.pick(Self.xattrNames))
        case 14: op = .chmod(p, random.pick(Self.modes), follow: random.below(2) == 0)
        case 15: op = .chown(p, uid: random.pick([nil, 0, 1000, 2000]), gid: random.pick([nil, 0, 1000, 2000, 3000, 5000]))
        case 16: op = .utimes(p, atime: random.pick([nil, .now, .seconds(100)]), mtime: random.pick([.now, .seconds(200)]))
        case 17: op = random.below(3) == 0 ? .readlink(p) : .stat(p, follow: random.below(2) == 0)
        default: op = .truncate(p)
        }
        return Step(op: op, who: who)
    }
}
