// Counterpart: xfs_repair phases 6 and 7 (connectivity, link counts) and e2fsck passes 2 to
// 4 (directory structure, connectivity, reference counts); XFS scrub's dir, parent, nlinks
// and dirtree checkers.

extension StateChecker {
    /// The names of each inode: (directory, name) for every entry that names it.
    typealias Names = [InodeNumber: [(dir: InodeNumber, name: FileName)]]

    // N: every entry names a live inode of its type; every directory's ".." is a directory
    // that names it.
    mutating func checkEntries(_ sorted: [InodeNumber]) -> Names {
        var names: Names = [:]
        for dir in sorted {
            guard let d = state.inodes[dir]!.directory else { continue }
            count("N", 2)  // "." and ".."
            if state.inodes[d.parent]?.directory == nil { error("N", "\(dir): \"..\" is \(d.parent), not a directory") }
            if dir == .root && d.parent != .root { error("N", "the root's \"..\" is \(d.parent), not itself") }
            for (name, e) in d.entries.sorted(by: { $0.key < $1.key }) {
                count("N")
                names[e.inode, default: []].append((dir, name))
                guard let target = state.inodes[e.inode] else {
                    error("N", "\(dir): entry \(name) names \(e.inode), which does not exist")
                    continue
                }
                if target.attributes.type != e.type {
                    error("N", "\(dir): entry \(name) says \(e.type), \(e.inode) is \(target.attributes.type)")
                }
                if e.cookie < Directory.firstCookie || e.cookie >= d.nextCookie {
                    error("N", "\(dir): entry \(name) has cookie \(e.cookie) outside [3, \(d.nextCookie))")
                }
                if e.type == .directory, target.directory?.parent != dir {
                    error(
                        "N",
                        "\(dir): entry \(name) names directory \(e.inode), whose \"..\" is \(target.directory?.parent.description ?? "missing")"
                    )
                }
            }
        }
        return names
    }

    // T: every directory is reachable from the root, by one entry, with no loop; every other
    // inode with links is reachable.
    mutating func checkTree() {
        guard state.inodes[.root]?.directory != nil else {
            error("T", "there is no root directory")
            return
        }
        var reached: Set<InodeNumber> = [.root]
        var queue: [InodeNumber] = [.root]
        while let dir = queue.popLast() {
            count("T")
            for (name, e) in state.inodes[dir]?.directory?.entries ?? [:] {
                if e.type == .directory {
                    if reached.contains(e.inode) {
                        error("T", "directory \(e.inode) is reached twice (again as \(name) in \(dir)): a second parent or a loop")
                        continue
                    }
                    queue.append(e.inode)
                }
                reached.insert(e.inode)
            }
        }
        for (ino, rec) in state.inodes where !reached.contains(ino) && !state.orphans.contains(ino) {
            error("T", "\(ino) (\(rec.attributes.type)) is not reachable from the root")
        }
    }

    // K: link counts match the entries (a directory: its entry, its ".", and each
    // subdirectory's "..").
    mutating func checkLinks(_ sorted: [InodeNumber], names: Names) {
        for ino in sorted {
            count("K")
            let rec = state.inodes[ino]!
            let expected: Int
            if let d = rec.directory {
                expected = 2 + d.entries.values.filter { $0.type == .directory }.count
            } else {
                expected = names[ino]?.count ?? 0
            }
            if Int(rec.attributes.nlink) != expected { error("K", "\(ino): link count \(rec.attributes.nlink), expected \(expected)") }
        }
    }

    // O: an orphan exists, has no links and no names.
    mutating func checkOrphans() {
        for ino in state.orphans.sorted() {
            count("O")
            guard let rec = state.inodes[ino] else {
                error("O", "orphan \(ino) does not exist")
                continue
            }
            if rec.attributes.nlink != 0 { error("O", "orphan \(ino) has \(rec.attributes.nlink) links") }
            if rec.attributes.type == .directory { error("O", "orphan \(ino) is a directory") }
        }
    }

    // U: the counters are past everything they count.
    mutating func checkCounters(_ sorted: [InodeNumber]) {
        count("U", 2)
        if let last = sorted.last, last.rawValue >= state.nextInode { error("U", "next inode \(state.nextInode) is not past \(last)") }
        if let id = state.intents.keys.max(), id >= state.nextIntent {
            error("U", "next intent \(state.nextIntent) is not past intent \(id)")
        }
    }
}
