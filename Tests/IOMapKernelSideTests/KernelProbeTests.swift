// The engine side of the EOF-block probe, with its canary: the engine loses the store only
// when it is given the kernel's EOF rounding.

import IOMap
import IOMapKernelSide
import IOMapTesting
import Testing

@Suite("EOF-block probe, engine side")
struct KernelProbeTests {
    @Test("our rounding keeps the store; the kernel's loses it (4 KiB and 1 KiB blocks)", arguments: [(4096, 6144), (1024, 5632)])
    func engineSide(blockSize: Int, isize: Int) {
        var config = EOFProbeConfig()
        config.blockSize = blockSize
        config.isize = isize
        #expect(config.problem == nil)
        #expect(!engineLosesStore(config))
        #expect(engineLosesStore(config, eofRounding: .kernel), "the canary: Linux's rounding must lose the store")
    }

    @Test("settings the probe cannot use are named")
    func problems() {
        var c = EOFProbeConfig()
        c.isize = 8192
        #expect(c.problem?.contains("multiple of the block size") == true)
        c.isize = 6144
        c.blockSize = 3000
        #expect(c.problem?.contains("--block-size") == true)
        c.blockSize = 4096
        c.attempts = 0
        #expect(c.problem?.contains("--attempts") == true)
        c.attempts = 1
        c.isize = 4000
        #expect(c.problem?.contains("--isize") == true)
    }
}
