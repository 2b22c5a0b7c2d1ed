// Counterpart: none in the kernel; the model side of the namespace differential test: each
// step's call made on MetadataState through the plans, with the path handling a volume
// gives them (the checks Linux makes before walking a path, then resolve or resolveParent),
// and the tree read back with readdir.

import IOMapBase
import Testing
import Volume

struct ModelRunner {
    var state = MetadataState.newVolume(time: Timestamp(seconds: 1))
    /// Each step gets its own time, so that a changed time is a time set by that step.
    var clock: Int64 = 1
    /// Which inodes count as open (orphaned rather than freed when they lose their last
    /// name). None in the differential test: the host side holds nothing open.
    var isOpen: @Sendable (InodeNumber) -> Bool = { _ in false }
    /// The fs.protected_* policies, those of the host in the differential test.
    var limits = NamespaceLimits.standard

    mutating func perform(_ step: Step) -> (Int32, String) {
        clock += 1
        let caller = step.who.caller(now: Timestamp(seconds: clock))
        do {
            return (0, try run(step.op, caller))
        } catch {
            return ((error as? Errno)?.rawValue ?? -1, "")
        }
    }

    private mutating func run(_ op: DiffOp, _ c: Caller) throws -> String {
        switch op {
        case .create(let p, let mode, let exclusive):
            let pn = try state.resolveParent(p, caller: c, limits: limits)
            let r = try state.commit {
                try $0.planCreate(in: pn.directory, pn.lastComponent, permissions: mode, exclusive: exclusive, caller: c, limits: limits)
            }
            if !r.created { try openExisting(r.inode, in: pn.directory, c) }
        case .mknod(let p, let type, let mode, let rdev):
            try MetadataState.checkMknodType(type)
            let pn = try state.resolveParent(p, caller: c, limits: limits)
            try state.commit { try $0.planMknod(in: pn.directory, pn.lastComponent, type: type, permissions: mode, rdev: rdev, caller: c) }
        case .mkdir(let p, let mode):
            let pn = try state.resolveParent(p, caller: c, limits: limits)
            try state.commit { try $0.planMkdir(in: pn.directory, pn.lastComponent, permissions: mode, caller: c, limits: limits) }
        case .symlink(let p, let target):
            try MetadataState.checkSymlinkTarget(b(target))
            let pn = try state.resolveParent(p, caller: c, limits: limits)
            try state.commit { try $0.planSymlink(in: pn.directory, pn.lastComponent, target: b(target), caller: c) }
        case .readlink(let p):
            return String(
                decoding: try state.readlink(try state.resolve(p, followFinalSymlink: false, caller: c, limits: limits)), as: UTF8.self)
        case .link(let from, let to):
            let source = try state.resolve(from, followFinalSymlink: false, caller: c, limits: limits)
            let pn = try state.resolveParent(to, caller: c, limits: limits)
            try state.commit { try $0.planLink(source, in: pn.directory, pn.lastComponent, caller: c, limits: limits) }
        case .unlink(let p):
            let pn = try state.resolveParent(p, caller: c, limits: limits)
            try state.commit { try $0.planUnlink(in: pn.directory, pn.lastComponent, caller: c, isOpen: isOpen) }
        case .rmdir(let p):
            let pn = try state.resolveParent(p, caller: c, limits: limits)
            try state.commit { try $0.planRmdir(in: pn.directory, pn.lastComponent, caller: c, isOpen: isOpen) }
        case .rename(let from, let to, let flags):
            try MetadataState.checkRenameFlags(RenameFlags(rawValue: flags))
            let po = try state.resolveParent(from, caller: c, limits: limits)
            let pn = try state.resolveParent(to, caller: c, limits: limits)
            try state.commit {
                try $0.planRename(
                    from: po.directory, po.lastComponent, to: pn.directory, pn.lastComponent, flags: RenameFlags(rawValue: flags),
                    caller: c,
                    limits: limits, isOpen: isOpen)
            }
        default: return try runOnInode(op, c)
        }
        return ""
    }

    /// The calls on an inode a path names.
    private mutating func runOnInode(_ op: DiffOp, _ c: Caller) throws -> String {
        switch op {
        case .setxattr(let p, let name, let value, let flags):
            let f = XattrFlags(rawValue: UInt32(flags))
            try MetadataState.checkXattrRequest(name: b(name), valueSize: value.utf8.count, flags: f)
            let ino = try state.resolve(p, followFinalSymlink: false, caller: c, limits: limits)
            try state.commit { try $0.planSetXattr(ino, name: b(name), value: b(value), flags: f, caller: c) }
        case .getxattr(let p, let name):
            try MetadataState.checkXattrName(b(name))
            let ino = try state.resolve(p, followFinalSymlink: false, caller: c, limits: limits)
            return String(decoding: try state.getxattr(ino, name: b(name), caller: c), as: UTF8.self)
        case .removexattr(let p, let name):
            try MetadataState.checkXattrName(b(name))
            let ino = try state.resolve(p, followFinalSymlink: false, caller: c, limits: limits)
            try state.commit { try $0.planRemoveXattr(ino, name: b(name), caller: c) }
        case .listxattr(let p):
            let ino = try state.resolve(p, followFinalSymlink: false, caller: c, limits: limits)
            return try state.listxattr(ino, caller: c).map { String(decoding: $0, as: UTF8.self) }.sorted().joined(separator: ",")
        case .chmod(let p, let mode, let follow):
            let ino = try state.resolve(p, followFinalSymlink: follow, caller: c, limits: limits)
            try state.commit { try $0.planSetAttributes(ino, .chmod(mode), caller: c) }
        case .chown(let p, let uid, let gid):
            let ino = try state.resolve(p, followFinalSymlink: false, caller: c, limits: limits)
            try state.commit { try $0.planSetAttributes(ino, .chown(uid: uid, gid: gid), caller: c) }
        case .utimes(let p, let a, let m):
            let ino = try state.resolve(p, followFinalSymlink: false, caller: c, limits: limits)
            try state.commit { try $0.planSetAttributes(ino, .times(atime: Self.change(a), mtime: Self.change(m)), caller: c) }
        case .stat(let p, let follow):
            return "\(try state.stat(try state.resolve(p, followFinalSymlink: follow, caller: c, limits: limits)).attributes.type)"
        case .truncate(let p):
            let ino = try state.resolve(p, caller: c, limits: limits)
            let type = try state.stat(ino).attributes.type
            if type == .directory { throw Errno.isDirectory }
            if type != .regular { throw Errno.invalidArgument }
            try state.checkAccess(ino, .write, caller: c)
            try state.commit { try $0.planClearSetID(ino, caller: c) }
        case .linkOrphan(let p, let to):
            let ino = try state.resolve(p, followFinalSymlink: false, caller: c, limits: limits)
            try state.checkAccess(ino, .read, caller: c)
            let pn = try state.resolveParent(p, caller: c, limits: limits)
            try state.commit { try $0.planUnlink(in: pn.directory, pn.lastComponent, caller: c, isOpen: { $0 == ino }) }
            let target = try state.resolveParent(to, caller: c, limits: limits)
            defer { _ = try? state.commit { try $0.planFreeInode(ino) } }
            try state.commit { try $0.planLink(ino, in: target.directory, target.lastComponent, caller: c, limits: limits) }
        default: preconditionFailure("\(op) is not a call on an inode")
        }
        return ""
    }

    /// What open(O_RDONLY | O_NOFOLLOW | O_NONBLOCK) does with an inode a non-exclusive
    /// create found: for a symlink, the sticky-directory check, then ELOOP; EACCES without
    /// read permission; ENXIO for a socket.
    private func openExisting(_ ino: InodeNumber, in dir: InodeNumber, _ c: Caller) throws {
        let type = try state.stat(ino).attributes.type
        if type == .symlink {
            try state.checkCreateInSticky(ino, in: dir, caller: c, limits: limits)
            throw Errno.tooManySymbolicLinkLevels
        }
        try state.checkAccess(ino, .read, caller: c)
        if type == .socket { throw Errno.noSuchAddressOrDevice }
    }

    static func change(_ t: TimeArg?) -> TimeChange? {
        switch t {
        case nil: return nil
        case .now: return .now
        case .seconds(let s): return .set(Timestamp(seconds: s))
        }
    }

    /// The tree, as the host side reads it.
    func snapshot() -> Snapshot {
        var snap = Snapshot()
        var pending: [(String, InodeNumber)] = [("/", .root)]
        while let (path, ino) = pending.popLast() {
            let rec = state[ino]!
            let a = rec.attributes
            snap.nodes[path] = Node(
                type: a.type, permissions: a.permissions, uid: a.uid, gid: a.gid, nlink: a.nlink,
                size: a.type == .regular || a.type == .symlink ? a.size : 0, rdev: a.rdev, target: rec.symlinkTarget, xattrs: rec.xattrs)
            snap.stamps[path] = Stamp(inode: ino.rawValue, mtime: a.mtime, ctime: a.ctime)
            guard rec.directory != nil else { continue }
            snap.listings[path] = []
            for e in (try? state.readdir(ino, after: 2)) ?? [] {
                let name = String(decoding: e.name, as: UTF8.self)
                snap.listings[path]!.append(name)
                pending.append((path == "/" ? "/" + name : path + "/" + name, e.inode))
            }
        }
        return snap
    }
}
