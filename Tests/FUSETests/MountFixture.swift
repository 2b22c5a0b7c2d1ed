// A volume image in a temporary directory, mounted through `iomap mount` and used with
// ordinary system calls; and what the mount tests need to run at all (root, /dev/fuse).
// Every fixture unmounts in its cleanup (lazily as a last resort), so a failing test never
// leaves a mount behind.

import CKernelShim
import ExtentFS
import FUSE
import Foundation
import IOMapKernelSide
import IOMapBase
import Testing
import Volume

#if canImport(Glibc)
    import Glibc
#endif

/// The built `iomap` executable, beside the test bundle.
func iomapExecutable() throws -> URL {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [dir, dir.deletingLastPathComponent()] {
        let url = candidate.appendingPathComponent("iomap")
        if FileManager.default.isExecutableFile(atPath: url.path) { return url }
    }
    throw FixtureError("no iomap executable near \(dir.path)")
}

struct FixtureError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs `executable` with `arguments` (and `environment` added) to its end, both pipes read;
/// throws `CommandTimeout`, naming it, when it has not ended within `timeout` seconds.
func run(_ executable: URL, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 900) throws -> CommandResult {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    let (outData, errData) = try runToEnd(process, reading: [out.fileHandleForReading, err.fileHandleForReading], timeout: timeout)
    return CommandResult(
        status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self))
}

func runIOMap(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
    try run(try iomapExecutable(), arguments, environment: environment)
}

/// Waits until no daemon holds `image`'s lock (the daemon's flock for its whole life), for at
/// most `seconds`; false when one still does.
func waitForImageLock(_ image: String, seconds: Double) -> Bool {
    let fd = open(image, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    let deadline = Date().addingTimeInterval(seconds)
    while flock(fd, LOCK_EX | LOCK_NB) != 0 {
        if Date() >= deadline { return false }
        usleep(5000)
    }
    flock(fd, LOCK_UN)
    return true
}

/// Whether mount tests can run here, printing why not when they cannot.
enum MountEnvironment {
    static let reason: String? = {
        if geteuid() != 0 { return "not root (mount(2) of a FUSE file system needs CAP_SYS_ADMIN)" }
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        if fd < 0 { return "/dev/fuse cannot be opened (errno \(errno))" }
        close(fd)
        // A hung daemon must not hang the suite: the kernel aborts a connection whose
        // request waits longer than this (Linux 6.14+; absent elsewhere).
        let timeout = "/proc/sys/fs/fuse/default_request_timeout"
        if let now = try? String(contentsOfFile: timeout, encoding: .utf8), now.trimmingCharacters(in: .whitespacesAndNewlines) == "0" {
            try? "120\n".write(toFile: timeout, atomically: false, encoding: .utf8)
        }
        return nil
    }()

    static var available: Bool {
        if let reason { print("FUSE mount tests skipped: \(reason)") }
        return reason == nil
    }
}

/// A volume image and a mount point in a new temporary directory.
final class MountFixture {
    let root: String
    let image: String
    let mountpoint: String
    let stats: String
    let log: String
    let pidFile: String

    init(megabytes: Int = 64) throws {
        // The canonical path: /proc/self/mounts shows the mount point so.
        let base = URL(fileURLWithPath: NSTemporaryDirectory()).resolvingSymlinksInPath().path
        var template = Array((base + "/iomap-fuse-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw FixtureError("mkdtemp failed") }
        root = String(cString: made)
        image = root + "/vol.img"
        mountpoint = root + "/mnt"
        stats = root + "/stats.json"
        log = root + "/daemon.log"
        pidFile = root + "/daemon.pid"
        mkdir(mountpoint, 0o755)
        let device = try FileBlockDevice(path: image, blockSize: 4096, blockCount: megabytes * 256, create: true)
        try Volume.format(device: device)
    }

    /// `iomap mount IMAGE MNT` with the fixture's stats, log and pid files.
    @discardableResult
    func mount(_ extra: [String] = [], environment: [String: String] = [:]) throws -> CommandResult {
        let r = try runIOMap(
            ["mount", image, mountpoint, "--json-stats", stats, "--log", log, "--pid-file", pidFile] + extra, environment: environment)
        if r.status != 0 { Issue.record("iomap mount exited \(r.status): \(r.stderr)\nlog: \(daemonLog)") }
        return r
    }

    var daemonLog: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    var isMounted: Bool {
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        return mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == mountpoint }
    }

    /// umount(8) of the mount point, then the wait for the daemon to let go of the image.
    func umount() throws {
        let r = try run(URL(fileURLWithPath: "/bin/umount"), [mountpoint])
        #expect(r.status == 0, "umount: \(r.stderr)")
        #expect(waitForDaemon(), "the daemon still holds the image 30 s after umount\n\(daemonLog)")
    }

    /// Waits until no daemon holds the image's lock (it has unmounted the volume and exited).
    @discardableResult
    func waitForDaemon(seconds: Double = 30) -> Bool { waitForImageLock(image, seconds: seconds) }

    /// The daemon's pid, from its pid file.
    var daemonPID: pid_t? {
        (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// The counters the daemon wrote at exit.
    func statsReport() throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: stats))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    /// Unmounts whatever is left (lazily if a plain umount fails), waits for the daemon,
    /// and removes the directory.
    func cleanup() {
        if isMounted {
            if (try? FUSEMount.unmount(mountpoint, lazy: false)) == nil { try? FUSEMount.unmount(mountpoint, lazy: true) }
        }
        if !waitForDaemon(seconds: 10), let pid = daemonPID { kill(pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: root)
    }

    func path(_ name: String) -> String { mountpoint + "/" + name }
}

/// A pattern of `count` bytes that differs by `seed` and by offset.
func pattern(_ count: Int, seed: UInt8) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed) &* 7 &+ $0 >> 9) } }

/// Writes `bytes` to a new file at `path` with write(2)s of `chunk` bytes; fsyncs if asked.
func writeFile(_ path: String, _ bytes: [UInt8], chunk: Int = 65536, fsync doSync: Bool = false) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw FixtureError("open \(path): errno \(errno)") }
    defer { close(fd) }
    var at = 0
    while at < bytes.count {
        let n = min(chunk, bytes.count - at)
        let w = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + at, n, off_t(at)) }
        guard w == n else { throw FixtureError("pwrite \(path) at \(at): \(w), errno \(errno)") }
        at += n
    }
    if doSync { guard fsync(fd) == 0 else { throw FixtureError("fsync \(path): errno \(errno)") } }
}

/// The whole file at `path`, or nil.
func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(out.count)) }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}

/// Whether the file at `path` holds exactly `expected` (a Bool, so that a failure prints a
/// line, not two arrays of megabytes).
func fileHolds(_ path: String, _ expected: [UInt8]) -> Bool { readFile(path) == expected }

/// The names in a directory, by readdir(3).
func listDirectory(_ path: String) -> Set<String> {
    guard let d = opendir(path) else { return [] }
    defer { closedir(d) }
    var names = Set<String>()
    while let e = readdir(d) {
        let name = withUnsafePointer(to: &e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
        names.insert(name)
    }
    return names
}
