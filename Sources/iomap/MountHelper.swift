// `iomap install-mount-helper [--dir DIR]`: writes mount(8)'s helper for the type fuse.iomap,
// so that `mount -t fuse.iomap IMAGE DIR` (and an fstab line of that type) runs `iomap
// mount`. mount(8) runs /sbin/mount.TYPE (here mount.fuse.iomap) as `mount.fuse.iomap SPEC
// DIR [-sfnv] [-o OPTIONS]`; the helper drops the flags and the options that are mount(8)'s
// own (they mean nothing to the volume), adds subtype=iomap so that /proc/mounts names the
// type that was asked for, and runs this binary's mount, whose exit status it passes on.

import ArgumentParser
import Foundation

struct InstallMountHelper: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install-mount-helper",
        abstract: "Install mount.fuse.iomap, so that `mount -t fuse.iomap IMAGE DIR` mounts with this iomap.",
        discussion: """
            Writes DIR/mount.fuse.iomap (default /sbin), a shell script that runs this binary's \
            `iomap mount IMAGE DIR -o subtype=iomap,OPTIONS`. mount(8)'s own options (defaults, \
            auto, noauto, nofail, user, users, nouser, _netdev, relatime, noatime, strictatime) are \
            dropped; any other goes to `iomap mount`, which refuses what it does not know. Exit \
            status: 0 installed, 1 could not write it, 2 bad usage.
            """)

    @Option(help: "The directory mount(8) looks for helpers in.")
    var dir = "/sbin"

    /// The script, for the iomap binary at `binary`.
    static func script(binary: String) -> String {
        """
        #!/bin/sh
        # mount(8)'s helper for the type fuse.iomap, written by `iomap install-mount-helper`.
        # Called as: mount.fuse.iomap IMAGE DIR [-sfnv] [-o OPTIONS]
        [ $# -ge 2 ] || { echo "mount.fuse.iomap: usage: mount.fuse.iomap IMAGE DIR [-o OPTIONS]" >&2; exit 2; }
        image=$1; dir=$2; shift 2
        opts=subtype=iomap
        while [ $# -gt 0 ]; do
            case $1 in
                -o) [ $# -ge 2 ] || { echo "mount.fuse.iomap: -o needs options" >&2; exit 2; }; given=$2; shift 2 ;;
                -o*) given=${1#-o}; shift ;;
                -s|-f|-n|-v) shift; continue ;;
                -t) shift 2; continue ;;
                *) echo "mount.fuse.iomap: unexpected argument '$1'" >&2; exit 2 ;;
            esac
            old_ifs=$IFS; IFS=,
            for o in $given; do
                case $o in
                    defaults|auto|noauto|nofail|user|users|nouser|_netdev|relatime|noatime|strictatime|"") ;;
                    *) opts=$opts,$o ;;
                esac
            done
            IFS=$old_ifs
        done
        exec '\(binary)' mount "$image" "$dir" -o "$opts"

        """
    }

    func run() throws {
        let binary = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let path = (dir as NSString).appendingPathComponent("mount.fuse.iomap")
        guard !binary.contains("'") else {
            FileHandle.standardError.write(Data("iomap install-mount-helper: the binary's path \(binary) holds a quote\n".utf8))
            throw ExitStatus.failure
        }
        do {
            try Self.script(binary: binary).write(toFile: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        } catch {
            FileHandle.standardError.write(Data("iomap install-mount-helper: cannot write \(path): \(error.localizedDescription)\n".utf8))
            throw ExitStatus.failure
        }
        print("installed \(path): mount -t fuse.iomap IMAGE DIR now runs \(binary) mount")
    }
}
