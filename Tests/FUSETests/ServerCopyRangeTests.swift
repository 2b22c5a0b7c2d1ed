// Counterpart: none in the kernel; COPY_FILE_RANGE and COPY_FILE_RANGE_64 through the server
// with byte buffers, no mount.

import CFUSE
import FUSE
import IOMapBase
import Testing
import Volume

@Suite("FUSE server: copy_file_range")
struct ServerCopyRangeTests {
    func copy(
        _ h: Harness, _ opcode: Opcode, from src: (UInt64, UInt64), at offIn: UInt64, to dst: (UInt64, UInt64), at offOut: UInt64,
        _ len: UInt64, flags: UInt64 = 0
    ) -> Reply {
        var a = fuse_copy_file_range_in()
        a.fh_in = src.1
        a.off_in = offIn
        a.nodeid_out = dst.0
        a.fh_out = dst.1
        a.off_out = offOut
        a.len = len
        a.flags = flags
        return h.call(opcode, nodeid: src.0, bytes(of: a))
    }

    @Test(
        "both opcodes copy through the engine (the new one's count in 64 bits), short at the source's end; flags are EINVAL",
        arguments: [CacheMode.direct, .writeback])
    func copies(_ cache: CacheMode) throws {
        let h = try Harness(cache: cache)
        h.initialize()
        let src = h.create("src")
        let dst = h.create("dst")
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        #expect(h.write(src.fh, nodeid: src.nodeid, data, at: 0).error == 0)
        let wide = copy(h, .copyFileRange64, from: src, at: 1000, to: dst, at: 5, 4000)
        #expect(wide.error == 0 && wide.payload.count == 8 && wide.load(UInt64.self) == 4000, "\(wide.error) \(wide.payload.count)")
        let old = copy(h, .copyFileRange, from: src, at: 9000, to: dst, at: 4005, 5000)
        #expect(old.error == 0 && old.load(fuse_write_out.self).size == 1000, "short at the source's end")
        var r = fuse_read_in()
        r.fh = dst.fh
        r.size = 8192
        r.read_flags = ProtocolFlags.readLockOwner
        let back = h.call(.read, nodeid: dst.nodeid, bytes(of: r)).payload
        #expect(back == [0, 0, 0, 0, 0] + Array(data[1000..<5000]) + Array(data[9000..<10_000]))
        #expect(copy(h, .copyFileRange64, from: src, at: 20_000, to: dst, at: 0, 10).load(UInt64.self) == 0, "past the end: 0")
        #expect(copy(h, .copyFileRange64, from: src, at: 0, to: dst, at: 0, 10, flags: 1).error == -Errno.invalidArgument.rawValue)
        #expect(h.server.stats.snapshot().enosys == 0, "no ENOSYS")
    }
}
