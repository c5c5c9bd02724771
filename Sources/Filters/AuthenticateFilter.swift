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
///         refresh: 5m                  # a JWKS URL is fetched again this often, and on an unknown kid (at most every 30 s)
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

        enum CodingKeys: String, CodingKey, CaseIterable { case required, scopes, jwt }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            required = try c.decodeIfPresent(Bool.self, forKey: .required) ?? true
            scopes = try c.decodeIfPresent([String].self, forKey: .scopes) ?? []
            jwt = try c.decodeIfPresent(JWTConfig.self, forKey: .jwt)
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
    let validator: JWTValidator
    let keySource: KeySource
    let unauthorizedHeaders: HTTPHeaders = ["www-authenticate": "Bearer error=\"invalid_token\""]
    let insufficientScopeHeaders: HTTPHeaders
    var unauthorized: FilterAction { .reject(.invalidToken, headers: unauthorizedHeaders) }
    var insufficientScope: FilterAction { .reject(.forbidden, headers: insufficientScopeHeaders) }

    public init(configuration: Configuration) throws {
        try self.init(configuration: configuration, context: FilterContext(stateDirectory: "."))
    }

    public init(configuration c: Configuration, context: FilterContext) throws {
        guard let jwt = c.jwt else { throw FilterConfigurationError("jwt: required (the token verification settings)") }
        guard !jwt.issuer.isEmpty else { throw FilterConfigurationError("jwt.issuer: must not be empty") }
        let unknown = Set(jwt.algorithms).subtracting(Self.supportedAlgorithms)
        guard unknown.isEmpty, !jwt.algorithms.isEmpty else {
            throw FilterConfigurationError("jwt.algorithms: \(unknown.sorted().joined(separator: ", ")) not supported (use EdDSA, ES256, RS256)")
        }
        guard jwt.maxTokenBytes >= 256 && jwt.maxTokenBytes <= 65536 else {
            throw FilterConfigurationError("jwt.max_token_bytes: must be between 256 and 65536")
        }
        for s in c.scopes where s.isEmpty || s.contains(" ") || s.contains("\"") {
            throw FilterConfigurationError("scopes: '\(s)' is not a scope token")
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
        self.required = c.required
        self.scopes = c.scopes
        self.validator = validator
        self.keySource = KeySource(source: source, validator: validator, refresh: jwt.refresh.nanoseconds / 1_000_000_000)
        self.insufficientScopeHeaders = ["www-authenticate": "Bearer error=\"insufficient_scope\", scope=\"\(c.scopes.joined(separator: " "))\""]
    }

    public func onRequest(_ exchange: Exchange) -> FilterAction {
        let values = exchange.request.headers["authorization"]
        guard let value = values.first else { return required ? unauthorized : .next }
        guard values.count == 1, let token = Self.bearerToken(value) else {
            exchange.logger.debug("authentication refused", metadata: ["reason": "not one Bearer credential"])
            return unauthorized
        }
        switch validator.validate(token, now: PassportVerifier.currentTime()) {
        case .success(let principal):
            for scope in scopes where !principal.scopes.contains(scope) { return insufficientScope }
            exchange[PrincipalKey.self] = principal
            return .next
        case .failure(let failure):
            if case .unknownKey = failure { keySource.refetchSoon() }
            exchange.logger.debug("authentication refused", metadata: ["reason": "\(failure)"])
            return unauthorized
        }
    }

    /// The token of `Bearer <token68>` (RFC 6750 2.1; the scheme is case-insensitive).
    static func bearerToken(_ value: String) -> String? {
        let parts = value.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1]
        let ok = token.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == UInt8(ascii: "-")
                || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "~") || b == UInt8(ascii: "+")
                || b == UInt8(ascii: "/") || b == UInt8(ascii: "=")
        }
        return ok && !token.isEmpty ? String(token) : nil
    }
}

/// Keeps a JWKS URL's keys fresh: fetched again every `refresh` seconds, and
/// soon after a token names an unknown kid (at most every 30 s), off the
/// event loops. A file's keys change with the config.
final class KeySource: Sendable {
    let source: JWKSSource
    let refresh: Int64
    private weak let validator: JWTValidator?
    private let lastAttempt = Mutex<Int64>(0)

    init(source: JWKSSource, validator: JWTValidator, refresh: Int64) {
        self.source = source
        self.validator = validator
        self.refresh = max(refresh, 30)
        self.lastAttempt.withLock { $0 = PassportVerifier.currentTime() }
        guard case .url = source else { return }
        let interval = self.refresh
        Task.detached { [weak self] in
            while true {
                try? await Task.sleep(for: .seconds(interval))
                guard let self, self.validator != nil else { return }
                await self.fetch()
            }
        }
    }

    func refetchSoon() {
        guard case .url = source else { return }
        let now = PassportVerifier.currentTime()
        let go = lastAttempt.withLock { last -> Bool in
            guard now - last >= 30 else { return false }
            last = now
            return true
        }
        if go { Task.detached { [self] in await fetch() } }
    }

    private func fetch() async {
        lastAttempt.withLock { $0 = PassportVerifier.currentTime() }
        guard let set = try? await source.load(), let validator else { return }
        validator.replaceKeys(set)
    }
}
