// swift-tools-version: 6.2
import PackageDescription

let strict: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "imgtool",
    products: [
        .executable(name: "imgtool", targets: ["imgtool"]),
        .library(name: "QCow2", targets: ["QCow2"]),
        .library(name: "ImageOps", targets: ["ImageOps"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        // Without the Foundation trait: Foundation costs start-up time and the runner needs only bytes.
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2", traits: []),
    ],
    targets: [
        // The system's zlib and zstd, for compressed qcow2 clusters (Debian: zlib1g-dev, libzstd-dev).
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // statfs(2) from the C library (Glibc's Swift module leaves it out).
        .systemLibrary(name: "CLinux"),
        .target(
            name: "QCow2",
            dependencies: ["CZlib", "CZstd", "CLinux", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: strict
        ),
        .target(
            name: "ImageOps",
            dependencies: [
                "QCow2", "CZlib",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "imgtool",
            dependencies: [
                "QCow2", "ImageOps",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),
        // Helpers the test targets share: running qemu-img and the built imgtool, temporary folders.
        .target(name: "TestSupport", path: "Tests/TestSupport", swiftSettings: strict),
        .testTarget(name: "QCow2Tests", dependencies: ["QCow2", "ImageOps", "TestSupport"], swiftSettings: strict),
        .testTarget(
            name: "ImageOpsTests", dependencies: ["ImageOps", "QCow2", "TestSupport", "imgtool"],
            swiftSettings: strict),
    ]
)
