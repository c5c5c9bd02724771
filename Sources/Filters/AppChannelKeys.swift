import Foundation
import Passport

/// The gateway's app-channel key pairs (PROTOCOL 2.1): every X25519 private
/// JWK file (`*.json`, from `gateway keys generate --type x25519`) in one
/// folder of the state directory (`app-channel/` by default).
///
/// Rotation: the newest file (by modification time, then name) is the current
/// key, the one apps should use; an older key stays accepted, and published,
/// for `grace` after the file that replaced it appeared, then it is refused
/// with 401 `unknown_key`. Each key carries its own session-key cache, so a
/// cached session can never outlive its key: once a key is past its grace or
/// gone from the folder at the next load, so is every session derived from it.
public final class AppChannelKeyRing: Sendable {
    public final class Key: Sendable {
        public let kid: String
        public let publicKey: [UInt8]
        let secretKey: [UInt8]
        /// Unix milliseconds after which the key is refused; nil while it is current.
        public let acceptedUntil: Int64?
        /// Session keys derived with this key, per client key (`X-Gw-Client-Key`).
        let sessions: LockedCache<AppChannelCrypto.SessionKeys>

        init(kid: String, publicKey: [UInt8], secretKey: [UInt8], acceptedUntil: Int64?, cacheSize: Int) {
            self.kid = kid
            self.publicKey = publicKey
            self.secretKey = secretKey
            self.acceptedUntil = acceptedUntil
            self.sessions = LockedCache(capacity: cacheSize)
        }

        /// The session keys for `clientKey` (32 bytes), from the cache or
        /// derived once (`crypto_kx`, ~30 µs); nil for a key libsodium refuses.
        public func sessionKeys(clientKey: [UInt8], cacheKey: String) -> AppChannelCrypto.SessionKeys? {
            sessions.get(cacheKey) ?? derive(clientKey, cacheKey)
        }

        /// `sessionKeys` with the key inline: an array of it is made only
        /// when the session is not cached.
        public func sessionKeys(clientKey: InlineBytes32, cacheKey: String) -> AppChannelCrypto.SessionKeys? {
            sessions.get(cacheKey) ?? derive(clientKey.array, cacheKey)
        }

        private func derive(_ clientKey: [UInt8], _ cacheKey: String) -> AppChannelCrypto.SessionKeys? {
            guard let keys = AppChannelCrypto.SessionKeys.gateway(publicKey: publicKey, secretKey: secretKey, clientKey: clientKey)
            else { return nil }
            sessions.put(cacheKey, keys)
            return keys
        }

        /// Cached sessions (tests, metrics).
        public var cachedSessions: Int { sessions.count }
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Newest first.
    public let keys: [Key]
    private let byKid: [String: Key]
    public let grace: Int64

    /// - Parameters:
    ///   - grace: milliseconds an old key stays accepted after its successor appeared.
    ///   - sessionCacheSize: session keys cached per gateway key.
    public init(directory: String, grace: Int64, sessionCacheSize: Int = 100_000) throws {
        let entries: [JWKFolder.Entry]
        do {
            entries = try JWKFolder.read(directory, hint: "make one: gateway keys generate --type x25519 --kid K --out \(directory)/K.json")
        } catch let f as JWKFolder.Failure {
            throw Failure(description: f.description)
        }
        var found: [(kid: String, pk: [UInt8], sk: [UInt8], modified: Int64)] = []
        for entry in entries.reversed() {  // newest first
            let jwk = entry.jwk, path = entry.path
            guard jwk.kty == "OKP", jwk.crv == "X25519", let kid = jwk.kid, !kid.isEmpty, let d = jwk.d, let sk = Base64URL.decode(d),
                  sk.count == X25519.keyBytes, let pk = X25519.publicKey(secretKey: sk)
            else { throw Failure(description: "\(path): not an X25519 private key with a kid") }
            if let x = jwk.x, Base64URL.decode(x) != pk { throw Failure(description: "\(path): x does not match d") }
            guard kid.utf8.count <= 64, kid.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x22 && $0 != 0x5C }) else {
                throw Failure(description: "\(path): kid must be 1 to 64 printable ASCII characters without quotes or backslashes")
            }
            guard !found.contains(where: { $0.kid == kid }) else {
                throw Failure(description: "\(path): kid '\(kid)' is used by another key file")
            }
            found.append((kid, pk, sk, Int64(entry.modified.timeIntervalSince1970 * 1000)))
        }
        var keys: [Key] = []
        for (i, k) in found.enumerated() {
            // Accepted until `grace` after the next newer key appeared.
            let until = i == 0 ? nil : found[i - 1].modified + grace
            keys.append(Key(kid: k.kid, publicKey: k.pk, secretKey: k.sk, acceptedUntil: until, cacheSize: sessionCacheSize))
        }
        self.keys = keys
        self.byKid = Dictionary(uniqueKeysWithValues: keys.map { ($0.kid, $0) })
        self.grace = grace
    }

    /// The key named `kid` if it is accepted at `now` (Unix milliseconds).
    public func key(kid: Substring, now: Int64) -> Key? {
        // A ring holds a key or two (the current one and the one rotating
        // out): compared in turn, which costs less than making a `String`
        // of the substring and hashing it; by the table past a handful.
        let key: Key
        if keys.count <= 4 {
            guard let k = keys.first(where: { $0.kid.utf8.count == kid.utf8.count && $0.kid == kid }) else { return nil }
            key = k
        } else {
            guard let k = byKid[String(kid)] else { return nil }
            key = k
        }
        if let until = key.acceptedUntil, now > until { return nil }
        return key
    }

    /// The public set served at `/.well-known/gateway-keys.json`: the keys
    /// accepted at `now`, the current one first (PROTOCOL 2.1's exact shape).
    public func publishedJSON(now: Int64) -> String {
        let entries = keys.filter { $0.acceptedUntil.map { now <= $0 } ?? true }.map { key in
            "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"kid\":\"\(key.kid)\",\"x\":\"\(Base64URL.encode(key.publicKey))\"}"
        }
        return "{\"keys\":[" + entries.joined(separator: ",") + "]}"
    }

    /// Unix milliseconds.
    public static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
