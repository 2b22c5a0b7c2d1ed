// Counterpart: none in the kernel, which needs none: a local file system's direct write and
// its page cache share one set of pages. Here they are two: the daemon's engine, and the
// kernel's copy of the pages a mapping faulted in (fuse_direct_write_iter, fuse_writepages).
//
// Why. In cache=direct mode a pwrite is a direct WRITE. Before sending it the kernel writes
// back and drops its cached pages of the range, but it holds nothing across that and the
// WRITE, so a store through a mapping in between faults the page in again, with the bytes
// from before the pwrite. When that page is written back (a whole-page WRITE with
// FUSE_WRITE_CACHE), its stale bytes would land over the pwrite's: `iomap race --dir` lost
// 108-184 pwrite slots per run so. The daemon cannot tell a stale byte from a stored one by
// the page alone, but it can by what it served: for each such page it keeps the base, the
// bytes the kernel's copy began from (the page's bytes just before the first direct write
// into it since the kernel last read it), and merges a writeback three ways: a byte the
// kernel's page still holds as in the base is stale (the daemon's own, written since, wins);
// a byte that differs was stored through the mapping and is written. After a writeback the
// kernel's page is clean and holds what it sent, so that becomes the base; a page-cache READ
// of the page (the kernel's copy is the daemon's again) or the inode's last release ends it.
// A store that writes a byte's base value again over a pwrite's is the one case the merge
// gets wrong (it keeps the pwrite's byte): nothing in the page tells it from stale.
//
// Reads that fill the kernel's page cache, direct writes and writebacks of one inode run
// under the inode's gate, so a base is taken before the write it guards and a READ's bytes
// are all before or all after it. The engine's write takes the inode's lock exclusively
// anyway, so the gate costs direct writers nothing; it is taken only in cache=direct mode.

import IOMapBase
import Synchronization
import Volume

/// The bases of one inode's pages, under its gate.
final class InodeBases: Sendable {
    /// Page index → the bytes the kernel's copy of that page began from.
    let gate = Mutex<[Int: [UInt8]]>([:])
}

/// The pages of every inode that need a three-way merge at writeback.
final class WritebackMerge: Sendable {
    let pageSize: Int
    let table = Mutex<[InodeNumber: InodeBases]>([:])

    init(pageSize: Int = 4096) { self.pageSize = pageSize }

    func bases(_ ino: InodeNumber) -> InodeBases {
        table.withLock { t in
            if let b = t[ino] { return b }
            let b = InodeBases()
            t[ino] = b
            return b
        }
    }

    /// The inode's last open went: no page of it is cached by the kernel any more.
    func released(_ ino: InodeNumber) { table.withLock { $0[ino] = nil } }

    /// Base pages held, over all inodes (for the tests).
    var pagesHeld: Int { table.withLock { t in t.values.reduce(0) { $0 + $1.gate.withLock { $0.count } } } }

    /// The pages `range` touches.
    func pages(_ range: Range<Int>) -> Range<Int> {
        range.isEmpty ? 0..<0 : range.lowerBound / pageSize..<(range.upperBound + pageSize - 1) / pageSize
    }

    /// A READ that fills the kernel's page cache: `read` runs under the gate, and the pages it
    /// covers whole lose their bases (the kernel's copy is the daemon's now).
    func pageCacheRead<T>(_ ino: InodeNumber, _ range: Range<Int>, _ read: () throws(Errno) -> T) throws(Errno) -> T {
        try bases(ino).gate.withLock { (b: inout [Int: [UInt8]]) throws(Errno) -> T in
            let result = try read()
            for p in pages(range) where p * pageSize >= range.lowerBound && (p + 1) * pageSize <= range.upperBound {
                b[p] = nil
            }
            return result
        }
    }

    /// A direct WRITE of `range`: first, each page of it the kernel may hold (`cached`) and
    /// without a base gets one, its bytes now (`readPage(offset, count)`, short at EOF).
    func directWrite<T>(
        _ ino: InodeNumber, _ range: Range<Int>, cached: [Range<Int>], readPage: (Int) throws(Errno) -> [UInt8],
        _ write: () throws(Errno) -> T
    ) throws(Errno) -> T {
        try bases(ino).gate.withLock { (b: inout [Int: [UInt8]]) throws(Errno) -> T in
            for p in pages(range) where b[p] == nil {
                let page = p * pageSize..<(p + 1) * pageSize
                guard cached.contains(where: { $0.overlaps(page) }) else { continue }
                b[p] = try readPage(page.lowerBound)
            }
            return try write()
        }
    }

    /// A writeback WRITE of `data` at `offset`: the runs to write, each an offset into the file
    /// and a range of `data`. Bytes of a page with a base that still equal the base are
    /// left out; then the page's base becomes what the kernel sent.
    func writebackRuns(_ b: inout [Int: [UInt8]], offset: Int, _ data: UnsafeRawBufferPointer) -> [(at: Int, bytes: Range<Int>)] {
        if b.isEmpty { return [(offset, 0..<data.count)] }
        var runs: [(at: Int, bytes: Range<Int>)] = []
        var start: Int?
        func close(_ i: Int) {
            if let s = start, s < i { runs.append((offset + s, s..<i)) }
            start = nil
        }
        for p in pages(offset..<offset + data.count) {
            let lo = max(p * pageSize, offset) - offset
            let hi = min((p + 1) * pageSize, offset + data.count) - offset
            guard var base = b[p] else {
                if start == nil { start = lo }
                continue
            }
            for i in lo..<hi {
                let inBase = offset + i - p * pageSize
                let stale = inBase < base.count && base[inBase] == data[i]
                if stale { close(i) } else if start == nil { start = i }
            }
            // The kernel's clean copy now holds what it sent.
            if base.count < hi + offset - p * pageSize { base += [UInt8](repeating: 0, count: hi + offset - p * pageSize - base.count) }
            for i in lo..<hi { base[offset + i - p * pageSize] = data[i] }
            b[p] = base
        }
        close(data.count)
        return runs
    }
}
