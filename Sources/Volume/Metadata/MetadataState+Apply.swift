// Counterpart: xlog_recover_commit_pass2() and the per-item recovery functions of XFS
// (fs/xfs/xfs_inode_item_recover.c, xfs_extfree_item.c): how a logged change is put into
// the metadata. Unlike XFS, the running volume applies changes through this same function,
// so what recovery rebuilds cannot drift from what was running.

/// A record that does not fit the metadata it is applied to: a log that passed its CRCs but
/// says something impossible. Recovery stops and names it; it is never trusted.
public struct ApplyError: Error, Equatable, Sendable, CustomStringConvertible {
    public let record: String
    public let reason: String
    public var description: String { "log record \(record): \(reason)" }
}

// A record of a log that passed its checks may still name what is not there (a crafted or
// buggy log): apply throws for what it must have, and never force-unwraps what another
// record could have removed (an entry may name a freed inode until fsck says so).

extension MetadataState {
    /// Applies one record, or throws without changing anything when it cannot apply.
    public mutating func apply(_ r: LogRecord) throws(ApplyError) {
        func fail(_ why: String) -> ApplyError { ApplyError(record: "\(r)", reason: why) }
        switch r {
        case .createInode(let ino, let attrs, let parent, let target):
            guard inodes.index(forKey: ino) == nil else { throw fail("\(ino) exists") }
            var rec = InodeRecord(attributes: attrs)
            if attrs.type == .directory {
                guard let parent else { throw fail("a directory needs a parent") }
                rec.directory = Directory(parent: parent)
            }
            if attrs.type == .symlink {
                guard let target, !target.isEmpty else { throw fail("a symlink needs a target") }
                rec.symlinkTarget = target
            }
            inodes[ino] = rec
            nextInode = max(nextInode, ino.rawValue + 1)
        case .freeInode(let ino):
            guard let i = inodes.index(forKey: ino) else { throw fail("no \(ino)") }
            guard inodes.values[i].extents.isEmpty else { throw fail("\(ino) still maps \(inodes.values[i].blockCount) blocks") }
            guard inodes.values[i].directory?.isEmpty ?? true else { throw fail("directory \(ino) is not empty") }
            inodes.remove(at: i)
            orphans.remove(ino)
        case .setAttributes(let ino, let attrs):
            try changeRecord(ino, missing: { fail("no \(ino)") }) { (rec: inout InodeRecord) throws(ApplyError) in
                guard rec.attributes.type == attrs.type else { throw fail("the type of \(ino) cannot change") }
                rec.attributes = attrs
            }
        case .setSize(let ino, let size):
            try changeRecord(ino, missing: { fail("no regular \(ino)") }) { (rec: inout InodeRecord) throws(ApplyError) in
                guard rec.attributes.type == .regular, size >= 0 else { throw fail("no regular \(ino)") }
                rec.attributes.size = size
            }
        case .addEntry(let dir, let name, let target, let type, let cookie):
            try addEntry(dir, name, target, type, cookie, fail)
        case .removeEntry(let dir, let name):
            try changeRecord(dir, missing: { fail("no entry \(name) in \(dir)") }) { (rec: inout InodeRecord) throws(ApplyError) in
                guard rec.directory?.remove(name) != nil else { throw fail("no entry \(name) in \(dir)") }
            }
        case .rename(let fromDir, let from, let toDir, let to, let exchange, let cookie):
            try rename(fromDir, from, toDir, to, exchange: exchange, cookie: cookie, fail)
        case .allocateUnwritten(let ino, let e):
            try mapExtent(ino, e, fail)
        case .convertToWritten(let ino, let from, let to):
            try changeRecord(ino, missing: { fail("no regular \(ino)") }) { (rec: inout InodeRecord) throws(ApplyError) in
                guard rec.attributes.type == .regular, from <= to else { throw fail("no regular \(ino)") }
                rec.extents = Self.converting(rec.extents, from: from, to: to)
            }
        case .unmapAndIntendFree(let ino, let from, let to, let id):
            guard intents[id] == nil else {
                throw fail(recordType(ino) == .regular && from <= to ? "intent \(id) exists" : "no regular \(ino)")
            }
            let removed = try changeRecord(ino, missing: { fail("no regular \(ino)") }) {
                (rec: inout InodeRecord) throws(ApplyError) -> [DiskExtent] in
                guard rec.attributes.type == .regular, from <= to else { throw fail("no regular \(ino)") }
                let (kept, removed) = Self.unmapping(rec.extents, from: from, to: to)
                rec.extents = kept
                return removed
            }
            intents[id] = FreeIntent(id: id, extents: removed)
            nextIntent = max(nextIntent, id + 1)
        case .freeDone(let id):
            guard intents.removeValue(forKey: id) != nil else { throw fail("no intent \(id)") }
        case .setXattr(let ino, let name, let value):
            guard inodes[ino] != nil else { throw fail("no \(ino)") }
            inodes[ino]!.xattrs[name] = value
        case .removeXattr(let ino, let name):
            guard inodes[ino]?.xattrs[name] != nil else { throw fail("no attribute on \(ino)") }
            inodes[ino]!.xattrs[name] = nil
        case .addOrphan(let ino):
            guard inodes[ino] != nil else { throw fail("no \(ino)") }
            orphans.insert(ino)
        case .removeOrphan(let ino):
            guard orphans.remove(ino) != nil else { throw fail("\(ino) is not an orphan") }
        }
    }

    /// Runs `body` on `ino`'s record in place, or throws `missing()` when there is none;
    /// `body` throws before it changes anything. One lookup, and no copy: the table's
    /// subscript by key reads a record out as a copy (and its modify accessor copies it
    /// back), where its values are changed where they lie.
    mutating func changeRecord<R>(
        _ ino: InodeNumber, missing: () -> ApplyError, _ body: (inout InodeRecord) throws(ApplyError) -> R
    ) throws(ApplyError) -> R {
        guard let i = inodes.index(forKey: ino) else { throw missing() }
        return try body(&inodes.values[i])
    }

    /// Runs `body` on `ino`'s record if there is one (the directory of a moved directory,
    /// which names its parent); in place, as changeRecord.
    mutating func changeRecordIfAny(_ ino: InodeNumber, _ body: (inout InodeRecord) -> Void) {
        if let i = inodes.index(forKey: ino) { body(&inodes.values[i]) }
    }

    /// Applies records in order; on a failure the state is what the records before it made.
    public mutating func apply(_ records: [LogRecord]) throws(ApplyError) {
        for r in records { try apply(r) }
    }

    private mutating func addEntry(
        _ dir: InodeNumber, _ name: FileName, _ target: InodeNumber, _ type: FileType, _ cookie: UInt64,
        _ fail: (String) -> ApplyError
    ) throws(ApplyError) {
        // Read before the directory's record is held for the change, which excludes any
        // other access to the table.
        let targetType = recordType(target)
        try changeRecord(dir, missing: { fail("\(dir) is not a directory") }) { (rec: inout InodeRecord) throws(ApplyError) in
            // What the checks need, read out before the change: a copy of the directory kept
            // alive across the add below would make it copy the whole directory.
            guard let (exists, next) = rec.directory.map({ ($0[name] != nil, $0.nextCookie) }) else {
                throw fail("\(dir) is not a directory")
            }
            guard !exists else { throw fail("\(name) exists in \(dir)") }
            guard cookie >= next else { throw fail("cookie \(cookie) already used in \(dir)") }
            guard targetType == type else { throw fail("\(target) is not a \(type)") }
            rec.directory!.add(name, DirectoryEntry(inode: target, type: type, cookie: cookie))
        }
        if type == .directory { changeRecordIfAny(target) { $0.directory?.parent = dir } }
    }

    /// The type of `ino`, read in place (a lookup's value would be a copy of the record).
    private func recordType(_ ino: InodeNumber) -> FileType? {
        inodes.index(forKey: ino).map { inodes.values[$0].attributes.type }
    }

    /// What `dir` holds under `name`, and the cookie it gives next; nil when `dir` is no
    /// directory. Read in place.
    private func lookupEntry(_ name: FileName, in dir: InodeNumber) -> (entry: DirectoryEntry?, nextCookie: UInt64)? {
        guard let i = inodes.index(forKey: dir), let d = inodes.values[i].directory else { return nil }
        return (d[name], d.nextCookie)
    }

    private mutating func rename(
        _ fromDir: InodeNumber, _ from: FileName, _ toDir: InodeNumber, _ to: FileName, exchange: Bool, cookie: UInt64,
        _ fail: (String) -> ApplyError
    ) throws(ApplyError) {
        if !exchange && fromDir == toDir && from != to {
            try renameWithin(fromDir, from, to, cookie: cookie, fail)
            return
        }
        guard let moving = lookupEntry(from, in: fromDir)?.entry else { throw fail("no entry \(from) in \(fromDir)") }
        guard let (existing, next) = lookupEntry(to, in: toDir) else { throw fail("\(toDir) is not a directory") }
        if exchange {
            guard let other = existing else { throw fail("no entry \(to) in \(toDir) to exchange with") }
            changeRecordIfAny(fromDir) { $0.directory!.retarget(from, to: other.inode, type: other.type) }
            changeRecordIfAny(toDir) { $0.directory!.retarget(to, to: moving.inode, type: moving.type) }
            if other.type == .directory { changeRecordIfAny(other.inode) { $0.directory?.parent = fromDir } }
        } else {
            if fromDir == toDir && from == to { return }
            guard cookie >= next else { throw fail("cookie \(cookie) already used in \(toDir)") }
            if fromDir != toDir { changeRecordIfAny(fromDir) { $0.directory!.remove(from) } }
            // The new directory's changes through one lookup of its record (both names, in
            // the usual rename within a directory).
            let moved = DirectoryEntry(inode: moving.inode, type: moving.type, cookie: cookie)
            changeRecordIfAny(toDir) { rec in
                if fromDir == toDir { rec.directory!.remove(from) }
                if existing != nil { rec.directory!.remove(to) }
                rec.directory!.add(to, moved)
            }
        }
        if moving.type == .directory { changeRecordIfAny(moving.inode) { $0.directory?.parent = toDir } }
    }

    /// A rename within one directory, the usual one, through one access to the directory's
    /// record in place: the general path reads the record out twice (two copies of it) and
    /// hashes the old name once more to remove it. The checks and their messages are the
    /// general path's, in its order, and nothing changes before they pass.
    private mutating func renameWithin(
        _ dir: InodeNumber, _ from: FileName, _ to: FileName, cookie: UInt64, _ fail: (String) -> ApplyError
    ) throws(ApplyError) {
        func noEntry() -> ApplyError { fail("no entry \(from) in \(dir)") }
        let moving = try changeRecord(dir, missing: noEntry) { (rec: inout InodeRecord) throws(ApplyError) -> DirectoryEntry in
            guard let (replaces, next) = rec.directory.map({ ($0[to] != nil, $0.nextCookie) }) else { throw noEntry() }
            guard cookie >= next else {
                throw rec.directory![from] == nil ? noEntry() : fail("cookie \(cookie) already used in \(dir)")
            }
            // Removing the old name is its lookup: nil, and nothing has changed.
            guard let moving = rec.directory!.remove(from) else { throw noEntry() }
            if replaces { rec.directory!.remove(to) }
            rec.directory!.add(to, DirectoryEntry(inode: moving.inode, type: moving.type, cookie: cookie))
            return moving
        }
        if moving.type == .directory { changeRecordIfAny(moving.inode) { $0.directory?.parent = dir } }
    }

    private mutating func mapExtent(_ ino: InodeNumber, _ e: DiskExtent, _ fail: (String) -> ApplyError) throws(ApplyError) {
        try changeRecord(ino, missing: { fail("no regular \(ino)") }) { (rec: inout InodeRecord) throws(ApplyError) in
            guard rec.attributes.type == .regular else { throw fail("no regular \(ino)") }
            guard e.count > 0, e.fileBlock >= 0, e.diskBlock >= 0 else { throw fail("empty or negative extent") }
            let list = rec.extents
            let i = list.firstIndex { $0.fileBlock >= e.fileBlock } ?? list.count
            if i > 0, list[i - 1].fileEnd > e.fileBlock { throw fail("overlaps \(list[i - 1])") }
            if i < list.count, list[i].fileBlock < e.fileEnd { throw fail("overlaps \(list[i])") }
            var out = list
            out.insert(e, at: i)
            rec.extents = Self.merged(out)
        }
    }

    // The three list functions below run for every data record a mount replays and every
    // change the running volume makes, so they touch only the extents the range cuts and
    // allocate one list: splitting each extent into a list of its own pieces, and merging a
    // list that needed none, were most of a crash explorer's recoveries.

    /// `list` with file blocks `[from, to)` marked written.
    static func converting(_ list: [DiskExtent], from: Int64, to: Int64) -> [DiskExtent] {
        guard list.contains(where: { $0.unwritten && $0.fileEnd > from && $0.fileBlock < to }) else { return merged(list) }
        var out: [DiskExtent] = []
        out.reserveCapacity(list.count + 2)
        for e in list {
            guard e.unwritten, e.fileEnd > from, e.fileBlock < to else {
                out.append(e)
                continue
            }
            forEachPiece(e, from, to) { p, inside in
                var p = p
                if inside { p.unwritten = false }
                out.append(p)
            }
        }
        return merged(out)
    }

    /// `list` without file blocks `[from, to)`, and what was removed.
    static func unmapping(_ list: [DiskExtent], from: Int64, to: Int64) -> (kept: [DiskExtent], removed: [DiskExtent]) {
        guard list.contains(where: { $0.fileEnd > from && $0.fileBlock < to }) else { return (list, []) }
        var kept: [DiskExtent] = []
        kept.reserveCapacity(list.count + 1)
        var removed: [DiskExtent] = []
        for e in list {
            guard e.fileEnd > from, e.fileBlock < to else {
                kept.append(e)
                continue
            }
            forEachPiece(e, from, to) { p, inside in
                if inside { removed.append(p) } else { kept.append(p) }
            }
        }
        return (kept, removed)
    }

    /// `e` cut at `from` and `to` where they fall strictly inside it: each piece in file
    /// order, and whether it lies in `[from, to)`.
    static func forEachPiece(_ e: DiskExtent, _ from: Int64, _ to: Int64, _ body: (DiskExtent, Bool) -> Void) {
        var start = e.fileBlock
        func piece(_ end: Int64) {
            body(
                DiskExtent(fileBlock: start, diskBlock: e.diskBlock + (start - e.fileBlock), count: end - start, unwritten: e.unwritten),
                start >= from && end <= to)
            start = end
        }
        let (a, b) = from <= to ? (from, to) : (to, from)
        if a > start && a < e.fileEnd { piece(a) }
        if b > start && b < e.fileEnd { piece(b) }
        piece(e.fileEnd)
    }

    /// Neighbours contiguous in the file and on the disk, of the same state, made one.
    static func merged(_ list: [DiskExtent]) -> [DiskExtent] {
        func joins(_ a: DiskExtent, _ b: DiskExtent) -> Bool {
            a.fileEnd == b.fileBlock && a.diskEnd == b.diskBlock && a.unwritten == b.unwritten
        }
        guard list.indices.dropFirst().contains(where: { joins(list[$0 - 1], list[$0]) }) else { return list }
        var out: [DiskExtent] = []
        out.reserveCapacity(list.count)
        for e in list {
            if let last = out.last, last.fileEnd == e.fileBlock, last.diskEnd == e.diskBlock, last.unwritten == e.unwritten {
                out[out.count - 1].count += e.count
            } else {
                out.append(e)
            }
        }
        return out
    }
}
