import ExtentFS
import IOMapBase

let fs = ExtentFS(memoryBytes: 64 << 20)
let f = fs.createFile()
do {
    try f.write([UInt8](repeating: 0x41, count: 10000), at: 0)
    try f.write([UInt8](repeating: 0x42, count: 100), at: 1500)
    print("size", f.size, "extents", f.extentRecords)
    let r = try f.read(count: 20, at: 1490)
    print(r)
    try f.truncate(to: 16384)
    try f.mappedStore([1, 2, 3, 4, 5, 6, 7, 8], at: 12288)
    print("extents", f.extentRecords, "violations", f.invariantViolations())
    // failing write over a hole with a mapped store: S2-like
    try f.write([UInt8](repeating: 0x43, count: 4096), at: 20000, faultOffset: 0)
} catch {
    print("error", error)
}
print("extents", f.extentRecords, "violations", f.invariantViolations())
try f.fsync()
print("after fsync", f.extentRecords, fs.checkSpaceAccounting() ?? "D4 ok")
f.dropCaches()
print(try f.read(count: 10, at: 12285), try f.read(count: 4, at: 9998))
print(try f.seekData(from: 0), try f.seekHole(from: 0))
