// swift-tools-version: 6.2
// libFuzzer targets for imgtool's readers. Built by scripts/fuzz with --sanitize=fuzzer,address. The library targets
// are the main package's own sources (symlinked): SwiftPM instruments only a root package's targets, and coverage
// feedback needs the readers instrumented, not just the harness.
import PackageDescription

let package = Package(
    name: "imgtool-fuzz",
    dependencies: [
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        .systemLibrary(name: "CZlib", pkgConfig: "zlib"),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd"),
        .systemLibrary(name: "CLinux"),
        .target(name: "QCow2", dependencies: ["CZlib", "CZstd", "CLinux", .product(name: "SystemPackage", package: "swift-system")]),
        .executableTarget(name: "FuzzHeader", dependencies: ["QCow2"]),
        .executableTarget(name: "FuzzPartitions", dependencies: ["QCow2"]),
        .executableTarget(name: "FuzzImage", dependencies: ["QCow2"]),
        .executableTarget(name: "FuzzGuest", dependencies: ["QCow2"]),
        .executableTarget(name: "FuzzSpace", dependencies: ["QCow2"]),
        .executableTarget(name: "FuzzCheck", dependencies: ["QCow2"]),
    ]
)
