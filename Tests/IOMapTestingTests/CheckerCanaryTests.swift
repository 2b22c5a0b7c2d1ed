// Canaries for the invariant checkers: each checker, shown a state that breaks its
// invariant, must say so. A checker that cannot fail proves nothing.

@testable import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting
import PageCache
import Testing

@Suite("Checker canaries")
struct CheckerCanaryTests {
    func makeFile(blockSize: Int = 1024) -> (ExtentFS, ExtentFile) {
        let fs = ExtentFS(memoryBytes: 16 << 20, config: ExtentFSConfig(blockSize: blockSize, maxFolioSize: 4096))
        return (fs, fs.createFile())
    }

    @Test("D3: a dirty block below EOF with nothing under it is reported")
    func d3() {
        let (_, file) = makeFile()
        file._setSize(8192)
        file._installFolio(pos: 0, size: 4096, uptodate: [true, true, true, true], dirty: [false, true, false, false])
        let problems = file.invariantFindings()
        #expect(problems.count == 1)
        #expect(problems.first?.id == .d3 && problems.first?.offset == 1024, "\(problems)")
    }

    @Test("D1: a reservation with no dirty cache over it is reported; with dirty cache it is not")
    func d1() throws {
        let (_, file) = makeFile()
        file._setSize(8192)
        try file._reserveDelalloc(fromBlock: 2, toBlock: 3)
        let found = file.invariantFindings()
        #expect(found.first?.id == .d1 && found.first?.offset == 2048, "\(found)")
        file._installFolio(pos: 0, size: 4096, uptodate: [true, true, true, true], dirty: [false, false, true, false])
        #expect(file.invariantViolations().isEmpty)
    }

    @Test("write-mapped folios must be dirty below EOF")
    func writeMapped() throws {
        let (_, file) = makeFile()
        try file.truncate(to: 4096)
        try file.mappedStore([1], at: 0)
        #expect(file.invariantViolations().isEmpty)
        let folio = try #require(file._folio(at: 0))
        folio.lock()
        folio.clearDirtyBits(fromBlock: 2)
        folio.unlock()
        #expect(file.invariantFindings().contains { $0.id == .writeMapped && $0.offset == 2048 })
    }

    @Test("D4: a reservation the extent maps do not hold is reported")
    func d4() throws {
        let (fs, file) = makeFile()
        try file.write([1, 2, 3], at: 0)
        #expect(fs.spaceAccountingFinding() == nil)
        try fs.space.reserve(3)
        #expect(fs.spaceAccountingFinding()?.id == .d4)
        #expect(fs.checkSpaceAccounting()?.hasPrefix("D4: 4 blocks reserved") == true, "the message names the invariant and the counts")
        fs.space.unreserve(3)
        _ = try fs.space.allocate(2, near: nil, fromReservation: false)
        #expect(fs.spaceAccountingFinding()?.id == .d4)
    }

    @Test("the model comparison catches lost data: truncate-page-cache on a pinned seed")
    func modelCatchesLoss() {
        let r = runRandomOps(RandomRunConfig(seed: 346, ops: 5000, blockSize: 4096, maxFolioSize: 4096, policy: .truncatePageCache))
        #expect(r.violation != nil)
        #expect(r.violationOp != nil && r.violationOp! < 5000)
    }
}
