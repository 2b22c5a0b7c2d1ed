import ExtentFS
import IOMap
import IOMapBase
import IOMapTesting

let args = CommandLine.arguments
let bs = Int(args[1])!, folio = Int(args[2])!, seed = UInt64(args[3])!, ops = Int(args[4])!
var cfg = RandomRunConfig(seed: seed, ops: ops, blockSize: bs, maxFolioSize: folio); cfg.fullCheckEvery = 1; cfg.traceOp = args.count > 6 ? Int(args[6]) : nil
let r = runRandomOps(cfg)
print(r.opsRun, r.violation ?? "ok")
print(r.logTail.suffix(Int(args[5]) ?? 20).joined(separator: "\n"))
