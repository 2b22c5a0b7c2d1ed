// Counterpart: fs/fuse/dev.c's fuse_dev_do_read (a request as the kernel copies it to the
// daemon: struct fuse_in_header, then the opcode's arguments) and the in-argument layouts of
// fs/fuse/dir.c and fs/fuse/file.c (fuse_lookup_name, fuse_mknod, fuse_symlink,
// fuse_rename2, fuse_do_setattr, fuse_send_open, fuse_read_args_fill, fuse_write_args_fill,
// fuse_file_fallocate, fuse_lseek, ...).
//
// Decoding is a pure function from bytes to a typed request, separate from serving it, so
// that every opcode's decoding can be tested on hand-built buffers without a mount. Every
// read is bounds-checked: a request shorter than its opcode's arguments, a name without its
// terminating NUL, with a '/' or a NUL inside, or a WRITE whose payload is not the size it
// says decodes to an errno for the reply, never to a crash. The kernel does not send such
// requests; the checks are there because a daemon that trusts its input dies of the first
// bug on either side, and a dead daemon takes the mount with it.

import CFUSE
import IOMapBase
import PageCache

/// The part of every request that says what it is and who sent it (fuse_in_header).
public struct RequestHeader: Hashable, Sendable {
    public var length: UInt32
    public var opcode: UInt32
    public var unique: UInt64
    public var nodeid: UInt64
    public var uid: UInt32
    public var gid: UInt32
    public var pid: UInt32
    public var extensionLength: UInt16

    public static let size = MemoryLayout<fuse_in_header>.size
}

/// The longest name a directory entry may have (NAME_MAX).
public let maxNameLength = 255

/// A cursor over a request's arguments. Every read is checked against the end: past it is
/// EINVAL, which the request is answered with.
struct ArgumentReader {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    /// A fixed-size argument struct, copied out (the buffer need not be aligned for it).
    mutating func read<T: BitwiseCopyable>(_: T.Type) throws(Errno) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw .invalidArgument }
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += size
        return value
    }

    mutating func u32() throws(Errno) -> UInt32 { try read(UInt32.self) }

    /// A NUL-terminated byte string (a symlink's target, an xattr's name), without its NUL.
    mutating func cString() throws(Errno) -> [UInt8] {
        guard let end = bytes[offset...].firstIndex(of: 0) else { throw .invalidArgument }
        let s = Array(bytes[offset..<end])
        offset = end + 1
        return s
    }

    /// A directory entry's name: NUL-terminated, not empty, no '/', at most NAME_MAX bytes.
    mutating func name() throws(Errno) -> [UInt8] {
        let s = try cString()
        try checkName(s)
        return s
    }

    /// The rest of the arguments, all of it.
    mutating func rest() -> UnsafeRawBufferPointer {
        defer { offset = bytes.count }
        return UnsafeRawBufferPointer(rebasing: bytes[offset...])
    }

    /// Nothing may follow the last argument: trailing bytes mean the request was not what
    /// its opcode says (a name with a NUL inside reads as a name and garbage).
    func end() throws(Errno) { if remaining != 0 { throw .invalidArgument } }
}

/// A name a request may carry: EINVAL for an empty one or one with a '/', ENAMETOOLONG past
/// NAME_MAX. (A NUL cannot be inside: it ends the name, and what follows is refused by the
/// opcode's `end()` check.)
func checkName(_ name: [UInt8]) throws(Errno) {
    if name.isEmpty || name.contains(0x2F) { throw .invalidArgument }
    if name.count > maxNameLength { throw .fileNameTooLong }
}

/// What a SETATTR asks (fuse_setattr_in with its `valid` bits decoded).
public struct SetattrRequest: Hashable, Sendable {
    public var fh: UInt64?
    public var size: UInt64?
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    /// nil: leave; .now: UTIME_NOW; else the time.
    public var atime: TimeArgument?
    public var mtime: TimeArgument?
    public var killSUIDGID: Bool

    public enum TimeArgument: Hashable, Sendable {
        case now
        case set(seconds: Int64, nanoseconds: UInt32)
    }
}

/// A decoded request: its opcode's arguments, typed. A WRITE's data is a view into the read
/// buffer or the receive block, valid while the request is being served.
public enum Operation {
    case lookup(name: [UInt8])
    case forget(nlookup: UInt64)
    case batchForget([(nodeid: UInt64, nlookup: UInt64)])
    case getattr(fh: UInt64?)
    case setattr(SetattrRequest)
    case readlink
    case symlink(name: [UInt8], target: [UInt8])
    case mknod(name: [UInt8], mode: UInt32, rdev: UInt32)
    case mkdir(name: [UInt8], mode: UInt32)
    case unlink(name: [UInt8])
    case rmdir(name: [UInt8])
    case rename(newDir: UInt64, old: [UInt8], new: [UInt8], flags: UInt32)
    case link(oldNode: UInt64, name: [UInt8])
    case open(flags: UInt32)
    case read(fh: UInt64, offset: UInt64, size: UInt32, readFlags: UInt32)
    /// `lender`: the receive block `data` lies in, which a new folio may take instead of a
    /// copy (only a WRITE read in two pieces has one).
    case write(fh: UInt64, offset: UInt64, data: UnsafeRawBufferPointer, writeFlags: UInt32, lender: ReceiveBlock?)
    case statfs
    case release(fh: UInt64)
    case fsync(fh: UInt64, datasync: Bool)
    case setxattr(name: [UInt8], value: [UInt8], flags: UInt32)
    case getxattr(name: [UInt8], size: UInt32)
    case listxattr(size: UInt32)
    case removexattr(name: [UInt8])
    case flush(fh: UInt64)
    case initialize(major: UInt32, minor: UInt32, maxReadahead: UInt32, flags: InitFlags)
    case opendir(flags: UInt32)
    case readdir(fh: UInt64, offset: UInt64, size: UInt32, plus: Bool)
    case releasedir(fh: UInt64)
    case fsyncdir(fh: UInt64, datasync: Bool)
    case access(mask: UInt32)
    case create(name: [UInt8], flags: UInt32, mode: UInt32)
    case interrupt(unique: UInt64)
    case destroy
    case fallocate(fh: UInt64, offset: UInt64, length: UInt64, mode: UInt32)
    case lseek(fh: UInt64, offset: UInt64, whence: UInt32)
    /// COPY_FILE_RANGE (a 32-bit count in the reply) or COPY_FILE_RANGE_64 (`wide`: a 64-bit
    /// one); the node is the source, `nodeOut` the destination.
    case copyFileRange(
        fhIn: UInt64, offIn: UInt64, nodeOut: UInt64, fhOut: UInt64, offOut: UInt64, length: UInt64, flags: UInt64, wide: Bool)
    case syncfs
    /// FUSE_IOCTL: answered ENOTTY, as by a file system without ioctls (an ENOSYS would not
    /// stop the kernel sending one for every isatty() of a file).
    case ioctl
    /// An opcode this daemon does not serve (answered ENOSYS) or does not know.
    case unsupported(opcode: UInt32)
}

/// A whole request: header and arguments.
public struct Request {
    public var header: RequestHeader
    public var operation: Operation
}

/// Why a request could not be decoded.
public enum RequestDecodeError: Error, Equatable {
    /// Not even a header: there is no `unique` to answer, so nothing can be answered.
    case noHeader
    /// A header, but arguments that do not decode: answered with the errno.
    case badArguments(RequestHeader, Errno)
}

extension Request {
    /// Decodes one request as read from /dev/fuse.
    public static func decode(_ bytes: UnsafeRawBufferPointer) throws(RequestDecodeError) -> Request {
        guard bytes.count >= RequestHeader.size else { throw .noHeader }
        let h = bytes.loadUnaligned(as: fuse_in_header.self)
        let header = RequestHeader(
            length: h.len, opcode: h.opcode, unique: h.unique, nodeid: h.nodeid, uid: h.uid, gid: h.gid, pid: h.pid,
            extensionLength: h.total_extlen)
        // The length must be what was read; extensions (security context, supplementary
        // groups: capabilities this daemon does not ask for) follow the arguments and are
        // not part of them.
        let extensions = Int(h.total_extlen) * 8
        guard Int(h.len) == bytes.count, Int(h.len) - extensions >= RequestHeader.size else {
            throw .badArguments(header, .invalidArgument)
        }
        let args = UnsafeRawBufferPointer(rebasing: bytes[RequestHeader.size..<Int(h.len) - extensions])
        do throws(Errno) {
            var r = ArgumentReader(args)
            let op = try decodeOperation(h.opcode, &r)
            return Request(header: header, operation: op)
        } catch {
            throw .badArguments(header, error)
        }
    }

    /// The headers and arguments of a request a WRITE takes before its data: what a request
    /// thread reads into its own buffer, the data going straight into a receive block.
    public static let writeHeadSize = RequestHeader.size + MemoryLayout<fuse_write_in>.size

    /// Decodes a WRITE read in two pieces: `head` holds its header and arguments
    /// (`writeHeadSize` bytes), `payload` its data, and nothing follows (no extensions);
    /// `lender` is the receive block `payload` lies in.
    public static func decodeWrite(
        head: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer, lender: ReceiveBlock? = nil
    ) throws(RequestDecodeError) -> Request {
        guard head.count >= RequestHeader.size else { throw .noHeader }
        let h = head.loadUnaligned(as: fuse_in_header.self)
        let header = RequestHeader(
            length: h.len, opcode: h.opcode, unique: h.unique, nodeid: h.nodeid, uid: h.uid, gid: h.gid, pid: h.pid,
            extensionLength: h.total_extlen)
        guard h.opcode == Opcode.write.rawValue, h.total_extlen == 0, head.count == writeHeadSize,
            Int(h.len) == head.count + payload.count
        else { throw .badArguments(header, .invalidArgument) }
        let a = head.loadUnaligned(fromByteOffset: RequestHeader.size, as: fuse_write_in.self)
        guard Int(a.size) == payload.count else { throw .badArguments(header, .invalidArgument) }
        return Request(
            header: header, operation: .write(fh: a.fh, offset: a.offset, data: payload, writeFlags: a.write_flags, lender: lender))
    }

    static func decodeOperation(_ opcode: UInt32, _ r: inout ArgumentReader) throws(Errno) -> Operation {
        guard let op = Opcode(rawValue: opcode) else { return .unsupported(opcode: opcode) }
        switch op {
        case .lookup, .unlink, .rmdir, .removexattr, .forget, .batchForget, .readlink, .statfs, .destroy, .syncfs,
            .interrupt:
            return try decodeSimple(op, &r)
        case .getattr, .setattr, .open, .opendir, .read, .write, .release, .releasedir, .fsync, .fsyncdir, .flush,
            .readdir, .readdirplus, .fallocate, .lseek:
            return try decodeFileOperation(op, &r)
        case .copyFileRange, .copyFileRange64:
            let a = try r.read(fuse_copy_file_range_in.self)
            return .copyFileRange(
                fhIn: a.fh_in, offIn: a.off_in, nodeOut: a.nodeid_out, fhOut: a.fh_out, offOut: a.off_out, length: a.len, flags: a.flags,
                wide: op == .copyFileRange64)
        case .symlink, .mknod, .mkdir, .rename, .rename2, .link, .create, .setxattr, .getxattr, .listxattr, .access,
            .initialize:
            return try decodeNamespaceOperation(op, &r)
        case .ioctl:
            return .ioctl
        default:
            return .unsupported(opcode: opcode)
        }
    }

    /// Opcodes whose arguments are a name, a count, or nothing.
    static func decodeSimple(_ op: Opcode, _ r: inout ArgumentReader) throws(Errno) -> Operation {
        switch op {
        case .lookup, .unlink, .rmdir:
            let name = try r.name()
            try r.end()
            return op == .lookup ? .lookup(name: name) : op == .unlink ? .unlink(name: name) : .rmdir(name: name)
        case .removexattr:
            let name = try r.cString()
            try r.end()
            return .removexattr(name: name)
        case .forget:
            return .forget(nlookup: try r.read(fuse_forget_in.self).nlookup)
        case .batchForget:
            let count = Int(try r.read(fuse_batch_forget_in.self).count)
            // Each entry is 16 bytes: a count past what the buffer holds is refused before
            // anything is allocated for it.
            guard count <= r.remaining / MemoryLayout<fuse_forget_one>.size else { throw .invalidArgument }
            var items: [(nodeid: UInt64, nlookup: UInt64)] = []
            items.reserveCapacity(count)
            for _ in 0..<count {
                let one = try r.read(fuse_forget_one.self)
                items.append((one.nodeid, one.nlookup))
            }
            return .batchForget(items)
        case .interrupt:
            return .interrupt(unique: try r.read(fuse_interrupt_in.self).unique)
        case .readlink: return .readlink
        case .statfs: return .statfs
        case .destroy: return .destroy
        default: return .syncfs
        }
    }

    /// Opcodes on an open file or directory (and getattr/setattr, which may name one).
    static func decodeFileOperation(_ op: Opcode, _ r: inout ArgumentReader) throws(Errno) -> Operation {
        switch op {
        case .getattr:
            let a = try r.read(fuse_getattr_in.self)
            return .getattr(fh: a.getattr_flags & ProtocolFlags.getattrFH != 0 ? a.fh : nil)
        case .setattr:
            return .setattr(decodeSetattr(try r.read(fuse_setattr_in.self)))
        case .open, .opendir:
            let a = try r.read(fuse_open_in.self)
            return op == .open ? .open(flags: a.flags) : .opendir(flags: a.flags)
        case .read, .readdir, .readdirplus:
            let a = try r.read(fuse_read_in.self)
            if op == .read { return .read(fh: a.fh, offset: a.offset, size: a.size, readFlags: a.read_flags) }
            return .readdir(fh: a.fh, offset: a.offset, size: a.size, plus: op == .readdirplus)
        case .write:
            let a = try r.read(fuse_write_in.self)
            guard r.remaining == Int(a.size) else { throw .invalidArgument }
            return .write(fh: a.fh, offset: a.offset, data: r.rest(), writeFlags: a.write_flags, lender: nil)
        case .release, .releasedir:
            let a = try r.read(fuse_release_in.self)
            return op == .release ? .release(fh: a.fh) : .releasedir(fh: a.fh)
        case .fsync, .fsyncdir:
            let a = try r.read(fuse_fsync_in.self)
            let datasync = a.fsync_flags & ProtocolFlags.fsyncDatasync != 0
            return op == .fsync ? .fsync(fh: a.fh, datasync: datasync) : .fsyncdir(fh: a.fh, datasync: datasync)
        case .flush:
            return .flush(fh: try r.read(fuse_flush_in.self).fh)
        case .fallocate:
            let a = try r.read(fuse_fallocate_in.self)
            return .fallocate(fh: a.fh, offset: a.offset, length: a.length, mode: a.mode)
        default:
            let a = try r.read(fuse_lseek_in.self)
            return .lseek(fh: a.fh, offset: a.offset, whence: a.whence)
        }
    }

    static func decodeSetattr(_ a: fuse_setattr_in) -> SetattrRequest {
        let v = a.valid
        func time(_ bit: UInt32, _ nowBit: UInt32, _ s: UInt64, _ ns: UInt32) -> SetattrRequest.TimeArgument? {
            if v & nowBit != 0 { return .now }
            guard v & bit != 0 else { return nil }
            return .set(seconds: Int64(bitPattern: s), nanoseconds: min(ns, 999_999_999))
        }
        return SetattrRequest(
            fh: v & SetattrValid.fh != 0 ? a.fh : nil,
            size: v & SetattrValid.size != 0 ? a.size : nil,
            mode: v & SetattrValid.mode != 0 ? a.mode : nil,
            uid: v & SetattrValid.uid != 0 ? a.uid : nil,
            gid: v & SetattrValid.gid != 0 ? a.gid : nil,
            atime: time(SetattrValid.atime, SetattrValid.atimeNow, a.atime, a.atimensec),
            mtime: time(SetattrValid.mtime, SetattrValid.mtimeNow, a.mtime, a.mtimensec),
            killSUIDGID: v & SetattrValid.killSUIDGID != 0)
    }

    /// Opcodes that make names, and the rest with a struct and names.
    static func decodeNamespaceOperation(_ op: Opcode, _ r: inout ArgumentReader) throws(Errno) -> Operation {
        switch op {
        case .symlink:
            let name = try r.name()
            let target = try r.cString()
            try r.end()
            return .symlink(name: name, target: target)
        case .mknod:
            let a = try r.read(fuse_mknod_in.self)
            let name = try r.name()
            try r.end()
            return .mknod(name: name, mode: a.mode, rdev: a.rdev)
        case .mkdir:
            let a = try r.read(fuse_mkdir_in.self)
            let name = try r.name()
            try r.end()
            return .mkdir(name: name, mode: a.mode)
        case .rename, .rename2:
            let newDir: UInt64
            var flags: UInt32 = 0
            if op == .rename {
                newDir = try r.read(fuse_rename_in.self).newdir
            } else {
                let a = try r.read(fuse_rename2_in.self)
                newDir = a.newdir
                flags = a.flags
            }
            let old = try r.name()
            let new = try r.name()
            try r.end()
            return .rename(newDir: newDir, old: old, new: new, flags: flags)
        case .link:
            let a = try r.read(fuse_link_in.self)
            let name = try r.name()
            try r.end()
            return .link(oldNode: a.oldnodeid, name: name)
        case .create:
            let a = try r.read(fuse_create_in.self)
            let name = try r.name()
            try r.end()
            return .create(name: name, flags: a.flags, mode: a.mode)
        default:
            return try decodeAttributeOperation(op, &r)
        }
    }

    /// xattrs, access and INIT.
    static func decodeAttributeOperation(_ op: Opcode, _ r: inout ArgumentReader) throws(Errno) -> Operation {
        switch op {
        case .setxattr:
            // Without FUSE_SETXATTR_EXT (not asked for) the struct is its 8-byte compat form:
            // size and flags.
            let size = try r.u32()
            let flags = try r.u32()
            let name = try r.cString()
            guard r.remaining == Int(size) else { throw .invalidArgument }
            return .setxattr(name: name, value: Array(r.rest()), flags: flags)
        case .getxattr:
            let a = try r.read(fuse_getxattr_in.self)
            let name = try r.cString()
            try r.end()
            return .getxattr(name: name, size: a.size)
        case .listxattr:
            return .listxattr(size: try r.read(fuse_getxattr_in.self).size)
        case .access:
            return .access(mask: try r.read(fuse_access_in.self).mask)
        default:
            // INIT: 16 bytes before 7.36, 64 after; flags2 only with FUSE_INIT_EXT.
            let major = try r.u32()
            let minor = try r.u32()
            let readahead = try r.u32()
            let low = try r.u32()
            var flags = UInt64(low)
            if low & UInt32(truncatingIfNeeded: InitFlags.initExt.rawValue) != 0, r.remaining >= 4 {
                flags |= UInt64(try r.u32()) << 32
            }
            return .initialize(major: major, minor: minor, maxReadahead: readahead, flags: InitFlags(rawValue: flags))
        }
    }
}
