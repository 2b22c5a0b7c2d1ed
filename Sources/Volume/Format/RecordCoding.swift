// Counterpart: the log item formats of fs/xfs/libxfs/xfs_log_format.h (xfs_inode_log_format
// with its xfs_log_dinode, xfs_efi_log_format / xfs_efd_log_format, the buffer items that
// carry directory and attribute blocks), here one encoding per logical LogRecord case.
//
// A record is a type byte, the length of its body, then the body: fixed-size fields, and
// byte strings each preceded by their length (docs/FORMAT.md "Log records"). The length lets
// the reader check that it consumed exactly what the writer wrote, so a reader and a writer
// that disagree on a case fail loudly instead of reading the next record out of step.
// Inode attributes and extents have one encoding, shared with the snapshot's blocks.

/// The type byte of each record.
enum RecordType: UInt8, CaseIterable {
    case createInode = 1
    case freeInode = 2
    case setAttributes = 3
    case setSize = 4
    case addEntry = 5
    case removeEntry = 6
    case rename = 7
    case allocateUnwritten = 8
    case convertToWritten = 9
    case unmapAndIntendFree = 10
    case freeDone = 11
    case setXattr = 12
    case removeXattr = 13
    case addOrphan = 14
    case removeOrphan = 15
}

/// Size of an encoded InodeAttributes.
let attributesSize = 84
/// Size of an encoded DiskExtent.
let extentSize = 25
/// Type byte and body length.
let recordHeaderSize = 5

extension ByteWriter {
    mutating func attributes(_ a: InodeAttributes) {
        u8(a.type.rawValue)
        u8(0)
        u16(a.permissions)
        u32(a.uid)
        u32(a.gid)
        u32(a.nlink)
        i64(a.size)
        u64(a.rdev)
        // One call per time, not a loop over an array of them: an array literal here is an
        // allocation for every inode record a checkpoint or a snapshot encodes.
        timestamp(a.atime)
        timestamp(a.mtime)
        timestamp(a.ctime)
        timestamp(a.btime)
        u32(a.generation)
    }

    mutating func timestamp(_ t: Timestamp) {
        i64(t.seconds)
        u32(t.nanoseconds)
    }

    mutating func extent(_ e: DiskExtent) {
        i64(e.fileBlock)
        i64(e.diskBlock)
        i64(e.count)
        u8(e.unwritten ? 1 : 0)
    }

    mutating func inode(_ i: InodeNumber) { u64(i.rawValue) }

    /// A byte string with a 4-byte length.
    mutating func string(_ s: [UInt8]) {
        u32(UInt32(s.count))
        raw(s)
    }

    /// A directory-entry name, with a 1-byte length (names are at most 255 bytes).
    mutating func name(_ n: FileName) {
        precondition(n.bytes.count <= FileName.maxLength, "a file name is at most 255 bytes")
        u8(UInt8(n.bytes.count))
        raw(n.bytes)
    }
}

extension FieldReader {
    mutating func attributes() throws(FormatError) -> InodeAttributes {
        // The fixed bytes checked for length once and the fields loaded in place: most
        // records replay decodes carry attributes, and a bounds-checked read per field was
        // the larger part of decoding them.
        let at = try fixed(attributesSize)
        let b = base.bytes
        let typeByte = b[at]
        guard let type = FileType(rawValue: typeByte) else { throw malformed("inode type \(typeByte) is no file type", at: at) }
        guard b[at + 1] == 0 else { throw malformed("reserved bytes are not zero", at: at + 1) }
        let permissions = b.le(UInt16.self, at: at + 2)
        guard permissions <= 0o7777 else { throw malformed("permissions 0o\(String(permissions, radix: 8)) have type bits", at: at) }
        var a = InodeAttributes(type: type, permissions: permissions)
        a.uid = b.le(UInt32.self, at: at + 4)
        a.gid = b.le(UInt32.self, at: at + 8)
        a.nlink = b.le(UInt32.self, at: at + 12)
        a.size = b.le(Int64.self, at: at + 16)
        a.rdev = b.le(UInt64.self, at: at + 24)
        a.atime = try timestamp(b, at: at + 32)
        a.mtime = try timestamp(b, at: at + 44)
        a.ctime = try timestamp(b, at: at + 56)
        a.btime = try timestamp(b, at: at + 68)
        a.generation = b.le(UInt32.self, at: at + 80)
        return a
    }

    /// The timestamp at `at` of `b`, whose 12 bytes the caller has checked are there.
    func timestamp(_ b: [UInt8], at: Int) throws(FormatError) -> Timestamp {
        let ns = b.le(UInt32.self, at: at + 8)
        guard ns < 1_000_000_000 else { throw malformed("timestamp has \(ns) nanoseconds", at: at) }
        return Timestamp(seconds: b.le(Int64.self, at: at), nanoseconds: ns)
    }

    mutating func extent() throws(FormatError) -> DiskExtent {
        let fileBlock = try i64()
        let diskBlock = try i64()
        let count = try i64()
        let unwritten = try bool("the unwritten flag")
        return DiskExtent(fileBlock: fileBlock, diskBlock: diskBlock, count: count, unwritten: unwritten)
    }

    mutating func inode() throws(FormatError) -> InodeNumber { InodeNumber(try u64()) }

    mutating func string() throws(FormatError) -> [UInt8] {
        let n = try u32()
        return try raw(Int(n))
    }

    mutating func name() throws(FormatError) -> FileName {
        let at = offset
        let n = try u8()
        let bytes = try raw(Int(n))
        do { return try FileName(validating: bytes) } catch { throw malformed("bad name: \(error)", at: at) }
    }

    mutating func optionalInode() throws(FormatError) -> InodeNumber? {
        try bool("a presence byte") ? try inode() : nil
    }

    mutating func optionalString() throws(FormatError) -> [UInt8]? {
        try bool("a presence byte") ? try string() : nil
    }
}

extension LogRecord {
    var type: RecordType {
        switch self {
        case .createInode: return .createInode
        case .freeInode: return .freeInode
        case .setAttributes: return .setAttributes
        case .setSize: return .setSize
        case .addEntry: return .addEntry
        case .removeEntry: return .removeEntry
        case .rename: return .rename
        case .allocateUnwritten: return .allocateUnwritten
        case .convertToWritten: return .convertToWritten
        case .unmapAndIntendFree: return .unmapAndIntendFree
        case .freeDone: return .freeDone
        case .setXattr: return .setXattr
        case .removeXattr: return .removeXattr
        case .addOrphan: return .addOrphan
        case .removeOrphan: return .removeOrphan
        }
    }

    /// Appends the record: type, body length, body.
    func encode(into w: inout ByteWriter) {
        w.u8(type.rawValue)
        let lengthAt = w.count
        w.u32(0)
        encodeBody(into: &w)
        w.patchU32(UInt32(w.count - lengthAt - 4), at: lengthAt)
    }

    /// The record's encoded bytes.
    public var encoded: [UInt8] {
        var w = ByteWriter(capacity: 128)
        encode(into: &w)
        return w.bytes
    }

    private func encodeBody(into w: inout ByteWriter) {
        switch self {
        case .createInode(let ino, let attrs, let parent, let target):
            w.inode(ino)
            w.attributes(attrs)
            w.bool(parent != nil)
            if let parent { w.inode(parent) }
            w.bool(target != nil)
            if let target { w.string(target) }
        case .freeInode(let i), .addOrphan(let i), .removeOrphan(let i): w.inode(i)
        case .setAttributes(let ino, let attrs):
            w.inode(ino)
            w.attributes(attrs)
        case .setSize(let ino, let size):
            w.inode(ino)
            w.i64(size)
        case .addEntry(let dir, let name, let target, let type, let cookie):
            w.inode(dir)
            w.name(name)
            w.inode(target)
            w.u8(type.rawValue)
            w.u64(cookie)
        case .removeEntry(let dir, let name):
            w.inode(dir)
            w.name(name)
        case .rename(let fromDir, let from, let toDir, let to, let exchange, let cookie):
            w.inode(fromDir)
            w.name(from)
            w.inode(toDir)
            w.name(to)
            w.bool(exchange)
            w.u64(cookie)
        case .allocateUnwritten(let ino, let e):
            w.inode(ino)
            w.extent(e)
        case .convertToWritten(let ino, let from, let to):
            w.inode(ino)
            w.i64(from)
            w.i64(to)
        case .unmapAndIntendFree(let ino, let from, let to, let id):
            w.inode(ino)
            w.i64(from)
            w.i64(to)
            w.u64(id)
        case .freeDone(let id): w.u64(id)
        case .setXattr(let ino, let name, let value):
            w.inode(ino)
            w.string(name)
            w.string(value)
        case .removeXattr(let ino, let name):
            w.inode(ino)
            w.string(name)
        }
    }

    /// Reads one record, checking that its body is exactly as long as it says.
    static func decode(from r: inout FieldReader) throws(FormatError) -> LogRecord {
        let start = r.offset
        let typeByte = try r.u8()
        guard let type = RecordType(rawValue: typeByte) else { throw r.malformed("unknown log record type \(typeByte)", at: start) }
        let length = Int(try r.u32())
        guard length <= r.remaining else { throw r.malformed("log record of \(length) bytes overruns the checkpoint", at: start) }
        let end = r.offset + length
        var body = FieldReader(ByteReader(r.base.bytes, from: r.offset, to: end), blame: r.blame)
        let record = try decodeBody(type, from: &body)
        guard body.isAtEnd else { throw r.malformed("\(type) record has \(body.remaining) bytes left over", at: start) }
        try r.skip(length)
        return record
    }

    private static func decodeBody(_ type: RecordType, from r: inout FieldReader) throws(FormatError) -> LogRecord {
        switch type {
        case .createInode:
            return .createInode(try r.inode(), try r.attributes(), parent: try r.optionalInode(), symlinkTarget: try r.optionalString())
        case .freeInode: return .freeInode(try r.inode())
        case .setAttributes: return .setAttributes(try r.inode(), try r.attributes())
        case .setSize: return .setSize(try r.inode(), try r.i64())
        case .addEntry:
            let dir = try r.inode()
            let name = try r.name()
            let target = try r.inode()
            let at = r.offset
            let t = try r.u8()
            guard let ft = FileType(rawValue: t) else { throw r.malformed("entry type \(t) is no file type", at: at) }
            return .addEntry(directory: dir, name: name, target: target, type: ft, cookie: try r.u64())
        case .removeEntry: return .removeEntry(directory: try r.inode(), name: try r.name())
        case .rename:
            return .rename(
                fromDirectory: try r.inode(), from: try r.name(), toDirectory: try r.inode(), to: try r.name(),
                exchange: try r.bool("the exchange flag"), cookie: try r.u64())
        case .allocateUnwritten: return .allocateUnwritten(try r.inode(), try r.extent())
        case .convertToWritten: return .convertToWritten(try r.inode(), fromBlock: try r.i64(), toBlock: try r.i64())
        case .unmapAndIntendFree:
            return .unmapAndIntendFree(try r.inode(), fromBlock: try r.i64(), toBlock: try r.i64(), intent: try r.u64())
        case .freeDone: return .freeDone(intent: try r.u64())
        case .setXattr: return .setXattr(try r.inode(), name: try r.string(), value: try r.string())
        case .removeXattr: return .removeXattr(try r.inode(), name: try r.string())
        case .addOrphan: return .addOrphan(try r.inode())
        case .removeOrphan: return .removeOrphan(try r.inode())
        }
    }
}

/// Decodes one record from `bytes` (the whole of them), for tools and tests; a checkpoint
/// decodes its records with decodeCheckpoint.
public func decodeLogRecord(_ bytes: [UInt8]) throws(FormatError) -> LogRecord {
    var r = FieldReader(ByteReader(bytes), kind: .log, address: 0)
    let record = try LogRecord.decode(from: &r)
    guard r.isAtEnd else { throw r.malformed("\(r.remaining) bytes after the record") }
    return record
}
