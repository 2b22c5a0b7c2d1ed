// Counterpart: fs/fuse/dev.c's fuse_dev_do_write (a reply as the kernel copies it in: struct
// fuse_out_header, then the opcode's out-arguments) and the out-argument layouts the kernel
// reads: fuse_fill_attr/fuse_change_attributes (fs/fuse/inode.c) for fuse_attr, fuse_dirent
// and fuse_direntplus as parse_dirfile/parse_dirplusfile (fs/fuse/readdir.c) walk them.
//
// One buffer per request thread, allocated once: the header's room first, then the payload,
// so that a reply, a READ's data included, leaves in one write(2) without a copy into a
// second buffer. Structures are the C header's, filled field by field, so their sizes are the
// kernel's (the unit tests compare them).

import CFUSE
import IOMapBase
import Volume

/// How long the kernel may trust a name or attributes before asking again. Every change to
/// the volume goes through this mount, and the kernel updates or drops what it cached for
/// each one, so the timeouts only bound how stale a reader in another mount namespace of
/// the same connection could be; one second is libfuse's default.
public struct CacheTimeouts: Sendable, Hashable {
    public var entrySeconds: UInt64 = 1
    public var attributeSeconds: UInt64 = 1
    public init() {}
}

/// A reply under construction, in memory owned by one request thread.
public final class ReplyBuffer {
    let storage: UnsafeMutableRawBufferPointer
    /// Payload bytes after the header.
    public private(set) var payloadCount = 0
    public static let headerSize = MemoryLayout<fuse_out_header>.size

    public init(capacity: Int) {
        storage = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 4096)
    }

    deinit { storage.deallocate() }

    /// Room left for payload.
    public var space: Int { storage.count - Self.headerSize - payloadCount }

    public func reset() { payloadCount = 0 }

    public func append<T: BitwiseCopyable>(_ value: T) {
        let size = MemoryLayout<T>.size
        precondition(size <= space, "reply payload overflows its buffer")
        withUnsafeBytes(of: value) { src in
            UnsafeMutableRawBufferPointer(rebasing: storage[Self.headerSize + payloadCount..<Self.headerSize + payloadCount + size])
                .copyMemory(from: src)
        }
        payloadCount += size
    }

    public func append(bytes: some Collection<UInt8>) {
        precondition(bytes.count <= space, "reply payload overflows its buffer")
        var at = Self.headerSize + payloadCount
        for b in bytes {
            storage[at] = b
            at += 1
        }
        payloadCount += bytes.count
    }

    public func appendZeros(_ count: Int) {
        precondition(count <= space, "reply payload overflows its buffer")
        let start = Self.headerSize + payloadCount
        UnsafeMutableRawBufferPointer(rebasing: storage[start..<start + count]).initializeMemory(as: UInt8.self, repeating: 0)
        payloadCount += count
    }

    /// Free payload space of at most `count` bytes to fill in place (a READ's data), then
    /// `commit` what was filled.
    public func reserve(_ count: Int) -> UnsafeMutableRawBufferPointer {
        let start = Self.headerSize + payloadCount
        return UnsafeMutableRawBufferPointer(rebasing: storage[start..<start + min(count, space)])
    }

    public func commit(_ count: Int) {
        precondition(count <= space)
        payloadCount += count
    }

    /// The whole message: the header filled in for `unique`, with `error` (0, or an errno
    /// the kernel gets negated) and the payload when there is no error.
    public func finish(unique: UInt64, error: Errno?) -> UnsafeRawBufferPointer {
        if error != nil { payloadCount = 0 }
        var h = fuse_out_header()
        h.len = UInt32(Self.headerSize + payloadCount)
        h.error = error.map { -$0.rawValue } ?? 0
        h.unique = unique
        withUnsafeBytes(of: h) { UnsafeMutableRawBufferPointer(rebasing: storage[0..<Self.headerSize]).copyMemory(from: $0) }
        return UnsafeRawBufferPointer(rebasing: storage[0..<Self.headerSize + payloadCount])
    }

    /// The payload so far (for tests).
    public var payload: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: storage[Self.headerSize..<Self.headerSize + payloadCount])
    }
}

/// The encoders: volume values as the kernel's structures.
public enum Encode {
    /// struct fuse_attr of an inode.
    public static func attr(_ st: VolumeStat, blockSize: Int) -> fuse_attr {
        var a = fuse_attr()
        let x = st.attributes
        a.ino = st.inode.rawValue
        a.size = UInt64(max(0, st.size))
        a.blocks = UInt64(max(0, st.blocks512))
        a.atime = UInt64(bitPattern: x.atime.seconds)
        a.mtime = UInt64(bitPattern: x.mtime.seconds)
        a.ctime = UInt64(bitPattern: x.ctime.seconds)
        a.atimensec = x.atime.nanoseconds
        a.mtimensec = x.mtime.nanoseconds
        a.ctimensec = x.ctime.nanoseconds
        a.mode = x.mode
        a.nlink = x.nlink
        a.uid = x.uid
        a.gid = x.gid
        // The volume keeps the user-space dev_t; its low 32 bits are the kernel's
        // new_encode_dev form for majors below 4096 and minors below 2^20, which is all a
        // 32-bit fuse_attr.rdev can carry.
        a.rdev = UInt32(truncatingIfNeeded: x.rdev)
        a.blksize = UInt32(blockSize)
        return a
    }

    /// struct fuse_entry_out: a name's inode, which the kernel then holds a lookup on.
    public static func entry(_ st: VolumeStat, blockSize: Int, timeouts: CacheTimeouts) -> fuse_entry_out {
        var e = fuse_entry_out()
        e.nodeid = st.inode.rawValue
        e.generation = UInt64(st.attributes.generation)
        e.entry_valid = timeouts.entrySeconds
        e.attr_valid = timeouts.attributeSeconds
        e.attr = attr(st, blockSize: blockSize)
        return e
    }

    public static func attrOut(_ st: VolumeStat, blockSize: Int, timeouts: CacheTimeouts) -> fuse_attr_out {
        var o = fuse_attr_out()
        o.attr_valid = timeouts.attributeSeconds
        o.attr = attr(st, blockSize: blockSize)
        return o
    }

    public static func open(fh: UInt64, flags: UInt32) -> fuse_open_out {
        var o = fuse_open_out()
        o.fh = fh
        o.open_flags = flags
        return o
    }

    public static func statfs(_ s: Volume.StatFS) -> fuse_statfs_out {
        var o = fuse_statfs_out()
        o.st.blocks = UInt64(s.blocks)
        o.st.bfree = UInt64(max(0, s.freeBlocks))
        o.st.bavail = UInt64(max(0, s.freeBlocks))
        o.st.files = UInt64(s.files)
        o.st.ffree = UInt64(max(0, s.freeFiles))
        o.st.bsize = UInt32(s.blockSize)
        o.st.namelen = UInt32(s.nameMax)
        o.st.frsize = UInt32(s.blockSize)
        return o
    }

    /// The size a directory entry takes in a READDIR reply: fuse_dirent and the name,
    /// padded to 8 bytes (FUSE_DIRENT_ALIGN).
    public static func direntSize(nameLength: Int) -> Int { align8(MemoryLayout<cfuse_dirent_head>.size + nameLength) }

    /// The same in a READDIRPLUS reply: fuse_entry_out before it.
    public static func direntplusSize(nameLength: Int) -> Int {
        align8(MemoryLayout<fuse_entry_out>.size + MemoryLayout<cfuse_dirent_head>.size + nameLength)
    }

    static func align8(_ n: Int) -> Int { (n + 7) & ~7 }

    /// Appends one fuse_dirent (its name and padding) to `reply`.
    public static func appendDirent(_ reply: ReplyBuffer, inode: UInt64, cookie: UInt64, type: UInt32, name: [UInt8]) {
        var d = cfuse_dirent_head()
        d.ino = inode
        d.off = cookie
        d.namelen = UInt32(name.count)
        d.type = type
        reply.append(d)
        reply.append(bytes: name)
        let pad = direntSize(nameLength: name.count) - MemoryLayout<cfuse_dirent_head>.size - name.count
        reply.appendZeros(pad)
    }
}
