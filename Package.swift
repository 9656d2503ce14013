// swift-tools-version:6.0
import PackageDescription

/// SIMD kernels need AVX2/FMA code generation; without it Swift lowers vector FMAs to
/// per-lane library calls (50x slower, see docs/ARCHITECTURE.md).
let simd: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]

let package = Package(
    name: "Atelier",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "atelier", targets: ["atelier"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.0.0"),
        .package(url: "https://github.com/hummingbird-project/swift-websocket", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.22.0"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.0.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // C libraries from Debian, as system-library targets.
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CSPNG", path: "Sources/CSPNG"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .systemLibrary(name: "CTurboJPEG", path: "Sources/CTurboJPEG"),
        .systemLibrary(name: "CWebP", path: "Sources/CWebP"),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),

        // Layers, dependencies pointing down.
        // micro-kernels for CPU features chosen at run time (AVX-512), in C: per-function targets
        .target(name: "CKernels"),
        .target(name: "AtelierTensor", dependencies: ["CBLAS", "CKernels"], swiftSettings: simd),
        .target(
            name: "AtelierModels",
            dependencies: [
                "AtelierTensor", "CZlib", "Yams", .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["Resources/README.md"],
            resources: [.copy("Resources/bpe_simple_vocab_16e6.txt.gz")],
            swiftSettings: simd),
        .target(name: "AtelierDiffusion", dependencies: ["AtelierTensor", "AtelierModels", "AtelierImaging"], swiftSettings: simd),
        .target(name: "AtelierImaging", dependencies: ["CSPNG", "CZlib", "CTurboJPEG", "CWebP"], swiftSettings: simd),
        .target(
            name: "AtelierService",
            dependencies: ["AtelierModels", "AtelierDiffusion", "AtelierImaging"],
            swiftSettings: simd),
        // The queue of the API edition: protocol values, stores, delivery (no HTTP here).
        .target(
            name: "AtelierQueue",
            dependencies: [
                "CSQLite", .product(name: "PostgresNIO", package: "postgres-nio"), .product(name: "Logging", package: "swift-log"),
            ]),
        .target(
            name: "AtelierHTTP",
            dependencies: [
                "AtelierService", "AtelierModels", "AtelierDiffusion", "AtelierImaging", "AtelierQueue",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "WSCore", package: "swift-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: simd),
        // Object storage: an S3-compatible store (SigV4 on async-http-client) behind the outputs and models.
        .target(
            name: "AtelierStorage",
            dependencies: [
                "AtelierService",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]),
        // Deploy: service specs, the controller's registry, instance processes, the gateway.
        .target(
            name: "AtelierDeploy",
            dependencies: [
                "AtelierService", "AtelierHTTP", "AtelierQueue", "AtelierStorage",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        // counts malloc calls for `atelier bench` (defines malloc & co. in the executable only)
        .target(name: "CMallocCount"),
        .executableTarget(
            name: "atelier",
            dependencies: [
                "CMallocCount", "AtelierTensor", "AtelierModels", "AtelierDiffusion", "AtelierImaging", "AtelierService", "AtelierHTTP", "AtelierQueue", "AtelierStorage", "AtelierDeploy",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ],
            swiftSettings: simd),
        .testTarget(
            name: "AtelierTests",
            dependencies: ["AtelierTensor", "AtelierModels", "AtelierDiffusion", "AtelierImaging", "AtelierService", "AtelierQueue", "AtelierStorage", "AtelierDeploy"],
            swiftSettings: simd),
    ],
    swiftLanguageModes: [.v5]
)
