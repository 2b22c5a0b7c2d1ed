// Counterpart: the read verifiers of XFS's inode, directory, bmap and attribute blocks
// (xfs_dinode_verify, xfs_dir3_data_check, xfs_bmap_validate_extent, xfs_attr3_leaf_verify
// in fs/xfs/libxfs/) as far as one snapshot section can see.
//
// One function per section reads its entries into the state, checking order and uniqueness
// against the previous entry and references against the inodes already read (the inode
// section comes first for that reason). docs/FORMAT.md "What the snapshot reader checks".

extension SnapshotReader {
    func readSection(_ s: SnapshotSection, entries n: Int, from st: inout SectionStream, into state: inout MetadataState)
        throws(FormatError)
    {
        switch s {
        case .inodes: try readInodes(n, &st, &state)
        case .directories: try readDirectories(n, &st, &state)
        case .extents: try readExtents(n, &st, &state)
        case .xattrs: try readXattrs(n, &st, &state)
        case .symlinks: try readSymlinks(n, &st, &state)
        case .orphans: try readOrphans(n, &st, &state)
        case .intents: try readIntents(n, &st, &state)
        }
        try st.finish("\(s.kind) entry")
    }

    private func readInodes(_ n: Int, _ st: inout SectionStream, _ state: inout MetadataState) throws(FormatError) {
        state.inodes.reserveCapacity(min(n, st.r.remaining / SnapshotLayout.inodeEntrySize))
        var previous: UInt64 = 0
        for _ in 0..<n {
            let (at, ino) = try st.nextEntry()
            let attributes = try st.r.attributes()
            try st.r.reserved(4)
            guard ino > previous else { throw st.r.malformed("inode \(ino) after inode \(previous): out of order or 0", at: at) }
            guard ino < state.nextInode else { throw st.r.malformed("inode \(ino) is not below the next inode \(state.nextInode)", at: at) }
            state.inodes[InodeNumber(ino)] = InodeRecord(attributes: attributes)
            previous = ino
        }
    }

    /// The inode `ino` read so far, which must be of `type` (nil: any).
    private func expect(
        _ ino: InodeNumber, _ type: FileType?, in state: MetadataState, _ st: SectionStream, at: Int, _ what: String
    ) throws(FormatError) {
        guard let rec = state.inodes[ino] else { throw st.r.malformed("\(what) of \(ino), which does not exist", at: at) }
        if let type, rec.attributes.type != type {
            throw st.r.malformed("\(what) of \(ino), which is a \(rec.attributes.type), not a \(type)", at: at)
        }
    }

    private func readDirectories(_ n: Int, _ st: inout SectionStream, _ state: inout MetadataState) throws(FormatError) {
        var previous: UInt64 = 0
        for _ in 0..<n {
            let (at, ino) = try st.nextEntry()
            let parent = InodeNumber(try st.r.u64())
            let nextCookie = try st.r.u64()
            let count = try st.r.u64()
            guard ino > previous else { throw st.r.malformed("directory \(ino) after \(previous): out of order", at: at) }
            guard nextCookie >= Directory.firstCookie else {
                throw st.r.malformed("directory \(ino) has next cookie \(nextCookie)", at: at)
            }
            try expect(InodeNumber(ino), .directory, in: state, st, at: at, "a directory record")
            guard count <= UInt64(st.r.remaining / SnapshotLayout.direntFixedSize) else {
                throw st.r.malformed("directory \(ino) claims \(count) entries", at: at)
            }
            let list = try readDirents(Int(count), nextCookie: nextCookie, &st)
            state.inodes[InodeNumber(ino)]!.directory = Directory(parent: parent, nextCookie: nextCookie, entries: list)
            previous = ino
        }
    }

    /// A directory's entries: cookies rising from the first stored one and below the next
    /// cookie, names valid and unique (so that rebuilding the Directory cannot trap).
    private func readDirents(_ n: Int, nextCookie: UInt64, _ st: inout SectionStream) throws(FormatError) -> [(FileName, DirectoryEntry)] {
        var list: [(FileName, DirectoryEntry)] = []
        list.reserveCapacity(n)
        var names = Set<FileName>()
        var previous = Directory.firstCookie - 1
        for _ in 0..<n {
            let (at, cookie) = try st.nextEntry()
            let target = InodeNumber(try st.r.u64())
            let t = try st.r.u8()
            guard let type = FileType(rawValue: t) else { throw st.r.malformed("entry type \(t) is no file type", at: at) }
            let name = try st.r.name()
            guard cookie > previous, cookie < nextCookie else {
                throw st.r.malformed("cookie \(cookie) after \(previous) (next cookie \(nextCookie))", at: at)
            }
            guard names.insert(name).inserted else { throw st.r.malformed("name \(name) twice in one directory", at: at) }
            list.append((name, DirectoryEntry(inode: target, type: type, cookie: cookie)))
            previous = cookie
        }
        return list
    }

    private func readExtents(_ n: Int, _ st: inout SectionStream, _ state: inout MetadataState) throws(FormatError) {
        var previous: (ino: UInt64, end: Int64) = (0, 0)
        for _ in 0..<n {
            let (at, ino) = try st.nextEntry()
            let e = try st.r.extent()
            guard ino >= previous.ino else { throw st.r.malformed("extent of inode \(ino) after inode \(previous.ino)", at: at) }
            try expect(InodeNumber(ino), .regular, in: state, st, at: at, "an extent")
            let (fileEnd, o1) = e.fileBlock.addingReportingOverflow(e.count)
            let (_, o2) = e.diskBlock.addingReportingOverflow(e.count)
            guard e.count > 0, e.fileBlock >= 0, e.diskBlock >= 0, !o1, !o2 else { throw st.r.malformed("bad extent \(e)", at: at) }
            if ino == previous.ino && e.fileBlock < previous.end {
                throw st.r.malformed("\(e) of inode \(ino) overlaps or precedes the one before", at: at)
            }
            state.inodes[InodeNumber(ino)]!.extents.append(e)
            previous = (ino, fileEnd)
        }
    }

    private func readXattrs(_ n: Int, _ st: inout SectionStream, _ state: inout MetadataState) throws(FormatError) {
        var previous: (ino: UInt64, name: [UInt8]) = (0, [])
        for _ in 0..<n {
            let (at, ino) = try st.nextEntry()
            let nameLength = try st.r.u32()
            let valueLength = try st.r.u32()
            let name = try st.r.raw(Int(nameLength))
            let value = try st.r.raw(Int(valueLength))
            guard ino > previous.ino || (ino == previous.ino && previous.name.lexicographicallyPrecedes(name)) else {
                throw st.r.malformed("xattr of inode \(ino) out of order or repeated", at: at)
            }
            try expect(InodeNumber(ino), nil, in: state, st, at: at, "an xattr")
            state.inodes[InodeNumber(ino)]!.xattrs[name] = value
            previous = (ino, name)
        }
    }

    private func readSymlinks(_ n: Int, _ st: inout SectionStream, _ state: inout MetadataState) throws(FormatError) {
        var previous: UInt64 = 0
        for _ in 0..<n {
            let (at, ino) = try st.nextEntry()
            let target = try st.r.string()
            guard ino > previous else { throw st.r.malformed("symlink \(ino) after \(previous): out of order", at: at) }
            try expect(InodeNumber(ino), .symlink, in: state, st, at: at, "a symlink target")
            guard !target.isEmpty else { throw st.r.malformed("symlink \(ino) has an empty target", at: at) }
            state.inodes[InodeNumber(ino)]!.symlinkTarget = target
            previous = ino
        }
    }

    private func readOrphans(_ n: Int, _ st: inout SectionStream, _ state: inout MetadataState) throws(FormatError) {
        var previous: UInt64 = 0
        for _ in 0..<n {
            let (at, ino) = try st.nextEntry()
            guard ino > previous else { throw st.r.malformed("orphan \(ino) after \(previous): out of order", at: at) }
            try expect(InodeNumber(ino), nil, in: state, st, at: at, "an orphan entry")
            state.orphans.insert(InodeNumber(ino))
            previous = ino
        }
    }

    private func readIntents(_ n: Int, _ st: inout SectionStream, _ state: inout MetadataState) throws(FormatError) {
        var previous: UInt64? = nil
        for _ in 0..<n {
            let (at, id) = try st.nextEntry()
            let count = try st.r.u32()
            guard Int(count) <= st.r.remaining / extentSize else { throw st.r.malformed("intent \(id) claims \(count) extents", at: at) }
            var extents: [DiskExtent] = []
            extents.reserveCapacity(Int(count))
            for _ in 0..<count { extents.append(try st.r.extent()) }
            guard previous.map({ id > $0 }) ?? true else { throw st.r.malformed("intent \(id) out of order", at: at) }
            guard id < state.nextIntent else {
                throw st.r.malformed("intent \(id) is not below the next intent \(state.nextIntent)", at: at)
            }
            state.intents[id] = FreeIntent(id: id, extents: extents)
            previous = id
        }
    }

    /// Every directory inode has its entries and every symlink its target: the sections
    /// cannot have left one out without the counts showing it here.
    func checkKindParts(_ state: MetadataState) throws(FormatError) {
        for (ino, rec) in state.inodes {
            let type = rec.attributes.type
            if type == .directory && rec.directory == nil {
                throw FormatError(.snapshotRoot, root, .malformed("directory \(ino.rawValue) has no directory record"))
            }
            if type == .symlink && rec.symlinkTarget == nil {
                throw FormatError(.snapshotRoot, root, .malformed("symlink \(ino.rawValue) has no target"))
            }
        }
    }
}
