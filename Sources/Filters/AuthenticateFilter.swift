import Foundation
import NIOHTTP1
import Passport
import Synchronization

/// `authenticate`: verifies the bearer token of a request and puts the
/// `Principal` on the exchange for later filters (`passport`).
///
/// ```yaml
/// filters:
///   - authenticate:
///       required: true                 # default true; false lets requests without a token through anonymously
///       scopes: [accounts:read]        # all required; missing: 403 forbidden (insufficient_scope)
///       jwt:
///         jwks: auth/jwks.json         # file (relative to the state folder) or an http(s) URL
///         issuer: https://id.example.com   # required: `iss` must equal it
///         audiences: [api]             # `aud` must contain one of them (omit to skip the check)
///         algorithms: [EdDSA, ES256, RS256]  # default: these three; never none or HS*
///         leeway: 30s                  # clock skew on exp, nbf, iat
///         required_claims: [sub]       # default [sub]
///         max_token_bytes: 8192
///         refresh: 5m                  # a JWKS URL is fetched again this often, and on an unknown kid (at most every 30 s, or `refresh` if shorter)
///       introspection:                 # opaque tokens (RFC 7662); JWT-shaped tokens go to jwt when both are set
///         url: https://id.example.com/oauth/introspect
///         client_id: gateway
///         client_secret_file: auth/introspection-secret   # relative to the state folder; never in YAML
///         timeout: 2s
///         cache_ttl: 60s               # an active token is cached this long, never past its exp
///         negative_cache_ttl: 10s      # an inactive one this long
///         max_in_flight: 64            # lookups at once; more, or the server failing: 503 auth_unavailable
/// ```
///
/// A missing or invalid token is 401 `invalid_token` with
/// `WWW-Authenticate: Bearer error="invalid_token"` (PROTOCOL 4); a valid token
/// without the scopes is 403 `forbidden` with
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"`. A token
/// present on an optional route is still checked. Why a token was refused is
/// logged at debug level, never the token.
public struct AuthenticateFilter: Filter {
    public static let name = "authenticate"

    public struct Configuration: Decodable, Sendable {
        var required = true
        var scopes: [String] = []
        var jwt: JWTConfig?
        var introspection: IntrospectionConfig?

        enum CodingKeys: String, CodingKey, CaseIterable { case required, scopes, jwt, introspection }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            required = try c.decodeIfPresent(Bool.self, forKey: .required) ?? true
            scopes = try c.decodeIfPresent([String].self, forKey: .scopes) ?? []
            jwt = try c.decodeIfPresent(JWTConfig.self, forKey: .jwt)
            introspection = try c.decodeIfPresent(IntrospectionConfig.self, forKey: .introspection)
        }
    }

    struct IntrospectionConfig: Decodable, Sendable {
        var url: String
        var clientID: String
        var clientSecretFile: String
        var timeout = ConfigDuration.seconds(2)
        var cacheTTL = ConfigDuration.seconds(60)
        var negativeCacheTTL = ConfigDuration.seconds(10)
        var maxInFlight = 64

        enum CodingKeys: String, CodingKey, CaseIterable {
            case url, timeout
            case clientID = "client_id", clientSecretFile = "client_secret_file", cacheTTL = "cache_ttl"
            case negativeCacheTTL = "negative_cache_ttl", maxInFlight = "max_in_flight"
        }

        init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            url = try c.decode(String.self, forKey: .url)
            clientID = try c.decode(String.self, forKey: .clientID)
            clientSecretFile = try c.decode(String.self, forKey: .clientSecretFile)
            timeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .timeout) ?? timeout
            cacheTTL = try c.decodeIfPresent(ConfigDuration.self, forKey: .cacheTTL) ?? cacheTTL
            negativeCacheTTL = try c.decodeIfPresent(ConfigDuration.self, forKey: .negativeCacheTTL) ?? negativeCacheTTL
            maxInFlight = try c.decodeIfPresent(Int.self, forKey: .maxInFlight) ?? maxInFlight
        }
    }

    struct JWTConfig: Decodable, Sendable {
        var jwks: String
        var issuer: String
        var audiences: [String] = []
        var algorithms = ["EdDSA", "ES256", "RS256"]
        var leeway = ConfigDuration.seconds(30)
        var requiredClaims = ["sub"]
        var maxTokenBytes = 8192
        var refresh = ConfigDuration.seconds(300)

        enum CodingKeys: String, CodingKey, CaseIterable {
            case jwks, issuer, audiences, algorithms, leeway, refresh
            case requiredClaims = "required_claims", maxTokenBytes = "max_token_bytes"
        }

        init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            jwks = try c.decode(String.self, forKey: .jwks)
            issuer = try c.decode(String.self, forKey: .issuer)
            audiences = try c.decodeIfPresent([String].self, forKey: .audiences) ?? []
            algorithms = try c.decodeIfPresent([String].self, forKey: .algorithms) ?? algorithms
            leeway = try c.decodeIfPresent(ConfigDuration.self, forKey: .leeway) ?? leeway
            requiredClaims = try c.decodeIfPresent([String].self, forKey: .requiredClaims) ?? requiredClaims
            maxTokenBytes = try c.decodeIfPresent(Int.self, forKey: .maxTokenBytes) ?? maxTokenBytes
            refresh = try c.decodeIfPresent(ConfigDuration.self, forKey: .refresh) ?? refresh
        }
    }

    static let supportedAlgorithms: Set<String> = ["EdDSA", "ES256", "RS256"]

    let required: Bool
    let scopes: [String]
    let validator: JWTValidator?
    let keySource: KeySource?
    let introspector: Introspector?
    static let authUnavailable = GatewayError.rejection("auth_unavailable", status: .serviceUnavailable)
    let unauthorizedHeaders: HeaderFields = ["www-authenticate": "Bearer error=\"invalid_token\""]
    let insufficientScopeHeaders: HeaderFields
    var unauthorized: FilterAction { .reject(.invalidToken, headers: unauthorizedHeaders) }
    var insufficientScope: FilterAction { .reject(.forbidden, headers: insufficientScopeHeaders) }

    public init(configuration: Configuration) throws {
        try self.init(configuration: configuration, context: FilterContext(stateDirectory: "."))
    }

    public init(configuration c: Configuration, context: FilterContext) throws {
        guard c.jwt != nil || c.introspection != nil else {
            throw FilterConfigurationError("jwt or introspection: at least one is required (how tokens are verified)")
        }
        for s in c.scopes where s.isEmpty || s.contains(" ") || s.contains("\"") {
            throw FilterConfigurationError("scopes: '\(s)' is not a scope token")
        }
        self.required = c.required
        self.scopes = c.scopes
        self.insufficientScopeHeaders = ["www-authenticate": "Bearer error=\"insufficient_scope\", scope=\"\(c.scopes.joined(separator: " "))\""]
        if let jwt = c.jwt {
            (validator, keySource) = try Self.makeValidator(jwt, context)
        } else {
            (validator, keySource) = (nil, nil)
        }
        if let i = c.introspection {
            introspector = try Self.makeIntrospector(i, context)
        } else {
            introspector = nil
        }
    }

    private static func makeValidator(_ jwt: JWTConfig, _ context: FilterContext) throws -> (JWTValidator, KeySource) {
        guard !jwt.issuer.isEmpty else { throw FilterConfigurationError("jwt.issuer: must not be empty") }
        let unknown = Set(jwt.algorithms).subtracting(Self.supportedAlgorithms)
        guard unknown.isEmpty, !jwt.algorithms.isEmpty else {
            throw FilterConfigurationError("jwt.algorithms: \(unknown.sorted().joined(separator: ", ")) not supported (use EdDSA, ES256, RS256)")
        }
        guard jwt.maxTokenBytes >= 256 && jwt.maxTokenBytes <= 65536 else {
            throw FilterConfigurationError("jwt.max_token_bytes: must be between 256 and 65536")
        }
        let location = jwt.jwks.hasPrefix("http://") || jwt.jwks.hasPrefix("https://") ? jwt.jwks : context.resolve(jwt.jwks)
        let source = JWKSSource(location)
        let set: JWKSet
        do { set = try source.loadBlocking() } catch {
            throw FilterConfigurationError("jwt.jwks: \(error)")
        }
        let settings = JWTValidator.Settings(
            issuer: jwt.issuer, audiences: Set(jwt.audiences), algorithms: Set(jwt.algorithms),
            leeway: jwt.leeway.nanoseconds / 1_000_000_000, requiredClaims: jwt.requiredClaims, maxBytes: jwt.maxTokenBytes)
        let validator = JWTValidator(settings: settings, keys: set)
        guard validator.keyCount > 0 else {
            throw FilterConfigurationError("jwt.jwks: \(source) has no usable signing key (Ed25519, P-256, or RSA ≥ 2048 bits)")
        }
        return (validator, KeySource(source: source, validator: validator, refresh: jwt.refresh.nanoseconds / 1_000_000_000))
    }

    private static func makeIntrospector(_ i: IntrospectionConfig, _ context: FilterContext) throws -> Introspector {
        guard let url = URL(string: i.url), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw FilterConfigurationError("introspection.url: '\(i.url)' is not an http(s) URL")
        }
        guard let client = context.httpClient else { throw FilterConfigurationError("introspection: no HTTP client in this process") }
        let secretPath = context.resolve(i.clientSecretFile)
        guard let data = FileManager.default.contents(atPath: secretPath),
              let secret = String(data: data, encoding: .utf8)?.trimmingCharacters(in: .whitespacesAndNewlines), !secret.isEmpty
        else { throw FilterConfigurationError("introspection.client_secret_file: cannot read a secret from \(secretPath)") }
        guard i.maxInFlight >= 1 else { throw FilterConfigurationError("introspection.max_in_flight: must be at least 1") }
        guard i.timeout.nanoseconds > 0 else { throw FilterConfigurationError("introspection.timeout: must be positive") }
        let settings = Introspector.Settings(
            url: url, clientID: i.clientID, clientSecret: secret, timeout: .nanoseconds(i.timeout.nanoseconds),
            cacheTTLMillis: i.cacheTTL.nanoseconds / 1_000_000, negativeCacheTTLMillis: i.negativeCacheTTL.nanoseconds / 1_000_000,
            maxInFlight: i.maxInFlight)
        return Introspector(settings: settings, client: client)
    }

    public func onRequest(_ exchange: Exchange) -> FilterAction {
        // One pass, no array of the values (`headers["authorization"]` makes one).
        var value: String?, values = 0
        for (name, v) in exchange.request.headers where ASCII.equalsLowercase(name, "authorization") {
            value = v
            values += 1
        }
        guard let value else { return required ? unauthorized : .next }
        let now = PassportVerifier.currentTime()
        // A token the JWT settings validated before is cached under the whole
        // field value: found without making a string of the token.
        if values == 1, let validator, let known = validator.cached(value, now: now) { return settle(known, exchange) }
        guard values == 1, let token = Self.bearerToken(value) else {
            exchange.logger.debug("authentication refused", metadata: ["reason": "not one Bearer credential"])
            return unauthorized
        }
        // A JWS-shaped token goes to the JWT settings when there are some;
        // anything else to introspection.
        if let validator, introspector == nil || token.utf8.lazy.filter({ $0 == UInt8(ascii: ".") }).count == 2 {
            return settle(validator.validate(token, cacheKey: value, now: now), exchange)
        }
        guard let introspector else { return unauthorized }
        let future = introspector.introspect(token, on: exchange.eventLoop).map { [self] outcome -> FilterAction in
            switch outcome {
            case .active(let principal):
                return accept(principal, exchange)
            case .inactive:
                exchange.logger.debug("authentication refused", metadata: ["reason": "introspection: inactive"])
                return unauthorized
            case .unavailable:
                exchange.logger.warning("token introspection unavailable", metadata: ["url": "\(introspector.settings.url.absoluteString)"])
                return .reject(Self.authUnavailable)
            }
        }
        return .suspend(future)
    }

    private func settle(_ result: Result<Principal, JWTValidator.Failure>, _ exchange: Exchange) -> FilterAction {
        switch result {
        case .success(let principal):
            return accept(principal, exchange)
        case .failure(let failure):
            if case .unknownKey = failure { keySource?.refetchSoon() }
            exchange.logger.debug("authentication refused", metadata: ["reason": "\(failure)"])
            return unauthorized
        }
    }

    private func accept(_ principal: Principal, _ exchange: Exchange) -> FilterAction {
        for scope in scopes where !principal.scopes.contains(scope) { return insufficientScope }
        exchange[PrincipalKey.self] = principal
        return .next
    }

    /// The token of `Bearer <token68>` (RFC 6750 2.1; the scheme is
    /// case-insensitive). One pass over the bytes: this runs on every request.
    static func bearerToken(_ value: String) -> String? {
        var value = value
        return value.withUTF8 { b -> String? in
            let scheme: StaticString = "bearer"
            guard b.count > 7 else { return nil }
            for i in 0..<6 where b[i] | 0x20 != scheme.utf8Start[i] { return nil }
            guard b[6] == 0x20 else { return nil }
            var i = 7
            while i < b.count && b[i] == 0x20 { i += 1 }
            let start = i
            while i < b.count && isToken68Byte(b[i]) { i += 1 }
            let end = i
            while i < b.count && b[i] == 0x20 { i += 1 }
            guard end > start, i == b.count else { return nil }
            return String(decoding: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self)
        }
    }

    @inline(__always)
    static func isToken68Byte(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == UInt8(ascii: "-")
            || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "~") || b == UInt8(ascii: "+")
            || b == UInt8(ascii: "/") || b == UInt8(ascii: "=")
    }
}

/// Keeps a JWKS URL's keys fresh: fetched again every `refresh` seconds, and
/// soon after a token names an unknown kid (at most every `refresh` or 30 s,
/// whichever is shorter), off the event loops. A file's keys change with the config.
/// The filter owns its source and validator; the refresh loop holds the source
/// weakly and ends with the filter. The validator is held strongly: a weak
/// reference would give it a side table, and every retain and release of it
/// on the request path would take the runtime's slow path.
final class KeySource: Sendable {
    let source: JWKSSource
    let refresh: Int64
    let minimumRefetchInterval: Int64
    private let validator: JWTValidator
    private let lastAttempt = Mutex<Int64>(0)

    init(source: JWKSSource, validator: JWTValidator, refresh: Int64) {
        self.source = source
        self.validator = validator
        self.refresh = max(refresh, 1)
        self.minimumRefetchInterval = min(self.refresh, 30)
        self.lastAttempt.withLock { $0 = PassportVerifier.currentTime() }
        guard case .url = source else { return }
        let interval = self.refresh
        Task.detached { [weak self] in
            while true {
                try? await Task.sleep(for: .seconds(interval))
                guard let self else { return }
                await self.fetch()
            }
        }
    }

    func refetchSoon() {
        guard case .url = source else { return }
        let now = PassportVerifier.currentTime()
        let go = lastAttempt.withLock { last -> Bool in
            guard now - last >= minimumRefetchInterval else { return false }
            last = now
            return true
        }
        if go { Task.detached { [self] in await fetch() } }
    }

    private func fetch() async {
        lastAttempt.withLock { $0 = PassportVerifier.currentTime() }
        guard let set = try? await source.load() else { return }
        validator.replaceKeys(set)
    }
}
