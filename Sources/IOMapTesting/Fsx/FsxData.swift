// Counterpart: fstests' fsx (ltp/fsx.c): original_buf and gendata, the data every write
// stores, so that a bad byte names the op that wrote it.

import IOMapBase

/// fsx's original_buf: a fixed pseudo-random byte for each offset, the same in every run.
public func fsxOriginalByte(_ o: Int) -> UInt8 {
    var rng = SeededRandom(seed: UInt64(o >> 3) &+ 0xF5C0_0001)
    return UInt8(truncatingIfNeeded: rng.next() >> UInt64((o & 7) * 8))
}

/// fsx's data: byte `offset` of what op `n` writes (gendata): n mod 256, plus the original
/// byte at odd offsets.
@inline(__always)
func fsxDataByte(op n: Int, offset o: Int) -> UInt8 {
    let stamp = UInt8(truncatingIfNeeded: n)
    return o & 1 == 1 ? stamp &+ fsxOriginalByte(o) : stamp
}

public func fsxData(op n: Int, offset: Int, count: Int) -> [UInt8] {
    (0..<count).map { fsxDataByte(op: n, offset: offset + $0) }
}
