// swift-tools-version:6.0
import PackageDescription

// DCMTK 3.6.7 as Debian ships it (libdcmtk-dev). Its dcmtk.pc names sndfile, which Debian does
// not install, so pkg-config cannot be used: the libraries are named here explicitly.
let dcmtkLibraries: [LinkerSetting] = [
    "dcmsr", "dcmjpls", "dcmtkcharls", "dcmjpeg", "ijg8", "ijg12", "ijg16", "dcmimage", "dcmimgle",
    "dcmnet", "dcmdata", "oflog", "ofstd",
].map { .linkedLibrary($0) }

let package = Package(
    name: "dicom-bridge",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "dicom-bridge", targets: ["dicom-bridge"]),
        .library(name: "Ledger", targets: ["Ledger"]),
        .library(name: "Exchange", targets: ["Exchange"]),
        .library(name: "Consent", targets: ["Consent"]),
        .library(name: "Archive", targets: ["Archive"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        // The only place that touches DCMTK: C++ inside, a C header outside.
        .target(
            name: "CDcmtk",
            path: "CDcmtk",
            cxxSettings: [.unsafeFlags(["-std=c++17"])],
            linkerSettings: dcmtkLibraries + [.linkedLibrary("z"), .linkedLibrary("pthread")]
        ),
        // Pure Swift DICOM vocabulary: tags, UIDs, statuses, AE titles, File Meta encoding.
        .target(name: "DICOM"),
        // DIMSE over DCMTK: the SCP service and SCU operations. Only importer of CDcmtk.
        .target(
            name: "DICOMNetwork",
            dependencies: [
                "CDcmtk", "DICOM",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // RFC 6962 / 9162 Merkle log, checkpoints and signed notes. Depends on nothing of ours.
        .target(
            name: "Ledger",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ]
        ),
        // Content-addressed, durable instance store and the SQLite index.
        .target(
            name: "Archive",
            dependencies: [
                "DICOM",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The consortium's X.509 identities: a CA, node certificates and keys (PEM files).
        .target(
            name: "PKI",
            dependencies: [
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Patients' consent: their Ed25519 keys, signed grants and revocations (no bridge needed).
        .target(
            name: "Consent",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        // Exchange between bridges: study manifests (XDS-I.b KOS), document entries, the peer
        // registry, the peer API over mutual TLS, verified fetch, and witnessing of peers' ledgers.
        .target(
            name: "Exchange",
            dependencies: [
                "DICOM", "DICOMNetwork", "Archive", "Ledger", "PKI", "Consent",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Configuration and wiring: what `serve` runs.
        .target(
            name: "Bridge",
            dependencies: [
                "DICOM", "DICOMNetwork", "Archive", "Ledger", "Exchange", "PKI",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "dicom-bridge",
            dependencies: [
                "Bridge", "DICOM", "DICOMNetwork", "Archive", "Ledger", "Exchange", "PKI", "Consent",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "DICOMTests", dependencies: ["DICOM"]),
        .testTarget(name: "LedgerTests", dependencies: ["Ledger"]),
        .testTarget(name: "ConsentTests", dependencies: ["Consent"]),
        .testTarget(name: "PKITests", dependencies: ["PKI", .product(name: "X509", package: "swift-certificates")]),
        .testTarget(name: "ExchangeTests", dependencies: [
            "Exchange", "Archive", "Ledger", "DICOM", "DICOMNetwork", "Consent", "PKI",
            .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOSSL", package: "swift-nio-ssl"),
        ]),
        .testTarget(name: "DICOMNetworkTests", dependencies: ["DICOMNetwork", "DICOM"]),
        .testTarget(name: "BridgeTests", dependencies: [
            "Bridge", "Exchange", "Archive", "Ledger", "DICOM", "PKI",
            .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "CLITests", dependencies: [
            "dicom-bridge", "Bridge", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "ArchiveTests", dependencies: ["Archive", "DICOM", .product(name: "Crypto", package: "swift-crypto"), .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Logging", package: "swift-log")]),
    ]
)
