// `iomap kernel-probe short-copy`: does a buffered write whose user buffer turns unreadable
// part of the way through leave stale memory in the file, on the host kernel? Beside the
// controls (readable buffers, tmpfs, ext4) and our engine.

import ArgumentParser
import FUSE
import Foundation
import IOMapKernelSide
import IOMapTesting

/// `--fs`: which file system the short-copy probe asks.
enum ShortCopyTarget: String, ExpressibleByArgument, CaseIterable {
    /// XFS images (or --dir): the write path of docs/DIFFERENCES-FROM-LINUX.md §4.
    case xfs
    /// Our own FUSE mount, in writeback-cache and direct mode (ShortCopyProbe+FUSE.swift).
    case fuse
}

struct ShortCopyProbe: HostProbeCommand {
    static let configuration = CommandConfiguration(
        commandName: "short-copy",
        abstract: "Show whether the host kernel leaves stale memory in a file after a buffered write's short copy.",
        discussion: """
            Each attempt writes into a hole (or unwritten space) of a new file from a buffer \
            whose first bytes are readable and whose next page is PROT_NONE, after filling and \
            freeing memory with a marker; it counts the non-zero bytes outside what the write \
            reported written, in the page cache and after fsync and a cache drop. Cases: \
            4k-hole, unwritten, large-folio and unprivileged on a 4096-byte-block XFS image, \
            1k-hole on a 1024-byte-block one. Controls: the same writes from readable buffers, \
            on tmpfs and on ext4; and our engine with poisoned folio memory. Without --dir the \
            probe makes, loop-mounts and afterwards removes its images (root needed). \
            --fs fuse asks the kernel's FUSE writeback cache instead, through volumes it makes \
            and mounts with `iomap mount` (root and /dev/fuse needed): appends and writes past \
            EOF whose copy comes up short, then the file grown (ftruncate, fallocate, a write \
            past EOF); stale bytes are counted through a mapping of the EOF page, in read() \
            after the growth, in the WRITE payloads the mount recorded, and after fsync and a \
            cache drop; in cache=writeback and, as the control, the default direct mode. Exit \
            status: 1 when the kernel showed stale bytes, 0 when it did not, 2 when the probe \
            could not run.
            """)

    @Option(help: "The file system to probe: xfs (images, or --dir) or fuse (our own mount, both cache modes).")
    var fs = ShortCopyTarget.xfs
    @Option(
        name: .customLong("canary-plant"), parsing: .unconditional,
        help: ArgumentHelp("--fs fuse: store this many marker bytes past EOF after each write (the probe's canary).", visibility: .hidden))
    var canaryPlant = 0

    @Option(help: "A directory to probe instead of new XFS images; the cases that fit its block size run.")
    var dir: String?
    @Option(parsing: .unconditional, help: "Block size of the one XFS image to make: 1024 or 4096 (default: one of each).")
    var blockSize: Int?
    @Option(parsing: .unconditional, help: "Attempts per case and per control write.")
    var attempts = 20
    @Option(parsing: .unconditional, help: "The uid the unprivileged case writes as (default when root: 65534, nobody).")
    var user: Int?
    @Flag(help: "Print one JSON object on stdout.") var json = false

    func configure(_ c: inout ShortCopyProbeConfig) {
        c.blockSize = blockSize
        c.user = user
        if fs == .fuse { c.fuse = FUSEProbeTools(iomap: Self.executable, parseRecording: Self.parseRecording) }
        c.fusePlan.planted = canaryPlant
    }

    /// This executable, which makes and mounts the FUSE variant's volumes.
    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// The mount's write recording (FUSE.WriteRecorder's format), as the probe counts it.
    static func parseRecording(_ bytes: [UInt8]) throws -> [FUSERecordedWrite] {
        try RecordedWrite.parse(bytes).map {
            FUSERecordedWrite(inode: $0.inode, offset: $0.offset, fromPageCache: $0.fromPageCache, payload: $0.payload)
        }
    }

    static func probe(_ config: ShortCopyProbeConfig, scratch: ProbeScratch, progress: (String) -> Void) throws -> ShortCopyProbeReport {
        try runShortCopyProbe(config, scratch: scratch, progress: progress)
    }

    static func jsonReport(_ r: ShortCopyProbeReport, _ config: ShortCopyProbeConfig) -> ShortCopyProbeOutput {
        if let fuse = r.fuse { return .fuse(FUSEShortCopyJSON(fuse)) }
        return .xfs(ShortCopyProbeJSON(r))
    }

    static func textLines(_ r: ShortCopyProbeReport, _ config: ShortCopyProbeConfig) -> [String] {
        if let fuse = r.fuse { return fuseTextLines(fuse) }
        let verdict =
            r.affected
            ? "AFFECTED: a short copy leaves stale memory in the file"
            : "not affected: every short copy left zeroes outside what was written"
        var lines = ["Linux \(r.kernel), \(r.fs): \(verdict)"]
        for c in r.cases {
            let who = c.uid.map { ", as uid \($0)" } ?? ""
            lines.append("  \(c.name) (\(c.blockSize)-byte blocks, \(c.write.description)\(who)): \(tallyText(c.tally, markers: true))")
        }
        for s in r.skipped { lines.append("  skipped \(s.name): \(s.reason)") }
        for c in r.controls {
            lines.append("  control \(c.name) (\(c.detail)): \(tallyText(c.tally, markers: false))")
        }
        let engineErrors = r.engine.compactMap(\.error)
        lines.append(
            "  our engine (new folio memory poisoned; \(r.engine.map(\.name).joined(separator: "; "))): "
                + "\(r.engineStale) stale bytes" + (engineErrors.isEmpty ? "" : "; failed: \(engineErrors.joined(separator: "; "))"))
        lines.append("  kernel \(r.kernel); init_on_alloc \(r.initOnAlloc.value) (\(r.initOnAlloc.source))")
        lines.append(
            "  with init_on_alloc on, a kernel shows zeroes rather than stale memory: that hides the exposure without fixing the logic")
        if !r.affected, let recycled = recycledNote(r) { lines.append("  \(recycled)") }
        for n in r.notes { lines.append("  note: \(n)") }
        if r.controls.contains(where: { $0.tally.stale > 0 }) {
            lines.append("  note: a control showed stale bytes, so the probe's premise does not hold here")
        }
        return lines
    }

    static func tallyText(_ t: ShortCopyTally, markers: Bool) -> String {
        var text = "\(t.attempts) attempts"
        if markers { text += ", pwrite returned \(t.writeReturned.map(String.init).joined(separator: " or "))" }
        text +=
            "; stale bytes in cache \(t.staleInCache) (max \(t.maxStaleInCache) per attempt), on disk \(t.staleOnDisk) (max \(t.maxStaleOnDisk))"
        if markers { text += "; marker bytes \(t.markerInCache) in cache, \(t.markerOnDisk) on disk" }
        if markers && t.recycledKnown > 0 { text += "; page under the write held the marker in \(t.recycled) of \(t.recycledKnown)" }
        return text
    }

    /// Zeroes mean more when the page under the write had held the marker.
    static func recycledNote(_ r: ShortCopyProbeReport) -> String? {
        let recycled = r.cases.reduce(0) { $0 + $1.tally.recycled }
        let known = r.cases.reduce(0) { $0 + $1.tally.recycledKnown }
        guard known > 0 else { return nil }
        return "in \(recycled) of \(known) attempts the page-cache page under the write was one the marker had been freed from, "
            + "so there the kernel zeroed the uncopied bytes itself rather than being handed zeroed memory"
    }
}

/// `iomap kernel-probe short-copy --json`.
struct ShortCopyProbeJSON: Encodable {
    /// A case's or a control's sums, printed among its other fields.
    struct Tally: Encodable {
        var attempts, stale_in_cache, stale_on_disk, max_stale_in_cache, max_stale_on_disk: Int
        var marker_in_cache, marker_on_disk, recycled_pages, recycled_known: Int
        var write_returned: [Int]
    }

    struct Write: Encodable {
        var offset, length, readable: Int
        var unwritten: Bool
    }

    struct Case: Encodable {
        var name, fs: String
        var block_size: Int
        var write: Write
        /// Only the unprivileged case has one.
        var uid: Int?
    }

    struct Control: Encodable {
        var name, detail: String
    }

    struct Engine: Encodable {
        var name: String
        var block_size, max_folio_size, written, stale_in_cache, stale_on_disk: Int
        @KeepNull var error: String?
    }

    struct InitOnAlloc: Encodable {
        var value, source: String
    }

    struct Skip: Encodable {
        var name, reason: String
    }

    var kernel, fs: String
    var affected: Bool
    var block_sizes: [Int]
    /// Printed when the probe ran on one block size only.
    var block_size: Int?
    var init_on_alloc: InitOnAlloc
    var cases: [MergedJSON<Tally, Case>]
    var controls: [MergedJSON<Tally, Control>]
    var engine: [Engine]
    var engine_stale: Int
    var skipped: [Skip]
    var notes: [String]
    var elapsed_s: Double
}

extension ShortCopyProbeJSON {
    init(_ r: ShortCopyProbeReport) {
        let cases = r.cases.map { c in
            let w = c.write
            let write = Write(offset: w.offset, length: w.length, readable: w.readable, unwritten: w.unwritten)
            return MergedJSON(
                first: Tally(c.tally), second: Case(name: c.name, fs: c.fs, block_size: c.blockSize, write: write, uid: c.uid))
        }
        let engine = r.engine.map { e in
            Engine(
                name: e.name, block_size: e.blockSize, max_folio_size: e.maxFolioSize, written: e.written, stale_in_cache: e.staleInCache,
                stale_on_disk: e.staleOnDisk, error: e.error)
        }
        self.init(
            kernel: r.kernel, fs: r.fs, affected: r.affected, block_sizes: r.blockSizes,
            block_size: r.blockSizes.count == 1 ? r.blockSizes[0] : nil,
            init_on_alloc: InitOnAlloc(value: r.initOnAlloc.value, source: r.initOnAlloc.source), cases: cases,
            controls: r.controls.map { MergedJSON(first: Tally($0.tally), second: Control(name: $0.name, detail: $0.detail)) },
            engine: engine, engine_stale: r.engineStale, skipped: r.skipped.map { Skip(name: $0.name, reason: $0.reason) },
            notes: r.notes, elapsed_s: r.seconds)
    }
}

extension ShortCopyProbeJSON.Tally {
    init(_ t: ShortCopyTally) {
        self.init(
            attempts: t.attempts, stale_in_cache: t.staleInCache, stale_on_disk: t.staleOnDisk, max_stale_in_cache: t.maxStaleInCache,
            max_stale_on_disk: t.maxStaleOnDisk, marker_in_cache: t.markerInCache, marker_on_disk: t.markerOnDisk,
            recycled_pages: t.recycled, recycled_known: t.recycledKnown, write_returned: t.writeReturned)
    }
}
