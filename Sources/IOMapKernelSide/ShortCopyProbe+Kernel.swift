// Counterpart: none in the kernel; the kernel side of the short-copy probe: the cases on XFS
// (images it makes, or a directory it is given), and the controls: readable buffers on the
// same file systems, tmpfs, ext4.

import CKernelShim
import Foundation
import IOMapBase
import IOMapTesting

#if canImport(Glibc)
    import Glibc
#endif

/// An attempt that failed; `errno` says how.
struct ShortCopyAttemptError: Error, CustomStringConvertible {
    let errno: Errno
    let description: String
}

/// Runs the probe. Images it makes are made through `scratch`, so that a signal handler can
/// remove them.
public func runShortCopyProbe(
    _ config: ShortCopyProbeConfig, scratch: ProbeScratch = ProbeScratch(), progress: (String) -> Void
) throws -> ShortCopyProbeReport {
    if let problem = config.problem { throw KernelSetupError(problem) }
    if let tools = config.fuse {
        var report = ShortCopyProbeReport()
        let fuse = try runFUSEShortCopyProbe(
            attempts: config.attempts, tools: tools, scratch: scratch, plan: config.fusePlan, progress: progress)
        (report.kernel, report.fs, report.initOnAlloc, report.seconds, report.fuse) = (
            fuse.kernel, "fuse", fuse.initOnAlloc, fuse.seconds, fuse
        )
        return report
    }
    let clock = ContinuousClock()
    let start = clock.now
    var report = ShortCopyProbeReport()
    report.kernel = kernelRelease()
    let user = try unprivilegedUser(config, notes: &report.notes)
    var readable = ShortCopyControlResult(name: "readable-buffer", detail: "", tally: ShortCopyTally())
    var pending = ShortCopyCase.allCases
    if let directory = config.directory {
        let blockSize = try fileSystemBlockSize(directory)
        report.fs = try fileSystemName(directory)
        report.blockSizes = [blockSize]
        try runCases(
            &pending, in: directory, blockSize: blockSize, config: config, user: user, into: &report, readable: &readable,
            progress: progress)
    } else {
        report.fs = "xfs"
        report.blockSizes = config.imageBlockSizes
        for blockSize in config.imageBlockSizes {
            try withProbeDirectory(nil, blockSize: blockSize, scratch: scratch, progress: progress) { directory in
                try runCases(
                    &pending, in: directory, blockSize: blockSize, config: config, user: user, into: &report, readable: &readable,
                    progress: progress)
            }
        }
    }
    for c in pending { report.skipped.append(ShortCopySkip(name: c.rawValue, reason: c.needs)) }
    let order = ShortCopyCase.allCases.map(\.rawValue)
    report.cases.sort { order.firstIndex(of: $0.name)! < order.firstIndex(of: $1.name)! }
    readable.detail = "\(report.fs), the cases' writes from fully readable buffers"
    report.controls.append(readable)
    try runOtherFileSystemControls(config, scratch: scratch, into: &report, progress: progress)
    report.engine = engineShortCopy()
    progress("engine: \(report.engine.count) writes, \(report.engineStale) stale bytes")
    report.initOnAlloc = initOnAllocState()
    report.seconds = (clock.now - start).inSeconds
    return report
}

/// The uid and gid the unprivileged case writes as: --user, else nobody when root, else
/// none (the caller is unprivileged already, and the case runs as the caller).
func unprivilegedUser(_ config: ShortCopyProbeConfig, notes: inout [String]) throws -> (uid: Int, gid: Int)? {
    let euid = Int(geteuid())
    if let uid = config.user {
        guard euid == 0 else {
            throw KernelSetupError("--user \(uid) needs root (the probe drops to that uid); running as uid \(euid)")
        }
        return (uid, groupOf(uid: uid))
    }
    guard euid == 0 else {
        notes.append("the unprivileged case runs as the caller, uid \(euid)")
        return nil
    }
    notes.append("the unprivileged case writes as uid 65534 (nobody), the probe being root; --user picks another")
    return (65534, groupOf(uid: 65534))
}

/// The primary group of `uid`, from the password database; the uid itself when it has none.
private func groupOf(uid: Int) -> Int {
    guard let entry = getpwuid(uid_t(uid)) else { return uid }
    return Int(entry.pointee.pw_gid)
}

/// statvfs's f_bsize for `directory`.
func fileSystemBlockSize(_ directory: String) throws -> Int {
    var st = statvfs()
    guard statvfs(directory, &st) == 0 else {
        throw KernelSetupError("statvfs(\(directory)) failed: \(Errno(rawValue: errno))")
    }
    return Int(st.f_bsize)
}

/// Runs, in `directory`, each pending case that fits `blockSize` (taking it off `pending`),
/// and its write from a readable buffer into `readable`.
private func runCases(
    _ pending: inout [ShortCopyCase], in directory: String, blockSize: Int, config: ShortCopyProbeConfig,
    user: (uid: Int, gid: Int)?, into report: inout ShortCopyProbeReport, readable: inout ShortCopyControlResult,
    progress: (String) -> Void
) throws {
    let fs = try fileSystemName(directory)
    for c in pending where c.fits(blockSize: blockSize) {
        pending.removeAll { $0 == c }
        let write = c.write(blockSize: blockSize)
        let label = "\(c.rawValue) on \(fs) (\(blockSize)-byte blocks)"
        let asUser = c == .unprivileged ? user : nil
        do {
            let tally = try shortCopyTally(write, in: directory, attempts: config.attempts, user: asUser, label: label, progress: progress)
            report.cases.append(
                ShortCopyCaseResult(name: c.rawValue, fs: fs, blockSize: blockSize, write: write, uid: asUser?.uid, tally: tally))
        } catch let e as ShortCopyAttemptError where c == .unprivileged && [.permissionDenied, .notPermitted].contains(e.errno) {
            report.skipped.append(ShortCopySkip(name: c.rawValue, reason: "uid \(asUser?.uid ?? -1) cannot write there: \(e)"))
        }
        if c == .unprivileged { continue }
        readable.tally.add(
            try shortCopyTally(
                write.fullyReadable, in: directory, attempts: config.attempts, user: nil, label: label + ", readable buffer",
                progress: progress))
    }
}

/// Runs one write `attempts` times in `directory` (as `user` when given, which needs root)
/// and sums what they found.
public func shortCopyTally(
    _ write: ShortCopyWrite, in directory: String, attempts: Int, user: (uid: Int, gid: Int)? = nil, label: String = "",
    progress: (String) -> Void = { _ in }
) throws -> ShortCopyTally {
    let path = directory + "/iomap-short-copy-probe-\(getpid())"
    var params = cks_short_copy_params(
        file_size: Int64(write.fileSize), unwritten: write.unwritten ? 1 : 0, offset: Int64(write.offset),
        length: Int64(write.length), readable: Int64(write.readable), uid: Int64(user?.uid ?? -1),
        gid: Int64(user?.gid ?? -1), planted: Int64(write.planted))
    var tally = ShortCopyTally()
    for i in 0..<attempts {
        var out = cks_short_copy_attempt()
        let rc = cks_probe_short_copy(path, &params, &out)
        if rc < 0 {
            let errno = Errno(rawValue: -rc)
            throw ShortCopyAttemptError(
                errno: errno, description: "\(label): attempt \(i + 1) in \(directory) failed: \(errno) (errno \(errno.rawValue))")
        }
        tally.add(out)
    }
    progress("\(label): \(attempts) attempts, stale bytes in cache \(tally.staleInCache), on disk \(tally.staleOnDisk)")
    return tally
}

/// The writes the controls make on other file systems: each case's short write once.
var controlWrites: [ShortCopyWrite] {
    [ShortCopyCase.hole4k, .hole1k, .largeFolio, .unwritten].map { $0.write(blockSize: pageSize) }
}

/// The tmpfs and ext4 controls: the cases' short writes where the kernel should leave zeroes.
private func runOtherFileSystemControls(
    _ config: ShortCopyProbeConfig, scratch: ProbeScratch, into report: inout ShortCopyProbeReport, progress: (String) -> Void
) throws {
    func run(_ name: String, in directory: String) throws {
        var tally = ShortCopyTally()
        for w in controlWrites {
            tally.add(
                try shortCopyTally(
                    w, in: directory, attempts: config.attempts, user: nil, label: "\(name): \(w.description)", progress: progress))
        }
        let blockSize = try fileSystemBlockSize(directory)
        report.controls.append(
            ShortCopyControlResult(name: name, detail: "\(blockSize)-byte blocks, the cases' short writes", tally: tally))
    }
    if (try? fileSystemName("/dev/shm")) == "tmpfs" {
        let directory = try scratch.makeDirectory(in: "/dev/shm", prefix: "iomap-short-copy")
        defer { scratch.removeDirectory(directory) }
        try run("tmpfs", in: directory)
    } else {
        report.skipped.append(ShortCopySkip(name: "tmpfs", reason: "/dev/shm is not a tmpfs here"))
    }
    do {
        try withProbeDirectory(nil, fileSystem: .ext4, blockSize: 4096, sizeBytes: 256 << 20, scratch: scratch, progress: progress) {
            try run("ext4", in: $0)
        }
    } catch let e as KernelSetupError {
        report.skipped.append(ShortCopySkip(name: "ext4", reason: e.description))
    }
}
