import Filters
import Foundation
import NIOCore
import NIOSSL
import Passport

/// One listener, ready to bind.
struct ListenerRuntime: Sendable {
    let name: String
    let address: SocketAddress
    let addressText: String
    /// The listener's TLS material, rebuilt when its files change.
    let tls: ReloadingTLSContext?
    let limits: ListenerLimitsRuntime
    let router: Router
    /// The listener's default chain; its response hooks also decorate the
    /// 404 and 405 answers of requests that matched no route.
    let defaultFilters: [any Filter]
    /// Path canonicalization, headers removed, security headers.
    let sanitize: SanitizePolicy
    /// The app-channel keys, when a filter of the config uses them: the
    /// listener then serves `/.well-known/gateway-keys.json` (PROTOCOL 2.1).
    var gatewayKeys: AppChannelKeyRing? = nil
    /// Whether the listener asks for client certificates (`client_auth`):
    /// only then is the handshake's peer certificate looked up.
    var requestsClientCertificates = false
    /// Which frame layer serves HTTP/2 (`http2_engine`).
    var http2Engine = HTTP2Engine.gateway
}

enum HTTP2Engine: String, Sendable {
    /// `H2ServerCodec`.
    case gateway
    /// `NIOHTTP2Handler` with NIOHTTP2's connection-management handler.
    case nio
}

struct ListenerLimitsRuntime: Sendable {
    let maxHeadSize: Int
    let maxHeaders: Int
    let maxBody: Int
    let headerTimeout: TimeAmount
    let idleTimeout: TimeAmount
    /// How long a response may wait on a client that takes none of it (the
    /// upstream is not read meanwhile, so `body_timeout` does not count).
    let sendTimeout: TimeAmount
    /// How long a request body may pause while the gateway is ready to read
    /// it (the time the gateway itself stops reading does not count).
    let clientBodyTimeout: TimeAmount
    let maxConcurrentStreams: Int
}

/// One upstream: its endpoints resolved once at load, and its timeouts.
///
/// A class: requests read it through their pool (`any UpstreamPooling`),
/// and through an existential a struct is copied whole on every read,
/// retaining and releasing each string and array in it.
final class UpstreamDefinition: Sendable {
    let name: String
    let endpoints: [SocketAddress]
    let endpointTexts: [String]
    /// `Host` sent upstream unless the route preserves or sets it.
    let host: String
    let connectTimeout: TimeAmount
    let responseTimeout: TimeAmount
    let bodyTimeout: TimeAmount
    let maxConnections: Int
    let keepaliveTimeout: TimeAmount
    /// TLS (and mTLS) to the upstream, when configured.
    let tls: UpstreamTLS?
    /// HTTP/2 (`h2` over TLS, `h2c` with prior knowledge) instead of HTTP/1.1.
    let http2: Bool

    init(name: String, endpoints: [SocketAddress], endpointTexts: [String], host: String, connectTimeout: TimeAmount,
         responseTimeout: TimeAmount, bodyTimeout: TimeAmount, maxConnections: Int, keepaliveTimeout: TimeAmount,
         tls: UpstreamTLS? = nil, http2: Bool = false) {
        self.name = name
        self.endpoints = endpoints
        self.endpointTexts = endpointTexts
        self.host = host
        self.connectTimeout = connectTimeout
        self.responseTimeout = responseTimeout
        self.bodyTimeout = bodyTimeout
        self.maxConnections = maxConnections
        self.keepaliveTimeout = keepaliveTimeout
        self.tls = tls
        self.http2 = http2
    }
}

/// How the gateway talks TLS to one upstream.
struct UpstreamTLS: Sendable {
    let context: ReloadingTLSContext
    /// SNI and, without `verifySANs`, the name checked against the certificate.
    let serverName: String?
    /// The URI SANs one of which the upstream's certificate must carry.
    let verifySANs: [String]
}

/// A validated, compiled configuration version. Immutable and shared by every
/// event loop; a reload builds a new one.
final class RuntimeConfig: Sendable {
    let digest: String
    let adminAddress: SocketAddress
    let adminAddressText: String
    let listeners: [ListenerRuntime]
    let upstreams: [String: UpstreamDefinition]
    let routes: [CompiledRoute]
    let routeTests: [(route: String, source: Source, index: Int, test: RouteTestConfig)]
    /// The passport keys, when a filter of this config mints passports; the
    /// admin listener publishes their JWK Set.
    let passportKeys: PassportKeyRing?
    /// The in-process nonce stores of the config's `request_signature`
    /// filters; `/metrics` reports how full each is.
    let nonceStores: [MemoryNonceStore]

    init(digest: String, adminAddress: SocketAddress, adminAddressText: String, listeners: [ListenerRuntime],
         upstreams: [String: UpstreamDefinition], routes: [CompiledRoute],
         routeTests: [(route: String, source: Source, index: Int, test: RouteTestConfig)], passportKeys: PassportKeyRing? = nil,
         nonceStores: [MemoryNonceStore] = []) {
        self.passportKeys = passportKeys
        self.nonceStores = nonceStores
        self.digest = digest
        self.adminAddress = adminAddress
        self.adminAddressText = adminAddressText
        self.listeners = listeners
        self.upstreams = upstreams
        self.routes = routes
        self.routeTests = routeTests
    }

    /// Loads, validates and compiles `directory`; relative key and certificate
    /// paths are resolved against `stateDirectory`.
    static func load(directory: String, stateDirectory: String, registry: FilterRegistry) throws -> RuntimeConfig {
        let context = FilterContext(stateDirectory: stateDirectory, httpClient: GatewayHTTPClient.shared)
        let raw = try ConfigLoader.load(directory: directory, registry: registry, context: context)
        var compiler = ConfigCompiler(raw: raw, stateDirectory: stateDirectory)
        return try compiler.compile(passportKeys: context.loadedPassportKeys, appChannelKeys: context.loadedAppChannelKeys,
                                    nonceStores: context.memoryNonceStores)
    }
}

/// Parses `host:port` and `[v6]:port`.
func splitHostPort(_ text: String) -> (String, Int)? {
    let host: Substring
    let portText: Substring
    if text.hasPrefix("[") {
        guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
        host = text[text.index(after: text.startIndex)..<close]
        portText = text[text.index(close, offsetBy: 2)...]
    } else {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        host = text[..<colon]
        portText = text[text.index(after: colon)...]
    }
    guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { return nil }
    return (String(host), port)
}

/// Resolves an address once, at load time (never on an event loop).
func resolveAddress(_ text: String) throws -> SocketAddress {
    guard let (host, port) = splitHostPort(text) else {
        throw RouteCompileError("'\(text)' is not host:port")
    }
    if let ip = try? SocketAddress(ipAddress: host, port: port) { return ip }
    do {
        return try SocketAddress.makeAddressResolvingHost(host, port: port)
    } catch {
        throw RouteCompileError("cannot resolve '\(host)': \(error)")
    }
}

extension ConfigDuration {
    var timeAmount: TimeAmount { .nanoseconds(nanoseconds) }
}
