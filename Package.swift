// swift-tools-version:6.0
import PackageDescription

// Release builds of the gateway's own modules let the optimizer end a
// local value's life at its last use (Swift 5.6's rule) instead of at the
// end of its scope: fewer retains and releases on the request path (420 ->
// 394 a full app-route request, counted end to end). Safe for this code:
// it has no `deinit`, no `Unmanaged` and no pointer that outlives its
// `withUnsafe...` closure, so no behaviour hangs on when a local object dies. Not for `Passport` (a
// library other teams build; a package's unsafe flags refuse it as a
// dependency) nor for the dependencies (their code may rely on it).
let shortLifetimes: [SwiftSetting] = [.unsafeFlags(["-Xfrontend", "-enable-lexical-lifetimes=false"], .when(configuration: .release))]

let package = Package(
    name: "gateway",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "gateway", targets: ["Gateway"]),
        .library(name: "Passport", targets: ["Passport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2.git", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        // ES256 and RS256 bearer tokens (Ed25519 goes through libsodium).
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        // X.509: client certificates' SANs (TLS and XFCC), `gateway certs dev`.
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
    ],
    targets: [
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        // mimalloc in place of the C library's malloc for the gateway
        // executable (its shared object, linked before libc, takes the
        // symbols): a request's allocations stay on its thread's own heap,
        // with no arena lock, which the C library takes for every chunk
        // its thread cache does not hold. See README "Performance".
        .systemLibrary(
            name: "CMimalloc",
            providers: [.apt(["libmimalloc-dev"])]
        ),
        // SHA-256 with the x86 SHA extensions and its state on the stack
        // (swift-crypto's `SHA256` allocates its state, and copies it on
        // write): the app channel's body hash and HMAC. Filters falls back
        // to swift-crypto where the CPU lacks them.
        .target(name: "CSHA256"),
        .target(
            name: "Passport",
            dependencies: ["CSodium"]
        ),
        // The small RESP client the shared nonce store needs (no Redis client is on the mirror).
        .target(
            name: "Redis",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .target(
            name: "Filters",
            dependencies: [
                "Passport",
                "CSHA256",
                "Redis",
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
            ],
            swiftSettings: shortLifetimes
        ),
        .executableTarget(
            name: "Gateway",
            dependencies: [
                "Filters",
                "Passport",
                "CMimalloc",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: shortLifetimes
        ),
        // Vectors/: byte-exact copies of ../shared/vectors, read by path.
        .testTarget(name: "PassportTests", dependencies: ["Passport"], exclude: ["Vectors"]),
        .testTarget(
            name: "FiltersTests",
            // Vectors/: byte-exact copies of ../shared/vectors, read by path.
            dependencies: [
                "Filters",
                "Passport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            exclude: ["Vectors"]
        ),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway",
                "Filters",
                "Passport",
                "Redis",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
    ],
    swiftLanguageModes: [.v5]
)
