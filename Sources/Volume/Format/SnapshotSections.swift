// Counterpart: the on-disk records XFS keeps its metadata in (fs/xfs/libxfs/xfs_format.h:
// xfs_dinode's core, xfs_dir2_data_entry, xfs_bmbt_rec, xfs_attr_leaf_name_local, the AGI's
// unlinked buckets, xfs_efi_log_format's extents), one entry encoding per snapshot section.
//
// Each section lists its entries in a fixed order (by inode number, then by readdir cookie,
// file block or name), so that the encoding of a state is one byte string whatever order
// its dictionaries iterate in, and so that the reader can check order and uniqueness as it
// goes instead of building sets. docs/FORMAT.md "Snapshot sections".

/// Appends every section's entries to its packer, in the order the reader checks.
func encodeSections(_ state: MetadataState, into packers: inout [SectionPacker]) {
    func pack(_ s: SnapshotSection, size: Int, counted: Bool = true, _ write: (inout ByteWriter) -> Void) {
        packers[s.rawValue].add(size: size, counted: counted, write)
    }
    // Sorting the numbers and looking each record up moves 8-byte keys, not whole records.
    for ino in state.inodes.keys.sorted() {
        let rec = state.inodes[ino]!
        pack(.inodes, size: SnapshotLayout.inodeEntrySize) { w in
            w.inode(ino)
            w.attributes(rec.attributes)
            w.u32(0)
        }
        if let dir = rec.directory {
            packDirectory(ino, dir, { packers[SnapshotSection.directories.rawValue].add(size: $0, counted: $1, $2) })
        }
        for e in rec.extents {
            pack(.extents, size: SnapshotLayout.extentEntrySize) { w in
                w.inode(ino)
                w.extent(e)
            }
        }
        for name in rec.xattrs.keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            let value = rec.xattrs[name]!
            pack(.xattrs, size: 16 + name.count + value.count) { w in
                w.inode(ino)
                w.u32(UInt32(name.count))
                w.u32(UInt32(value.count))
                w.raw(name)
                w.raw(value)
            }
        }
        if let target = rec.symlinkTarget {
            pack(.symlinks, size: 12 + target.count) { w in
                w.inode(ino)
                w.string(target)
            }
        }
    }
    for ino in state.orphans.sorted() {
        pack(.orphans, size: 8) { $0.inode(ino) }
    }
    for (id, intent) in state.intents.sorted(by: { $0.key < $1.key }) {
        pack(.intents, size: 12 + extentSize * intent.extents.count) { w in
            w.u64(id)
            w.u32(UInt32(intent.extents.count))
            for e in intent.extents { w.extent(e) }
        }
    }
}

/// A directory: its header entry (what the section counts), then one entry per name in cookie
/// order, packed apart so that a directory may span blocks without any entry doing so.
private func packDirectory(_ ino: InodeNumber, _ dir: Directory, _ pack: (Int, Bool, (inout ByteWriter) -> Void) -> Void) {
    pack(SnapshotLayout.directoryHeaderSize, true) { w in
        w.inode(ino)
        w.inode(dir.parent)
        w.u64(dir.nextCookie)
        w.u64(UInt64(dir.count))
    }
    // Sorting the entries by cookie costs less than looking each name of `order` up (a hash
    // of every name's bytes).
    for (name, entry) in dir.entries.sorted(by: { $0.value.cookie < $1.value.cookie }) {
        pack(SnapshotLayout.direntFixedSize + name.bytes.count, false) { w in
            w.u64(entry.cookie)
            w.inode(entry.inode)
            w.u8(entry.type.rawValue)
            w.name(name)
        }
    }
}

/// The reader of one section's entries: the section's blocks' entry bytes end to end, with
/// the checks that each block's continuation prefix is where an entry really ends.
struct SectionStream {
    var r: FieldReader
    /// Where each block's entry bytes start in the stream, its prefix, and the stream's end.
    private let starts: [Int]
    private let prefixes: [Int]
    private var nextBlock = 0

    init(bytes: [UInt8], starts: [Int], prefixes: [Int], kind: BlockKind, addresses: [Int]) {
        self.starts = starts
        self.prefixes = prefixes
        r = FieldReader(ByteReader(bytes)) { offset in
            var lo = 0
            var hi = starts.count
            while hi - lo > 1 {
                let mid = (lo + hi) / 2
                if starts[mid] <= offset { lo = mid } else { hi = mid }
            }
            return (kind, addresses.isEmpty ? 0 : addresses[min(lo, addresses.count - 1)])
        }
    }

    /// Called where an entry starts (and once at the end): checks the prefixes of the blocks
    /// whose start has been passed. A block whose prefix says its first entry starts at byte
    /// p must see an entry start there; a block that is all continuation must see none.
    mutating func entry() throws(FormatError) {
        let p = r.offset
        while nextBlock < starts.count && starts[nextBlock] <= p {
            let b = nextBlock
            let chunkEnd = b + 1 < starts.count ? starts[b + 1] : r.base.end
            let firstEntry = starts[b] + prefixes[b]
            let ok = firstEntry < chunkEnd ? p == firstEntry : p >= firstEntry
            guard ok else {
                throw r.malformed("continuation prefix \(prefixes[b]) does not end at an entry", at: starts[b])
            }
            nextBlock += 1
        }
    }

    /// Starts the next entry (see `entry`) and reads the key every section's entries lead
    /// with (an inode number, a cookie or an intent id), with the offset the entry starts at
    /// for the reader's messages.
    mutating func nextEntry() throws(FormatError) -> (at: Int, key: UInt64) {
        try entry()
        let at = r.offset
        return (at, try r.u64())
    }

    /// Checks that the stream has been read to its end.
    mutating func finish(_ what: String) throws(FormatError) {
        guard r.isAtEnd else { throw r.malformed("\(r.remaining) bytes after the last \(what)") }
        try entry()
    }
}
