// Counterpart: none in the kernel; bad input to the volume, tested: names the namespace calls
// refuse with the errno Linux gives (checked on tmpfs by hand for every row below), the state
// unchanged after each refusal, and format and mount refusing a device too small, a truncated
// image, an unknown feature and an existing volume, writing nothing when they refuse.

import ExtentFS
import IOMapBase
import IOMapTesting
import Testing

@testable import Volume

#if canImport(Glibc)
    import Glibc
#endif

/// One directory call of the volume, named for the messages.
enum NameCall: String, CaseIterable {
    case create, mkdir, link, symlink, unlink, rmdir, renameFrom, renameTo
}

/// A volume with a file /f, an empty directory /d and a directory /ne holding /ne/x.
struct NamesFixture {
    let rig: VolumeRig
    let f: InodeNumber
    let d: InodeNumber
    let ne: InodeNumber
    var volume: Volume { rig.volume }

    init() throws {
        rig = try VolumeRig()
        let v = rig.volume
        f = try v.create(in: .root, "f", permissions: 0o644).inode
        d = try v.mkdir(in: .root, "d", permissions: 0o755)
        ne = try v.mkdir(in: .root, "ne", permissions: 0o755)
        _ = try v.create(in: ne, "x", permissions: 0o644)
    }

    /// Runs `call` with `name` in `dir`: the name is the new one (create, mkdir, link of /f,
    /// symlink, rename of /f to it) or the one to remove or rename away.
    func run(_ call: NameCall, in dir: InodeNumber, _ name: String) throws(Errno) {
        let v = volume
        switch call {
        case .create: _ = try v.create(in: dir, name, permissions: 0o644)
        case .mkdir: _ = try v.mkdir(in: dir, name, permissions: 0o755)
        case .link: try v.link(f, in: dir, name)
        case .symlink: _ = try v.symlink(in: dir, name, target: "f")
        case .unlink: try v.unlink(in: dir, name)
        case .rmdir: try v.rmdir(in: dir, name)
        case .renameFrom: try v.rename(from: dir, name, to: .root, "z")
        case .renameTo: try v.rename(from: .root, "f", to: dir, name)
        }
    }

    /// Expects `body` to fail with `expected` and to leave the metadata and the log as they
    /// were: a refused call must not have half happened.
    func expectRefused(
        _ what: String, _ expected: Errno, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws(Errno) -> Void
    ) {
        let before = volume.state
        let records = volume.journal.stats.records
        do throws(Errno) {
            try body()
            Issue.record("\(what): succeeded, expected \(expected.symbolicName)", sourceLocation: sourceLocation)
        } catch {
            #expect(error == expected, "\(what): \(error.symbolicName), expected \(expected.symbolicName)", sourceLocation: sourceLocation)
        }
        #expect(volume.state == before, "\(what): the state changed", sourceLocation: sourceLocation)
        #expect(volume.journal.stats.records == records, "\(what): records were logged", sourceLocation: sourceLocation)
    }
}

@Suite("Volume: bad input")
struct VolumeBadInputTests {
    static let long = String(repeating: "a", count: 256)

    /// Per bad name, the errno of each call in NameCall's order, and the directory it is
    /// used in. An empty name is the API's "/" (ParentAndName), so it is tried in the root;
    /// "." and ".." in /d, as `mkdir d/.` would. A name holding "/" or NUL cannot come from
    /// a path, whose walk splits at "/" and whose C string ends at NUL: the API refuses it
    /// as EINVAL, the errno Linux gives names it cannot store.
    static let badNames: [(name: String, inRoot: Bool, errnos: [Errno])] = [
        ("a/b", true, Array(repeating: .invalidArgument, count: 8)),
        ("a\u{0}b", true, Array(repeating: .invalidArgument, count: 8)),
        ("", true, [.fileExists, .fileExists, .fileExists, .fileExists, .isDirectory, .resourceBusy, .resourceBusy, .resourceBusy]),
        (".", false, [.fileExists, .fileExists, .fileExists, .fileExists, .isDirectory, .invalidArgument, .resourceBusy, .resourceBusy]),
        (
            "..", false,
            [.fileExists, .fileExists, .fileExists, .fileExists, .isDirectory, .directoryNotEmpty, .resourceBusy, .resourceBusy]
        ),
        (long, true, Array(repeating: .fileNameTooLong, count: 8)),
    ]

    @Test("names with \"/\" or NUL, empty, \".\", \"..\" and of 256 bytes get Linux's errno from every call, changing nothing")
    func badNamesRefused() throws {
        let fx = try NamesFixture()
        for (name, inRoot, errnos) in Self.badNames {
            for (call, expected) in zip(NameCall.allCases, errnos) {
                let shown = name.count > 20 ? "\(name.utf8.count) bytes" : "\"\(name.debugDescription)\""
                fx.expectRefused("\(call) \(shown)", expected) { () throws(Errno) in
                    try fx.run(call, in: inRoot ? .root : fx.d, name)
                }
            }
        }
    }

    @Test("a name of 255 bytes, the longest, works for every call (the bound is 255, not less)")
    func longestNameWorks() throws {
        let fx = try NamesFixture()
        let v = fx.volume
        let name = String(repeating: "b", count: 255)
        let ino = try v.create(in: fx.d, name, permissions: 0o644).inode
        #expect(try v.lookup(fx.d, name) == ino)
        try v.unlink(in: fx.d, name)
        let dir = try v.mkdir(in: fx.d, name, permissions: 0o755)
        try v.rename(from: fx.d, name, to: .root, name)
        #expect(try v.lookup(.root, name) == dir)
        try v.rmdir(in: .root, name)
        try v.link(fx.f, in: fx.d, name)
        try v.unlink(in: fx.d, name)
        _ = try v.symlink(in: fx.d, name, target: name)
        #expect(try v.readlink(try v.lookup(fx.d, name)) == Array(name.utf8))
        try fx.rig.expectClean("after the calls")
    }

    @Test("existing, missing and wrong-type names: EEXIST, ENOENT, EISDIR, ENOTDIR, ENOTEMPTY, EPERM, EINVAL as Linux")
    func wrongTargets() throws {
        let fx = try NamesFixture()
        let v = fx.volume
        let (f, d, ne) = (fx.f, fx.d, fx.ne)
        let cases: [(String, Errno, () throws(Errno) -> Void)] = [
            ("create an existing name, exclusive", .fileExists, { () throws(Errno) in _ = try v.create(in: .root, "f", permissions: 0) }),
            (
                "create \".\", not exclusive", .isDirectory,
                { () throws(Errno) in _ = try v.create(in: d, ".", permissions: 0, exclusive: false) }
            ),
            ("mkdir over a file", .fileExists, { () throws(Errno) in _ = try v.mkdir(in: .root, "f", permissions: 0o755) }),
            ("link over a directory", .fileExists, { () throws(Errno) in try v.link(f, in: .root, "d") }),
            ("symlink over a file", .fileExists, { () throws(Errno) in _ = try v.symlink(in: .root, "f", target: "x") }),
            ("unlink a missing name", .noSuchFileOrDirectory, { () throws(Errno) in try v.unlink(in: .root, "nope") }),
            ("rmdir a missing name", .noSuchFileOrDirectory, { () throws(Errno) in try v.rmdir(in: .root, "nope") }),
            ("rename a missing name", .noSuchFileOrDirectory, { () throws(Errno) in try v.rename(from: .root, "nope", to: .root, "z") }),
            ("link a missing inode", .noSuchFileOrDirectory, { () throws(Errno) in try v.link(InodeNumber(999), in: .root, "z") }),
            ("unlink a directory", .isDirectory, { () throws(Errno) in try v.unlink(in: .root, "d") }),
            ("rmdir a file", .notDirectory, { () throws(Errno) in try v.rmdir(in: .root, "f") }),
            ("rmdir a non-empty directory", .directoryNotEmpty, { () throws(Errno) in try v.rmdir(in: .root, "ne") }),
            ("link a directory", .notPermitted, { () throws(Errno) in try v.link(d, in: .root, "d2") }),
            ("rename a directory into itself", .invalidArgument, { () throws(Errno) in try v.rename(from: .root, "d", to: d, "sub") }),
            ("rename a file over a directory", .isDirectory, { () throws(Errno) in try v.rename(from: .root, "f", to: .root, "d") }),
            ("rename a directory over a file", .notDirectory, { () throws(Errno) in try v.rename(from: .root, "d", to: .root, "f") }),
            (
                "rename over a non-empty directory", .directoryNotEmpty,
                { () throws(Errno) in try v.rename(from: .root, "d", to: .root, "ne") }
            ),
            (
                "rename with RENAME_NOREPLACE over a name", .fileExists,
                { () throws(Errno) in try v.rename(from: .root, "f", to: ne, "x", flags: .noReplace) }
            ),
            ("symlink to an empty target", .noSuchFileOrDirectory, { () throws(Errno) in _ = try v.symlink(in: .root, "s", target: "") }),
            ("mkdir in a file", .notDirectory, { () throws(Errno) in _ = try v.mkdir(in: f, "x", permissions: 0o755) }),
            (
                "create in a missing inode", .noSuchFileOrDirectory,
                { () throws(Errno) in _ = try v.create(in: InodeNumber(999), "x", permissions: 0) }
            ),
        ]
        for (what, expected, body) in cases { fx.expectRefused(what, expected, body) }
        try fx.rig.expectClean("after the refusals")
    }
}

// MARK: - Format and mount

/// A file in a new temporary directory, removed with it by `remove()`.
struct TemporaryImage {
    let directory: String
    var path: String { directory + "/image" }

    init() throws {
        var template = Array("/tmp/iomap-badinput-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw Errno(rawValue: errno) }
        directory = String(cString: made)
    }

    func remove() {
        unlink(path)
        rmdir(directory)
    }
}

/// Every byte of `device`.
func deviceBytes(_ device: any BlockDevice) throws -> [UInt8] { try device.readBlocks(0, count: device.blockCount) }

/// The VolumeError `body` throws, or nil.
func volumeError(_ body: () throws(VolumeError) -> Void) -> VolumeError? {
    do throws(VolumeError) {
        try body()
        return nil
    } catch {
        return error
    }
}

// Nested so that a filter on VolumeBadInputTests runs these too.
extension VolumeBadInputTests {
    @Suite("Volume: bad format and mount input")
    struct Format {
        /// A device of `blocks` blocks filled with a pattern, so "unchanged" means something.
        func patterned(_ blocks: Int) throws -> MemoryBlockDevice {
            let device = MemoryBlockDevice(blockSize: 4096, blockCount: blocks)
            try device.writeBlocks(0, pattern(blocks * 4096, seed: 21))
            return device
        }

        @Test("a device smaller than the minimum is .invalid and not written; one block more than that formats")
        func tooSmall() throws {
            // The log takes blocks 2 ..< 18 (its least length, 16), and the data area at least
            // Volume.minimumDataBlocks.
            let least = LogRegion.firstLogBlock + LogRegion.minimumLength + Volume.minimumDataBlocks
            for blocks in [2, 10, 18, least - 1] {
                let device = try patterned(blocks)
                let (bytes, writes) = (try deviceBytes(device), device.writeCount)
                let e = volumeError { () throws(VolumeError) in try Volume.format(device: device) }
                guard case .invalid(let why) = e else {
                    Issue.record("\(blocks) blocks: \(String(describing: e)), expected .invalid")
                    continue
                }
                #expect(why.contains("blocks"), "\(blocks) blocks: \(why)")
                #expect(device.writeCount == writes, "\(blocks) blocks: format wrote before refusing")
                #expect(try deviceBytes(device) == bytes)
            }
            let device = try patterned(least)
            try Volume.format(device: device)
            var options = VolumeOptions()
            options.backgroundForce = nil
            try Volume.mount(device: device, options: options).unmount()
        }

        @Test("an image file cut short after mkfs: mount refuses naming the geometry mismatch")
        func truncatedImage() throws {
            let image = try TemporaryImage()
            defer { image.remove() }
            try Volume.format(device: try FileBlockDevice(path: image.path, blockSize: 4096, blockCount: 1024, create: true))
            // Cut short, and not on a block boundary: the tools open it with as many whole blocks
            // as the file holds (VolumeImage.open), 700.
            #expect(truncate(image.path, off_t(700 * 4096 + 100)) == 0)
            let device = try FileBlockDevice(path: image.path, blockSize: 4096, blockCount: 700, create: false)
            let e = volumeError { () throws(VolumeError) in _ = try Volume.mount(device: device) }
            guard case .corrupt(let why) = e else {
                Issue.record("\(String(describing: e)), expected .corrupt naming the geometry")
                return
            }
            #expect(why == "superblock 0: the volume is 1024 blocks of 4096 bytes, the device 700 of 4096")
        }

        /// A new volume on a memory disk whose superblock copies `copies` are rewritten with
        /// `change` applied and resealed by the format's own encoder.
        func volume(withSuperblock copies: [Int], _ change: (inout Superblock) -> Void) throws -> MemoryBlockDevice {
            let device = MemoryBlockDevice(blockSize: 4096, blockCount: 1024)
            try Volume.format(device: device)
            for copy in copies {
                var sb = try decodeSuperblock(try device.readBlocks(copy, count: 1), at: copy)
                change(&sb)
                try device.writeBlocks(copy, sb.encode(copy: copy))
            }
            return device
        }

        @Test("an unknown incompatible feature in either copy: mount refuses with .unsupported naming it, writing nothing")
        func unknownIncompatibleFeature() throws {
            for copies in [[0, 1], [0], [1]] {
                let device = try volume(withSuperblock: copies) { $0.features.incompatible |= 0x4 }
                let writes = device.writeCount
                let e = volumeError { () throws(VolumeError) in _ = try Volume.mount(device: device) }
                // The first flagged copy is named: an intact copy that is unsupported refuses the
                // volume even when the other one would do (docs/FORMAT.md "Two copies").
                #expect(e == .unsupported("superblock \(copies[0]): unknown incompatible feature 0x4"), "copies \(copies)")
                #expect(device.writeCount == writes)
            }
        }

        @Test("an unknown read-only-compatible feature: no read-write mount, and nothing written (there is no read-only mount)")
        func unknownReadOnlyCompatibleFeature() throws {
            let device = try volume(withSuperblock: [0, 1]) { $0.features.readOnlyCompatible |= 0x8 }
            let writes = device.writeCount
            var options = VolumeOptions()
            options.backgroundForce = nil
            let e = volumeError { () throws(VolumeError) in _ = try Volume.mount(device: device, options: options) }
            #expect(e == .unsupported("superblock 0: unknown read-only-compatible feature 0x8 (read-only)"))
            #expect(device.writeCount == writes, "the mount wrote to a volume it may only read")
            // fsck only reads, so it may check such a volume.
            #expect(checkVolume(try DeviceLogStore.open(device), deviceBlocks: device.blockCount).clean)
        }

        @Test("an unknown compatible feature is ignored and kept by the superblocks a mount writes")
        func unknownCompatibleFeature() throws {
            let device = try volume(withSuperblock: [0, 1]) { $0.features.compatible |= 0x10 }
            var options = VolumeOptions()
            options.backgroundForce = nil
            let v = try Volume.mount(device: device, options: options)
            _ = try v.mkdir(in: .root, "d", permissions: 0o755)
            try v.unmount()
            for copy in [0, 1] {
                #expect(try decodeSuperblock(try device.readBlocks(copy, count: 1), at: copy).features.compatible == 0x10, "copy \(copy)")
            }
        }

        @Test("mkfs over a volume without force is .exists and changes no byte; with force it makes a new volume")
        func formatOverVolume() throws {
            let device = MemoryBlockDevice(blockSize: 4096, blockCount: 1024)
            try Volume.format(device: device)
            var options = VolumeOptions()
            options.backgroundForce = nil
            let v = try Volume.mount(device: device, options: options)
            _ = try v.mkdir(in: .root, "keep", permissions: 0o755)
            try v.unmount()
            let (bytes, writes) = (try deviceBytes(device), device.writeCount)
            let uuid = try DeviceLogStore.open(device).geometry.uuid
            let e = volumeError { () throws(VolumeError) in try Volume.format(device: device) }
            guard case .exists(let why) = e else {
                Issue.record("\(String(describing: e)), expected .exists")
                return
            }
            #expect(why.contains(uuid.description) && why.contains("--force"), "\(why)")
            #expect(device.writeCount == writes)
            #expect(try deviceBytes(device) == bytes)
            #expect(try Volume.mount(device: device, options: options).lookup(.root, "keep") != .root)
            var force = FormatOptions()
            force.force = true
            try Volume.format(device: device, options: force)
            #expect(try DeviceLogStore.open(device).geometry.uuid != uuid)
            #expect(throws: Errno.noSuchFileOrDirectory) { try Volume.mount(device: device, options: options).lookup(.root, "keep") }
        }
    }
}
