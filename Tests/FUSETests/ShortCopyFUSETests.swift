// The short-copy probe through our own mount (`iomap kernel-probe short-copy --fs fuse`),
// the write recording it reads (`iomap mount --record-writes`), and the check `-o
// cache=writeback` makes before it mounts. The verdicts are the kernel's: the tests check
// that the probe, its canary and the mount's warning agree with each other, never what the
// kernel must answer.

import FUSE
import Foundation
import Testing
import Volume

#if canImport(Glibc)
    import Glibc
#endif

@Suite("the writeback cache's short-copy exposure: rule, recording format")
struct WritebackExposureRuleTests {
    @Test("the version rule: exposed from 6.17 on unless init_on_alloc is on; a release that does not parse is exposed")
    func rule() {
        #expect(!WritebackCacheExposure.assess(release: "6.16.9-arch1", initOnAlloc: "off").exposed)
        #expect(WritebackCacheExposure.assess(release: "6.17.0", initOnAlloc: "off").exposed)
        #expect(WritebackCacheExposure.assess(release: "6.18.44-fc-v1045", initOnAlloc: "unknown").exposed)
        #expect(!WritebackCacheExposure.assess(release: "6.18.44", initOnAlloc: "on").exposed)
        #expect(WritebackCacheExposure.assess(release: "7.0-rc1", initOnAlloc: "off").exposed)
        #expect(!WritebackCacheExposure.assess(release: "5.15.0", initOnAlloc: "off").exposed)
        #expect(WritebackCacheExposure.assess(release: "garbage", initOnAlloc: "off").exposed)
        #expect(WritebackCacheExposure(selfTest: 3, kernel: "x").warning != nil)
        #expect(WritebackCacheExposure(selfTest: 0, kernel: "x").warning == nil)
    }

    @Test("a recording parses back to what was recorded; a torn or foreign file is an error naming the record")
    func recordingRoundTrip() throws {
        let path = NSTemporaryDirectory() + "/iomap-record-\(getpid()).rec"
        defer { unlink(path) }
        do {
            let recorder = try WriteRecorder(path: path)
            let first: [UInt8] = [1, 2, 3]
            let second = [UInt8](repeating: 0xAB, count: 5000)
            first.withUnsafeBytes { recorder.record(inode: .init(7), offset: 8192, flags: 1, payload: $0) }
            second.withUnsafeBytes { recorder.record(inode: .init(9), offset: 1 << 40, flags: 0, payload: $0) }
            #expect(recorder.failedRecords == 0)
        }
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let records = try RecordedWrite.parse(bytes)
        #expect(records.count == 2)
        #expect(records.first == RecordedWrite(flags: 1, inode: 7, offset: 8192, payload: [1, 2, 3]))
        #expect(records.first?.fromPageCache == true && records.last?.fromPageCache == false)
        #expect(records.last?.offset == 1 << 40 && records.last?.payload.count == 5000)
        #expect(throws: RecordFormatError.self) { try RecordedWrite.parse(Array(bytes.dropLast())) }
        var foreign = bytes
        foreign[0] ^= 0xFF
        #expect(throws: RecordFormatError.self) { try RecordedWrite.parse(foreign) }
    }

    @Test("--canary-plant needs --fs fuse, and --fs fuse refuses the XFS probe's options, each exit 2")
    func usage() throws {
        for arguments in [
            ["--canary-plant", "10"], ["--fs", "fuse", "--dir", "/tmp"], ["--fs", "fuse", "--block-size", "1024"],
            ["--fs", "fuse", "--canary-plant", "5000"], ["--fs", "ntfs"],
        ] {
            let r = try runIOMap(["kernel-probe", "short-copy"] + arguments)
            #expect(r.status == 2, "\(arguments): exit \(r.status), \(r.stderr)")
        }
    }
}

@Suite("the short-copy probe through our mount", .serialized, .enabled(if: MountEnvironment.available, "needs root and /dev/fuse"))
struct ShortCopyFUSEProbeTests {
    /// Mounts the probe made and left behind: none may be.
    static func leftovers() -> [String] {
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        let left = mounts.split(separator: "\n").filter { $0.contains("iomap-short-copy-fuse") }.map(String.init)
        let dirs = ((try? FileManager.default.contentsOfDirectory(atPath: "/tmp")) ?? []).filter { $0.hasPrefix("iomap-short-copy-fuse") }
        return left + dirs
    }

    static func probe(_ extra: [String]) throws -> (status: Int32, json: [String: Any]) {
        let r = try runIOMap(["kernel-probe", "short-copy", "--fs", "fuse", "--json"] + extra)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "stdout: \(r.stdout)")
        return (r.status, json)
    }

    static func results(_ json: [String: Any]) -> [[String: Any]] { json["results"] as? [[String: Any]] ?? [] }

    static func stale(_ result: [String: Any], _ place: String) -> Int { (result[place] as? [String: Any])?["stale"] as? Int ?? -1 }

    @Test("every case in both cache modes; the verdict is the exit status; the controls and direct mode are clean; nothing left")
    func probeRuns() throws {
        let (status, json) = try Self.probe(["--attempts", "3"])
        let results = Self.results(json)
        #expect(results.count == 16, "\(results.count) results")
        #expect(Set(results.compactMap { $0["cache"] as? String }) == ["writeback", "direct"])
        let affected = json["affected"] as? Bool
        #expect(affected != nil && status == (affected == true ? 1 : 0), "exit \(status), affected \(String(describing: affected))")
        #expect(json["controls_clean"] as? Bool == true, "a control or a direct-mode case showed stale bytes: \(results)")
        for r in results { #expect(r["attempts"] as? Int == 3 && (r["writes_recorded"] as? Int ?? 0) > 0, "\(r)") }
        #expect(json["kernel"] as? String == kernelReleaseForTests())
        #expect((json["init_on_alloc"] as? [String: Any])?["value"] != nil)
        #expect(Self.leftovers().isEmpty, "left behind: \(Self.leftovers())")
    }

    @Test("canary: marker bytes stored past EOF are counted in the mapping, after growth, in the WRITEs and after sync")
    func canary() throws {
        let (status, json) = try Self.probe(["--attempts", "2", "--canary-plant", "40"])
        #expect(status == 1 && json["affected"] as? Bool == true)
        for r in Self.results(json) where r["cache"] as? String == "writeback" && r["control"] as? Bool == false {
            #expect(Self.stale(r, "mapped") == 80, "\(r)")
            #expect(Self.stale(r, "read_after_growth") == 80, "\(r)")
            #expect(Self.stale(r, "in_writes") >= 80, "\(r)")
            #expect(Self.stale(r, "after_sync") == 80, "\(r)")
        }
        #expect(Self.leftovers().isEmpty, "left behind: \(Self.leftovers())")
    }

    @Test("-o cache=writeback warns exactly when its self-test finds stale bytes: with planted ones, and as the probe says")
    func mountWarning() throws {
        let planted = try MountFixture()
        defer { planted.cleanup() }
        let warned = try planted.mount(["-o", "cache=writeback"], environment: ["IOMAP_MOUNT_SELF_TEST_PLANT": "10"])
        #expect(warned.stderr.contains("can store stale kernel memory as file data"), "stderr: \(warned.stderr)")
        try planted.umount()
        let plain = try MountFixture()
        defer { plain.cleanup() }
        let r = try plain.mount(["-o", "cache=writeback"])
        let (_, json) = try Self.probe(["--attempts", "2"])
        let affected = json["affected"] as? Bool == true
        #expect(r.stderr.contains("can store stale kernel memory as file data") == affected, "affected \(affected), stderr: \(r.stderr)")
        try plain.umount()
        let direct = try MountFixture()
        defer { direct.cleanup() }
        #expect(!(try direct.mount()).stderr.contains("stale kernel memory"))
        try direct.umount()
        #expect(Self.leftovers().isEmpty, "left behind: \(Self.leftovers())")
    }

    @Test("--record-writes holds every WRITE's bytes, the writeback cache's flagged as such")
    func recording() throws {
        let m = try MountFixture()
        defer { m.cleanup() }
        let path = m.root + "/writes.rec"
        try m.mount(["-o", "cache=writeback", "--record-writes", path, "--no-self-test"])
        let data = pattern(20000, seed: 5)
        try writeFile(m.path("f"), data, fsync: true)
        var st = stat()
        #expect(stat(m.path("f"), &st) == 0)
        try m.umount()
        let records = try RecordedWrite.parse([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))))
        var rebuilt = [UInt8](repeating: 0, count: data.count)
        for w in records where w.inode == UInt64(st.st_ino) {
            #expect(w.fromPageCache)
            for (i, b) in w.payload.enumerated() where Int(w.offset) + i < rebuilt.count { rebuilt[Int(w.offset) + i] = b }
        }
        #expect(rebuilt == data)
    }
}

/// uname -r, as the probe reports it.
func kernelReleaseForTests() -> String {
    var names = utsname()
    uname(&names)
    return withUnsafeBytes(of: &names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}
