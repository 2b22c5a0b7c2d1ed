// Counterpart: none in the kernel; the byte units the workloads are sized in, written once
// for all of them.

let KiB = 1 << 10
let MiB = 1 << 20
let GiB = 1 << 30
let TiB = 1 << 40
