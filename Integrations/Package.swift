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

// Keel's bridges to the Swift server ecosystem. A separate package so that the root package keeps
// `dependencies: []`: only those who depend on this package build swift-log, swift-metrics,
// swift-distributed-tracing and swift-service-lifecycle.
let package = Package(
    name: "KeelIntegrations",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "KeelSwiftServer", targets: ["KeelSwiftServer"]),
        .library(name: "KeelPostgres", targets: ["KeelPostgres"]),
        .library(name: "ShopServer", targets: ["ShopServer"]),
        .library(name: "KeelGRPC", targets: ["KeelGRPC"]),
        .executable(name: "shop-server", targets: ["ShopServerMain"]),
    ],
    dependencies: [
        .package(name: "Keel", path: ".."),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // The event store and state store on PostgreSQL.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        // For the `shop-server` sample only: the HTTP server and the Prometheus exposition.
        // Without its default traits: shop-server reads no swift-configuration and encodes no forms,
        // and the traits would build swift-configuration.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        // Already in the graph through Hummingbird; named because shop-server imports them itself
        // (`ByteBuffer`'s members, `HTTPField.Name`).
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        // For KeelGRPC: request channels between hosts in different processes.
        .package(url: "https://github.com/grpc/grpc-swift-2.git", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport.git", from: "2.9.2"),
    ],
    targets: [
        .target(
            name: "KeelSwiftServer",
            dependencies: [
                .product(name: "Keel", package: "Keel"),
                .product(name: "KeelCore", package: "Keel"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        // The event store and the state store on PostgreSQL.
        .target(
            name: "KeelPostgres",
            dependencies: [
                .product(name: "KeelCore", package: "Keel"),
                .product(name: "KeelEventSourcing", package: "Keel"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeelPostgresTests",
            dependencies: [
                "KeelPostgres",
                .product(name: "ShopServices", package: "Keel"),
                .product(name: "Keel", package: "Keel"),
                .product(name: "KeelCore", package: "Keel"),
                .product(name: "KeelEventSourcing", package: "Keel"),
                .product(name: "KeelTesting", package: "Keel"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // What both test targets share: an in-memory tracer that propagates W3C trace context.
        .target(
            name: "IntegrationsTestSupport",
            dependencies: [
                .product(name: "KeelCore", package: "Keel"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            path: "Tests/IntegrationsTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeelSwiftServerTests",
            dependencies: [
                "KeelSwiftServer",
                "IntegrationsTestSupport",
                .product(name: "Keel", package: "Keel"),
                .product(name: "KeelCore", package: "Keel"),
                .product(name: "KeelResilience", package: "Keel"),
                .product(name: "KeelTesting", package: "Keel"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Request channels over gRPC: a host's routes served to other processes, and proxies of
        // services that live in another process.
        .target(
            name: "KeelGRPC",
            dependencies: [
                .product(name: "Keel", package: "Keel"),
                .product(name: "KeelCore", package: "Keel"),
                .product(name: "KeelEventSourcing", package: "Keel"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeelGRPCTests",
            dependencies: [
                "KeelGRPC",
                .product(name: "Keel", package: "Keel"),
                .product(name: "KeelCore", package: "Keel"),
                .product(name: "KeelResilience", package: "Keel"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
            ],
            swiftSettings: swiftSettings
        ),
        // The shop's services behind a Hummingbird HTTP API: the application builder, importable by
        // tests, and the executable `shop-server`.
        .target(
            name: "ShopServer",
            dependencies: [
                "KeelSwiftServer",
                "KeelGRPC",
                "KeelPostgres",
                .product(name: "ShopServices", package: "Keel"),
                .product(name: "Keel", package: "Keel"),
                .product(name: "KeelCore", package: "Keel"),
                .product(name: "KeelResilience", package: "Keel"),
                .product(name: "KeelEventSourcing", package: "Keel"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "ShopServerMain",
            dependencies: [
                "ShopServer",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ShopServerTests",
            dependencies: [
                "ShopServer",
                "KeelGRPC",
                "KeelPostgres",
                "IntegrationsTestSupport",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "ShopServices", package: "Keel"),
                .product(name: "Keel", package: "Keel"),
                .product(name: "KeelCore", package: "Keel"),
                .product(name: "KeelResilience", package: "Keel"),
                .product(name: "KeelEventSourcing", package: "Keel"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
