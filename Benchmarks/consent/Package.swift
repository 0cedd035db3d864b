// swift-tools-version:6.0
// The consent benchmark: a package of its own, so that building it never touches the bridge's
// build. It uses the root package's `Exchange`, `Consent`, `Archive` and `Ledger` library
// products through a path dependency.
import Foundation
import PackageDescription

// A path dependency's package identity is its directory's name, whatever the checkout is called.
let root = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().deletingLastPathComponent()

let package = Package(
    name: "consent-bench",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "consent-bench",
            dependencies: [
                .product(name: "Exchange", package: root.lastPathComponent),
                .product(name: "Consent", package: root.lastPathComponent),
                .product(name: "Archive", package: root.lastPathComponent),
                .product(name: "Ledger", package: root.lastPathComponent),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
