import Foundation

/// One JSON Web Key (RFC 7517), as far as this project uses them: OKP keys
/// (RFC 8037: Ed25519 signing keys, X25519 key agreement keys), EC P-256 and
/// RSA public keys for verifying bearer tokens. `d` is present only in
/// private key files, never in a published set.
public struct JWK: Codable, Sendable, Equatable {
    public var kty: String
    public var crv: String?
    public var kid: String?
    public var x: String?
    public var y: String?
    public var n: String?
    public var e: String?
    public var d: String?
    public var use: String?
    public var alg: String?

    public init(kty: String, crv: String? = nil, kid: String? = nil, x: String? = nil, y: String? = nil, n: String? = nil,
                e: String? = nil, d: String? = nil, use: String? = nil, alg: String? = nil) {
        self.kty = kty
        self.crv = crv
        self.kid = kid
        self.x = x
        self.y = y
        self.n = n
        self.e = e
        self.d = d
        self.use = use
        self.alg = alg
    }

    /// The public Ed25519 key bytes, if this is an Ed25519 key.
    public var ed25519PublicKey: [UInt8]? {
        guard kty == "OKP", crv == "Ed25519", let x, let bytes = Base64URL.decode(x), bytes.count == Ed25519.publicKeyBytes
        else { return nil }
        return bytes
    }

    /// The same key without its private part.
    public var publicKey: JWK {
        var copy = self
        copy.d = nil
        return copy
    }
}

/// A JWK Set (RFC 7517 section 5).
public struct JWKSet: Codable, Sendable, Equatable {
    public var keys: [JWK]

    public init(keys: [JWK]) { self.keys = keys }

    /// Decodes a set; refuses one that carries a private key (a published
    /// set never should) or two keys with the same `kid`.
    public init(json: Data) throws {
        let set: JWKSet
        do { set = try JSONDecoder().decode(JWKSet.self, from: json) } catch {
            throw PassportError.malformed("not a JWK Set: \(error)")
        }
        if set.keys.contains(where: { $0.d != nil }) { throw PassportError.malformed("a JWK Set must not carry private keys") }
        var seen = Set<String>()
        for key in set.keys {
            if let kid = key.kid, !seen.insert(kid).inserted { throw PassportError.malformed("duplicate kid '\(kid)'") }
        }
        self = set
    }

    /// Compact JSON with sorted keys: stable bytes for the same set.
    public func json() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)) ?? Data("{\"keys\":[]}".utf8)
    }
}
