// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
    .enableUpcomingFeature("InferIsolatedConformances"),
]

let package = Package(
    name: "Keel",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "KeelCore", targets: ["KeelCore"]),
        .library(name: "KeelResilience", targets: ["KeelResilience"]),
        .library(name: "KeelEventSourcing", targets: ["KeelEventSourcing"]),
        .library(name: "Keel", targets: ["Keel"]),
        .library(name: "KeelSagas", targets: ["KeelSagas"]),
        .library(name: "KeelTesting", targets: ["KeelTesting"]),
        .library(name: "ShopServices", targets: ["ShopServices"]),
        .executable(name: "shop", targets: ["Shop"]),
    ],
    dependencies: [],
    targets: [
        .target(name: "KeelCore", swiftSettings: swiftSettings),
        .target(name: "KeelResilience", dependencies: ["KeelCore"], swiftSettings: swiftSettings),
        .target(name: "KeelEventSourcing", dependencies: ["KeelCore"], swiftSettings: swiftSettings),
        .target(
            name: "Keel",
            dependencies: ["KeelCore", "KeelResilience", "KeelEventSourcing"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KeelSagas",
            dependencies: ["Keel", "KeelCore", "KeelResilience", "KeelEventSourcing"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KeelTesting",
            dependencies: ["KeelCore", "Keel", "KeelEventSourcing", "KeelSagas"],
            swiftSettings: swiftSettings
        ),
        // The shop's services and messages, shared by the `shop` walk-through and by the
        // `shop-server` sample of the Integrations package.
        .target(
            name: "ShopServices",
            dependencies: ["Keel", "KeelCore", "KeelResilience", "KeelEventSourcing", "KeelSagas"],
            path: "Samples/ShopServices",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "Shop",
            dependencies: ["ShopServices", "Keel", "KeelCore", "KeelResilience", "KeelEventSourcing"],
            path: "Samples/Shop",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeelCoreTests",
            dependencies: ["KeelCore", "KeelTesting", "KeelTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeelTests",
            dependencies: [
                "Keel", "KeelCore", "KeelResilience", "KeelEventSourcing", "KeelTesting", "KeelTestSupport",
                "KeelCrashSubscriber",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeelResilienceTests",
            dependencies: ["KeelResilience", "KeelCore", "KeelTesting", "KeelTestSupport"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KeelTestSupport",
            path: "Tests/Support/KeelTestSupport",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "KeelCrashAppender",
            dependencies: ["KeelEventSourcing", "KeelCore"],
            path: "Tests/Tools/KeelCrashAppender",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "KeelCrashProjector",
            dependencies: ["KeelEventSourcing", "KeelCore", "KeelTesting"],
            path: "Tests/Tools/KeelCrashProjector",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "KeelCrashSubscriber",
            dependencies: ["Keel", "KeelEventSourcing", "KeelCore"],
            path: "Tests/Tools/KeelCrashSubscriber",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "KeelCrashSaga",
            dependencies: ["KeelSagas", "KeelEventSourcing", "KeelCore", "KeelResilience", "KeelTesting"],
            path: "Tests/Tools/KeelCrashSaga",
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "KeelRecordFuzzer",
            dependencies: ["KeelEventSourcing", "KeelCore"],
            path: "Fuzz/RecordDecoder",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeelEventSourcingTests",
            dependencies: [
                "KeelEventSourcing", "KeelCore", "KeelTesting", "KeelTestSupport", "KeelCrashAppender",
                "KeelCrashProjector",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeelSagasTests",
            dependencies: [
                "KeelSagas", "Keel", "KeelCore", "KeelResilience", "KeelEventSourcing", "KeelTesting", "KeelTestSupport",
                "KeelCrashSaga",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ShopServicesTests",
            dependencies: [
                "ShopServices", "Keel", "KeelCore", "KeelEventSourcing", "KeelResilience", "KeelSagas", "KeelTesting",
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KeelTestingTests",
            dependencies: [
                "KeelTesting", "Keel", "KeelCore", "KeelEventSourcing", "KeelResilience", "KeelSagas", "KeelTestSupport",
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
