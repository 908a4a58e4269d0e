// swift-tools-version:6.0
import PackageDescription

// A `sluice` binary with one more sink: the built-in connectors plus `type: counter`.
// Build it with `swift build -c release` in this folder; the binary is .build/release/my-sluice.
let package = Package(
    name: "CustomSink",
    platforms: [.macOS(.v14)],
    dependencies: [
        // In your own project: .package(url: "https://github.com/…/sluice", from: "…").
        .package(name: "Sluice", path: "../.."),
    ],
    targets: [
        .executableTarget(name: "my-sluice", dependencies: [
            .product(name: "SluiceKit", package: "Sluice"),
            .product(name: "SluiceCLI", package: "Sluice"),
            .product(name: "SluiceConnectors", package: "Sluice"),
        ]),
    ]
)
