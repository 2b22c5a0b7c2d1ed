// The files the crash, corruption and durability tests set their scenes with.

import IOMapBase
import Volume

extension Volume {
    /// Creates `name` (mode 0644) in the root directory and opens it.
    func createAndOpen(_ name: String) throws -> FileHandle {
        try open(try create(in: .root, name, permissions: 0o644).inode)
    }

    /// A file made durable and then freed: `name` created holding `data`, fsync'd and
    /// closed, then unlinked (the unlink logged, not yet committed).
    func writeDurablyThenUnlink(_ name: String, _ data: [UInt8]) throws {
        let h = try createAndOpen(name)
        try h.write(data, at: 0)
        try h.fsync()
        try h.close()
        try unlink(in: .root, name)
    }
}
