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
        .executableTarget(
            name: "KeelBench",
            dependencies: [
                .product(name: "Keel", package: "Keel"),
                .product(name: "KeelResilience", package: "Keel"),
            ],
            swiftSettings: swiftSettings
        )
    ]
)
