import Foundation
import NIOCore
import NIOHTTP1
import Passport

/// `passport`: mints the Passport (PROTOCOL 1) that upstream services trust
/// instead of calling the auth service, and sends it as `X-Passport`.
///
/// ```yaml
/// filters:
///   - authenticate: {jwt: {...}}
///   - passport:
///       issuer: edge-gateway       # `iss`, default edge-gateway
///       ttl: 5m                    # exp - iat, default 5m, at most 1h
///       keep_authorization: false  # default false: the upstream never sees the client's token
///       cache_size: 10000          # minted passports reused per credential and upstream until 60 s before exp
/// ```
///
/// Claims: `aud` is the upstream the request is routed to; `sub`, `sid`,
/// `scope` and `amr` come from the principal `authenticate` verified (none:
/// an anonymous passport, `lvl` 1, empty `amr`); `lvl` is 3 for a verified
/// credential plus a verified app-channel signature (`request_signature`
/// earlier in the chain; on routes that buffer the body the passport is
/// minted once the body is in, after the body filters before it), 2
/// for a verified
/// credential over TLS, 1 otherwise; `dev` from `X-Device-Id`, `X-Platform`
/// and `X-App-Version` when present and well-formed (1 to 128 printable
/// ASCII characters). Keys: every `*.json` Ed25519 key in `<state>/passport/`;
/// the newest signs, the others stay published at the admin listener's
/// `/.well-known/passport-jwks.json` for an hour after a restart or reload.
public struct PassportFilter: Filter {
    public static let name = "passport"

    public struct Configuration: Decodable, Sendable {
        var issuer = "edge-gateway"
        var ttl = ConfigDuration.seconds(300)
        var keepAuthorization = false
        var cacheSize = 10_000

        enum CodingKeys: String, CodingKey, CaseIterable {
            case issuer, ttl
            case keepAuthorization = "keep_authorization", cacheSize = "cache_size"
        }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            issuer = try c.decodeIfPresent(String.self, forKey: .issuer) ?? issuer
            ttl = try c.decodeIfPresent(ConfigDuration.self, forKey: .ttl) ?? ttl
            keepAuthorization = try c.decodeIfPresent(Bool.self, forKey: .keepAuthorization) ?? false
            cacheSize = try c.decodeIfPresent(Int.self, forKey: .cacheSize) ?? cacheSize
        }
    }

    /// Retired keys stay published this long, so it bounds the TTL.
    public static let maxTTL: Int64 = 3600
    /// A cached passport is reused until this long before its `exp`.
    public static let reuseMargin: Int64 = 60

    let issuer: String
    let ttl: Int64
    let keepAuthorization: Bool
    let signer: PassportSigner
    private let cache: KeyedLockedCache<CacheKey, MintedPassport>

    /// What a minted passport depends on besides the time: its audience,
    /// level, credential (by its hash, never the credential), certificate and
    /// device. Hashed and compared as parts: no string is built to join
    /// them (that was an allocation and three appends a request).
    struct CacheKey: Hashable, Sendable {
        let upstream: String
        let level: Int
        let credential: String?
        let certificate: String?
        let deviceID: String?, platform: String?, appVersion: String?
    }

    public init(configuration: Configuration) throws {
        try self.init(configuration: configuration, context: FilterContext(stateDirectory: "."))
    }

    public init(configuration c: Configuration, context: FilterContext) throws {
        let ttl = c.ttl.nanoseconds / 1_000_000_000
        guard ttl >= 2 * Self.reuseMargin && ttl <= Self.maxTTL else {
            throw FilterConfigurationError("ttl: must be between 2m and 1h (a passport is reused until 60 s before it expires)")
        }
        guard !c.issuer.isEmpty, c.issuer.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value < 0x7F }) else {
            throw FilterConfigurationError("issuer: must be printable ASCII")
        }
        guard c.cacheSize >= 0 else { throw FilterConfigurationError("cache_size: must not be negative") }
        do { signer = try context.passportKeys().signer } catch {
            throw FilterConfigurationError("\(error)")
        }
        issuer = c.issuer
        self.ttl = ttl
        keepAuthorization = c.keepAuthorization
        cache = KeyedLockedCache(capacity: c.cacheSize)
    }

    struct MintedPassport: Sendable {
        let token: String
        let expiresAt: Int64
    }

    static let deviceHeaders = ["x-device-id", "x-platform", "x-app-version"]

    public func onRequest(_ exchange: Exchange) -> FilterAction {
        // On a route that buffers the body, identity may still be settled by
        // a body filter (the app-channel signature): mint once it is in.
        if !exchange.buffersRequestBody { mint(exchange) }
        return .next
    }

    public func onRequestBody(_ exchange: Exchange, _ body: inout ByteBuffer) -> FilterAction {
        mint(exchange)
        return .next
    }

    func mint(_ exchange: Exchange) {
        let now = PassportVerifier.currentTime()
        let principal = exchange[PrincipalKey.self]
        let certificate = exchange[ClientIdentityKey.self]
        // 3: a verified credential plus a verified app-channel signature or
        // client certificate; 2: one verified credential (a token or a
        // client certificate) over TLS; 1: anonymous or plaintext.
        let level: Int
        if !exchange.isTLS || (principal == nil && certificate == nil) {
            level = 1
        } else if principal != nil && (exchange[AppChannelRequestKey.self] != nil || certificate != nil) {
            level = 3
        } else {
            level = 2
        }
        let device = Self.device(exchange.request.headers)
        // The cache key names the credential by its hash, never the credential.
        let key = CacheKey(upstream: exchange.upstream, level: level, credential: principal?.credentialID,
                           certificate: certificate?.sha256, deviceID: device?.id, platform: device?.platform,
                           appVersion: device?.appVersion)
        let token: String
        if let hit = cache.get(key), hit.expiresAt - Self.reuseMargin > now {
            token = hit.token
        } else {
            var expiresAt = now + ttl
            // Never outlive the credential it stands for.
            if let exp = principal?.expiresAt, exp < expiresAt { expiresAt = max(now + 1, exp) }
            let claims = PassportClaims(
                issuer: issuer, audience: exchange.upstream, issuedAt: now, expiresAt: expiresAt, id: Self.newID(),
                subject: principal?.subject, session: principal?.session,
                scope: principal.flatMap { $0.scopes.isEmpty ? nil : $0.scopes.joined(separator: " ") },
                methods: principal.map { [$0.method] } ?? [], level: level, device: device,
                certificate: certificate?.passportCertificate)
            token = signer.mint(claims)
            cache.put(key, MintedPassport(token: token, expiresAt: expiresAt))
        }
        // In place (no copy held above): the proxy's upstream head is this request's own list.
        if keepAuthorization {
            exchange.request.headers.replace("x-passport", with: ("x-passport", token))
        } else {
            exchange.request.headers.replace("x-passport", "authorization", with: ("x-passport", token))
        }
    }

    static func newID() -> String {
        Base64URL.encode(Sodium.publicRandomBytes(12))
    }

    /// `dev` from the device headers, each only when it is one value of 1 to
    /// 128 printable ASCII characters. One pass over the head.
    static func device(_ headers: HeaderFields) -> PassportClaims.Device? {
        // Indices while reading (a loop that keeps values copies every field).
        var at = (-1, -1, -1)
        var counts = (0, 0, 0)
        for i in headers.indices where headers[i].name.utf8.count >= 10 {
            let name = headers[i].name
            if ASCII.equalsLowercase(name, "x-device-id") {
                at.0 = i; counts.0 += 1
            } else if ASCII.equalsLowercase(name, "x-platform") {
                at.1 = i; counts.1 += 1
            } else if ASCII.equalsLowercase(name, "x-app-version") {
                at.2 = i; counts.2 += 1
            }
        }
        if at == (-1, -1, -1) { return nil }
        let id = at.0 < 0 ? nil : headers[at.0].value
        let platform = at.1 < 0 ? nil : headers[at.1].value
        let appVersion = at.2 < 0 ? nil : headers[at.2].value
        func valid(_ v: String?, _ count: Int) -> String? {
            guard count == 1, let v, !v.isEmpty, v.utf8.count <= 128, ASCII.allBytes(v, { $0 >= 0x20 && $0 < 0x7F }) else { return nil }
            return v
        }
        let d = PassportClaims.Device(id: valid(id, counts.0), platform: valid(platform, counts.1),
                                      appVersion: valid(appVersion, counts.2))
        return d.id == nil && d.platform == nil && d.appVersion == nil ? nil : d
    }
}
