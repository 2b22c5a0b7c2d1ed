// Counterpart: the VFS's *at() system calls as a file-system server sees them
// (fs/namei.c: do_mknodat, do_mkdirat, do_symlinkat, do_linkat, do_unlinkat, do_rmdir,
// do_renameat2; fs/xattr.c; fs/open.c do_faccessat): names as the bytes a request carries.
//
// A name in Linux is bytes, not text. The String forms of Volume+Namespace.swift serve the
// tools and tests; a server (the FUSE daemon) passes what the kernel sent, which need not be
// UTF-8, and must reach the plans unchanged: a String made of it would replace invalid bytes
// and name a different entry. These are the calls themselves; the String forms pass the
// name's UTF-8 bytes to them.

import IOMap
import IOMapBase

extension Volume {
    public func create(in dir: InodeNumber, name: [UInt8], permissions: UInt16, exclusive: Bool = true, caller: Caller = .root())
        throws(Errno) -> CreateResult
    {
        let c = stamped(caller)
        return try change { (s: borrowing MetadataState) throws(Errno) in
            try s.planCreate(in: dir, name, permissions: permissions, exclusive: exclusive, caller: c)
        }
    }

    public func mknod(
        in dir: InodeNumber, name: [UInt8], type: FileType, permissions: UInt16, rdev: UInt64 = 0, caller: Caller = .root()
    ) throws(Errno) -> InodeNumber {
        let c = stamped(caller)
        return try change { (s: borrowing MetadataState) throws(Errno) in
            try s.planMknod(in: dir, name, type: type, permissions: permissions, rdev: rdev, caller: c)
        }
    }

    public func mkdir(in dir: InodeNumber, name: [UInt8], permissions: UInt16, caller: Caller = .root()) throws(Errno) -> InodeNumber {
        let c = stamped(caller)
        return try change { (s: borrowing MetadataState) throws(Errno) in
            try s.planMkdir(in: dir, name, permissions: permissions, caller: c)
        }
    }

    public func symlink(in dir: InodeNumber, name: [UInt8], target: [UInt8], caller: Caller = .root()) throws(Errno) -> InodeNumber {
        let c = stamped(caller)
        return try change { (s: borrowing MetadataState) throws(Errno) in
            try s.planSymlink(in: dir, name, target: target, caller: c)
        }
    }

    public func link(_ source: InodeNumber, in dir: InodeNumber, name: [UInt8], caller: Caller = .root()) throws(Errno) {
        let c = stamped(caller)
        try change { (s: borrowing MetadataState) throws(Errno) in try s.planLink(source, in: dir, name, caller: c) }
    }

    public func unlink(in dir: InodeNumber, name: [UInt8], caller: Caller = .root()) throws(Errno) {
        let c = stamped(caller)
        try namespace.withExclusive { () throws(Errno) in
            let v = victim(in: dir, name)
            let gone = try journal.transact { (s: borrowing MetadataState) throws(Errno) -> ([LogRecord], Unreferenced?) in
                let p = try s.planUnlink(in: dir, name, caller: c, isOpen: { $0 == v?.ino && v?.cached == true })
                return (p.records, p.value)
            }
            try settle(gone, victim: v)
        }
    }

    public func rmdir(in dir: InodeNumber, name: [UInt8], caller: Caller = .root()) throws(Errno) {
        let c = stamped(caller)
        _ = try change { (s: borrowing MetadataState) throws(Errno) in try s.planRmdir(in: dir, name, caller: c) }
    }

    public func rename(
        from oldDir: InodeNumber, name oldName: [UInt8], to newDir: InodeNumber, name newName: [UInt8], flags: RenameFlags = [],
        caller: Caller = .root()
    ) throws(Errno) {
        let c = stamped(caller)
        let inTwo = options.bugs.contains(.renameTwoRecords)
        try namespace.withExclusive { () throws(Errno) in
            // The inode a rename may unreference is the one the new name held.
            let v = victim(in: newDir, newName)
            var second: [LogRecord] = []
            let gone = try journal.transact { (s: borrowing MetadataState) throws(Errno) -> ([LogRecord], Unreferenced?) in
                let p = try s.planRename(
                    from: oldDir, oldName, to: newDir, newName, flags: flags, caller: c, isOpen: { $0 == v?.ino && v?.cached == true })
                guard inTwo, let halves = Self.renameInTwo(p.records, s) else { return (p.records, p.value) }
                second = halves.second
                return (halves.first, p.value)
            }
            if !second.isEmpty { try journal.transact { (_: borrowing MetadataState) throws(Errno) in (second, ()) } }
            try settle(gone, victim: v)
        }
    }

    public func setxattr(_ ino: InodeNumber, name: [UInt8], _ value: [UInt8], flags: XattrFlags = [], caller: Caller = .root())
        throws(Errno)
    {
        let c = stamped(caller)
        try change { (s: borrowing MetadataState) throws(Errno) in
            try s.planSetXattr(ino, name: name, value: value, flags: flags, caller: c)
        }
    }

    public func getxattr(_ ino: InodeNumber, name: [UInt8], caller: Caller = .root()) throws(Errno) -> [UInt8] {
        try journal.read { (s: borrowing MetadataState) throws(Errno) in try s.getxattr(ino, name: name, caller: caller) }
    }

    /// The attribute names, as bytes.
    public func listxattrNames(_ ino: InodeNumber, caller: Caller = .root()) throws(Errno) -> [[UInt8]] {
        try journal.read { (s: borrowing MetadataState) throws(Errno) in try s.listxattr(ino, caller: caller) }
    }

    public func removexattr(_ ino: InodeNumber, name: [UInt8], caller: Caller = .root()) throws(Errno) {
        let c = stamped(caller)
        try change { (s: borrowing MetadataState) throws(Errno) in try s.planRemoveXattr(ino, name: name, caller: c) }
    }

    /// access(2)'s check: ENOENT, or EACCES when the permission bits refuse `access`.
    public func checkAccess(_ ino: InodeNumber, _ access: Access, caller: Caller) throws(Errno) {
        try journal.read { (s: borrowing MetadataState) throws(Errno) in try s.checkAccess(ino, access, caller: caller) }
    }
}
