// Building requests by hand, as the kernel lays them out, for the decoding and dispatch
// tests; and a volume in memory to serve them from.

import CFUSE
import ExtentFS
import FUSE
import IOMapBase
import Testing
import Volume

/// The bytes of a plain C struct.
func bytes<T: BitwiseCopyable>(of value: T) -> [UInt8] { withUnsafeBytes(of: value) { Array($0) } }

func le32(_ v: UInt32) -> [UInt8] { bytes(of: v.littleEndian) }
func le64(_ v: UInt64) -> [UInt8] { bytes(of: v.littleEndian) }

/// A name as a request carries it: the bytes and a NUL.
func cName(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }

/// A whole request: fuse_in_header (its length the whole message's), then `args`.
func request(
    _ opcode: Opcode, nodeid: UInt64 = 1, unique: UInt64 = 77, uid: UInt32 = 0, gid: UInt32 = 0, pid: UInt32 = 0, _ args: [UInt8] = []
) -> [UInt8] {
    rawRequest(opcode.rawValue, nodeid: nodeid, unique: unique, uid: uid, gid: gid, pid: pid, args)
}

func rawRequest(
    _ opcode: UInt32, nodeid: UInt64 = 1, unique: UInt64 = 77, uid: UInt32 = 0, gid: UInt32 = 0, pid: UInt32 = 0, _ args: [UInt8] = []
) -> [UInt8] {
    var h = fuse_in_header()
    h.len = UInt32(MemoryLayout<fuse_in_header>.size + args.count)
    h.opcode = opcode
    h.unique = unique
    h.nodeid = nodeid
    h.uid = uid
    h.gid = gid
    h.pid = pid
    return bytes(of: h) + args
}

func decode(_ message: [UInt8]) throws(RequestDecodeError) -> Request {
    try message.withUnsafeBytes { p in Result { () throws(RequestDecodeError) -> Request in try Request.decode(p) } }.get()
}

/// The errno a message's decoding fails with, or nil if it decodes.
func decodeErrno(_ message: [UInt8]) -> Errno? {
    do throws(RequestDecodeError) {
        _ = try decode(message)
        return nil
    } catch {
        if case .badArguments(_, let e) = error { return e }
        return nil
    }
}

/// The INIT a 6.18 kernel sends (protocol 7.45 and the capability words it offered on this
/// machine: flags 0x73fffffb, flags2 0x5fd).
func kernelInit(unique: UInt64 = 1) -> [UInt8] {
    var i = fuse_init_in()
    i.major = 7
    i.minor = 45
    i.max_readahead = 131072
    i.flags = 0x73ff_fffb
    i.flags2 = 0x5fd
    return request(.initialize, unique: unique, bytes(of: i))
}

/// A decoded reply: the header's fields and the payload.
struct Reply {
    var length: UInt32
    var error: Int32
    var unique: UInt64
    var payload: [UInt8]

    func load<T: BitwiseCopyable>(_: T.Type, at offset: Int = 0) -> T {
        payload.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: T.self) }
    }
}

/// A server on a fresh volume in memory, driven by byte buffers.
final class Harness {
    let volume: Volume
    let server: FUSEServer
    let buffer = ReplyBuffer(capacity: (1 << 20) + 4096)
    var next: UInt64 = 100

    init(cache: CacheMode = .direct) throws {
        let device = MemoryBlockDevice(blockSize: 4096, blockCount: 4096)
        try Volume.format(device: device)
        var vo = VolumeOptions()
        vo.backgroundForce = nil
        volume = try Volume.mount(device: device, options: vo)
        var so = ServerOptions()
        so.cache = cache
        server = FUSEServer(volume: volume, options: so)
    }

    /// Serves `message`; nil when it takes no reply.
    func send(_ message: [UInt8]) -> Reply? {
        let out = message.withUnsafeBytes { server.serve($0, into: buffer) }
        guard let out else { return nil }
        let h = out.loadUnaligned(as: fuse_out_header.self)
        #expect(Int(h.len) == out.count, "the reply's length is the message's")
        return Reply(length: h.len, error: h.error, unique: h.unique, payload: Array(out[MemoryLayout<fuse_out_header>.size...]))
    }

    func call(_ opcode: Opcode, nodeid: UInt64 = 1, uid: UInt32 = 0, gid: UInt32 = 0, _ args: [UInt8] = []) -> Reply {
        next += 1
        let r = send(request(opcode, nodeid: nodeid, unique: next, uid: uid, gid: gid, args))
        #expect(r != nil, "\(opcode) takes a reply")
        #expect(r?.unique == next)
        return r ?? Reply(length: 0, error: -999, unique: 0, payload: [])
    }

    func initialize() {
        let r = send(kernelInit())
        #expect(r?.error == 0)
    }

    /// CREATE of `name` in the root: the node id and the fh.
    func create(_ name: String, mode: UInt32 = 0o100644, flags: UInt32 = 0o102) -> (nodeid: UInt64, fh: UInt64) {
        var c = fuse_create_in()
        c.flags = flags
        c.mode = mode
        let r = call(.create, bytes(of: c) + cName(name))
        #expect(r.error == 0, "create \(name): \(r.error)")
        guard r.error == 0 else { return (0, 0) }
        let e = r.load(fuse_entry_out.self)
        let o = r.load(fuse_open_out.self, at: MemoryLayout<fuse_entry_out>.size)
        return (e.nodeid, o.fh)
    }

    func write(_ fh: UInt64, nodeid: UInt64, _ data: [UInt8], at offset: UInt64, flags: UInt32 = 0, uid: UInt32 = 0) -> Reply {
        var w = fuse_write_in()
        w.fh = fh
        w.offset = offset
        w.size = UInt32(data.count)
        w.write_flags = flags
        return call(.write, nodeid: nodeid, uid: uid, bytes(of: w) + data)
    }

    func read(_ fh: UInt64, nodeid: UInt64, size: UInt32, at offset: UInt64) -> Reply {
        var r = fuse_read_in()
        r.fh = fh
        r.offset = offset
        r.size = size
        return call(.read, nodeid: nodeid, bytes(of: r))
    }
}
