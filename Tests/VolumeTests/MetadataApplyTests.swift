// Counterpart: none in the kernel; tests of MetadataState.apply, the one function the
// running volume and recovery both change metadata with.

import IOMapBase
import Testing
import Volume

@Suite("Metadata: apply")
struct MetadataApplyTests {
    let t = Timestamp(seconds: 1_700_000_000, nanoseconds: 5)

    func file(_ n: UInt64) -> LogRecord {
        .createInode(
            InodeNumber(n), InodeAttributes(type: .regular, permissions: 0o644, nlink: 1, time: t), parent: nil, symlinkTarget: nil)
    }

    @Test("create, name, map, convert, unmap and free a file")
    func lifecycle() throws {
        var s = MetadataState.newVolume(time: t)
        let name = try FileName(validating: "a")
        try s.apply([
            file(2), .addEntry(directory: .root, name: name, target: InodeNumber(2), type: .regular, cookie: 3),
            .allocateUnwritten(InodeNumber(2), DiskExtent(fileBlock: 0, diskBlock: 100, count: 8, unwritten: true)),
            .convertToWritten(InodeNumber(2), fromBlock: 2, toBlock: 4),
        ])
        #expect(
            s[InodeNumber(2)]?.extents == [
                DiskExtent(fileBlock: 0, diskBlock: 100, count: 2, unwritten: true),
                DiskExtent(fileBlock: 2, diskBlock: 102, count: 2, unwritten: false),
                DiskExtent(fileBlock: 4, diskBlock: 104, count: 4, unwritten: true),
            ])
        try s.apply(.convertToWritten(InodeNumber(2), fromBlock: 0, toBlock: 8))
        #expect(s[InodeNumber(2)]?.extents == [DiskExtent(fileBlock: 0, diskBlock: 100, count: 8, unwritten: false)])
        try s.apply(.unmapAndIntendFree(InodeNumber(2), fromBlock: 0, toBlock: 8, intent: 1))
        #expect(s.intents[1]?.extents == [DiskExtent(fileBlock: 0, diskBlock: 100, count: 8, unwritten: false)])
        try s.apply([.removeEntry(directory: .root, name: name), .freeInode(InodeNumber(2)), .freeDone(intent: 1)])
        #expect(Array(s.inodes.keys) == [.root])
        #expect(s[.root]?.directory?.isEmpty == true)
        #expect(s.intents.isEmpty && s.orphans.isEmpty)
        // Numbers are not reused: the next inode, intent and cookie stay past the ones used.
        #expect(s.nextInode == 3 && s.nextIntent == 2 && s[.root]?.directory?.nextCookie == 4)
    }

    @Test("a record that does not fit is refused and changes nothing")
    func refused() throws {
        var s = MetadataState.newVolume(time: t)
        try s.apply(file(2))
        let before = s
        #expect(throws: ApplyError.self) { try s.apply(file(2)) }
        #expect(throws: ApplyError.self) { try s.apply(.convertToWritten(InodeNumber(9), fromBlock: 0, toBlock: 1)) }
        try s.apply(.allocateUnwritten(InodeNumber(2), DiskExtent(fileBlock: 0, diskBlock: 50, count: 4, unwritten: true)))
        let mapped = s
        #expect(throws: ApplyError.self) {
            try s.apply(.allocateUnwritten(InodeNumber(2), DiskExtent(fileBlock: 3, diskBlock: 90, count: 4, unwritten: true)))
        }
        #expect(throws: ApplyError.self) { try s.apply(.freeInode(InodeNumber(2))) }
        #expect(s == mapped)
        #expect(before != mapped)
    }

    @Test("readdir cookies stay valid across adds and removes elsewhere")
    func cookies() throws {
        var s = MetadataState.newVolume(time: t)
        for n in 2...6 {
            try s.apply([
                file(UInt64(n)),
                .addEntry(
                    directory: .root, name: FileName(unchecked: Array("f\(n)".utf8)), target: InodeNumber(UInt64(n)), type: .regular,
                    cookie: UInt64(n + 1)),
            ])
        }
        let dir = try #require(s[.root]?.directory)
        let firstTwo = dir.entries(after: 0, limit: 2)
        #expect(firstTwo.map(\.name.description) == ["f2", "f3"])
        try s.apply(.removeEntry(directory: .root, name: FileName(unchecked: Array("f2".utf8))))
        try s.apply(.removeEntry(directory: .root, name: FileName(unchecked: Array("f5".utf8))))
        try s.apply([
            file(7),
            .addEntry(directory: .root, name: FileName(unchecked: Array("f7".utf8)), target: InodeNumber(7), type: .regular, cookie: 8),
        ])
        let rest = try #require(s[.root]?.directory).entries(after: firstTwo.last!.entry.cookie)
        #expect(rest.map(\.name.description) == ["f4", "f6", "f7"])
    }

    @Test("names: empty, slash, NUL, dot, dot-dot and 256 bytes are refused with Linux's errnos")
    func names() {
        let cases: [([UInt8], Errno)] = [
            ([], .noSuchFileOrDirectory), (Array("a/b".utf8), .invalidArgument), ([0x61, 0], .invalidArgument),
            (Array(".".utf8), .invalidArgument), (Array("..".utf8), .invalidArgument),
            ([UInt8](repeating: 0x61, count: 256), .fileNameTooLong),
        ]
        for (bytes, errno) in cases {
            #expect(throws: NameError.self) { try FileName(validating: bytes) }
            do throws(NameError) { _ = try FileName(validating: bytes) } catch { #expect(error.errno == errno) }
        }
        #expect((try? FileName(validating: [UInt8](repeating: 0x61, count: 255))) != nil)
    }
}
