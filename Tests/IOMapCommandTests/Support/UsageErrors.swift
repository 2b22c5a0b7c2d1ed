// The check every command's bad-usage table shares.

import Testing

/// `iomap arguments` is refused as bad usage: exit status 2, a message on stderr naming
/// `named`, nothing on stdout.
func expectUsageError(
    _ arguments: [String], naming named: String, launcher: [String] = [], sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let r = try runIOMap(arguments, launcher: launcher)
    #expect(r.status == 2, "exit \(r.status) for \(arguments)\n\(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stderr.contains(named), "\(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stdout.isEmpty, sourceLocation: sourceLocation)
}
