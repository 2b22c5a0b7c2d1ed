// Counterpart: none in the kernel; the scratch space of the kernel probes. A probe runs in a
// directory it is given, or in file systems it makes, loop-mounts and removes itself, on
// every path: when it returns, when it throws, and when a signal stops the program.

import Foundation
import IOMapBase
import IOMapTesting
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What the probes have set up and not yet taken down, so that a signal handler can take it
/// down. Making and removing hold the lock, so a signal arriving in the middle of a mount
/// waits for it to finish and then removes what it left; after `removeAll` nothing new is
/// made.
public final class ProbeScratch: Sendable {
    private struct State {
        var mounts: [String: LoopMount] = [:]
        var fuseMounts: [String: FUSEBenchMount] = [:]
        var directories: Set<String> = []
        var closed = false
    }

    private let state = HarnessMutex(State())

    public init() {}

    /// Makes and loop-mounts a new image.
    public func mount(_ fileSystem: LoopImageFileSystem, blockSize: Int?, sizeBytes: Int) throws -> LoopMount {
        try state.withLock { s in
            if s.closed { throw KernelSetupError("interrupted before making \(fileSystem.rawValue) image") }
            let m = try LoopMount.make(sizeBytes: sizeBytes, blockSize: blockSize, fileSystem: fileSystem)
            s.mounts[m.directory] = m
            return m
        }
    }

    /// Unmounts and removes an image made by `mount`; returns what went wrong.
    @discardableResult
    public func unmount(_ m: LoopMount) -> [String] {
        state.withLock { s in
            guard s.mounts.removeValue(forKey: m.directory) != nil else { return [] }
            return m.unmount()
        }
    }

    /// Makes a volume image in `directory` and mounts it with the built `iomap mount`.
    public func mountFUSE(iomap: String, directory: String, imageBytes: Int, options: String, arguments: [String]) throws
        -> FUSEBenchMount
    {
        try state.withLock { s in
            if s.closed { throw KernelSetupError("interrupted before mounting a volume in \(directory)") }
            let m = try FUSEBenchMount(iomap: iomap, directory: directory, imageBytes: imageBytes, options: options, arguments: arguments)
            s.fuseMounts[m.mountPoint] = m
            return m
        }
    }

    /// Unmounts a mount made by `mountFUSE`, waiting for its daemon; returns what went wrong.
    @discardableResult
    public func unmountFUSE(_ m: FUSEBenchMount) -> [String] {
        state.withLock { s in
            guard s.fuseMounts.removeValue(forKey: m.mountPoint) != nil else { return [] }
            return m.unmount()
        }
    }

    /// Makes a new directory under `parent`.
    public func makeDirectory(in parent: String, prefix: String) throws -> String {
        try state.withLock { s in
            if s.closed { throw KernelSetupError("interrupted before making a directory in \(parent)") }
            let path = parent + "/\(prefix)-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
            s.directories.insert(path)
            return path
        }
    }

    /// Removes a directory made by `makeDirectory`, with what it holds.
    public func removeDirectory(_ path: String) {
        state.withLock { s in
            guard s.directories.remove(path) != nil else { return }
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// Takes down everything still set up, and refuses to set up more: for a signal handler.
    @discardableResult
    public func removeAll() -> [String] {
        state.withLock { s in
            s.closed = true
            var problems: [String] = []
            for m in s.fuseMounts.values { problems += m.unmount() }
            for m in s.mounts.values { problems += m.unmount() }
            for d in s.directories { try? FileManager.default.removeItem(atPath: d) }
            s.mounts = [:]
            s.fuseMounts = [:]
            s.directories = []
            return problems
        }
    }
}

/// Runs `body` in `given`, or else in a new loop-mounted image of `fileSystem`, removed
/// afterwards whatever `body` does.
public func withProbeDirectory<T>(
    _ given: String?, fileSystem: LoopImageFileSystem = .xfs, blockSize: Int?, sizeBytes: Int = 1 << 30,
    scratch: ProbeScratch, progress: (String) -> Void, _ body: (String) throws -> T
) throws -> T {
    if let given { return try body(given) }
    let blocks = blockSize.map { " with \($0)-byte blocks" } ?? ""
    progress("making \(fileSystem == .xfs ? "an XFS" : "an ext4") image\(blocks) and loop-mounting it")
    let m = try scratch.mount(fileSystem, blockSize: blockSize, sizeBytes: sizeBytes)
    defer {
        for problem in scratch.unmount(m) { progress("cleanup: \(problem)") }
    }
    return try body(m.mountPoint)
}
