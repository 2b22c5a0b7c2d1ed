// The one set of deliberate bugs: every switch the tools offer is a view of one member, and
// a file system made with a switch runs its files with exactly that bug.

import ExtentFS
import IOMap
import IOMapBase
import Testing

@Suite("Deliberate bugs")
struct DeliberateBugsTests {
    @Test("each switch sets exactly its member, and reads back")
    func switchesAreMembers() {
        #expect(DeliberateBugs() == [])
        #expect(DeliberateBugs(policy: .truncatePageCache) == .truncatePageCache)
        #expect(DeliberateBugs(eofRounding: .kernel) == .kernelEOFRounding)
        #expect(DeliberateBugs(writeEnd: .kernel) == .kernelWriteEnd)
        #expect(DeliberateBugs(skipEOFZeroing: true) == .skipEOFZeroing)
        #expect(DeliberateBugs(validityCheck: false) == .noValidityCheck)
        var b: DeliberateBugs = [.kernelWriteEnd, .noValidityCheck]
        #expect(b.writeEnd == .kernel && !b.validityCheck && b.cleanupPolicy == .preserveDirty && b.eofRounding == .blockEnd)
        b.validityCheck = true
        b.eofRounding = .kernel
        #expect(b == [.kernelWriteEnd, .kernelEOFRounding])
    }

    @Test("a file system's configuration hands its bugs to every file")
    func filesRunWithTheConfiguredBugs() {
        let config = ExtentFSConfig(cleanupPolicy: .truncatePageCache, writeEnd: .kernel)
        #expect(config.bugs == [.truncatePageCache, .kernelWriteEnd])
        let file = ExtentFS(memoryBytes: 1 << 20, config: config).createFile()
        #expect(file.inode.bugs == config.bugs)
        #expect(file.inode.cleanupPolicy == .truncatePageCache && file.inode.writeEnd == .kernel)
        #expect(ExtentFS(memoryBytes: 1 << 20, config: ExtentFSConfig()).createFile().inode.bugs == [])
    }
}
