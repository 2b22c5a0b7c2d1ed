// swift-tools-version:6.2
import PackageDescription

// Layering mirrors the kernel: base (units, locks, environment) → page cache (mm/filemap.c)
// → iomap (fs/iomap/) → extent file system (fs/xfs/) → testing support → the `iomap` tool.
// Each module depends only on the layers beneath it.

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("MemberImportVisibility"),
    .treatAllWarnings(as: .error),
]

let package = Package(
    name: "swift-iomap",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ExtentFS", targets: ["ExtentFS"]),
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
        .target(name: "ExtentFS", dependencies: ["IOMapBase", "PageCache", "IOMap"], swiftSettings: strict),
        .target(name: "CKernelShim", path: "Sources/CKernelShim", publicHeadersPath: "include"),
        .target(
            name: "IOMapTesting", dependencies: ["IOMapBase", "PageCache", "IOMap", "ExtentFS", "CKernelShim"],
            swiftSettings: strict),
        .executableTarget(
            name: "iomap",
            dependencies: [
                "IOMapBase", "PageCache", "IOMap", "ExtentFS", "IOMapTesting",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        .testTarget(name: "IOMapBaseTests", dependencies: ["IOMapBase"], swiftSettings: strict),
        .testTarget(name: "PageCacheTests", dependencies: ["IOMapBase", "PageCache"], swiftSettings: strict),
        .testTarget(
            name: "IOMapTests", dependencies: ["IOMapBase", "PageCache", "IOMap", "ExtentFS", "IOMapTesting"],
            swiftSettings: strict),
        .testTarget(
            name: "ExtentFSTests", dependencies: ["IOMapBase", "PageCache", "IOMap", "ExtentFS", "IOMapTesting"],
            swiftSettings: strict),
        .testTarget(name: "IOMapCommandTests", dependencies: ["iomap"], swiftSettings: strict),
        .testTarget(
            name: "IOMapTestingTests",
            dependencies: ["IOMapBase", "PageCache", "IOMap", "ExtentFS", "IOMapTesting"],
            exclude: ["Fixtures"],
            swiftSettings: strict),
    ]
)
