// `iomap mkfs` and `iomap fsck`: make a volume in an image file, and check one
// (docs/VOLUME.md, docs/FORMAT.md).

import ArgumentParser
import ExtentFS
import Foundation
import IOMapBase
import IOMapTesting
import Volume

#if canImport(Glibc)
    import Glibc
#endif

struct Mkfs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a new, empty volume in an image file (created or resized to --size).",
        discussion: """
            Refuses to overwrite an image that holds a volume unless --force is given; nothing is \
            changed when it refuses. Sizes take a K, M, G or T suffix (powers of 1024). Exit status: \
            0 made, 2 bad usage or refused.
            """)

    @Argument(help: "The image file.")
    var image: String

    @Option(help: "The volume's size in bytes (a whole number of blocks).")
    var size: String

    @Option(help: "Block size in bytes: 512, 1024, 2048 or 4096.")
    var blockSize = 4096

    @Option(help: "The log's size in bytes (default: min(64 MiB, size / 64)).")
    var logSize: String?

    @Flag(help: "Overwrite a volume that is there.")
    var force = false

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard [512, 1024, 2048, 4096].contains(blockSize) else {
            throw ValidationError("--block-size must be 512, 1024, 2048 or 4096, got \(blockSize)")
        }
        guard let bytes = VolumeImage.parseSize(size), bytes > 0 else { throw ValidationError("--size: not a size: \(size)") }
        guard bytes % blockSize == 0 else { throw ValidationError("--size \(bytes) is not a whole number of \(blockSize)-byte blocks") }
        if let logSize {
            guard let l = VolumeImage.parseSize(logSize), l > 0, l % blockSize == 0 else {
                throw ValidationError("--log-size must be a positive whole number of \(blockSize)-byte blocks, got \(logSize)")
            }
        }
    }

    struct Report: Encodable {
        var image: String
        var uuid: String
        var block_size: Int
        var blocks: Int
        var log_blocks: Int
        var seconds: Double
    }

    func run() throws {
        let bytes = VolumeImage.parseSize(size)!
        let blocks = bytes / blockSize
        if !force, let existing = try? VolumeImage.open(image), (try? DeviceLogStore.open(existing)) != nil {
            throw ValidationError("\(image) holds a volume already; give --force to overwrite it")
        }
        let clock = ContinuousClock()
        let start = clock.now
        let device: FileBlockDevice
        do throws(Errno) {
            device = try FileBlockDevice(path: image, blockSize: blockSize, blockCount: blocks, create: true)
        } catch {
            throw ValidationError("\(image): cannot create: \(error.symbolicName)")
        }
        var options = FormatOptions()
        options.force = true
        // The root directory is the maker's, as mke2fs makes it: a user who makes a volume
        // and mounts it through fusermount3 can then write in it.
        options.uid = getuid()
        options.gid = getgid()
        options.logBlocks = logSize.flatMap(VolumeImage.parseSize).map { $0 / blockSize }
        do throws(VolumeError) {
            try Volume.format(device: device, options: options)
        } catch {
            throw ValidationError("\(image): \(error)")
        }
        guard let store = try? DeviceLogStore.open(device) else { throw ValidationError("\(image): the new volume does not read back") }
        let g = store.geometry
        let r = Report(
            image: image, uuid: g.uuid.description, block_size: g.blockSize, blocks: g.blockCount, log_blocks: g.log.length,
            seconds: (clock.now - start).inSeconds)
        if json {
            printJSON(r)
        } else {
            print("made volume \(r.uuid) in \(image): \(r.blocks) blocks of \(r.block_size) bytes, a \(r.log_blocks)-block log")
        }
    }
}

struct FsckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck",
        abstract: "Check a volume without changing it, recovering its log in memory first.",
        discussion: """
            Runs the named checks of docs/VOLUME.md ("fsck") and reports each with the number of \
            items it looked at and what it found wrong. Exit status, as fsck(8): 0 clean, 4 errors \
            left (there is no repair yet), 8 could not run, 2 bad usage.
            """)

    @Argument(help: "The image file.")
    var image: String

    @Flag(name: .short, help: "No changes (the only mode there is).")
    var n = false

    @Flag(help: "Print one JSON object.")
    var json = false

    struct CheckJSON: Encodable {
        var code: String
        var name: String
        var checked: Int
        var errors: [String]
        var ran: Bool
    }

    struct Report: Encodable {
        var image: String
        var clean: Bool
        var errors: Int
        var replayed_checkpoints: Int
        var log_end: String
        var inodes: Int
        var used_blocks: Int
        var device_blocks: Int
        var checks: [CheckJSON]
    }

    func run() throws {
        let report: FsckReport
        do {
            let device = try VolumeImage.open(image)
            switch Result(catching: { () throws(VolumeError) in try DeviceLogStore.open(device) }) {
            case .success(let store): report = checkVolume(store, deviceBlocks: device.blockCount)
            case .failure(let e): report = Self.superblockFailure(e, deviceBlocks: device.blockCount)
            }
        } catch {
            printError("iomap fsck: \(error)")
            throw ExitCode(8)
        }
        if json {
            printJSON(
                Report(
                    image: image, clean: report.clean, errors: report.errorCount, replayed_checkpoints: report.replayedCheckpoints,
                    log_end: report.logEnd, inodes: report.inodes, used_blocks: report.usedBlocks, device_blocks: report.deviceBlocks,
                    checks: report.checks.map {
                        CheckJSON(code: $0.code, name: $0.name, checked: $0.checked, errors: $0.errors, ran: $0.ran)
                    }))
        } else {
            printText(report)
        }
        if !report.clean { throw ExitCode(4) }
    }

    /// The report when not even a superblock could be read: check S failed, the rest did not run.
    static func superblockFailure(_ error: VolumeError, deviceBlocks: Int) -> FsckReport {
        var report = FsckReport()
        report.deviceBlocks = deviceBlocks
        report.checks = fsckChecks.map { FsckCheck($0.code, $0.name) }
        report.checks[0].errors = [error.description]
        for i in 1..<report.checks.count { report.checks[i].ran = false }
        return report
    }

    func printText(_ report: FsckReport) {
        if report.replayedCheckpoints > 0 { print("log: \(report.replayedCheckpoints) checkpoints replayed in memory") }
        for c in report.checks {
            let status = !c.ran ? "not run" : c.errors.isEmpty ? "ok" : "\(c.errors.count) errors"
            print("\(c.code) \(c.name): \(c.checked) checked, \(status)")
            for e in c.errors { print("  \(e)") }
        }
        print(
            report.clean
                ? "\(image): clean, \(report.inodes) inodes, \(report.usedBlocks) of \(report.deviceBlocks) blocks used"
                : "\(image): \(report.errorCount) errors")
    }
}

/// Writes a line to standard error.
func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
