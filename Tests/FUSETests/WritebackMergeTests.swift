// Counterpart: none in the kernel; the daemon's three-way merge of the kernel's writeback of
// a page that a direct write reached after the kernel had read it (WritebackMerge.swift),
// driven through the server with byte buffers, no mount.

import CFUSE
import FUSE
import IOMapBase
import Testing
import Volume

@Suite("FUSE server: the writeback merge of cache=direct")
struct WritebackMergeTests {
    /// A read(2)'s READ (with a lock owner: it fills no kernel page).
    func directRead(_ h: Harness, _ fh: UInt64, _ node: UInt64, _ size: UInt32, at: UInt64) -> [UInt8] {
        var r = fuse_read_in()
        r.fh = fh
        r.offset = at
        r.size = size
        r.read_flags = ProtocolFlags.readLockOwner
        return h.call(.read, nodeid: node, bytes(of: r)).payload
    }

    @Test(
        "a page the kernel read before a pwrite, written back with a store: the pwrite's bytes kept, the store's taken; cache=writeback's plain writeback is the canary",
        arguments: [CacheMode.direct, .writeback])
    func pwriteSurvivesStaleWriteback(_ cache: CacheMode) throws {
        let h = try Harness(cache: cache)
        h.initialize()
        let (node, fh) = h.create("m")
        #expect(h.write(fh, nodeid: node, [UInt8](repeating: 0x11, count: 8192), at: 0).error == 0)
        // A store's fault: the kernel reads page 0 into its cache (no lock owner).
        let page = h.read(fh, nodeid: node, size: 4096, at: 0).payload
        #expect(page.count == 4096)
        // The pwrite, after that read (the window the kernel leaves open).
        #expect(h.write(fh, nodeid: node, [UInt8](repeating: 0x22, count: 100), at: 1000).error == 0)
        // The kernel's copy: what it read, and the store at 3000; then its writeback.
        var dirty = page
        dirty.replaceSubrange(3000..<3008, with: [UInt8](repeating: 0x33, count: 8))
        let wb = h.write(fh, nodeid: node, dirty, at: 0, flags: ProtocolFlags.writeCache)
        #expect(wb.error == 0 && wb.load(fuse_write_out.self).size == 4096, "the whole writeback is acknowledged")
        let back = directRead(h, fh, node, 4096, at: 0)
        let pwriteKept = back[1000..<1100].allSatisfy { $0 == 0x22 }
        #expect(back[3000..<3008].allSatisfy { $0 == 0x33 }, "the store is written in either mode")
        #expect(back[0..<1000].allSatisfy { $0 == 0x11 } && back[1100..<3000].allSatisfy { $0 == 0x11 })
        guard cache == .direct else {
            #expect(!pwriteKept, "canary: a plain writeback puts the stale bytes back over the pwrite")
            return
        }
        #expect(pwriteKept, "the pwrite's bytes were overwritten by the kernel's stale copy")
        #expect(h.server.invalidationsQueued == 1, "the stale page is to be dropped from the kernel's cache")
        // The kernel's page is clean now and still stale where the pwrite wrote; another store
        // and writeback of it must keep the pwrite again.
        dirty[3500] = 0x44
        _ = h.write(fh, nodeid: node, dirty, at: 0, flags: ProtocolFlags.writeCache)
        let again = directRead(h, fh, node, 4096, at: 0)
        #expect(again[1000..<1100].allSatisfy { $0 == 0x22 } && again[3500] == 0x44)
        // A new fault's read gives the kernel the daemon's bytes: the page's writeback is
        // then taken whole, a store over the pwrite's bytes included.
        var fresh = h.read(fh, nodeid: node, size: 4096, at: 0).payload
        fresh.replaceSubrange(1000..<1010, with: [UInt8](repeating: 0x55, count: 10))
        _ = h.write(fh, nodeid: node, fresh, at: 0, flags: ProtocolFlags.writeCache)
        #expect(directRead(h, fh, node, 4096, at: 0) == fresh)
        #expect(h.server.invalidationsQueued == 2, "a whole writeback leaves nothing stale")
        #expect(h.server.mergePagesHeld == 0, "the fresh read ended page 0's base")
        // A pwrite into a page the kernel never read takes no base; into page 0 it does.
        _ = h.write(fh, nodeid: node, [9], at: 6000)
        #expect(h.server.mergePagesHeld == 0, "page 1 was never in the kernel's cache")
        _ = h.write(fh, nodeid: node, [7], at: 10)
        #expect(h.server.mergePagesHeld == 1)
        var rel = fuse_release_in()
        rel.fh = fh
        _ = h.call(.release, nodeid: node, bytes(of: rel))
        #expect(h.server.mergePagesHeld == 0, "the last release ends the bases")
    }
}
