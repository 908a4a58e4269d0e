// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Sluice",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "sluice", targets: ["sluice"]),
        // The connector SDK: what a third-party source or sink is written against.
        .library(name: "SluiceKit", targets: ["SluiceKit"]),
        // Thin wrappers over libpq and sqlite3, for connectors that talk to those stores.
        .library(name: "SluiceWire", targets: ["SluiceWire"]),
        // The pgoutput decoder, for sources that read PostgreSQL's logical replication stream.
        .library(name: "PGOutput", targets: ["PGOutput"]),
        // A thin libnats wrapper for JetStream, for connectors that publish to or read from NATS.
        .library(name: "SluiceNATS", targets: ["SluiceNATS"]),
        // The whole command line, so a custom build can register its own connectors.
        .library(name: "SluiceCLI", targets: ["SluiceCLI"]),
        // The built-in connectors, registered: `ConnectorRegistry.builtin`.
        .library(name: "SluiceConnectors", targets: ["SluiceConnectors"]),
        // A conformance check any sink can run in its tests: ordering, replays, crashes.
        .library(name: "SluiceConformance", targets: ["SluiceConformance"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.1"),
    ],
    targets: [
        // C libraries from Debian's -dev packages.
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CNATS", pkgConfig: "libnats", providers: [.apt(["libnats-dev"])]),
        // The HTTP sink's transport: URLSession on Linux takes no CA file or client certificate.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        // CRC32C, failpoints, and HMAC-SHA256 over libcrypto (libssl-dev, which libpq-dev pulls in).
        .target(name: "CSluiceSupport", linkerSettings: [.linkedLibrary("crypto")]),

        // Wire layer: libpq connections, the replication stream, COPY, pipeline mode; sqlite3.
        .target(name: "SluiceWire", dependencies: ["CLibPQ", "CSQLite", "PGOutput"]),
        // Wire layer for NATS JetStream: connections, streams, publish, read, purge (libnats).
        .target(name: "SluiceNATS", dependencies: ["CNATS"]),
        // Pure pgoutput decoder: bytes in, messages out, no I/O.
        .target(name: "PGOutput"),
        // Connector SDK: event model, record codec, Source/Sink protocols, registry, config helpers.
        .target(name: "SluiceKit", dependencies: [
            "CSluiceSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // The embedded topic log: segment files, offset index, recovery.
        .target(name: "SluiceLog", dependencies: [
            "SluiceKit", "CSluiceSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),

        // Built-in connectors: each uses only SluiceKit, SluiceWire and PGOutput.
        .target(name: "PostgresSource", dependencies: [
                    "SluiceKit", "SluiceWire", "PGOutput", .product(name: "Metrics", package: "swift-metrics"),
                ], path: "connectors/PostgresSource"),
        .target(name: "PostgresSink", dependencies: ["SluiceKit", "SluiceWire"],
                path: "connectors/PostgresSink"),
        .target(name: "SQLiteSink", dependencies: ["SluiceKit", "SluiceWire"],
                path: "connectors/SQLiteSink"),
        .target(name: "FileSink", dependencies: ["SluiceKit"], path: "connectors/FileSink"),
        // The exec connectors: a plugin in any language as a sink or a source (JSON lines over pipes).
        .target(name: "ExecConnectors", dependencies: ["SluiceKit"], path: "connectors/Exec"),
        .target(name: "HTTPSink", dependencies: ["SluiceKit", "CCurl"], path: "connectors/HTTPSink"),
        // Publishes each change to a NATS JetStream stream, for consumers that are not Sluice.
        .target(name: "NATSSink", dependencies: ["SluiceKit", "SluiceNATS"], path: "connectors/NATSSink"),

        // The built-in connectors' registration: a custom build may register others instead.
        .target(name: "SluiceConnectors", dependencies: [
            "SluiceKit", "PostgresSource", "PostgresSink", "SQLiteSink", "FileSink", "ExecConnectors", "HTTPSink", "NATSSink",
        ]),
        // The JetStream topic backend: topics as NATS JetStream streams, shared by processes on many hosts.
        .target(name: "SluiceJetStream", dependencies: [
            "SluiceKit", "CSluiceSupport", "SluiceNATS", .product(name: "Logging", package: "swift-log"),
        ]),
        // Runtime: wiring, sink loops, checkpoints, retries, shutdown. Depends on the SDK and the log only.
        .target(name: "SluiceRuntime", dependencies: [
            "SluiceKit", "SluiceLog", "SluiceJetStream",
            .product(name: "Yams", package: "Yams"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "FlyingFox", package: "FlyingFox"),
        ]),
        // `sluice verify`: compares SQL sinks with their PostgreSQL source while the pipeline runs.
        .target(name: "SluiceVerify", dependencies: ["SluiceKit", "SluiceWire"]),
        .target(name: "SluiceCLI", dependencies: [
            "SluiceRuntime", "SluiceKit", "SluiceConnectors", "SluiceVerify",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "sluice", dependencies: ["SluiceCLI", "SluiceKit"]),
        .target(name: "SluiceConformance", dependencies: ["SluiceKit", "SluiceLog"]),
        // The benchmark: scripts/bench.sh builds and runs it (see BENCHMARKS.md).
        .executableTarget(name: "sluice-bench", dependencies: ["SluiceWire", "PGOutput", "SluiceNATS"]),

        // Seeded random mutation for the parsers' fuzz tests (FuzzTests in each target below).
        .target(name: "FuzzSupport", path: "Tests/FuzzSupport"),
        .testTarget(name: "PGOutputTests", dependencies: ["PGOutput", "FuzzSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "SluiceLogTests", dependencies: ["SluiceLog", "SluiceKit", "FuzzSupport"]),
        // Runs real nats-server processes (one node, and a three-node cluster).
        .testTarget(name: "SluiceNATSTests", dependencies: ["SluiceNATS"]),
        .testTarget(name: "SluiceKitTests", dependencies: ["SluiceKit", "SluiceRuntime", "SluiceConnectors", "FuzzSupport"]),
        .testTarget(name: "PostgresSourceTests", dependencies: ["PostgresSource"]),
        .testTarget(name: "SluiceJetStreamTests", dependencies: ["SluiceJetStream", "SluiceKit", "FuzzSupport"]),
        .testTarget(name: "SluiceRuntimeTests", dependencies: ["SluiceRuntime", "SluiceKit"]),
        .testTarget(name: "SluiceVerifyTests", dependencies: ["SluiceVerify", "SluiceWire"]),
        // Runs the real `sluice` binary against real PostgreSQL clusters and SQLite files.
        .testTarget(name: "IntegrationTests", dependencies: [
            "sluice", "SluiceWire", "SluiceKit", "SluiceLog", "SluiceConformance",
            "PostgresSink", "SQLiteSink", "FileSink", "ExecConnectors", "SluiceNATS",
        ], exclude: ["Fixtures"]),
    ]
)
