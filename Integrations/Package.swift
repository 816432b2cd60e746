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
        .library(name: "KeelSwiftServer", targets: ["KeelSwiftServer"])
    ],
    dependencies: [
        .package(name: "Keel", path: ".."),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
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
        .testTarget(
            name: "KeelSwiftServerTests",
            dependencies: [
                "KeelSwiftServer",
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
    ]
)
