// Counterpart: the kernel's init_on_alloc switch (mm/mm_init.c), which makes the page
// allocator zero every page it hands out. With it on, memory a write path forgot to zero
// reads as zeroes: the short-copy probe then finds nothing, although the write path is
// the same. So the probe says whether it was on, and where it learned that.

import Foundation

/// Whether the running kernel zeroes pages on allocation: "on", "off" or "unknown".
public struct InitOnAllocState: Sendable, Equatable {
    public var value: String
    /// Where the value came from, or why it is unknown.
    public var source: String
}

/// Looks in the kernel log first (what the booted kernel reports), then at the command
/// line, then at the build's default in /proc/config.gz.
public func initOnAllocState() -> InitOnAllocState {
    var tried: [String] = []
    if let dmesg = findExecutable("dmesg") {
        let out = run(dmesg, [])
        if out.status == 0 {
            if let state = parseMemAutoInit(out.output) { return state }
            tried.append("dmesg has no 'mem auto-init:' line")
        } else {
            tried.append("dmesg failed (\(out.output.split(separator: "\n").first ?? "status \(out.status)"))")
        }
    } else {
        tried.append("no dmesg")
    }
    let cmdline = (try? String(contentsOfFile: "/proc/cmdline", encoding: .utf8)) ?? ""
    if let state = parseInitOnAllocParameter(cmdline) { return state }
    tried.append("/proc/cmdline has no init_on_alloc=")
    if FileManager.default.fileExists(atPath: "/proc/config.gz"), let gzip = findExecutable("gzip") {
        let out = run(gzip, ["-dc", "/proc/config.gz"])
        if out.status == 0, let state = parseInitOnAllocConfig(out.output) { return state }
        tried.append("/proc/config.gz does not say")
    } else {
        tried.append("no /proc/config.gz")
    }
    return InitOnAllocState(value: "unknown", source: tried.joined(separator: "; "))
}

/// The boot line "mem auto-init: stack:..., heap alloc:on|off, heap free:...".
public func parseMemAutoInit(_ log: String) -> InitOnAllocState? {
    guard let line = log.split(separator: "\n").last(where: { $0.contains("mem auto-init:") }),
        let range = line.range(of: "heap alloc:")
    else { return nil }
    let value = line[range.upperBound...].prefix { $0.isLetter }
    guard value == "on" || value == "off" else { return nil }
    let text = line[line.range(of: "mem auto-init:")!.lowerBound...]
    return InitOnAllocState(value: String(value), source: "dmesg: \(text)")
}

/// The last init_on_alloc= on the kernel command line (the kernel takes the last).
public func parseInitOnAllocParameter(_ cmdline: String) -> InitOnAllocState? {
    guard let word = cmdline.split(whereSeparator: { $0 == " " || $0 == "\n" }).last(where: { $0.hasPrefix("init_on_alloc=") })
    else { return nil }
    let raw = word.dropFirst("init_on_alloc=".count).lowercased()
    let value = ["1", "on", "y", "yes"].contains(raw) ? "on" : ["0", "off", "n", "no"].contains(raw) ? "off" : "unknown"
    return InitOnAllocState(value: value, source: "/proc/cmdline: \(word)")
}

/// CONFIG_INIT_ON_ALLOC_DEFAULT_ON in a kernel config: the default, which init_on_alloc=
/// on the command line would override (it has none when this is asked).
public func parseInitOnAllocConfig(_ config: String) -> InitOnAllocState? {
    for line in config.split(separator: "\n") {
        if line == "CONFIG_INIT_ON_ALLOC_DEFAULT_ON=y" {
            return InitOnAllocState(value: "on", source: "/proc/config.gz: \(line)")
        }
        if line == "# CONFIG_INIT_ON_ALLOC_DEFAULT_ON is not set" {
            return InitOnAllocState(value: "off", source: "/proc/config.gz: \(line)")
        }
    }
    return nil
}
