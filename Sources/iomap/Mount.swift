// `iomap mount IMAGE DIR`: the volume as a FUSE file system, served over /dev/fuse by this
// process (module FUSE), with the engine as its page cache (docs/FUSE.md).
//
// Without --foreground the command starts itself again as the daemon (a new session, standard
// streams on /dev/null or --log) and waits on a pipe until the daemon says the mount serves
// requests, or why it could not: the command returns only then, as mount(8) does, and exits
// 0, or 1 with the daemon's reason. Options are checked before anything is started, so a bad
// one is exit 2 with nothing mounted. The daemon holds an exclusive flock on the image for its
// whole life: umount does not wait for the daemon to finish (the kernel ends the connection
// and returns), so the next mount of the same image waits on that lock until the old daemon
// has unmounted the volume cleanly.
//
// Root mounts with mount(2) itself; any other user goes through fusermount3 (Debian's fuse3),
// which mounts and passes the /dev/fuse descriptor back, and unmounts with `fusermount3 -u`.
// An image the daemon may not write (opened read-only by the system, or with no write bit at
// all), or `-o ro`, is mounted read-only over an in-memory overlay (ReadOnlyImage.swift): the
// volume replays its log and writes its clean snapshot at unmount as always, and not one byte
// of it reaches the image.

import ArgumentParser
import CFUSE
import ExtentFS
import FUSE
import Foundation
import IOMapBase
import IOMapKernelSide
import Volume

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount a volume as a FUSE file system (speaks /dev/fuse directly; fusermount3 when not root).",
        discussion: """
            Regular files are served with direct I/O (the engine is the only cache for read and \
            write; shared writable mappings work on kernels 6.6+). `umount DIR` ends the daemon, which \
            unmounts the volume cleanly; a mount of the same image waits for the previous daemon to \
            finish. Not root: the mount goes through fusermount3 (fuse3), and `fusermount3 -u DIR` \
            unmounts. `-o ro`, or an image this user cannot write, mounts read-only and writes \
            nothing to the image. Options (-o, comma-separated): \(MountOptions.accepted.joined(separator: ", ")); \
            any other is refused. Exit status: 0 mounted (or, with --foreground, served and unmounted \
            cleanly), 1 could not mount, 2 bad usage.
            """)

    @Argument(help: "The volume's image file (or block device), made by `iomap mkfs`.")
    var image: String

    @Argument(help: "The directory to mount it on.")
    var directory: String

    @Option(name: .customShort("o"), help: "Mount options, comma-separated.")
    var options: [String] = []

    @Flag(help: "Serve in this process until unmounted, instead of starting a daemon.")
    var foreground = false

    @Option(help: "Request threads, each on its own cloned /dev/fuse descriptor (1-64).")
    var threads = 4

    @Option(name: .customLong("json-stats"), help: "Write the daemon's counters to this file as JSON at exit (and on SIGUSR1).")
    var jsonStats: String?

    @Option(help: "Append the daemon's messages to this file (without --foreground they go nowhere otherwise).")
    var log: String?

    @Option(name: .customLong("pid-file"), help: "Write the daemon's process id to this file while it serves.")
    var pidFile: String?

    @Option(name: .customLong("lock-timeout"), help: "Seconds to wait for another daemon to release the image.")
    var lockTimeout: Double = 60

    @Option(
        name: .customLong("record-writes"),
        help: "Append every WRITE the kernel sends (header and payload, docs/FORMAT.md) to this file, before the volume sees it.")
    var recordWrites: String?

    @Flag(
        name: .customLong("no-self-test"),
        help: ArgumentHelp("With -o cache=writeback: skip the check of the kernel's writeback cache before mounting.", visibility: .hidden))
    var noSelfTest = false

    @Option(name: .customLong("ready-fd"), help: .hidden)
    var readyFD: Int32?

    func validate() throws {
        do throws(MountOptionError) { _ = try MountOptions.parse(options) } catch { throw ValidationError(error.description) }
        guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1 to 64, not \(threads)") }
        guard lockTimeout >= 0 else { throw ValidationError("--lock-timeout must not be negative") }
    }

    func run() throws {
        let parsed = try MountOptions.parse(options)
        if foreground || readyFD != nil {
            let daemon = MountDaemon(
                image: image, directory: directory, options: parsed, threads: threads, jsonStats: jsonStats,
                pidFile: pidFile, lockTimeout: lockTimeout, ready: readyFD, recordWrites: recordWrites,
                selfTest: !noSelfTest)
            if daemon.run() != 0 { throw ExitStatus.violation }
            return
        }
        try startDaemon()
    }

    /// Starts the daemon and waits for its word: "ready", or "error: WHY".
    func startDaemon() throws {
        var fds: [Int32] = [-1, -1]
        guard cfuse_inheritable_pipe(&fds) == 0 else { throw failure("cannot make a pipe") }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let arguments = [executable] + Array(CommandLine.arguments.dropFirst()) + ["--ready-fd", "\(CFUSE_DAEMON_KEPT_FD)"]
        let pid = withCStrings(arguments) { argv in cfuse_spawn_daemon(executable, argv, log, fds[1]) }
        close(fds[1])
        defer { close(fds[0]) }
        guard pid > 0 else { throw failure("cannot start the daemon: \(Errno(rawValue: -pid).symbolicName)") }
        let said = readAll(fds[0])
        // Warnings (a read-only mount it was not asked for) come before the final word.
        var word = ""
        for line in said.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("warning: ") { printError("iomap mount: \(line.dropFirst(9))") } else if word.isEmpty { word = String(line) }
        }
        if word.hasPrefix("ready") { return }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        let why = word.hasPrefix("error: ") ? String(word.dropFirst(7)) : "the daemon exited (wait status \(status)) before serving"
        throw failure(why.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func failure(_ why: String) -> ExitCode {
        printError("iomap mount: \(why)")
        return ExitStatus.violation
    }
}

/// Runs `body` with `strings` as a NULL-terminated C array.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Everything a descriptor gives until end of file, as text.
func readAll(_ fd: Int32) -> String {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += chunk[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The daemon: the image locked and mounted as a volume, the FUSE mount made and served,
/// and at the end (the connection gone) the volume unmounted cleanly.
final class MountDaemon {
    let image: String
    let directory: String
    /// As asked, but read-only when the image cannot be written.
    var options: MountOptions
    /// How the mount was made (mount(2) or fusermount3), and so how to unmake it.
    var route: MountRoute = .kernel
    let threads: Int
    let jsonStats: String?
    let pidFile: String?
    let lockTimeout: Double
    /// The pipe to the starting command, until the mount serves (or failed).
    var ready: Int32?
    /// `--record-writes`.
    let recordWrites: String?
    /// Whether `-o cache=writeback` first checks the kernel (not `--no-self-test`).
    let selfTest: Bool

    init(
        image: String, directory: String, options: MountOptions, threads: Int, jsonStats: String?, pidFile: String?,
        lockTimeout: Double, ready: Int32?, recordWrites: String? = nil, selfTest: Bool = true
    ) {
        self.recordWrites = recordWrites
        self.selfTest = selfTest
        self.image = image
        self.directory = directory
        self.options = options
        self.threads = threads
        self.jsonStats = jsonStats
        self.pidFile = pidFile
        self.lockTimeout = lockTimeout
        self.ready = ready
    }

    /// Tells the starting command (or, in the foreground, standard error) `word`, once.
    func report(_ word: String) {
        if let fd = ready {
            let line = word + "\n"
            _ = line.withCString { write(fd, $0, strlen($0)) }
            close(fd)
            ready = nil
        }
        if word != "ready" { say(word) }
    }

    func say(_ message: String) { printError("iomap mount: \(message)") }

    /// Tells the starting command (and standard error) something it should print although
    /// the mount goes ahead.
    func warn(_ message: String) {
        if let fd = ready {
            let line = "warning: " + message + "\n"
            _ = line.withCString { write(fd, $0, strlen($0)) }
        }
        say(message)
    }

    /// 0 when the mount was served and the volume unmounted cleanly.
    func run() -> Int32 {
        cfuse_ignore_sigpipe()
        let lock: Int32
        let volume: Volume
        do throws(ToolError) {
            try checkDirectory()
            lock = try lockImage()
            volume = try mountVolume()
        } catch {
            report("error: \(error)")
            return 1
        }
        defer { close(lock) }
        guard let (server, session, fd) = serve(volume) else {
            try? volume.unmount()
            return 1
        }
        let signals = SignalWatcher(directory: directory, route: route, server: server, session: session, statsPath: jsonStats)
        signals.start()
        session.join()
        return finish(volume, server, session, fd)
    }

    /// The mount point must be a directory; a dead FUSE mount there (its daemon killed) is
    /// named as such, since stat then fails with ENOTCONN.
    func checkDirectory() throws(ToolError) {
        var st = stat()
        guard stat(directory, &st) == 0 else {
            let e = Errno(rawValue: errno)
            if e == Errno(rawValue: ENOTCONN) {
                throw ToolError("\(directory): a FUSE mount whose daemon is gone is still there; `umount \(directory)` first")
            }
            throw ToolError("\(directory): \(e.symbolicName)")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw ToolError("\(directory) is not a directory") }
    }

    /// Takes the image's exclusive flock, waiting up to --lock-timeout for a daemon that
    /// still holds it (one whose umount has returned but which is still unmounting).
    func lockImage() throws(ToolError) -> Int32 {
        let fd = open(image, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ToolError("\(image): \(Errno(rawValue: errno).symbolicName)") }
        let deadline = Date().addingTimeInterval(lockTimeout)
        var said = false
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                close(fd)
                throw ToolError("\(image): flock: \(Errno(rawValue: errno).symbolicName)")
            }
            if Date() >= deadline {
                close(fd)
                throw ToolError("\(image) is in use: another daemon holds its lock (gave up after \(lockTimeout) s)")
            }
            if !said && Date().addingTimeInterval(lockTimeout - 1) >= deadline {
                say("waiting for the daemon that holds \(image) to finish")
                said = true
            }
            usleep(5000)
        }
        return fd
    }

    func mountVolume() throws(ToolError) -> Volume {
        let device: any BlockDevice
        if !options.readOnly, let why = VolumeImage.whyNotWritable(image) {
            warn("\(image) \(why): mounting read-only")
            options.readOnly = true
        }
        device = options.readOnly ? try ReadOnlyImage.open(image) : try VolumeImage.open(image)
        do throws(VolumeError) {
            return try Volume.mount(device: device, options: VolumeOptions())
        } catch {
            throw ToolError("\(image): \(error)")
        }
    }

    /// Opens /dev/fuse, mounts, starts the request threads and waits for INIT.
    func serve(_ volume: Volume) -> (FUSEServer, FUSESession, Int32)? {
        var serverOptions = ServerOptions()
        serverOptions.cache = options.cache
        if let recordWrites {
            do throws(Errno) { serverOptions.recorder = try WriteRecorder(path: recordWrites) } catch {
                report("error: --record-writes \(recordWrites): \(error.symbolicName)")
                return nil
            }
        }
        if options.cache == .writeback && selfTest { checkWritebackCache() }
        guard let fd = connect(volume) else { return nil }
        let server = FUSEServer(volume: volume, options: serverOptions)
        let session = FUSESession(server: server, deviceFD: fd)
        session.start(threads: threads)
        guard session.waitForInit(timeout: .seconds(10)), let n = server.negotiated else {
            report("error: the kernel sent no INIT within 10 s")
            try? FUSEMount.unmount(directory, lazy: true, route: route)
            session.join()
            close(fd)
            return nil
        }
        if options.cache == .direct && !n.allowsSharedMmap {
            say("the kernel does not offer FUSE_DIRECT_IO_ALLOW_MMAP (6.6+): shared writable mappings fail with ENODEV")
        }
        say(
            "serving \(image) on \(directory)\(options.readOnly ? " read-only" : ""): protocol \(n.kernelMajor).\(n.kernelMinor), "
                + "cache=\(options.cache.rawValue), "
                + "shared mmap \(n.allowsSharedMmap ? "on" : "off"), \(threads) threads (\(session.clonedThreads) cloned)")
        if let pidFile { _ = FileManager.default.createFile(atPath: pidFile, contents: Data("\(getpid())\n".utf8)) }
        report("ready")
        return (server, session, fd)
    }

    /// `-o cache=writeback`: warns when the kernel's writeback cache can hand the volume
    /// stale memory as data. The daemon asks the kernel itself: the short-copy probe's
    /// exposing cases, twice each, on a scratch volume of its own (about a second); where
    /// that cannot run (not root, no /dev/fuse), the version rule of WritebackExposure.swift
    /// decides. `IOMAP_MOUNT_SELF_TEST_PLANT` plants stale bytes: the check's canary.
    func checkWritebackCache() {
        var plan = FUSEProbePlan.selfTest
        plan.planted = ProcessInfo.processInfo.environment["IOMAP_MOUNT_SELF_TEST_PLANT"].flatMap(Int.init) ?? 0
        let tools = FUSEProbeTools(iomap: ShortCopyProbe.executable, parseRecording: ShortCopyProbe.parseRecording)
        let exposure: WritebackCacheExposure
        do {
            let r = try runFUSEShortCopyProbe(attempts: 2, tools: tools, scratch: ProbeScratch(), plan: plan) { _ in }
            exposure = WritebackCacheExposure(selfTest: r.results.map(\.stale).reduce(0, +), kernel: r.kernel)
        } catch {
            let rule = WritebackCacheExposure.assess(release: kernelRelease(), initOnAlloc: initOnAllocState().value)
            exposure = WritebackCacheExposure(exposed: rule.exposed, reason: rule.reason + " (the self-test could not run: \(error))")
        }
        if let warning = exposure.warning { warn(warning) } else { say("cache=writeback: \(exposure.reason)") }
    }

    /// Opens /dev/fuse and mounts (mount(2) as root, fusermount3 otherwise): the
    /// connection's descriptor, or nil when it failed (reported).
    func connect(_ volume: Volume) -> Int32? {
        let source = options.fsname ?? image
        do throws(MountFailure) {
            route = try FUSEMount.route(options: options)
            guard case .fusermount(let fusermount) = route else { return try mountDirectly(volume, source) }
            return try FUSEMount.mountWithFusermount(fusermount, source: source, target: directory, options: options)
        } catch {
            report("error: mounting \(image) on \(directory): \(error)")
            return nil
        }
    }

    func mountDirectly(_ volume: Volume, _ source: String) throws(MountFailure) -> Int32 {
        do throws(Errno) {
            let fd = try FUSEMount.openDevice()
            do throws(Errno) {
                let root = try volume.stat(.root)
                try FUSEMount.mount(
                    source: source, target: directory, options: options, fd: fd, rootMode: root.mode, uid: getuid(), gid: getgid())
            } catch {
                close(fd)
                throw error
            }
            return fd
        } catch {
            throw MountFailure(error.symbolicName)
        }
    }

    /// After the connection ended: the opens the kernel never released closed, the volume
    /// unmounted (everything written back, a clean snapshot), the counters written.
    func finish(_ volume: Volume, _ server: FUSEServer, _ session: FUSESession, _ fd: Int32) -> Int32 {
        let left = server.closeAllHandles()
        // A test hook: a slow final unmount, to show that the next mount waits for it.
        if let ms = ProcessInfo.processInfo.environment["IOMAP_MOUNT_TEST_UNMOUNT_DELAY_MS"].flatMap(UInt32.init) { usleep(ms * 1000) }
        var status: Int32 = 0
        do throws(VolumeError) { try volume.unmount() } catch {
            say("unmounting the volume: \(error)")
            status = 1
        }
        if let jsonStats { writeMountStats(server, session, to: jsonStats) }
        if let pidFile { unlink(pidFile) }
        close(fd)
        say(
            "\(directory) unmounted\(left > 0 ? " (\(left) opens closed at the end)" : ""); volume unmounted \(status == 0 ? "cleanly" : "with errors")"
        )
        return status
    }
}

/// The signals the daemon acts on: SIGTERM, SIGINT and SIGHUP unmount (lazily: the
/// connection ends when the last open file closes), SIGUSR1 writes the counters.
final class SignalWatcher: Sendable {
    let directory: String
    let route: MountRoute
    let server: FUSEServer
    let session: FUSESession
    let statsPath: String?

    init(directory: String, route: MountRoute, server: FUSEServer, session: FUSESession, statsPath: String?) {
        self.directory = directory
        self.route = route
        self.server = server
        self.session = session
        self.statsPath = statsPath
    }

    func start() {
        let signals: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1]
        let fd = cfuse_signals_to_pipe(signals, Int32(signals.count))
        guard fd >= 0 else { return }
        // Never joined: it blocks in read until the process exits.
        JoinableThread(starting: { [self] in self.watch(fd) })?.detach()
    }

    func watch(_ fd: Int32) {
        var b: UInt8 = 0
        while true {
            let n = read(fd, &b, 1)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            if Int32(b) == SIGUSR1 {
                if let statsPath { writeMountStats(server, session, to: statsPath) }
            } else {
                try? FUSEMount.unmount(directory, lazy: true, route: route)
            }
        }
    }
}

/// `--json-stats`: the daemon's counters and what INIT settled.
struct MountStatsReport: Encodable {
    var requests: [String: Int]
    var enosys: Int
    var enosys_by_opcode: [String: Int]
    var errors: Int
    var bad_requests: Int
    var engine_fsyncs: Int
    var bytes_read: Int
    var bytes_written: Int
    var threads_cloned: Int
    var `protocol`: String?
    var cache: String
    var allow_mmap: Bool
    var offered_flags: String?
    var accepted_flags: String?
    var nodes: Int
    var open_handles: Int
    /// Page invalidations queued for the kernel (stale pages after a merged writeback), and sent.
    var invalidations_queued: Int
    var invalidations_sent: Int
}

/// Writes the report to `path` (through a temporary file and a rename: a reader never
/// sees half of it).
func writeMountStats(_ server: FUSEServer, _ session: FUSESession, to path: String) {
    let s = server.stats.snapshot()
    let n = server.negotiated
    let report = MountStatsReport(
        requests: s.requests, enosys: s.enosys, enosys_by_opcode: s.enosysByOpcode, errors: s.errors, bad_requests: s.badRequests,
        engine_fsyncs: s.engineFsyncs, bytes_read: s.bytesRead, bytes_written: s.bytesWritten,
        threads_cloned: session.clonedThreads, protocol: n.map { "\($0.kernelMajor).\($0.kernelMinor)" },
        cache: server.options.cache.rawValue, allow_mmap: n?.allowsSharedMmap ?? false,
        offered_flags: n.map { "0x" + String($0.offered.rawValue, radix: 16) },
        accepted_flags: n.map { "0x" + String($0.accepted.rawValue, radix: 16) }, nodes: server.nodes.count,
        open_handles: server.handles.count, invalidations_queued: server.invalidationsQueued,
        invalidations_sent: server.invalidationsSent)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    guard let data = try? encoder.encode(report) else { return }
    let temporary = path + ".tmp"
    guard FileManager.default.createFile(atPath: temporary, contents: data) else { return }
    _ = rename(temporary, path)
}
