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
        .package(name: "Keel", path: "..")
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
            ],
            swiftSettings: swiftSettings
        )
    ]
)
