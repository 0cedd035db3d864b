// swift-tools-version:6.0
// The ledger benchmark: a package of its own, so that building it never touches the bridge's
// build. It uses the root package's `Ledger` library product through a path dependency.
import Foundation
import PackageDescription

// A path dependency's package identity is its directory's name, whatever the checkout is called.
let root = URL(fileURLWithPath: Context.packageDirectory).deletingLastPathComponent().deletingLastPathComponent()

let package = Package(
    name: "ledger-bench",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        .executableTarget(
            name: "ledger-bench",
            dependencies: [
                .product(name: "Ledger", package: root.lastPathComponent),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "GRDBSQLite", package: "GRDB.swift"),  // the append prototype only
            ]
        ),
    ]
)
