// Set-user-id and set-group-id clearing and non-owner access, case by case, on tmpfs and on
// the mount: each case lays out the same file or directory on both, has the same user run
// the same command (through setpriv, with uids that need no accounts: alice 2001 in group
// 2100 as well as her own 2001, bob 2002 in 2002 only), and compares the exit status and the
// mode, owner and group left behind. tmpfs is the oracle: the kernel's own rules, applied
// by the VFS, where the mount must apply them in the daemon (docs/FUSE.md, "Who asks").

import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Who runs a case's command.
enum Actor: String {
    case root, alice, bob

    var setpriv: [String] {
        switch self {
        case .root: return []
        case .alice: return ["/usr/bin/setpriv", "--reuid=2001", "--regid=2001", "--groups=2100"]
        case .bob: return ["/usr/bin/setpriv", "--reuid=2002", "--regid=2002", "--clear-groups"]
        }
    }
}

/// What a case lays out in its directory before the command: `f` or `d` with an owner,
/// a group and a mode (and `d/f` in a directory when `inner` is set).
struct Layout {
    var name = "f"
    var uid: uid_t = 0
    var gid: gid_t = 0
    var mode: mode_t = 0o644
    var directory = false
    var inner: (uid: uid_t, gid: gid_t, mode: mode_t)?
}

struct SetIDCase {
    let name: String
    let layout: Layout
    let actor: Actor
    /// A shell command; $D is the case's directory.
    let command: String
    /// What is stat'ed afterwards, relative to the case's directory.
    let target: String
}

func file(_ uid: uid_t, _ gid: gid_t, _ mode: mode_t) -> Layout { Layout(uid: uid, gid: gid, mode: mode) }

let pythonCreate = "/usr/bin/python3 -c \"import os; os.close(os.open('$D/d/x', os.O_CREAT | os.O_WRONLY, 0o2755))\""
let pythonStore =
    "/usr/bin/python3 -c \"import mmap, os; fd = os.open('$D/f', os.O_RDWR); m = mmap.mmap(fd, 4096); m[0:1] = b'z'; m.flush(); m.close()\""

let setIDCases: [SetIDCase] = [
    SetIDCase(
        name: "write by a non-owner clears set-user-id", layout: file(0, 0, 0o4777), actor: .bob, command: "printf x >> $D/f", target: "f"),
    SetIDCase(
        name: "write by a non-owner clears set-group-id (group-executable)", layout: file(0, 2100, 0o2777), actor: .bob,
        command: "printf x >> $D/f", target: "f"),
    SetIDCase(
        name: "write by a non-member clears set-group-id without group execute too", layout: file(0, 2100, 0o2767), actor: .bob,
        command: "printf x >> $D/f", target: "f"),
    SetIDCase(
        name: "write by a group member (supplementary) keeps set-group-id without group execute", layout: file(0, 2100, 0o2767),
        actor: .alice, command: "printf x >> $D/f", target: "f"),
    SetIDCase(
        name: "write by the owner clears set-user-id", layout: file(2001, 2001, 0o4755), actor: .alice, command: "printf x >> $D/f",
        target: "f"),
    SetIDCase(
        name: "write by root keeps set-id bits", layout: file(2001, 2001, 0o6777), actor: .root, command: "printf x >> $D/f", target: "f"),
    SetIDCase(
        name: "truncate by a group member (supplementary) keeps set-group-id without group execute", layout: file(0, 2100, 0o2767),
        actor: .alice, command: "truncate -s 2 $D/f", target: "f"),
    SetIDCase(
        name: "truncate by a non-owner clears set-id bits", layout: file(0, 2100, 0o6777), actor: .bob, command: "truncate -s 2 $D/f",
        target: "f"),
    SetIDCase(
        name: "open O_TRUNC by a non-owner clears set-id bits", layout: file(0, 0, 0o6777), actor: .bob, command: ": > $D/f", target: "f"),
    SetIDCase(
        name: "fallocate by a non-owner clears set-id bits", layout: file(0, 0, 0o6777), actor: .bob, command: "fallocate -l 65536 $D/f",
        target: "f"),
    SetIDCase(name: "a mapped store by a non-owner", layout: file(0, 0, 0o4777), actor: .bob, command: pythonStore, target: "f"),
    SetIDCase(
        name: "chown by root clears set-id bits", layout: file(2001, 2001, 0o6755), actor: .root, command: "chown 2002 $D/f", target: "f"),
    SetIDCase(
        name: "chgrp by the owner to another group of theirs clears set-id bits", layout: file(2001, 2001, 0o6755), actor: .alice,
        command: "chgrp 2100 $D/f", target: "f"),
    SetIDCase(
        name: "chown by a non-owner is refused", layout: file(2001, 2001, 0o644), actor: .bob, command: "chown 2002 $D/f", target: "f"),
    SetIDCase(
        name: "chgrp by the owner to a group not theirs is refused", layout: file(2001, 2001, 0o644), actor: .alice,
        command: "chgrp 2002 $D/f", target: "f"),
    SetIDCase(
        name: "chmod by a non-owner is refused", layout: file(2001, 2001, 0o644), actor: .bob, command: "chmod 0777 $D/f", target: "f"),
    SetIDCase(
        name: "chmod g+s by the owner outside the file's group drops set-group-id", layout: file(2001, 2002, 0o755), actor: .alice,
        command: "chmod 2755 $D/f", target: "f"),
    SetIDCase(
        name: "chmod g+s by the owner in the file's group (supplementary) keeps it", layout: file(2001, 2100, 0o755), actor: .alice,
        command: "chmod 2755 $D/f", target: "f"),
    SetIDCase(name: "a group member reads a 0640 file", layout: file(0, 2100, 0o640), actor: .alice, command: "cat $D/f", target: "f"),
    SetIDCase(name: "a non-member is refused a 0640 file", layout: file(0, 2100, 0o640), actor: .bob, command: "cat $D/f", target: "f"),
    SetIDCase(
        name: "a group member writes a 0660 file", layout: file(0, 2100, 0o660), actor: .alice, command: "printf x >> $D/f", target: "f"),
    SetIDCase(
        name: "a non-owner is refused a write to a 0644 file", layout: file(2001, 2001, 0o644), actor: .bob, command: "printf x >> $D/f",
        target: "f"),
    SetIDCase(
        name: "set-group-id directory: a non-member's new file takes its group",
        layout: Layout(name: "d", gid: 2100, mode: 0o2777, directory: true), actor: .bob, command: "touch $D/d/new", target: "d/new"),
    SetIDCase(
        name: "set-group-id directory: a new subdirectory inherits the bit",
        layout: Layout(name: "d", gid: 2100, mode: 0o2777, directory: true), actor: .bob, command: "mkdir $D/d/sub", target: "d/sub"),
    SetIDCase(
        name: "set-group-id directory: a non-member's set-group-id file loses the bit",
        layout: Layout(name: "d", gid: 2100, mode: 0o2777, directory: true), actor: .bob, command: pythonCreate, target: "d/x"),
    SetIDCase(
        name: "set-group-id directory: a member's set-group-id file keeps the bit",
        layout: Layout(name: "d", gid: 2100, mode: 0o2777, directory: true), actor: .alice, command: pythonCreate, target: "d/x"),
    SetIDCase(
        name: "utimes to now by a non-owner with write access", layout: file(2001, 2001, 0o666), actor: .bob, command: "touch $D/f",
        target: "f"),
    SetIDCase(
        name: "utimes to a given time by a non-owner is refused", layout: file(2001, 2001, 0o666), actor: .bob,
        command: "touch -d 2001-01-01 $D/f", target: "f"),
    SetIDCase(
        name: "unlink of another's file in a sticky directory is refused",
        layout: Layout(name: "d", mode: 0o1777, directory: true, inner: (2001, 2001, 0o666)), actor: .bob, command: "rm -f $D/d/f",
        target: "d/f"),
    SetIDCase(
        name: "unlink of one's own file in a sticky directory",
        layout: Layout(name: "d", mode: 0o1777, directory: true, inner: (2002, 2002, 0o666)), actor: .bob, command: "rm -f $D/d/f",
        target: "d/f"),
]

/// Lays out `layout` in `dir` as root.
func lay(_ layout: Layout, in dir: String) throws {
    let path = dir + "/" + layout.name
    if layout.directory {
        guard mkdir(path, 0o755) == 0 else { throw FixtureError("mkdir \(path): errno \(errno)") }
    } else {
        try writeFile(path, Array("data\n".utf8) + [UInt8](repeating: 7, count: 8192))
    }
    // chown before chmod: chown clears set-id bits.
    guard chown(path, layout.uid, layout.gid) == 0, chmod(path, layout.mode) == 0 else {
        throw FixtureError("chown/chmod \(path): errno \(errno)")
    }
    if let inner = layout.inner {
        try writeFile(path + "/f", Array("inner\n".utf8))
        guard chown(path + "/f", inner.uid, inner.gid) == 0, chmod(path + "/f", inner.mode) == 0 else {
            throw FixtureError("inner \(path)")
        }
    }
}

/// Runs one case in a new directory under `base`: its exit status and what is left.
func outcome(_ c: SetIDCase, index: Int, base: String) throws -> String {
    let dir = base + "/case-\(index)"
    guard mkdir(dir, 0o755) == 0 else { throw FixtureError("mkdir \(dir): errno \(errno)") }
    try lay(c.layout, in: dir)
    let argv = c.actor.setpriv + ["/bin/sh", "-c", "umask 022; " + c.command]
    let r = try run(URL(fileURLWithPath: argv[0]), Array(argv.dropFirst()), environment: ["D": dir])
    var st = stat()
    let left = stat(dir + "/" + c.target, &st) == 0 ? "\(String(st.st_mode & 0o7777, radix: 8)) \(st.st_uid):\(st.st_gid)" : "absent"
    return "\(r.status == 0 ? "ok" : "refused") \(left)"
}

@Suite(
    "iomap mount: set-id bits and non-owner access against tmpfs", .serialized,
    .enabled(if: MountEnvironment.available, "needs root and /dev/fuse"))
struct SetIDTableTests {
    @Test("every case leaves the same exit status, mode, owner and group on the mount as on tmpfs")
    func table() throws {
        for tool in ["/usr/bin/setpriv", "/usr/bin/python3", "/usr/bin/fallocate"] where !FileManager.default.isExecutableFile(atPath: tool)
        {
            print("set-id table skipped: \(tool) is missing")
            return
        }
        let f = try MountFixture()
        defer { f.cleanup() }
        chmod(f.root, 0o755)
        try f.mount(["-o", "allow_other"])
        chmod(f.mountpoint, 0o755)
        let shm = try TmpfsDirectory()
        defer { shm.remove() }
        var rows: [String] = []
        for (i, c) in setIDCases.enumerated() {
            let control = try outcome(c, index: i, base: shm.path)
            let mounted = try outcome(c, index: i, base: f.mountpoint)
            #expect(mounted == control, "\(c.name) (\(c.actor.rawValue): \(c.command)): mount \(mounted), tmpfs \(control)")
            rows.append(
                "| \(c.name) | \(c.actor.rawValue) | `\(c.command.replacingOccurrences(of: "$D/", with: ""))` | \(control) | \(mounted) |")
        }
        print("set-id table:\n" + rows.joined(separator: "\n"))
        // The comparison's canary: the same command on a file laid out differently must give
        // another outcome, or an equality above would say nothing.
        let planted = SetIDCase(name: "canary", layout: file(0, 0, 0o4755), actor: .bob, command: "printf x >> $D/f", target: "f")
        #expect(try outcome(planted, index: 1000, base: shm.path) != outcome(setIDCases[0], index: 1001, base: shm.path))
        try f.umount()
    }
}
