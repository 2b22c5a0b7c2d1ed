// Counterpart: name lookup and path walking of fs/namei.c (lookup_one, link_path_walk,
// walk_component, pick_link, the trailing-slash rule of lookup_last) and readlink (fs/stat.c
// do_readlinkat, vfs_readlink).
//
// The volume and its tools name files by paths; the plans take a directory and a name.
// resolve and resolveParent turn one into the other with Linux's rules, so a tool given
// "/a/link/b" reaches what a process would.

import IOMapBase

/// The directory a path's last component is in, and that component.
public struct ParentAndName: Hashable, Sendable {
    public var directory: InodeNumber
    /// The last component, "." and ".." included, to pass to a plan as it is. Empty when the
    /// path names no entry (it was "/"): the plans treat an empty name as Linux treats the
    /// root there (mkdir EEXIST, rmdir EBUSY, unlink EISDIR, rename EBUSY).
    public var name: [UInt8]
    /// The path ended in "/": Linux then wants a directory there (ENOTDIR otherwise).
    public var trailingSlash: Bool

    /// The name with its trailing slash, as the plans take it so as to apply Linux's rule
    /// for it (mkdir and rmdir take "a/"; creating anything else there is ENOENT, or EISDIR
    /// for open(O_CREAT); unlink gives ENOTDIR or EISDIR; rename wants a directory).
    public var lastComponent: [UInt8] { trailingSlash ? name + [0x2F] : name }

    public init(directory: InodeNumber, name: [UInt8], trailingSlash: Bool) {
        self.directory = directory
        self.name = name
        self.trailingSlash = trailingSlash
    }
}

extension MetadataState {
    /// The longest path, in bytes (PATH_MAX less its NUL).
    public static let maxPathLength = 4095
    /// Symlinks one walk follows before ELOOP (MAXSYMLINKS).
    public static let maxSymlinkFollows = 40

    /// `dir` if it is a directory `caller` may search for `name`: ENOENT if there is no such
    /// inode, ENOTDIR, EACCES without search permission (may_lookup, checked before each
    /// name). An empty name (the path "/") is looked up in nothing, so needs no search.
    func searchableDirectory(_ dir: InodeNumber, _ caller: Caller, for name: [UInt8]) throws(Errno) -> InodeRecord {
        guard let rec = inodes[dir] else { throw .noSuchFileOrDirectory }
        guard rec.directory != nil else { throw .notDirectory }
        if !LastComponent.isRoot(name) && !rec.attributes.permits(.execute, to: caller) { throw .permissionDenied }
        return rec
    }

    /// The inode `name` names in `dir`: "." is `dir`, ".." its parent (the root's is the
    /// root). ENOTDIR, EACCES, ENAMETOOLONG, ENOENT (also for an empty name).
    public func lookup(in dir: InodeNumber, _ name: [UInt8], caller: Caller) throws(Errno) -> InodeNumber {
        let d = try searchableDirectory(dir, caller, for: name)
        switch LastComponent(name) {
        case .root: throw .noSuchFileOrDirectory
        case .dot: return dir
        case .dotDot: return d.directory!.parent
        case .name(let bytes):
            guard let entry = d.directory![try LastComponent.fileName(bytes)] else { throw .noSuchFileOrDirectory }
            return entry.inode
        }
    }

    public func lookup(in dir: InodeNumber, _ name: String, caller: Caller) throws(Errno) -> InodeNumber {
        try lookup(in: dir, Array(name.utf8), caller: caller)
    }

    /// The inode a path names. Absolute paths start at the root, relative ones at `start`;
    /// symlinks met on the way are followed (their targets relative to the directory holding
    /// them, or absolute), and so is a final one when `followFinalSymlink` or the path ends
    /// in "/". ENOENT (also for an empty path), ENOTDIR for a non-directory before a "/",
    /// EACCES (also for a final symlink that `limits.protectedSymlinks` keeps the caller
    /// from following), ENAMETOOLONG, ELOOP past 40 symlinks.
    public func resolve(
        _ path: [UInt8], from start: InodeNumber = .root, followFinalSymlink: Bool = true, caller: Caller,
        limits: NamespaceLimits = .standard
    ) throws(Errno) -> InodeNumber {
        try Self.checkPath(path)
        var current = path.first == 0x2F ? InodeNumber.root : start
        var pending = Array(Self.components(path).reversed())
        var mustBeDirectory = path.last == 0x2F
        var links = 0
        while let name = pending.popLast() {
            let next = try lookup(in: current, name, caller: caller)
            let isFinal = pending.isEmpty
            if let target = inodes[next]!.symlinkTarget, !isFinal || followFinalSymlink || mustBeDirectory {
                links += 1
                if links > Self.maxSymlinkFollows { throw .tooManySymbolicLinkLevels }
                // Linux protects only the last symlink of a walk (may_follow_link on the
                // trailing component).
                if isFinal && limits.protectedSymlinks && Self.stickyForbidsFollowing(next, in: inodes[current]!.attributes, self, caller) {
                    throw .permissionDenied
                }
                if target.first == 0x2F { current = .root }
                if isFinal && target.last == 0x2F { mustBeDirectory = true }
                pending.append(contentsOf: Self.components(target).reversed())
                continue
            }
            current = next
        }
        if mustBeDirectory && inodes[current]?.directory == nil { throw .notDirectory }
        return current
    }

    public func resolve(
        _ path: String, from start: InodeNumber = .root, followFinalSymlink: Bool = true, caller: Caller,
        limits: NamespaceLimits = .standard
    ) throws(Errno) -> InodeNumber {
        try resolve(Array(path.utf8), from: start, followFinalSymlink: followFinalSymlink, caller: caller, limits: limits)
    }

    /// may_follow_link: in a sticky world-writable directory, only the symlink's owner may
    /// follow it, unless the directory's owner owns it too.
    static func stickyForbidsFollowing(_ link: InodeNumber, in dir: InodeAttributes, _ s: MetadataState, _ caller: Caller) -> Bool {
        let owner = s.inodes[link]!.attributes.uid
        if owner == caller.uid { return false }
        if dir.permissions & 0o1002 != 0o1002 { return false }
        return dir.uid != owner
    }

    /// The directory holding a path's last component, and the component, for the plans that
    /// create, remove or rename it. The directory part is resolved as `resolve` does, and
    /// must be a directory the caller may search (ENOTDIR, EACCES); the last component is
    /// not looked up.
    public func resolveParent(
        _ path: [UInt8], from start: InodeNumber = .root, caller: Caller, limits: NamespaceLimits = .standard
    ) throws(Errno) -> ParentAndName {
        try Self.checkPath(path)
        var end = path.count
        while end > 0 && path[end - 1] == 0x2F { end -= 1 }
        let trailingSlash = end < path.count
        if end == 0 { return ParentAndName(directory: .root, name: [], trailingSlash: trailingSlash) }
        var cut = end
        while cut > 0 && path[cut - 1] != 0x2F { cut -= 1 }
        let dir = cut == 0 ? start : try resolve(Array(path[0..<cut]), from: start, caller: caller, limits: limits)
        // The walk checks search permission before each name, the last one too: a rename
        // or link whose first path ends in an unsearchable directory fails there, before
        // its second path is walked.
        _ = try searchableDirectory(dir, caller, for: Array(path[cut..<end]))
        return ParentAndName(directory: dir, name: Array(path[cut..<end]), trailingSlash: trailingSlash)
    }

    public func resolveParent(
        _ path: String, from start: InodeNumber = .root, caller: Caller, limits: NamespaceLimits = .standard
    ) throws(Errno) -> ParentAndName {
        try resolveParent(Array(path.utf8), from: start, caller: caller, limits: limits)
    }

    /// A symlink's target: ENOENT if there is no such inode, EINVAL if it is not a symlink.
    public func readlink(_ inode: InodeNumber) throws(Errno) -> [UInt8] {
        guard let rec = inodes[inode] else { throw .noSuchFileOrDirectory }
        guard let target = rec.symlinkTarget else { throw .invalidArgument }
        return target
    }

    /// ENOENT for an empty path (getname), ENAMETOOLONG past PATH_MAX, EINVAL for a NUL
    /// (which a C string cannot hold).
    static func checkPath(_ path: [UInt8]) throws(Errno) {
        if path.isEmpty { throw .noSuchFileOrDirectory }
        if path.count > maxPathLength { throw .fileNameTooLong }
        if path.contains(0) { throw .invalidArgument }
    }

    /// The names between slashes, empty ones dropped ("a//b/" is a, b).
    static func components(_ path: [UInt8]) -> [[UInt8]] {
        path.split(separator: 0x2F, omittingEmptySubsequences: true).map { Array($0) }
    }
}
