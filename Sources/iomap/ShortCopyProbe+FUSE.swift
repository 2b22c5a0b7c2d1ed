// `iomap kernel-probe short-copy --fs fuse`: the report of the FUSE variant, as text and as
// JSON, and the verdict of the rule `iomap mount -o cache=writeback` warns by beside it, so a
// reader sees whether the two agree on this kernel.

import FUSE
import IOMapKernelSide

/// The probe's one JSON object: the XFS report's shape, or the FUSE variant's.
enum ShortCopyProbeOutput: Encodable {
    case xfs(ShortCopyProbeJSON)
    case fuse(FUSEShortCopyJSON)

    func encode(to encoder: any Encoder) throws {
        switch self {
        case .xfs(let j): try j.encode(to: encoder)
        case .fuse(let j): try j.encode(to: encoder)
        }
    }
}

extension ShortCopyProbe {
    static func fuseTextLines(_ r: FUSEShortCopyReport) -> [String] {
        let verdict =
            r.affected
            ? "AFFECTED: with the writeback cache a short copy leaves stale memory that becomes file data"
            : "not affected: every short copy left only what was written"
        var lines = ["Linux \(r.kernel), fuse (our mount): \(verdict)"]
        for cache in ["writeback", "direct"] {
            lines.append("  cache=\(cache):")
            for c in r.results where c.cache == cache {
                lines.append("    \(c.isControl ? "control " : "")\(c.name) (\(c.write.description)): \(fuseTallyText(c))")
            }
        }
        let exposure = WritebackCacheExposure.assess(release: r.kernel, initOnAlloc: r.initOnAlloc.value)
        lines.append("  kernel \(r.kernel); init_on_alloc \(r.initOnAlloc.value) (\(r.initOnAlloc.source))")
        lines.append(
            "  iomap mount -o cache=writeback runs this probe's exposing cases before it mounts and warns when they find stale bytes; "
                + "where it cannot (not root), its version rule says \(exposure.exposed ? "exposed" : "not exposed"): \(exposure.reason)"
                + (exposure.exposed == r.affected ? "" : " (the rule and this probe disagree; the probe is what the mount trusts)"))
        let recycled = r.results.reduce(0) { $0 + $1.recycled }
        let known = r.results.reduce(0) { $0 + $1.recycledKnown }
        if !r.affected && known > 0 {
            lines.append(
                "  in \(recycled) of \(known) attempts the page under the write's end was one the marker had been freed from, "
                    + "so the zeroes there were written by the kernel, not handed out by the allocator")
        }
        if !r.controlsClean {
            lines.append("  note: a control or a direct-mode case showed stale bytes, so the probe's premise does not hold")
        }
        for n in r.notes { lines.append("  note: \(n)") }
        return lines
    }

    static func fuseTallyText(_ c: FUSEShortCopyResult) -> String {
        func count(_ s: StaleCount) -> String {
            "\(s.stale)" + (s.stale > 0 ? " (max \(s.maxStale), marker \(s.marker))" : "") + (s.unseen > 0 ? " [\(s.unseen) unseen]" : "")
        }
        var text = "\(c.attempts) attempts, pwrite returned \(c.writeReturned.map(String.init).joined(separator: " or "))"
        text += "; stale bytes: EOF-page mapping \(count(c.mapped)), read after growth \(count(c.afterGrowth))"
        text += ", WRITE payloads \(count(c.inWrites)) of \(c.writesRecorded) WRITEs (\(c.writebackWrites) writeback)"
        text += ", after fsync and cache drop \(count(c.afterSync))"
        if !c.growthErrors.isEmpty { text += "; growth failed: \(c.growthErrors.joined(separator: ", "))" }
        if c.recycledKnown > 0 { text += "; page under the write's end held the marker in \(c.recycled) of \(c.recycledKnown)" }
        return text
    }
}

/// `iomap kernel-probe short-copy --fs fuse --json`.
struct FUSEShortCopyJSON: Encodable {
    struct Count: Encodable {
        var stale, max_stale, marker, unseen: Int
    }

    struct Write: Encodable {
        var data_bytes, file_size, offset, length, readable, grow_to: Int
        var growth: String
    }

    struct Result: Encodable {
        var name, cache: String
        var control: Bool
        var write: Write
        var attempts: Int
        var write_returned: [Int]
        var mapped, read_after_growth, in_writes, after_sync: Count
        var stale: Int
        var writes_recorded, writeback_writes: Int
        var growth_errors: [String]
        var recycled_pages, recycled_known: Int
    }

    struct InitOnAlloc: Encodable {
        var value, source: String
    }

    /// The version rule `iomap mount -o cache=writeback` falls back on when its self-test
    /// cannot run, and whether it agrees with this probe.
    struct MountWarning: Encodable {
        var rule_exposed: Bool
        var reason: String
        var agrees: Bool
    }

    var kernel, fs: String
    var affected, controls_clean: Bool
    var init_on_alloc: InitOnAlloc
    var results: [Result]
    var mount_warning: MountWarning
    var notes: [String]
    var elapsed_s: Double
}

extension FUSEShortCopyJSON {
    init(_ r: FUSEShortCopyReport) {
        func count(_ s: StaleCount) -> Count { Count(stale: s.stale, max_stale: s.maxStale, marker: s.marker, unseen: s.unseen) }
        let results = r.results.map { c in
            let w = c.write
            return Result(
                name: c.name, cache: c.cache, control: c.isControl,
                write: Write(
                    data_bytes: w.dataBytes, file_size: w.fileSize, offset: w.offset, length: w.length, readable: w.readable,
                    grow_to: w.growTo, growth: w.growth.rawValue),
                attempts: c.attempts, write_returned: c.writeReturned, mapped: count(c.mapped), read_after_growth: count(c.afterGrowth),
                in_writes: count(c.inWrites), after_sync: count(c.afterSync), stale: c.stale, writes_recorded: c.writesRecorded,
                writeback_writes: c.writebackWrites, growth_errors: c.growthErrors, recycled_pages: c.recycled,
                recycled_known: c.recycledKnown)
        }
        let exposure = WritebackCacheExposure.assess(release: r.kernel, initOnAlloc: r.initOnAlloc.value)
        self.init(
            kernel: r.kernel, fs: "fuse", affected: r.affected, controls_clean: r.controlsClean,
            init_on_alloc: InitOnAlloc(value: r.initOnAlloc.value, source: r.initOnAlloc.source), results: results,
            mount_warning: MountWarning(rule_exposed: exposure.exposed, reason: exposure.reason, agrees: exposure.exposed == r.affected),
            notes: r.notes, elapsed_s: r.seconds)
    }
}
