import Foundation
import Synchronization

/// Verifies passports for an upstream service (PROTOCOL 1): `alg` exactly
/// `EdDSA` (or `Ed25519`, RFC 9864) on an Ed25519 key, `typ`
/// `passport+jwt`, a known `kid`, the signature, `aud`, `exp` and `iat`
/// with a small leeway. Successful verifications are cached per token, so a
/// service pays Ed25519 (about 80 µs here) once per passport, not per request;
/// a cached passport is still checked for expiry and audience every time.
///
/// ```swift
/// let verifier = try PassportVerifier(jwks: JWKSet(json: Data(contentsOf: jwksURL)), audience: "accounts")
/// let claims = try verifier.verify(request.headers["X-Passport"])   // throws PassportError
/// print(claims.subject ?? "anonymous", claims.level)
/// ```
///
/// Thread-safe; share one per service.
public final class PassportVerifier: Sendable {
    public let audience: String?
    public let leeway: Int64
    public let maxLifetime: Int64?
    private let keys: Mutex<[String: [UInt8]]>
    private let cache: LockedCache<VerifiedToken>
    /// Where the keys come from, when they can be fetched again.
    public let source: JWKSSource?
    public let refreshInterval: Int64
    public let minimumRefetchInterval: Int64
    private let fetchedAt: Mutex<(last: Int64, lastAttempt: Int64)>

    /// - Parameters:
    ///   - audience: the `aud` this service accepts (nil skips the check, for tools).
    ///   - leeway: seconds of clock skew allowed on `exp` and `iat`.
    ///   - maxLifetime: refuse passports whose `exp - iat` is longer (the gateway's TTL).
    ///   - cacheCapacity: verified tokens remembered; 0 turns the cache off.
    public init(jwks: JWKSet, audience: String?, leeway: Int64 = 30, maxLifetime: Int64? = nil, cacheCapacity: Int = 10_000) {
        self.audience = audience
        self.leeway = leeway
        self.maxLifetime = maxLifetime
        self.keys = Mutex(Self.ed25519Keys(jwks))
        self.cache = LockedCache(capacity: cacheCapacity)
        self.source = nil
        self.refreshInterval = .max
        self.minimumRefetchInterval = .max
        self.fetchedAt = Mutex((0, 0))
    }

    /// A verifier whose keys come from a JWK Set file or URL (the gateway's
    /// `/.well-known/passport-jwks.json`). `verify(_:) async` fetches the set
    /// again when it is older than `refreshInterval`, and when a token names
    /// an unknown `kid`, at most once per `minimumRefetchInterval` (so a flood
    /// of forged kids cannot turn into a flood of fetches).
    public init(source: JWKSSource, audience: String?, leeway: Int64 = 30, maxLifetime: Int64? = nil,
                cacheCapacity: Int = 10_000, refreshInterval: Int64 = 300, minimumRefetchInterval: Int64 = 30) async throws {
        let set = try await source.load()
        self.audience = audience
        self.leeway = leeway
        self.maxLifetime = maxLifetime
        self.keys = Mutex(Self.ed25519Keys(set))
        self.cache = LockedCache(capacity: cacheCapacity)
        self.source = source
        self.refreshInterval = refreshInterval
        self.minimumRefetchInterval = minimumRefetchInterval
        let now = Self.currentTime()
        self.fetchedAt = Mutex((now, now))
    }

    /// `verify(_:now:)`, after fetching the keys again if they are stale or
    /// the token's `kid` is unknown (see `init(source:...)`). A failed fetch
    /// keeps the keys it had.
    public func verify(_ token: String, now: Int64 = PassportVerifier.currentTime()) async throws -> PassportClaims {
        guard let source else { return try check(token, now: now) }
        let stale = fetchedAt.withLock { now - $0.last >= refreshInterval && now - $0.lastAttempt >= minimumRefetchInterval }
        if stale { await refetch(source, now: now) }
        do {
            return try check(token, now: now)
        } catch PassportError.unknownKey(let kid) {
            let mayFetch = fetchedAt.withLock { now - $0.lastAttempt >= minimumRefetchInterval }
            guard mayFetch else { throw PassportError.unknownKey(kid) }
            await refetch(source, now: now)
            return try check(token, now: now)
        }
    }

    private func refetch(_ source: JWKSSource, now: Int64) async {
        fetchedAt.withLock { $0.lastAttempt = now }
        guard let set = try? await source.load() else { return }
        replaceKeys(set)
        fetchedAt.withLock { $0.last = now }
    }

    /// Replaces the verification keys (after fetching a new JWK Set). Cached
    /// tokens signed by a key that is gone are forgotten.
    public func replaceKeys(_ jwks: JWKSet) {
        let new = Self.ed25519Keys(jwks)
        keys.withLock { $0 = new }
        cache.removeAll { !new.keys.contains($0.kid) }
    }

    public var knownKeyIDs: [String] { keys.withLock { Array($0.keys).sorted() } }

    private static func ed25519Keys(_ set: JWKSet) -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for key in set.keys {
            guard let kid = key.kid, let pk = key.ed25519PublicKey, key.use == nil || key.use == "sig" else { continue }
            out[kid] = pk
        }
        return out
    }

    public static func currentTime() -> Int64 { Int64(Date().timeIntervalSince1970) }

    /// The verified claims of `token` at `now` (seconds since the epoch),
    /// with the keys at hand (no fetching).
    public func verify(_ token: String, now: Int64 = PassportVerifier.currentTime()) throws -> PassportClaims {
        try check(token, now: now)
    }

    private func check(_ token: String, now: Int64) throws -> PassportClaims {
        if let hit = cache.get(token) {
            try checkTimes(hit.claims, now: now)
            try checkAudience(hit.claims)
            return hit.claims
        }
        let jws = try CompactJWS(token)
        guard jws.header.alg == "EdDSA" || jws.header.alg == "Ed25519" else {
            throw PassportError.unsupportedAlgorithm(jws.header.alg)
        }
        if let typ = jws.header.typ, typ.lowercased() != "passport+jwt" { throw PassportError.wrongType(typ) }
        guard let kid = jws.header.kid else { throw PassportError.unknownKey("") }
        guard let publicKey = keys.withLock({ $0[kid] }) else { throw PassportError.unknownKey(kid) }
        let ok = jws.signingInput.withUnsafeBytes { Ed25519.verify(jws.signature, $0, publicKey: publicKey) }
        guard ok else { throw PassportError.badSignature }
        let claims: PassportClaims
        do { claims = try JSONDecoder().decode(PassportClaims.self, from: Data(jws.payload)) } catch {
            throw PassportError.malformed("claims: \(error)")
        }
        try checkTimes(claims, now: now)
        try checkAudience(claims)
        cache.put(token, VerifiedToken(claims: claims, kid: kid))
        return claims
    }

    private func checkTimes(_ c: PassportClaims, now: Int64) throws {
        if now >= c.expiresAt + leeway { throw PassportError.expired }
        if c.issuedAt > now + leeway { throw PassportError.notYetValid }
        if let maxLifetime, c.expiresAt - c.issuedAt > maxLifetime { throw PassportError.lifetimeTooLong }
    }

    private func checkAudience(_ c: PassportClaims) throws {
        if let audience, c.audience != audience { throw PassportError.wrongAudience }
    }
}

/// A passport whose signature verified, and the key that signed it (so it
/// is forgotten when that key is withdrawn).
struct VerifiedToken: Sendable {
    let claims: PassportClaims
    let kid: String
}

/// A dictionary with a capacity: when full, the oldest entry goes first.
/// Not thread-safe; wrap it in a lock.
public typealias BoundedCache<Value> = KeyedBoundedCache<String, Value>

/// `BoundedCache` with keys of any hashable type (a struct of the parts a
/// key is made of hashes them as they are: no string built to join them).
public struct KeyedBoundedCache<Key: Hashable, Value> {
    public let capacity: Int
    private var entries: [Key: Value] = [:]
    private var order: [Key] = []
    private var head = 0

    public init(capacity: Int) { self.capacity = max(0, capacity) }

    public var count: Int { entries.count }

    public func get(_ key: Key) -> Value? { capacity == 0 ? nil : entries[key] }

    public mutating func put(_ key: Key, _ value: Value) {
        guard capacity > 0 else { return }
        if entries.updateValue(value, forKey: key) != nil { return }
        order.append(key)
        while entries.count > capacity, head < order.count {
            entries.removeValue(forKey: order[head])
            head += 1
        }
        if head > capacity {
            order.removeFirst(head)
            head = 0
        }
    }

    public mutating func remove(_ key: Key) { entries.removeValue(forKey: key) }

    public mutating func removeAll(where predicate: (Value) -> Bool) {
        entries = entries.filter { !predicate($0.value) }
    }
}

/// A `BoundedCache` behind a lock, shareable across threads (and storable in
/// a struct, which a `Mutex` is not).
public typealias LockedCache<Value: Sendable> = KeyedLockedCache<String, Value>

/// `LockedCache` with keys of any hashable type.
public final class KeyedLockedCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let cache: Mutex<KeyedBoundedCache<Key, Value>>

    public init(capacity: Int) { cache = Mutex(KeyedBoundedCache(capacity: capacity)) }

    public func get(_ key: Key) -> Value? { cache.withLock { $0.get(key) } }
    public func put(_ key: Key, _ value: Value) { cache.withLock { $0.put(key, value) } }
    public func remove(_ key: Key) { cache.withLock { $0.remove(key) } }
    public func removeAll() { cache.withLock { $0.removeAll { _ in true } } }
    public func removeAll(where predicate: (Value) -> Bool) { cache.withLock { $0.removeAll(where: predicate) } }
    public var count: Int { cache.withLock { $0.count } }
}
