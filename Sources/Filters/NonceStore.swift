import Foundation
import Metrics
import NIOCore
import NIOSSL
import Passport
import Redis

/// Where the app channel remembers (client key, nonce) pairs (PROTOCOL 2.3).
public protocol NonceStore: Sendable {
    /// Records the pair at `now` (Unix milliseconds) unless it was seen within
    /// the window; atomic across every gateway sharing the store.
    func record(clientKey: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, now: Int64, on loop: EventLoop) -> NonceStoreResult
    /// `memory` or `redis`, for metrics and logs.
    var kind: String { get }
}

public enum NonceStoreAnswer: Equatable, Sendable {
    case recorded
    case replayed
    /// Full (memory) or unreachable, slow or refusing (redis): the reason, for logs and metrics.
    case unavailable(String)
}

extension NonceStore {
    /// `record` with the pair in arrays.
    public func record(clientKey: [UInt8], nonce: [UInt8], now: Int64, on loop: EventLoop) -> NonceStoreResult {
        clientKey.withUnsafeBytes { c in nonce.withUnsafeBytes { n in record(clientKey: c, nonce: n, now: now, on: loop) } }
    }
}

/// The in-memory store answers at once; Redis answers later, on the request's loop.
public enum NonceStoreResult {
    case answered(NonceStoreAnswer)
    case pending(EventLoopFuture<NonceStoreAnswer>)
}

extension MemoryNonceStore: NonceStore {
    public var kind: String { "memory" }

    public func record(clientKey: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, now: Int64,
                       on loop: EventLoop) -> NonceStoreResult {
        switch record(clientKey: clientKey, nonce: nonce, now: now) {
        case .recorded: return .answered(.recorded)
        case .replayed: return .answered(.replayed)
        case .full: return .answered(.unavailable("full"))
        }
    }
}

/// The shared store: `SET <prefix><hash> 1 NX PX <window>` on Redis, where
/// `<hash>` is 32 hex digits of SHA-256(client key ‖ nonce), never the nonce.
public final class RedisNonceStore: NonceStore {
    public let client: RedisClient
    public let prefix: String
    public let window: Int64
    public var kind: String { "redis" }

    public init(client: RedisClient, prefix: String, windowMilliseconds: Int64) {
        self.client = client
        self.prefix = prefix
        self.window = windowMilliseconds
    }

    public func storageKey(clientKey: [UInt8], nonce: [UInt8]) -> [UInt8] {
        clientKey.withUnsafeBytes { c in nonce.withUnsafeBytes { n in storageKey(clientKey: c, nonce: n) } }
    }

    public func storageKey(clientKey: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer) -> [UInt8] {
        var hash = SHA256Stream()
        hash.update(bufferPointer: clientKey)
        hash.update(bufferPointer: nonce)
        return hash.finalize { Array((prefix + Hex.encode($0.prefix(16))).utf8) }
    }

    public func record(clientKey: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, now: Int64,
                       on loop: EventLoop) -> NonceStoreResult {
        let future = client.setIfAbsent(key: storageKey(clientKey: clientKey, nonce: nonce), ttlMilliseconds: window, on: loop)
            .map { wasSet -> NonceStoreAnswer in wasSet ? .recorded : .replayed }
            .recover { error -> NonceStoreAnswer in
                .unavailable((error as? RedisError) == .timeout ? "timeout" : "unreachable")
            }
        return .pending(future)
    }
}

/// The `redis:` block of `request_signature`.
public struct RedisStoreConfiguration: Decodable, Sendable {
    var address: String
    var username: String?
    /// A file holding the password (mode 0600), or an environment variable: never the password in YAML.
    var passwordFile: String?
    var passwordEnv: String?
    var database = 0
    var prefix = "gw:nonce:"
    var timeout = ConfigDuration(nanoseconds: 250_000_000)
    var connectTimeout = ConfigDuration(nanoseconds: 500_000_000)
    var tls: TLS?

    struct TLS: Decodable, Sendable {
        var ca: String?
        var serverName: String?
        enum CodingKeys: String, CodingKey, CaseIterable { case ca, serverName = "server_name" }
        init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            ca = try c.decodeIfPresent(String.self, forKey: .ca)
            serverName = try c.decodeIfPresent(String.self, forKey: .serverName)
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case address, username, database, prefix, timeout, tls
        case passwordFile = "password_file", passwordEnv = "password_env", connectTimeout = "connect_timeout"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        address = try c.decode(String.self, forKey: .address)
        username = try c.decodeIfPresent(String.self, forKey: .username)
        passwordFile = try c.decodeIfPresent(String.self, forKey: .passwordFile)
        passwordEnv = try c.decodeIfPresent(String.self, forKey: .passwordEnv)
        database = try c.decodeIfPresent(Int.self, forKey: .database) ?? database
        prefix = try c.decodeIfPresent(String.self, forKey: .prefix) ?? prefix
        timeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .timeout) ?? timeout
        connectTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .connectTimeout) ?? connectTimeout
        tls = try c.decodeIfPresent(TLS.self, forKey: .tls)
    }

    /// What makes two `redis:` blocks the same connection (the prefix is per store, not per connection).
    var sharingKey: String {
        [address, username ?? "", passwordFile ?? "", passwordEnv ?? "", String(database), "\(timeout.nanoseconds)",
         "\(connectTimeout.nanoseconds)", tls.map { "tls:\($0.ca ?? ""):\($0.serverName ?? "")" } ?? "plain"].joined(separator: "\u{1}")
    }

    /// The client configuration; errors name the key (the loader adds the file and path).
    func clientConfiguration(context: FilterContext) throws -> RedisConfiguration {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (1...65535).contains(port), colon > address.startIndex
        else { throw FilterConfigurationError("redis.address: '\(address)' is not host:port") }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let socketAddress: SocketAddress
        do {
            socketAddress = try (try? SocketAddress(ipAddress: host, port: port)) ?? SocketAddress.makeAddressResolvingHost(host, port: port)
        } catch { throw FilterConfigurationError("redis.address: cannot resolve '\(host)'") }
        guard (0...15).contains(database) else { throw FilterConfigurationError("redis.database: must be 0 to 15") }
        guard timeout.nanoseconds > 0, connectTimeout.nanoseconds > 0 else {
            throw FilterConfigurationError("redis.timeout: must be positive")
        }
        var password: String?
        if let passwordFile {
            guard passwordEnv == nil else { throw FilterConfigurationError("redis: password_file and password_env exclude each other") }
            let path = context.resolve(passwordFile)
            guard let data = FileManager.default.contents(atPath: path) else {
                throw FilterConfigurationError("redis.password_file: cannot read \(path)")
            }
            password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        } else if let passwordEnv {
            guard let value = ProcessInfo.processInfo.environment[passwordEnv], !value.isEmpty else {
                throw FilterConfigurationError("redis.password_env: the environment variable \(passwordEnv) is not set")
            }
            password = value
        }
        var sslContext: NIOSSLContext?
        if let tls {
            var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
            if let ca = tls.ca {
                let path = context.resolve(ca)
                do { tlsConfiguration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(path)) } catch {
                    throw FilterConfigurationError("redis.tls.ca: cannot read \(path): \(error)")
                }
            }
            do { sslContext = try NIOSSLContext(configuration: tlsConfiguration) } catch {
                throw FilterConfigurationError("redis.tls: \(error)")
            }
        }
        return RedisConfiguration(address: socketAddress, username: username, password: password, database: database,
                                  tls: sslContext, serverName: tls?.serverName ?? (sslContext == nil ? nil : host),
                                  connectTimeout: .nanoseconds(connectTimeout.nanoseconds),
                                  commandTimeout: .nanoseconds(timeout.nanoseconds))
    }
}

/// Counters of the nonce stores.
enum NonceStoreMetrics {
    static func unavailable(store: String, reason: String, failOpen: Bool) {
        Counter(label: "gateway_nonce_store_unavailable_total",
                dimensions: [("store", store), ("reason", reason), ("outcome", failOpen ? "passed" : "refused")]).increment()
    }
}
