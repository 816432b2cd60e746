// swift-tools-version:6.2
import PackageDescription

// The same settings as the root package, applied to every target.
let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
    .enableUpcomingFeature("InferIsolatedConformances"),
]

let package = Package(
    name: "KeelBenchmarks",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "keel-bench", targets: ["KeelBench"])
    ],
    dependencies: [
        .package(name: "Keel", path: ".."),
        // The PostgreSQL event store and the gRPC request channels, and the same libraries bare,
        // for their baselines.
        .package(name: "KeelIntegrations", path: "../Integrations"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
    ],
    targets: [
        // The system SQLite, for the event store's baseline (libsqlite3-dev; .ci/run installs it
        // where it is missing).
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite"),
        .executableTarget(
            name: "KeelBench",
            dependencies: [
                "CSQLite",
                .product(name: "Keel", package: "Keel"),
                .product(name: "KeelResilience", package: "Keel"),
                .product(name: "KeelEventSourcing", package: "Keel"),
                .product(name: "KeelSagas", package: "Keel"),
                .product(name: "KeelPostgres", package: "KeelIntegrations"),
                .product(name: "KeelGRPC", package: "KeelIntegrations"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
