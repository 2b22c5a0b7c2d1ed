// Counterpart: none in the kernel; the volume's file_remove_privs: which data changes clear
// set-user-id and set-group-id, for whom (a write, a truncate, and fallocate in every mode,
// as XFS and tmpfs do through file_modified).

import ExtentFS
import IOMapBase
import Testing
import Volume

/// A data change made through a handle.
struct SetIDChange: Sendable, CustomTestStringConvertible {
    let name: String
    let change: @Sendable (FileHandle) throws -> Void
    var testDescription: String { name }

    static let all: [SetIDChange] = [
        SetIDChange(name: "write") { _ = try $0.write([1, 2, 3], at: 0) },
        SetIDChange(name: "truncate") { try $0.truncate(to: 8192) },
        SetIDChange(name: "fallocate") { try $0.allocate(offset: 0, length: 8192) },
        SetIDChange(name: "fallocate keep-size") { try $0.allocate(offset: 0, length: 8192, keepSize: true) },
        SetIDChange(name: "punch hole") { try $0.punchHole(offset: 0, length: 4096) },
        SetIDChange(name: "zero range") { try $0.zeroRange(offset: 0, length: 4096) },
    ]
}

@Suite("Volume: set-user-id and set-group-id cleared by data changes")
struct VolumeSetIDTests {
    @Test(
        "an unprivileged caller's change clears both bits (group-executable set-group-id); root's clears none", arguments: SetIDChange.all)
    func clearedByChange(_ c: SetIDChange) throws {
        let rig = try VolumeRig()
        let v = rig.volume
        let f = try v.create(in: .root, "f", permissions: 0o6755).inode
        let root = try v.open(f)
        try c.change(root)
        #expect(try v.stat(f).attributes.permissions == 0o6755, "\(c.name) by root")
        let user = try v.open(f, caller: Caller(uid: 1000, gid: 1000))
        try c.change(user)
        #expect(try v.stat(f).attributes.permissions == 0o755, "\(c.name) by uid 1000")
        try root.close()
        try user.close()
    }
}
