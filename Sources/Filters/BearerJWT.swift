import Crypto
import Foundation
import Passport
import Synchronization
import _CryptoExtras

/// A verification key of a bearer-token issuer, from its JWK: Ed25519
/// (`EdDSA`), P-256 (`ES256`) or RSA of 2048 bits or more (`RS256`). The key
/// type decides the algorithm, so a token cannot pick a weaker one for a key
/// (no `none`, no `HS256` keyed with a public key).
struct JWTKey: Sendable {
    /// Immutable key material (swift-crypto's key types predate Sendable).
    enum Material: @unchecked Sendable {
        case ed25519([UInt8])
        case p256(P256.Signing.PublicKey)
        case rsa(_RSA.Signing.PublicKey)
    }

    let material: Material

    var algorithm: String {
        switch material {
        case .ed25519: return "EdDSA"
        case .p256: return "ES256"
        case .rsa: return "RS256"
        }
    }

    /// nil for keys this gateway does not use for JWTs (encryption keys,
    /// other curves, short RSA moduli, or a JWK `alg` that disagrees).
    init?(_ jwk: JWK) {
        if let use = jwk.use, use != "sig" { return nil }
        switch (jwk.kty, jwk.crv) {
        case ("OKP", "Ed25519"):
            guard let pk = jwk.ed25519PublicKey else { return nil }
            material = .ed25519(pk)
        case ("EC", "P-256"):
            guard let x = jwk.x.flatMap(Base64URL.decode), let y = jwk.y.flatMap(Base64URL.decode), x.count == 32, y.count == 32,
                  let key = try? P256.Signing.PublicKey(rawRepresentation: x + y)
            else { return nil }
            material = .p256(key)
        case ("RSA", _):
            guard let n = jwk.n.flatMap(Base64URL.decode), let e = jwk.e.flatMap(Base64URL.decode),
                  n.count * 8 >= 2040, let key = try? _RSA.Signing.PublicKey(n: n, e: e)
            else { return nil }
            material = .rsa(key)
        default:
            return nil
        }
        if let alg = jwk.alg, alg != algorithm, !(alg == "Ed25519" && algorithm == "EdDSA") { return nil }
    }

    func verify(signature: [UInt8], input: [UInt8]) -> Bool {
        switch material {
        case .ed25519(let pk):
            return input.withUnsafeBytes { Ed25519.verify(signature, $0, publicKey: pk) }
        case .p256(let key):
            guard let sig = try? P256.Signing.ECDSASignature(rawRepresentation: signature) else { return false }
            return key.isValidSignature(sig, for: input)
        case .rsa(let key):
            let sig = _RSA.Signing.RSASignature(rawRepresentation: signature)
            return key.isValidSignature(sig, for: input, padding: .insecurePKCS1v1_5)
        }
    }
}

/// Validates bearer JWTs of one issuer (RFC 7519, RFC 8725): signature by a
/// known key whose type matches `alg`, `iss`, `aud`, `exp` (required), `nbf`
/// and `iat` with leeway, required claims, a size limit. Successful results
/// are cached per token until the token expires (bounded), so a client that
/// sends the same token costs one signature check, not one per request.
final class JWTValidator: Sendable {
    struct Settings: Sendable {
        var issuer: String
        var audiences: Set<String>
        var algorithms: Set<String>
        var leeway: Int64
        var requiredClaims: [String]
        var maxBytes: Int
    }

    enum Failure: Error, Equatable, CustomStringConvertible {
        case invalid(String)
        case unknownKey(String)

        var description: String {
            switch self {
            case .invalid(let why): return why
            case .unknownKey(let kid): return "unknown kid '\(kid)'"
            }
        }
    }

    let settings: Settings
    private let keys: Mutex<[String: JWTKey]>
    /// Validated tokens by `slot(cacheKey)`, each with its whole key: a hit
    /// counts only when the whole key is equal.
    private let cache: LockedCache<CachedToken>

    struct CachedToken: Sendable {
        let key: String
        let principal: Principal
    }

    init(settings: Settings, keys: JWKSet, cacheCapacity: Int = 10_000) {
        self.settings = settings
        self.keys = Mutex(Self.index(keys))
        self.cache = LockedCache(capacity: cacheCapacity)
    }

    var keyCount: Int { keys.withLock { $0.count } }

    func replaceKeys(_ set: JWKSet) {
        let new = Self.index(set)
        keys.withLock { $0 = new }
        cache.removeAll()
    }

    private static func index(_ set: JWKSet) -> [String: JWTKey] {
        var out: [String: JWTKey] = [:]
        for jwk in set.keys {
            guard let key = JWTKey(jwk) else { continue }
            out[jwk.kid ?? ""] = key
        }
        return out
    }

    /// `cacheKey` names the token in the cache of validated tokens (the
    /// token itself when nil): `authenticate` gives the whole field value,
    /// so that a token seen before is found without a string of its own.
    func validate(_ token: String, cacheKey: String? = nil, now: Int64) -> Result<Principal, Failure> {
        let cacheKey = cacheKey ?? token
        if let known = cached(cacheKey, now: now) { return known }
        guard token.utf8.count <= settings.maxBytes else { return .failure(.invalid("token too large")) }
        let jws: CompactJWS
        do { jws = try CompactJWS(token, maxLength: settings.maxBytes) } catch {
            return .failure(.invalid("\(error)"))
        }
        let alg = jws.header.alg == "Ed25519" ? "EdDSA" : jws.header.alg
        guard settings.algorithms.contains(alg) else { return .failure(.invalid("alg '\(jws.header.alg)' not allowed")) }
        let kid = jws.header.kid ?? ""
        let key: JWTKey? = keys.withLock { all in
            if let k = all[kid] { return k }
            // No kid and a single key of the token's algorithm: that one.
            if jws.header.kid == nil {
                let candidates = all.values.filter { $0.algorithm == alg }
                return candidates.count == 1 ? candidates.first : nil
            }
            return nil
        }
        guard let key else { return .failure(.unknownKey(kid)) }
        guard key.algorithm == alg else { return .failure(.invalid("alg '\(alg)' does not match the key")) }
        guard key.verify(signature: jws.signature, input: jws.signingInput) else { return .failure(.invalid("bad signature")) }
        guard let object = try? JSONSerialization.jsonObject(with: Data(jws.payload)), let all = object as? [String: Any],
              let claims = try? JSONDecoder().decode(StandardClaims.self, from: Data(jws.payload))
        else { return .failure(.invalid("claims are not a JSON object with well-typed registered claims")) }
        switch check(claims, all: all, now: now) {
        case .failure(let f): return .failure(f)
        case .success(let exp):
            let scopes = claims.scope.map { $0.split(separator: " ").map(String.init) } ?? claims.scp ?? []
            let cnf = (all["cnf"] as? [String: Any]).flatMap { try? JSONSerialization.data(withJSONObject: $0, options: .sortedKeys) }
            let principal = Principal(
                subject: claims.sub, session: claims.sid, scopes: scopes, method: "jwt", expiresAt: exp, rawClaims: jws.payload,
                confirmation: cnf.map { Array($0) }, credentialID: Principal.credentialID(token))
            cache.put(Self.slot(cacheKey), CachedToken(key: cacheKey, principal: principal))
            return .success(principal)
        }
    }

    /// What `validate` answered for the token cached under `key`, or nil
    /// when it is not cached: its principal, or `expired` once past its `exp`.
    func cached(_ key: String, now: Int64) -> Result<Principal, Failure>? {
        let slot = Self.slot(key)
        guard let entry = cache.get(slot), entry.key == key else { return nil }
        let hit = entry.principal
        if let exp = hit.expiresAt, now >= exp + settings.leeway {
            cache.remove(slot)
            return .failure(.invalid("expired"))
        }
        return .success(hit)
    }

    /// Where a key is filed: its last 15 bytes, which Swift keeps inline
    /// (no allocation) and hashes in a few nanoseconds, where hashing the
    /// whole value (a bearer token of several hundred bytes) was the
    /// largest part of a cached lookup. The end of a JWS is its signature:
    /// bytes no one can choose for a token that verifies, and only tokens
    /// that verified are filed, so keys cannot be ground to pile into one
    /// slot (a forged token that shares a cached one's slot is compared
    /// whole, misses, and is refused by its signature). Two valid tokens
    /// that share a slot replace each other, and each is validated again.
    static func slot(_ key: String) -> String {
        String(decoding: key.utf8.suffix(15), as: UTF8.self)
    }

    /// The registered claims, typed: a boolean `exp` or a numeric `iss` fails decoding.
    struct StandardClaims: Decodable {
        var iss: String?
        var aud: [String]?
        var exp: Double?
        var nbf: Double?
        var iat: Double?
        var sub: String?
        var sid: String?
        var scope: String?
        var scp: [String]?

        enum CodingKeys: String, CodingKey { case iss, aud, exp, nbf, iat, sub, sid, scope, scp }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            iss = try c.decodeIfPresent(String.self, forKey: .iss)
            if let one = try? c.decodeIfPresent(String.self, forKey: .aud) { aud = [one] } else {
                aud = try c.decodeIfPresent([String].self, forKey: .aud)
            }
            exp = try c.decodeIfPresent(Double.self, forKey: .exp)
            nbf = try c.decodeIfPresent(Double.self, forKey: .nbf)
            iat = try c.decodeIfPresent(Double.self, forKey: .iat)
            sub = try c.decodeIfPresent(String.self, forKey: .sub)
            sid = try c.decodeIfPresent(String.self, forKey: .sid)
            scope = try c.decodeIfPresent(String.self, forKey: .scope)
            scp = try c.decodeIfPresent([String].self, forKey: .scp)
        }
    }

    private static func seconds(_ value: Double?) -> Int64? {
        guard let d = value, d.isFinite, abs(d) < 1e15 else { return nil }
        return Int64(d)
    }

    /// The expiry, or why the claims are refused.
    private func check(_ claims: StandardClaims, all: [String: Any], now: Int64) -> Result<Int64, Failure> {
        guard claims.iss == settings.issuer else { return .failure(.invalid("wrong issuer")) }
        if !settings.audiences.isEmpty {
            guard (claims.aud ?? []).contains(where: settings.audiences.contains) else { return .failure(.invalid("wrong audience")) }
        }
        guard let exp = Self.seconds(claims.exp) else { return .failure(.invalid("no exp")) }
        guard now < exp + settings.leeway else { return .failure(.invalid("expired")) }
        if claims.nbf != nil {
            guard let nbf = Self.seconds(claims.nbf), now + settings.leeway >= nbf else { return .failure(.invalid("not yet valid")) }
        }
        if claims.iat != nil {
            guard let iat = Self.seconds(claims.iat), iat <= now + settings.leeway else { return .failure(.invalid("issued in the future")) }
        }
        for name in settings.requiredClaims where all[name] == nil || all[name] is NSNull {
            return .failure(.invalid("missing claim '\(name)'"))
        }
        return .success(exp)
    }
}
