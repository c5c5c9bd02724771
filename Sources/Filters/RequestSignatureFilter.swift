import NIOCore
import NIOHTTP1
import Passport
import Redis

/// `request_signature`: the app channel's signed requests with
/// delayed-request and replay blocking (PROTOCOL 2.1-2.3).
///
/// ```yaml
/// filters:
///   - request_signature:
///       max_age: 10s               # now - ts, default 10s
///       max_skew: 2s               # ts - now, default 2s
///       nonce_store: memory        # memory (default) or redis
///       fail_open: false           # default false: store down → 503 replay_store_unavailable
///       require_key_binding: false # true: the credential must carry cnf.gwk (needs authenticate before)
///       key_grace: 24h             # an old gateway key stays accepted this long after a newer one appeared
///       memory: {max_entries: 1000000}
///       redis:                     # with nonce_store: redis
///         address: 127.0.0.1:6379
///         password_file: redis.pass   # or password_env: REDIS_PASSWORD; username for ACL users
///         database: 0
///         prefix: "gw:nonce:"
///         timeout: 250ms
///         tls: {ca: redis-ca.pem, server_name: redis.internal}
/// ```
///
/// Checks, in PROTOCOL 2.3's order: the five headers present and
/// well-formed (400 `malformed_signature`), a current kid (401
/// `unknown_key`), the time window (401 `request_expired`), then, once the
/// body is in, the HMAC over the canonical string, compared in constant time
/// (401 `invalid_signature`), the token's key binding (401
/// `key_binding_mismatch`), and last the nonce, recorded only now that the
/// signature is known good (401 `replayed_request`, 503
/// `replay_store_unavailable`). The first three need no body, so a bad
/// request is refused before the gateway reads a byte of it.
public struct RequestSignatureFilter: Filter {
    public static let name = "request_signature"

    public enum Store: String, Decodable, Sendable { case memory, redis }

    public struct Configuration: Decodable, Sendable {
        var maxAge = ConfigDuration.seconds(10)
        var maxSkew = ConfigDuration.seconds(2)
        var nonceStore = Store.memory
        var failOpen = false
        var requireKeyBinding = false
        var keyGrace = ConfigDuration.seconds(86_400)
        var memory = MemoryOptions()
        var redis: RedisStoreConfiguration?

        struct MemoryOptions: Decodable, Sendable {
            var maxEntries = 1_000_000
            enum CodingKeys: String, CodingKey, CaseIterable { case maxEntries = "max_entries" }
            init() {}
            init(from decoder: Decoder) throws {
                try rejectUnknownKeys(decoder, CodingKeys.self)
                let c = try decoder.container(keyedBy: CodingKeys.self)
                maxEntries = try c.decodeIfPresent(Int.self, forKey: .maxEntries) ?? maxEntries
            }
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case maxAge = "max_age", maxSkew = "max_skew", nonceStore = "nonce_store", failOpen = "fail_open"
            case requireKeyBinding = "require_key_binding", keyGrace = "key_grace", memory, redis
        }

        public init() {}

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            maxAge = try c.decodeIfPresent(ConfigDuration.self, forKey: .maxAge) ?? maxAge
            maxSkew = try c.decodeIfPresent(ConfigDuration.self, forKey: .maxSkew) ?? maxSkew
            nonceStore = try c.decodeIfPresent(Store.self, forKey: .nonceStore) ?? nonceStore
            failOpen = try c.decodeIfPresent(Bool.self, forKey: .failOpen) ?? false
            requireKeyBinding = try c.decodeIfPresent(Bool.self, forKey: .requireKeyBinding) ?? false
            keyGrace = try c.decodeIfPresent(ConfigDuration.self, forKey: .keyGrace) ?? keyGrace
            memory = try c.decodeIfPresent(MemoryOptions.self, forKey: .memory) ?? memory
            redis = try c.decodeIfPresent(RedisStoreConfiguration.self, forKey: .redis)
        }
    }

    public static let malformed = GatewayError.rejection("malformed_signature", status: .badRequest)
    public static let unknownKey = GatewayError.rejection("unknown_key", status: .unauthorized)
    public static let expired = GatewayError.rejection("request_expired", status: .unauthorized)
    public static let invalidSignature = GatewayError.rejection("invalid_signature", status: .unauthorized)
    public static let keyBindingMismatch = GatewayError.rejection("key_binding_mismatch", status: .unauthorized)
    public static let replayed = GatewayError.rejection("replayed_request", status: .unauthorized)
    public static let storeUnavailable = GatewayError.rejection("replay_store_unavailable", status: .serviceUnavailable)

    let maxAge: Int64
    let maxSkew: Int64
    let failOpen: Bool
    let requireKeyBinding: Bool
    let keys: AppChannelKeyRing
    let store: any NonceStore
    let clock: @Sendable () -> Int64

    public init(configuration: Configuration) throws {
        try self.init(configuration: configuration, context: FilterContext(stateDirectory: "."))
    }

    public init(configuration c: Configuration, context: FilterContext) throws {
        maxAge = c.maxAge.nanoseconds / 1_000_000
        maxSkew = c.maxSkew.nanoseconds / 1_000_000
        guard maxAge >= 1000, maxAge <= 300_000 else { throw FilterConfigurationError("max_age: must be between 1s and 5m") }
        guard maxSkew >= 0, maxSkew <= 60_000 else { throw FilterConfigurationError("max_skew: must be between 0s and 1m") }
        guard c.keyGrace.nanoseconds >= 0 else { throw FilterConfigurationError("key_grace: must not be negative") }
        failOpen = c.failOpen
        requireKeyBinding = c.requireKeyBinding
        clock = context.clock
        keys = try context.appChannelKeys(grace: c.keyGrace.nanoseconds / 1_000_000)
        let window = maxAge + maxSkew
        switch c.nonceStore {
        case .memory:
            guard c.redis == nil else { throw FilterConfigurationError("redis: only with nonce_store: redis") }
            guard c.memory.maxEntries >= 1000 else { throw FilterConfigurationError("memory.max_entries: must be at least 1000") }
            store = try context.memoryNonceStore(windowMilliseconds: window, capacity: c.memory.maxEntries)
        case .redis:
            guard let redis = c.redis else { throw FilterConfigurationError("redis: required with nonce_store: redis (address: host:port)") }
            let client = try context.redisClient(key: redis.sharingKey) {
                RedisClient(configuration: try redis.clientConfiguration(context: context))
            }
            store = RedisNonceStore(client: client, prefix: redis.prefix, windowMilliseconds: window)
        }
    }

    public var readsAppChannelHeaders: Bool { true }
    public var needsRequestBody: Bool { true }
    public var requiredEarlierFilters: [String] { requireKeyBinding ? ["authenticate"] : [] }

    /// The headers, parsed by `onRequest` for `onRequestBody`: one object,
    /// so that the exchange stores and hands it back by one reference. The
    /// signature's 32 bytes, the client key and the nonce are kept inside
    /// it rather than in arrays.
    final class Pending {
        let key: AppChannelKeyRing.Key
        let kid: String
        let clientKeyText: String
        let clientKey: InlineBytes32
        let timestamp: String
        let nonceText: String
        let nonce: InlineBytes32
        let signature: (UInt64, UInt64, UInt64, UInt64)

        init(key: AppChannelKeyRing.Key, kid: String, clientKeyText: String, clientKey: InlineBytes32, timestamp: String,
             nonceText: String, nonce: InlineBytes32, signature: (UInt64, UInt64, UInt64, UInt64)) {
            self.key = key
            self.kid = kid
            self.clientKeyText = clientKeyText
            self.clientKey = clientKey
            self.timestamp = timestamp
            self.nonceText = nonceText
            self.nonce = nonce
            self.signature = signature
        }
    }

    enum PendingKey: ExchangeKey { typealias Value = Pending }

    public func onRequest(_ exchange: Exchange) -> FilterAction {
        let headers = exchange.request.headers
        let h = Self.signatureHeaders(headers)
        guard h.kid >= 0, h.clientKey >= 0, h.timestamp >= 0, h.nonce >= 0, h.signature >= 0,
              let signature = Self.signatureBytes(headers[h.signature].value)
        else { return .reject(Self.malformed) }
        let kid = headers[h.kid].value, clientKeyText = headers[h.clientKey].value
        let timestamp = headers[h.timestamp].value, nonceText = headers[h.nonce].value
        guard Self.isKid(kid),
              let clientKey = InlineBytes32(base64url: clientKeyText, lengths: 32...32),
              let ts = Self.milliseconds(timestamp),
              let nonce = InlineBytes32(base64url: nonceText, lengths: 16...32)
        else { return .reject(Self.malformed) }
        let now = clock()
        guard let key = keys.key(kid: Substring(kid), now: now) else { return .reject(Self.unknownKey) }
        guard now - ts <= maxAge, ts - now <= maxSkew else { return .reject(Self.expired) }
        exchange[PendingKey.self] = Pending(key: key, kid: kid, clientKeyText: clientKeyText, clientKey: clientKey, timestamp: timestamp,
                                            nonceText: nonceText, nonce: nonce, signature: signature)
        return .next
    }

    /// The 32 bytes of `X-Gw-Signature` (43 base64url characters), or nil.
    static func signatureBytes(_ text: String) -> (UInt64, UInt64, UInt64, UInt64)? {
        guard text.utf8.count == 43 else { return nil }
        var bytes: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        let decoded = ASCII.withUTF8(text) { utf8 in withUnsafeMutableBytes(of: &bytes) { Base64URL.decode(utf8, into: $0) } }
        return decoded == 32 ? bytes : nil
    }

    public func onRequestBody(_ exchange: Exchange, _ body: inout ByteBuffer) -> FilterAction {
        guard let p = exchange[PendingKey.self] else { return .reject(.internalError) }
        exchange[PendingKey.self] = nil
        guard let session = p.key.sessionKeys(clientKey: p.clientKey, cacheKey: p.clientKeyText) else {
            return .reject(Self.invalidSignature)
        }
        let method = exchange.request.method.rawValue
        let authentic = withUnsafeBytes(of: p.signature) { expected in
            body.withUnsafeReadableBytes { bytes in
                AppChannelCrypto.signatureMatches(expected, method: method, target: exchange.originalTarget, timestamp: p.timestamp,
                                                  nonce: p.nonceText, kid: p.kid, body: bytes, keys: session)
            }
        }
        guard authentic else { return .reject(Self.invalidSignature) }
        if let binding = exchange[PrincipalKey.self]?.gatewayKeyBinding {
            guard let bound = Base64URL.decode(binding),
                  bound.withUnsafeBytes({ b in p.clientKey.withUnsafeBytes { Sodium.constantTimeEqual(b, $0) } }) else {
                return .reject(Self.keyBindingMismatch)
            }
        } else if requireKeyBinding {
            return .reject(Self.keyBindingMismatch)
        }
        let verified = AppChannelRequest(keys: session, method: method, target: exchange.originalTarget, timestamp: p.timestamp,
                                         nonce: p.nonceText, kid: p.kid)
        let recorded = p.clientKey.withUnsafeBytes { c in
            p.nonce.withUnsafeBytes { n in store.record(clientKey: c, nonce: n, now: clock(), on: exchange.eventLoop) }
        }
        switch recorded {
        case .answered(let answer):
            return decide(answer, verified, exchange)
        case .pending(let future):
            return .suspend(future.map { answer in decide(answer, verified, exchange) })
        }
    }

    private func decide(_ answer: NonceStoreAnswer, _ verified: AppChannelRequest, _ exchange: Exchange) -> FilterAction {
        switch answer {
        case .recorded:
            exchange[AppChannelRequestKey.self] = verified
            return .next
        case .replayed:
            return .reject(Self.replayed)
        case .unavailable(let reason):
            NonceStoreMetrics.unavailable(store: store.kind, reason: reason, failOpen: failOpen)
            if failOpen {
                exchange.logger.warning("nonce store unavailable; request passed without replay check (fail_open)",
                                        metadata: ["store": "\(store.kind)", "reason": "\(reason)"])
                exchange[AppChannelRequestKey.self] = verified
                return .next
            }
            exchange.logger.error("nonce store unavailable; request refused", metadata: ["store": "\(store.kind)", "reason": "\(reason)"])
            return .reject(Self.storeUnavailable)
        }
    }

    /// Where the five signed-request headers are in the list: an index,
    /// or -1 when missing or sent more than once. Indices, not values: a
    /// value copied out of the list is retained, and a pass that copied
    /// each one it walked past retained every long value of the head.
    struct SignatureHeaders {
        var kid = -1, clientKey = -1, timestamp = -1, nonce = -1, signature = -1
    }

    /// One pass over the headers instead of a lookup (and an array) per name.
    static func signatureHeaders(_ headers: HeaderFields) -> SignatureHeaders {
        var at = SignatureHeaders()
        var seen = (kid: 0, clientKey: 0, timestamp: 0, nonce: 0, signature: 0)
        for i in headers.indices {
            let name = headers[i].name
            switch name.utf8.count {
            case 8 where ASCII.equalsLowercase(name, "x-gw-kid"):
                at.kid = i
                seen.kid += 1
            case 10 where ASCII.equalsLowercase(name, "x-gw-nonce"):
                at.nonce = i
                seen.nonce += 1
            case 14 where ASCII.equalsLowercase(name, "x-gw-timestamp"):
                at.timestamp = i
                seen.timestamp += 1
            case 14 where ASCII.equalsLowercase(name, "x-gw-signature"):
                at.signature = i
                seen.signature += 1
            case 15 where ASCII.equalsLowercase(name, "x-gw-client-key"):
                at.clientKey = i
                seen.clientKey += 1
            default:
                break
            }
        }
        if seen.kid > 1 { at.kid = -1 }
        if seen.clientKey > 1 { at.clientKey = -1 }
        if seen.timestamp > 1 { at.timestamp = -1 }
        if seen.nonce > 1 { at.nonce = -1 }
        if seen.signature > 1 { at.signature = -1 }
        return at
    }

    static func isKid(_ kid: String) -> Bool {
        !kid.isEmpty && kid.utf8.count <= 64 && ASCII.allBytes(kid) { $0 > 0x20 && $0 < 0x7F }
    }

    /// Decimal digits only, at most 15 of them (a Unix time in milliseconds).
    static func milliseconds(_ text: String) -> Int64? {
        let u = text.utf8
        guard !u.isEmpty, u.count <= 15 else { return nil }
        return ASCII.withUTF8(text) { p in
            var value: Int64 = 0
            for b in p {
                guard b >= 0x30 && b <= 0x39 else { return nil }
                value = value * 10 + Int64(b - 0x30)
            }
            return value
        }
    }
}

/// A request whose signature `request_signature` verified and whose nonce it
/// recorded: what `decrypt_payload` needs to open the body and seal the response.
/// One object, so that reading it from the exchange (the passport and
/// decrypt filters do) retains one reference, not each of its fields.
public final class AppChannelRequest: Sendable {
    public let keys: AppChannelCrypto.SessionKeys
    public let method: String
    public let target: String
    public let timestamp: String
    public let nonce: String
    public let kid: String

    public init(keys: AppChannelCrypto.SessionKeys, method: String, target: String, timestamp: String, nonce: String, kid: String) {
        self.keys = keys
        self.method = method
        self.target = target
        self.timestamp = timestamp
        self.nonce = nonce
        self.kid = kid
    }
}

public enum AppChannelRequestKey: ExchangeKey { public typealias Value = AppChannelRequest }
