// Coherence under a live shared mapping, with tmpfs as the oracle: the same seeded operations
// (stores through a MAP_SHARED mapping, pwrite, punch hole, zero range, fallocate, truncate,
// msync) go to a file on the mount and to a file on tmpfs, each with its mapping kept for
// the whole run. After every operation both files must agree three ways: their size, their
// bytes by pread, and their bytes as their own mappings show them, so a store is seen by
// pread and a pwrite through the mapping, on the mount as on tmpfs. SEEK_DATA/SEEK_HOLE on
// the mount, before any msync, must never call a byte that reads as non-zero a hole (tmpfs
// answers differently and legally, so they are checked against the bytes, not tmpfs).

import CKernelShim
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// One side of the comparison: a file, its descriptor and a shared mapping of its largest size.
final class MappedFile {
    static let span = 256 << 10
    let path: String
    let fd: Int32
    let map: UnsafeMutableRawPointer

    /// `privateMapping` is the canary: stores then stay in the process, unseen by pread.
    init(_ path: String, privateMapping: Bool = false) throws {
        self.path = path
        fd = cks_open(path)
        guard fd >= 0 else { throw FixtureError("open \(path): \(-fd)") }
        guard cks_ftruncate(fd, Int64(Self.span / 2)) == 0 else { throw FixtureError("ftruncate \(path)") }
        guard let p = mmap(nil, Self.span, PROT_READ | PROT_WRITE, privateMapping ? MAP_PRIVATE : MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw FixtureError("mmap \(path): errno \(errno)")
        }
        map = p
    }

    deinit {
        munmap(map, Self.span)
        close(fd)
    }

    var size: Int { Int(cks_size(fd)) }

    func pread() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: size)
        let n = b.withUnsafeMutableBytes { cks_pread(fd, $0.baseAddress, $0.count, 0) }
        return n == b.count ? b : []
    }

    /// The bytes below EOF as the mapping shows them (never past EOF: that would be SIGBUS).
    func mapped() -> [UInt8] { Array(UnsafeRawBufferPointer(start: map, count: size)) }
}

/// One random operation, with what it needs, as the replay listing prints it.
enum CoherenceOp: CustomStringConvertible {
    case store(offset: Int, bytes: [UInt8])
    case pwrite(offset: Int, bytes: [UInt8])
    case punch(offset: Int, length: Int)
    case zero(offset: Int, length: Int, keepSize: Bool)
    case allocate(offset: Int, length: Int)
    case truncate(Int)
    case msync

    var description: String {
        switch self {
        case .store(let o, let b): return "store \(b.count) @ \(o)"
        case .pwrite(let o, let b): return "pwrite \(b.count) @ \(o)"
        case .punch(let o, let l): return "punch \(l) @ \(o)"
        case .zero(let o, let l, let k): return "zero range \(l) @ \(o)\(k ? " keep_size" : "")"
        case .allocate(let o, let l): return "fallocate \(l) @ \(o)"
        case .truncate(let s): return "truncate \(s)"
        case .msync: return "msync"
        }
    }

    /// A random op valid for a file of `size` bytes (stores stay below EOF: past it, in the
    /// EOF page, they are dropped, and past that page they raise SIGBUS).
    static func random(size: Int, using rng: inout SplitMix) -> CoherenceOp {
        let span = MappedFile.span
        func range(below limit: Int) -> (Int, Int) {
            let o = Int.random(in: 0..<max(1, limit), using: &rng)
            return (o, Int.random(in: 1...min(16384, max(1, limit - o)), using: &rng))
        }
        func data(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 1...255, using: &rng) } }
        switch Int.random(in: 0..<100, using: &rng) {
        case 0..<35 where size > 0:
            let (o, l) = range(below: size)
            return .store(offset: o, bytes: data(l))
        case 0..<60:
            let (o, l) = range(below: span)
            return .pwrite(offset: o, bytes: data(l))
        case 60..<70:
            let (o, l) = range(below: span)
            return .punch(offset: o, length: l)
        case 70..<80:
            let (o, l) = range(below: span)
            return .zero(offset: o, length: l, keepSize: Bool.random(using: &rng))
        case 80..<85:
            let (o, l) = range(below: span)
            return .allocate(offset: o, length: l)
        case 85..<93: return .truncate(Int.random(in: 0...span, using: &rng))
        default: return .msync
        }
    }

    /// Applies the op to `f`; returns the errno as a number (0 for success) so sides compare.
    func apply(_ f: MappedFile) -> Int64 {
        switch self {
        case .store(let o, let b):
            b.withUnsafeBytes { (f.map + o).copyMemory(from: $0.baseAddress!, byteCount: b.count) }
            return 0
        case .pwrite(let o, let b): return b.withUnsafeBytes { cks_pwrite(f.fd, $0.baseAddress, b.count, Int64(o)) }
        case .punch(let o, let l): return Int64(cks_fallocate(f.fd, Int32(CKS_FALLOC_PUNCH_HOLE), Int64(o), Int64(l)))
        case .zero(let o, let l, let k):
            return Int64(cks_fallocate(f.fd, Int32(k ? CKS_FALLOC_ZERO_RANGE_KEEP_SIZE : CKS_FALLOC_ZERO_RANGE), Int64(o), Int64(l)))
        case .allocate(let o, let l): return Int64(cks_fallocate(f.fd, Int32(CKS_FALLOC_ALLOCATE), Int64(o), Int64(l)))
        case .truncate(let s): return Int64(cks_ftruncate(f.fd, Int64(s)))
        case .msync: return Glibc.msync(f.map, MappedFile.span, MS_SYNC) == 0 ? 0 : -Int64(errno)
        }
    }
}

extension CoherenceOp {
    /// Applies the op to the tmpfs file. tmpfs has no FALLOC_FL_ZERO_RANGE, so a zero range
    /// is done there as what it must leave: the range punched (zeroes, the mapping's pages
    /// in it dropped) and, without KEEP_SIZE, the size grown to its end.
    func applyToControl(_ f: MappedFile) -> Int64 {
        guard case .zero(let o, let l, let keepSize) = self else { return apply(f) }
        let direct = apply(f)
        guard direct == -Int64(EOPNOTSUPP) else { return direct }
        let punched = Int64(cks_fallocate(f.fd, Int32(CKS_FALLOC_PUNCH_HOLE), Int64(o), Int64(l)))
        if punched != 0 || keepSize || o + l <= f.size { return punched }
        return Int64(cks_ftruncate(f.fd, Int64(o + l)))
    }
}

/// What is wrong with SEEK_DATA and SEEK_HOLE from `p` on `f` given its bytes, or nil:
/// every range an answer calls a hole must read as zeroes.
func seekProblem(_ f: MappedFile, from p: Int, bytes: [UInt8]) -> String? {
    let size = bytes.count
    let d = cks_seek_data(f.fd, Int64(p))
    let h = cks_seek_hole(f.fd, Int64(p))
    if p >= size { return d == -Int64(ENXIO) && h == -Int64(ENXIO) ? nil : "from \(p) at/past EOF \(size): data \(d), hole \(h)" }
    if d == -Int64(ENXIO) {
        if let i = (p..<size).first(where: { bytes[$0] != 0 }) { return "SEEK_DATA(\(p)) is ENXIO, but byte \(i) is \(bytes[i])" }
    } else if d < p || d >= size {
        return "SEEK_DATA(\(p)) = \(d), outside [\(p), \(size))"
    } else if let i = (p..<Int(d)).first(where: { bytes[$0] != 0 }) {
        return "SEEK_DATA(\(p)) = \(d) skips byte \(i) = \(bytes[i])"
    }
    if h < p || h > size { return "SEEK_HOLE(\(p)) = \(h), outside [\(p), \(size)]" }
    if h < size && bytes[Int(h)] != 0 { return "SEEK_HOLE(\(p)) = \(h), whose byte is \(bytes[Int(h)])" }
    return nil
}

/// Runs `rounds` random ops on `mount` and `control`; returns the first disagreement with
/// the ops before it, or nil.
func runCoherence(mount: MappedFile, control: MappedFile, seed: UInt64, rounds: Int) -> String? {
    var rng = SplitMix(seed: seed)
    var done: [String] = []
    var stores: [Int] = []
    for round in 0..<rounds {
        let op = CoherenceOp.random(size: control.size, using: &rng)
        if case .store(let o, _) = op { stores.append(o) }
        if case .msync = op { stores.removeAll() }
        done.append("\(round): \(op)")
        let a = op.apply(mount)
        let b = op.applyToControl(control)
        func fail(_ what: String) -> String {
            "round \(round) (seed \(seed)): \(what)\nlast ops:\n  " + done.suffix(8).joined(separator: "\n  ")
        }
        if a != b { return fail("\(op) returned \(a) on the mount, \(b) on tmpfs") }
        if mount.size != control.size { return fail("size \(mount.size) on the mount, \(control.size) on tmpfs") }
        let bytes = mount.pread()
        let expected = control.pread()
        if let i = firstDifference(bytes, expected) {
            return fail("pread byte \(i): mount \(byteAt(bytes, i)), tmpfs \(byteAt(expected, i))")
        }
        let view = mount.mapped()
        if let i = firstDifference(view, expected) {
            return fail("mapped byte \(i): mount \(byteAt(view, i)), tmpfs \(byteAt(expected, i))")
        }
        if control.mapped() != expected { return fail("tmpfs's own mapping and pread disagree (the control is broken)") }
        // Where stores since the last msync landed, and a random offset.
        for p in stores.suffix(3) + [0, Int.random(in: 0...max(0, bytes.count), using: &rng)] {
            if let why = seekProblem(mount, from: p, bytes: bytes) { return fail(why) }
        }
    }
    return nil
}

func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    let n = min(a.count, b.count)
    for i in 0..<n where a[i] != b[i] { return i }
    return a.count == b.count ? nil : n
}

func byteAt(_ b: [UInt8], _ i: Int) -> String { i < b.count ? String(b[i]) : "EOF" }

@Suite("iomap mount: coherence under a live mapping", .serialized, .enabled(if: MountEnvironment.available, "needs root and /dev/fuse"))
struct CoherenceTests {
    @Test(
        "1000 random rounds of stores, pwrite, punch, zero range, fallocate, truncate and msync agree with tmpfs; SEEK never calls a stored byte a hole"
    )
    func coherence() throws {
        let seed = mountTestSeed("coherence")
        let f = try MountFixture()
        defer { f.cleanup() }
        try f.mount()
        let shm = try TmpfsDirectory()
        defer { shm.remove() }
        do {
            let mount = try MappedFile(f.path("coherent"))
            let control = try MappedFile(shm.path + "/coherent")
            let found = runCoherence(mount: mount, control: control, seed: seed, rounds: 1000)
            #expect(found == nil, "\(found ?? "")\nreplay: IOMAP_FUSE_SEED=\(seed) swift test ... --filter CoherenceTests")
        }
        // The canary: a private mapping on the mount side keeps its stores from pread.
        do {
            let mount = try MappedFile(f.path("incoherent"), privateMapping: true)
            let control = try MappedFile(shm.path + "/incoherent")
            let found = runCoherence(mount: mount, control: control, seed: seed, rounds: 1000)
            #expect(found?.contains("pread byte") == true, "the canary must be caught: \(found ?? "nothing found")")
        }
        try f.umount()
        let fsck = try runIOMap(["fsck", f.image])
        #expect(fsck.status == 0, "\(fsck.stdout)")
    }
}
