// swift-tools-version:6.2
import PackageDescription

// Linux only: the engine and its tools use Linux system calls and the kernel's behaviour as
// their oracle (SEEK_DATA, fallocate, loop devices, userfaultfd).
//
// Layering mirrors the kernel, each module depending only on the layers beneath it:
//
//   IOMapBase (+ CIOMapBase)  units, errnos, sleeping locks, lockdep, the environment
//   PageCache                 mm/: folios, folio memory, the cache index, the address space
//   IOMap                     fs/iomap/: the buffered write and read paths, writeback, seek
//   ExtentFS                  fs/xfs/: extent maps, space, block devices, file operations
//   IOMapTesting              engine-only test support: model, fsx, threads, explorer,
//                             the faulty device (no Foundation, no system calls of its own)
//   IOMapKernelSide (+ CKernelShim)  the host kernel as oracle: real files, XFS and ext4
//                             images, the differential tester, the kernel probes; the only
//                             library module with Foundation and the C shim
//   FUSE (+ CFUSE)            fs/fuse/ from the daemon's side: the /dev/fuse protocol
//                             (requests, replies, INIT, the request threads) serving a Volume
//                             to the kernel; CFUSE holds <linux/fuse.h> and the ioctl and
//                             mount(2) calls Swift cannot make
//   IOMapBench                the benchmark, over IOMapKernelSide for the kernel's side
//   iomap                     the command-line tool
//
// Build flags (-Xswiftc -D…), independent of the optimisation level:
//   IOMAP_VERIFY   expensive invariant checks (`verify`), warnings that trap, and folio
//                  memory poisoned when handed out (FolioMemory.fill); CI runs the tests so.
//   IOMAP_LOCKDEP  the lock-order checker on every sleeping-lock and mutex acquisition.
//   IOMAP_TSAN     the short-held mutexes on pthread mutexes, whose hand-off Thread
//                  Sanitizer can see (Synchronization.Mutex's futex it cannot).

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("MemberImportVisibility"),
    .treatAllWarnings(as: .error),
]

/// The engine's four layers, which everything above them depends on.
let engine: [Target.Dependency] = ["IOMapBase", "PageCache", "IOMap", "ExtentFS"]

let package = Package(
    name: "swift-iomap",
    products: [
        .library(name: "ExtentFS", targets: ["ExtentFS"]),
        .library(name: "Volume", targets: ["Volume"]),
        .library(name: "IOMapTesting", targets: ["IOMapTesting"]),
        .executable(name: "iomap", targets: ["iomap"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        .target(name: "CIOMapBase", path: "Sources/CIOMapBase", publicHeadersPath: "include"),
        .target(
            name: "IOMapBase",
            dependencies: ["CIOMapBase", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict),
        .target(name: "PageCache", dependencies: ["IOMapBase"], swiftSettings: strict),
        .target(name: "IOMap", dependencies: ["IOMapBase", "PageCache"], swiftSettings: strict),
        .target(name: "ExtentFS", dependencies: ["CIOMapBase", "IOMapBase", "PageCache", "IOMap"], swiftSettings: strict),
        .target(
            name: "Volume", dependencies: ["CIOMapBase"] + engine,
            swiftSettings: strict),
        .target(
            name: "IOMapTesting", dependencies: engine + ["Volume"],
            swiftSettings: strict),
        .target(name: "CFUSE", path: "Sources/CFUSE", publicHeadersPath: "include"),
        .target(name: "FUSE", dependencies: ["CFUSE", "IOMapBase", "PageCache", "Volume"], swiftSettings: strict),
        .target(name: "CKernelShim", path: "Sources/CKernelShim", publicHeadersPath: "include"),
        .target(
            name: "IOMapKernelSide",
            dependencies: engine + ["IOMapTesting", "CKernelShim"],
            swiftSettings: strict),
        .target(
            name: "IOMapBench",
            dependencies: engine + ["Volume", "IOMapTesting", "IOMapKernelSide"],
            swiftSettings: strict),
        .executableTarget(
            name: "iomap",
            dependencies: engine + [
                "Volume", "IOMapTesting", "IOMapKernelSide", "IOMapBench", "FUSE",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        .testTarget(name: "IOMapBaseTests", dependencies: ["IOMapBase"], swiftSettings: strict),
        .testTarget(name: "PageCacheTests", dependencies: ["IOMapBase", "PageCache"], swiftSettings: strict),
        .testTarget(
            name: "IOMapTests", dependencies: engine + ["IOMapTesting"],
            swiftSettings: strict),
        .testTarget(
            name: "ExtentFSTests", dependencies: engine + ["IOMapTesting"],
            swiftSettings: strict),
        .testTarget(
            name: "IOMapTestingTests",
            dependencies: engine + ["IOMapTesting"],
            exclude: ["Fixtures"],
            swiftSettings: strict),
        .testTarget(
            name: "IOMapKernelSideTests",
            dependencies: engine + ["IOMapTesting", "IOMapKernelSide"],
            swiftSettings: strict),
        .testTarget(
            name: "VolumeTests", dependencies: engine + ["Volume", "IOMapTesting"],
            swiftSettings: strict),
        .testTarget(name: "IOMapBenchTests", dependencies: ["IOMapBench", "IOMapKernelSide"], swiftSettings: strict),
        .testTarget(
            name: "IOMapCommandTests", dependencies: ["iomap", "IOMapBase", "ExtentFS", "Volume", "IOMapKernelSide"], swiftSettings: strict),
        .testTarget(
            name: "FUSETests",
            dependencies: ["FUSE", "CFUSE", "CKernelShim", "iomap", "IOMapBase", "ExtentFS", "Volume", "IOMapKernelSide"],
            swiftSettings: strict),
        .testTarget(name: "TidyTests", swiftSettings: strict),
    ]
)
