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

    /// A setting changed from the defaults, and what the problem must mention (nil: none).
    static let settings: [(change: @Sendable (inout EOFProbeConfig) -> Void, problem: String?)] = [
        ({ _ in }, nil),
        ({ $0.isize = 8192 }, "multiple of the block size"),
        ({ $0.blockSize = 3000 }, "--block-size"),
        ({ $0.attempts = 0 }, "--attempts"),
        ({ $0.isize = 4000 }, "--isize"),
    ]

    @Test("settings the probe cannot use are named", arguments: settings.indices)
    func problems(row: Int) {
        var c = EOFProbeConfig()
        Self.settings[row].change(&c)
        expectProblem(c.problem, mentions: Self.settings[row].problem)
    }
}
