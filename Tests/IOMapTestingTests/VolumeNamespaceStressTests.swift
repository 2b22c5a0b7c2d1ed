// The threaded namespace stress on a volume (creates, renames, links, unlinks, directories,
// xattrs, writes and fsyncs from several threads, with the background log force), and its
// canary: a rename behind a worker's back must be reported. Every run prints its seed.

import IOMapBase
import IOMapTesting
import Testing

@Suite("Real threads on a volume's namespace")
struct VolumeNamespaceStressTests {
    @Test(
        "threads changing their own parts of one volume keep every name, link count, mode, xattr and byte, live and after sync and a crash")
    func holds() {
        var config = VolumeStressConfig(seed: baseSeed())
        config.workers = 4
        config.opsPerWorker = 2500
        print("namespace stress: \(config)")
        let r = runVolumeNamespaceStress(config)
        #expect(
            r.violation == nil, "\(r.violation ?? "")\nrun again: iomap stress --namespace --seed \(config.seed) --workers 4 --ops 2500")
        #expect(r.opsRun == config.workers * config.opsPerWorker)
        // Every kind of operation ran, so none of them went unchecked.
        let kinds = ["create", "write", "truncate", "fsync", "rename", "park", "unpark", "link", "unlink", "openUnlink", "mkdir", "rmdir"]
        for kind in kinds { #expect(r.opsByKind[kind, default: 0] > 0, "no \(kind) ran") }
    }

    @Test("namespace stress canary: a file renamed behind a worker's back is reported")
    func canary() {
        var config = VolumeStressConfig(seed: baseSeed())
        config.workers = 2
        config.opsPerWorker = 1500
        config.rogueRename = true
        print("namespace stress canary: \(config)")
        let r = runVolumeNamespaceStress(config)
        #expect(r.violation?.contains("worker 0") == true, "the rogue rename went unnoticed: \(r.violation ?? "no violation")")
    }
}
