// `iomap vol`: a volume used without a mount, as e2tools and mtools use theirs. Each call
// mounts the image (recovering its log), does one thing as one or more transactions, and
// unmounts cleanly, so the volume is consistent after every command.

import ArgumentParser
import ExtentFS
import IOMapBase
import Volume

#if canImport(Glibc)
    import Glibc
#endif

struct Vol: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Use a volume without mounting it: ls, stat, cat, put, get, mkdir, rm, mv, ln, setfattr, getfattr.",
        discussion: """
            iomap vol IMAGE ls [-l] [PATH]            list a directory
            iomap vol IMAGE stat PATH                 an inode's attributes (--json: one object)
            iomap vol IMAGE cat PATH                  a file's bytes to standard output
            iomap vol IMAGE put HOSTPATH PATH         copy a host file or tree in (holes, symlinks,
                                                      hard links and user/trusted xattrs kept)
            iomap vol IMAGE get PATH HOSTPATH         copy a file or tree out, the same way
            iomap vol IMAGE mkdir [-p] PATH
            iomap vol IMAGE rm [-r] PATH
            iomap vol IMAGE mv SOURCE DEST
            iomap vol IMAGE ln [-s] TARGET PATH       a hard link to TARGET (-s: a symlink)
            iomap vol IMAGE setfattr -n NAME [-v VALUE] PATH | -x NAME PATH
            iomap vol IMAGE getfattr [-n NAME] PATH
            Paths inside the volume are absolute. Exit status: 0 done, 1 the operation failed \
            (the message names the errno), 2 bad usage or no volume.
            """)

    @Argument(help: "The image file.")
    var image: String

    @Argument(help: "What to do.")
    var verb: String

    @Argument(parsing: .allUnrecognized, help: "The verb's arguments.")
    var arguments: [String] = []

    @Flag(help: "For stat: print one JSON object.")
    var json = false

    static let verbs = ["ls", "stat", "cat", "put", "get", "mkdir", "rm", "mv", "ln", "setfattr", "getfattr"]

    func validate() throws {
        guard Self.verbs.contains(verb) else {
            throw ValidationError("unknown verb \(verb); one of \(Self.verbs.joined(separator: ", "))")
        }
    }

    func run() throws {
        let device: FileBlockDevice
        let volume: Volume
        do {
            device = try VolumeImage.open(image)
            var options = VolumeOptions()
            options.backgroundForce = nil
            volume = try Volume.mount(device: device, options: options)
        } catch {
            throw ValidationError("\(image): \(error)")
        }
        var failure: String?
        do {
            try VolTool(volume: volume, json: json).run(verb, VolArguments(arguments))
        } catch let e as ValidationError {
            try? volume.unmount()
            throw e
        } catch {
            failure = "\(error)"
        }
        do throws(VolumeError) { try volume.unmount() } catch { failure = failure ?? "unmount: \(error)" }
        if let failure {
            printError("iomap vol \(verb): \(failure)")
            throw ExitStatus.violation
        }
    }
}

/// A verb's arguments: flags (-x, -x VALUE) and positional words.
struct VolArguments {
    var flags: [String: String] = [:]
    var words: [String] = []
    static let valued: Set<String> = ["-n", "-v", "-x"]

    init(_ raw: [String]) {
        var i = 0
        while i < raw.count {
            let a = raw[i]
            if a.hasPrefix("-") && a.count > 1 {
                if Self.valued.contains(a), i + 1 < raw.count {
                    flags[a] = raw[i + 1]
                    i += 1
                } else {
                    flags[a] = ""
                }
            } else {
                words.append(a)
            }
            i += 1
        }
    }

    /// Exactly `n` positional words, or a usage error naming the verb's form.
    func expect(_ n: Int, _ usage: String) throws -> [String] {
        guard words.count == n else { throw ValidationError("usage: iomap vol IMAGE \(usage)") }
        return words
    }
}

/// An operation's failure: the errno and what it was about.
struct VolFailure: Error, CustomStringConvertible {
    let errno: Errno
    let what: String
    var description: String { "\(what): \(errno.symbolicName)" }
}

extension Errno {
    /// Throws this errno about `what`.
    func about(_ what: String) -> VolFailure { VolFailure(errno: self, what: what) }
}
