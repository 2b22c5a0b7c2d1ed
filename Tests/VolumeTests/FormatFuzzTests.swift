// Counterpart: none in the kernel; the format's decoders fed random bytes and damaged
// encodings, resealed so that the damage reaches past the CRC into every structure check.
// Each test prints its seed; FORMAT_FUZZ_SEED and FORMAT_FUZZ_ITERATIONS replay or extend a
// run. A decoder that trapped would end the test process: passing means none did.

import Foundation
import IOMapBase
import Testing

@testable import Volume

@Suite("Format: fuzz")
struct FormatFuzzTests {
    let seed: UInt64 = ProcessInfo.processInfo.environment["FORMAT_FUZZ_SEED"].flatMap { UInt64($0) } ?? .random(in: 0...UInt64.max)
    let iterations = ProcessInfo.processInfo.environment["FORMAT_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? 3000
    let g = formatGeometry(blockSize: 512, blockCount: 1 << 16, logLength: 64)

    func randomBytes(_ rng: inout SeededRandom) -> [UInt8] {
        let sizes = [0, 1, 4, 55, 56, 57, 100, 511, 512, 513, 1024]
        let n = Bool.random(using: &rng) ? sizes.randomElement(using: &rng)! : Int.random(in: 0...2048, using: &rng)
        return (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    /// `bytes` with 1 to 4 random bytes changed.
    func mutated(_ bytes: [UInt8], _ rng: inout SeededRandom) -> [UInt8] {
        var b = bytes
        guard !b.isEmpty else { return b }
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            let i = Int.random(in: 0..<b.count, using: &rng)
            b[i] = Bool.random(using: &rng) ? b[i] ^ (1 << UInt8.random(in: 0...7, using: &rng)) : UInt8.random(in: 0...255, using: &rng)
        }
        return b
    }

    @Test("random bytes into every decoder: an error, never a trap")
    func randomBytes() {
        print("FormatFuzzTests.randomBytes seed \(seed)")
        var rng = SeededRandom(seed: seed)
        for _ in 0..<iterations {
            let a = randomBytes(&rng)
            let b = randomBytes(&rng)
            _ = try? decodeSuperblock(a, at: Int.random(in: -1...2, using: &rng))
            _ = try? chooseSuperblock(copy0: a, copy1: b)
            _ = try? decodeLogRecord(a)
            _ = try? decodeCheckpointHead(a, at: Int.random(in: -1...70, using: &rng), geometry: g, sequenceAtLeast: nil)
            _ = try? decodeCheckpoint([a, b], at: 3, geometry: g, sequenceAtLeast: 1)
            _ = try? decodeSnapshot(root: Int.random(in: 0...70, using: &rng), sequence: 1, geometry: g) {
                (_: Int) throws(Errno) -> [UInt8] in a
            }
        }
    }

    @Test("single-byte flips of valid blocks, not resealed, are always caught")
    func flipsCaught() throws {
        print("FormatFuzzTests.flipsCaught seed \(seed)")
        var rng = SeededRandom(seed: seed ^ 1)
        let state = RandomMetadata.state(seed: seed, records: 400, bigValues: false)
        let image = SnapshotImage(state, blockSize: 512)
        let addresses = snapshotAddresses(image.blockCount, geometry: g, first: 100, stride: 2)
        var disk = BlockMap()
        disk.put(image.blocks(sequence: 3, addresses: addresses, uuid: g.uuid), at: addresses)
        #expect(try decodeSnapshot(root: 100, sequence: 3, geometry: g, read: disk.read) == state, "seed \(seed)")
        for _ in 0..<iterations {
            let a = addresses.randomElement(using: &rng)!
            let i = Int.random(in: 0..<512, using: &rng)
            var damaged = disk
            damaged.blocks[a] = disk.blocks[a]!.flipping(i, mask: UInt8.random(in: 1...255, using: &rng))
            let e = formatError { () throws(FormatError) in try decodeSnapshot(root: 100, sequence: 3, geometry: g, read: damaged.read) }
            #expect(e?.address == a, "seed \(seed): block \(a) byte \(i): \(String(describing: e))")
        }
    }

    @Test("damaged and resealed snapshots: whatever the reader accepts, it reads back the same after a rewrite")
    func resealedSnapshots() throws {
        print("FormatFuzzTests.resealedSnapshots seed \(seed)")
        var rng = SeededRandom(seed: seed ^ 2)
        var accepted = 0
        let states = (0..<8).map { RandomMetadata.state(seed: seed &+ UInt64($0), records: 150, bigValues: $0 % 2 == 0) }
        for round in 0..<iterations {
            let state = states[round % 8]
            let image = SnapshotImage(state, blockSize: 512)
            let addresses = snapshotAddresses(image.blockCount, geometry: g, first: 100, stride: 1 + round % 3)
            var disk = BlockMap()
            disk.put(image.blocks(sequence: 3, addresses: addresses, uuid: g.uuid), at: addresses)
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let a = addresses.randomElement(using: &rng)!
                disk.blocks[a] = resealed(mutated(disk.blocks[a]!, &rng))
            }
            guard let decoded = try? decodeSnapshot(root: 100, sequence: 3, geometry: g, read: disk.read) else { continue }
            accepted += 1
            #expect(try roundTrip(decoded) == decoded, "seed \(seed) round \(round): an accepted state does not write back")
        }
        print("FormatFuzzTests.resealedSnapshots: \(accepted) of \(iterations) damaged snapshots accepted")
    }

    func roundTrip(_ state: MetadataState) throws -> MetadataState {
        let image = SnapshotImage(state, blockSize: 512)
        let addresses = snapshotAddresses(image.blockCount, geometry: g, first: 5000)
        var disk = BlockMap()
        disk.put(image.blocks(sequence: 9, addresses: addresses, uuid: g.uuid), at: addresses)
        return try decodeSnapshot(root: 5000, sequence: 9, geometry: g, read: disk.read)
    }

    @Test("damaged and resealed superblocks and checkpoints, damaged records: errors or values, never traps")
    func resealedLog() throws {
        print("FormatFuzzTests.resealedLog seed \(seed)")
        var rng = SeededRandom(seed: seed ^ 3)
        var meta = RandomMetadata(seed: seed)
        meta.bigValues = false
        meta.run(600)
        let records = meta.records
        let sb = Superblock(
            geometry: g, generation: 4, snapshot: SnapshotLocation(root: 100, sequence: 3),
            replayStart: LogPosition(offset: 5, sequence: 4),
            cleanUnmount: false, created: Timestamp(seconds: 1))
        for _ in 0..<iterations {
            let copy = Int.random(in: 0...1, using: &rng)
            _ = try? decodeSuperblock(resealed(mutated(sb.encode(copy: copy), &rng)), at: copy)
            let r = records.randomElement(using: &rng)!
            if let back = try? decodeLogRecord(mutated(r.encoded, &rng)) {
                #expect(try decodeLogRecord(back.encoded) == back, "seed \(seed): an accepted record does not write back")
            }
            let start = Int.random(in: 0..<records.count, using: &rng)
            let some = Array(records[start..<min(records.count, start + Int.random(in: 0...40, using: &rng))])
            var blocks = encodeCheckpoint(sequence: 8, records: some, at: 60, geometry: g)
            let i = Int.random(in: 0..<blocks.count, using: &rng)
            blocks[i] = resealed(mutated(blocks[i], &rng))
            if let c = try? decodeCheckpoint(blocks, at: 60, geometry: g, sequenceAtLeast: 8) {
                let again = encodeCheckpoint(sequence: c.sequence, records: c.records, at: 60, geometry: g)
                #expect(try decodeCheckpoint(again, at: 60, geometry: g, sequenceAtLeast: 8).records == c.records, "seed \(seed)")
            }
        }
    }
}
