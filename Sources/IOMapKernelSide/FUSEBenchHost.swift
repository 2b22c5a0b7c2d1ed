// Counterpart: none in the kernel; what the FUSE rows of `iomap bench` need from the host:
// whether they can run here at all, fio run as a child with its JSON report read back, a
// volume mounted through the built `iomap mount` (made with `iomap mkfs`), and threads bound
// to one CPU.
//
// Why here: these need Foundation (Process, JSON) and the C shim (sched_setaffinity), which
// only this module may import; IOMapBench keeps the workloads, the alternation and the rows.

import CKernelShim
import Foundation
import IOMapBase

#if canImport(Glibc)
    import Glibc
#endif

public enum FUSEBenchHost {
    /// Why the FUSE rows cannot run on this machine, or nil when they can. The rows mount a
    /// FUSE file system with mount(2) and an XFS image on a loop device, and drive both
    /// with fio, so each missing piece is named.
    public static func unavailable(iomap: String?) -> String? {
        if geteuid() != 0 { return "not root (the rows mount a FUSE file system and an XFS image on a loop device)" }
        guard let iomap else { return "no iomap executable to mount the volume with" }
        guard FileManager.default.isExecutableFile(atPath: iomap) else { return "\(iomap) is not executable" }
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        if fd < 0 { return "/dev/fuse cannot be opened (\(Errno(rawValue: errno).symbolicName))" }
        close(fd)
        if findExecutable("fio") == nil { return "fio is not installed (Debian: apt-get install fio)" }
        if !FileManager.default.fileExists(atPath: "/dev/loop-control") { return "no loop devices (/dev/loop-control is missing)" }
        if findExecutable("mkfs.xfs") == nil { return "mkfs.xfs is not installed (Debian: apt-get install xfsprogs)" }
        return nil
    }

    /// Binds thread `tid` (0: the caller) to `cpu`, or to every CPU with nil.
    public static func bind(thread tid: Int32 = 0, cpu: Int?) -> Errno? {
        let rc = cks_bind_cpu(tid, Int32(cpu ?? -1))
        return rc < 0 ? Errno(rawValue: -rc) : nil
    }

    /// The threads of process `pid`, from /proc/PID/task.
    public static func threads(of pid: Int32) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).compactMap { Int32($0) }
    }

    /// The calling thread's id.
    public static var threadID: Int32 { cks_thread_id() }
}

/// What one fio job did, from its JSON report.
public struct FioResult: Sendable {
    public var bytes: Int
    public var ops: Int
    /// The job's run time in nanoseconds (fio reports milliseconds).
    public var runtimeNs: Double

    public var nsPerOp: Double { runtimeNs / Double(max(ops, 1)) }
    public var bytesPerSecond: Double { Double(bytes) / runtimeNs * 1e9 }
}

public enum Fio {
    /// Runs fio with `arguments` (one job, which must not name an output format or file),
    /// reading its JSON report from a file beside `scratch`: fio's warnings on the terminal
    /// then cannot garble it. `direction` is "read" or "write".
    public static func run(_ arguments: [String], direction: String, scratch: String) throws -> FioResult {
        guard let fio = findExecutable("fio") else { throw KernelSetupError("fio is not installed") }
        let report = scratch + ".fio.json"
        defer { try? FileManager.default.removeItem(atPath: report) }
        let r = IOMapKernelSide.run(fio, arguments + ["--output-format=json", "--output=\(report)"])
        guard r.status == 0 else { throw KernelSetupError("fio \(arguments.joined(separator: " ")) exited \(r.status): \(r.output)") }
        guard let data = FileManager.default.contents(atPath: report),
            let top = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let job = (top["jobs"] as? [[String: Any]])?.first, let side = job[direction] as? [String: Any]
        else { throw KernelSetupError("fio \(arguments.joined(separator: " ")): no \(direction) report in its JSON output") }
        let number = { (key: String) in (side[key] as? NSNumber)?.doubleValue ?? 0 }
        let ops = Int(number("total_ios"))
        var runtimeNs = number("runtime") * 1e6
        // A job shorter than fio's millisecond: its mean latency per I/O is what is left.
        if runtimeNs <= 0 {
            runtimeNs = ((side["lat_ns"] as? [String: Any])?["mean"] as? NSNumber).map { $0.doubleValue * Double(ops) } ?? 0
        }
        guard ops > 0, runtimeNs > 0 else { throw KernelSetupError("fio \(arguments.joined(separator: " ")): no I/O reported") }
        return FioResult(bytes: Int(number("io_bytes")), ops: ops, runtimeNs: runtimeNs)
    }
}

/// A volume image made with `iomap mkfs` and mounted with `iomap mount` (the built tool, so
/// that what is measured is what a user runs); unmounted with umount(8), then waited for
/// until the daemon lets go of the image.
public final class FUSEBenchMount: Sendable {
    public let iomap: String
    public let image: String
    public let mountPoint: String
    public let pidFile: String
    public let log: String

    /// Makes the image (`imageBytes`, sparse) and the mount point in `directory`, and mounts
    /// with `options` (`-o`) and `arguments` (more of `iomap mount`'s options).
    public init(iomap: String, directory: String, imageBytes: Int, options: String, arguments: [String] = []) throws {
        self.iomap = iomap
        image = directory + "/vol.img"
        mountPoint = directory + "/mnt"
        pidFile = directory + "/daemon.pid"
        log = directory + "/daemon.log"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mkfs = IOMapKernelSide.run(iomap, ["mkfs", image, "--size", "\(imageBytes)"])
        guard mkfs.status == 0 else { throw KernelSetupError("iomap mkfs \(image) exited \(mkfs.status): \(mkfs.output)") }
        let mount = IOMapKernelSide.run(
            iomap, ["mount", image, mountPoint, "-o", options, "--pid-file", pidFile, "--log", log] + arguments)
        guard mount.status == 0 else {
            let daemonLog = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw KernelSetupError("iomap mount \(image) \(mountPoint) -o \(options) exited \(mount.status): \(mount.output) \(daemonLog)")
        }
    }

    /// The daemon's process id, from its pid file.
    public var daemonPID: Int32? {
        (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Binds every thread of the daemon to `cpu` (nil: every CPU); returns how many.
    @discardableResult
    public func bindDaemon(cpu: Int?) -> Int {
        guard let pid = daemonPID else { return 0 }
        return FUSEBenchHost.threads(of: pid).filter { FUSEBenchHost.bind(thread: $0, cpu: cpu) == nil }.count
    }

    /// umount(8), lazily if that fails, then waits (up to 60 s) for the daemon to unmount
    /// the volume and release the image. Returns what went wrong.
    @discardableResult
    public func unmount() -> [String] {
        var problems: [String] = []
        let umount = findExecutable("umount") ?? "/usr/bin/umount"
        let first = IOMapKernelSide.run(umount, [mountPoint])
        if first.status != 0 {
            problems.append("umount \(mountPoint): \(first.output)")
            _ = IOMapKernelSide.run(umount, ["-l", mountPoint])
        }
        let fd = open(image, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return problems }
        defer { close(fd) }
        let deadline = Date().addingTimeInterval(60)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            if Date() >= deadline {
                problems.append("the daemon still holds \(image) 60 s after umount")
                break
            }
            usleep(5000)
        }
        return problems
    }
}
