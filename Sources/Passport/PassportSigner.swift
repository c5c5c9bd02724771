import Foundation

/// An Ed25519 signing key with its key id.
public struct PassportSigningKey: Sendable {
    public let kid: String
    public let publicKey: [UInt8]
    let seed: [UInt8]
    let secretKey: [UInt8]

    /// The key of a 32-byte seed.
    public init(kid: String, seed: [UInt8]) throws {
        guard !kid.isEmpty else { throw PassportError.malformed("empty kid") }
        guard let pair = Ed25519.keyPair(seed: seed) else { throw PassportError.malformed("an Ed25519 seed is 32 bytes") }
        self.kid = kid
        self.seed = seed
        self.publicKey = pair.publicKey
        self.secretKey = pair.secretKey
    }

    /// A new random key.
    public static func generate(kid: String) throws -> PassportSigningKey {
        try PassportSigningKey(kid: kid, seed: Sodium.randomBytes(Ed25519.seedBytes))
    }

    /// The key of a private JWK (`kty: OKP`, `crv: Ed25519`, `d`: the seed),
    /// the format of the gateway's key files.
    public init(jwk: JWK) throws {
        guard jwk.kty == "OKP", jwk.crv == "Ed25519" else { throw PassportError.malformed("not an Ed25519 key (kty OKP, crv Ed25519)") }
        guard let d = jwk.d, let seed = Base64URL.decode(d) else { throw PassportError.malformed("no private part 'd'") }
        guard let kid = jwk.kid else { throw PassportError.malformed("no kid") }
        try self.init(kid: kid, seed: seed)
        if let x = jwk.x, Base64URL.decode(x) != publicKey { throw PassportError.malformed("'x' is not the public key of 'd'") }
    }

    /// The public JWK, as published in the passport JWK Set.
    public var publicJWK: JWK {
        JWK(kty: "OKP", crv: "Ed25519", kid: kid, x: Base64URL.encode(publicKey), use: "sig")
    }

    /// The private JWK, for a key file (mode 0600).
    public var privateJWK: JWK {
        var k = publicJWK
        k.d = Base64URL.encode(seed)
        return k
    }
}

/// Mints passports: JWS compact, `{"alg":"EdDSA","kid":…,"typ":"passport+jwt"}`,
/// Ed25519 over `b64u(header) "." b64u(claims)` (PROTOCOL 1). The encoded
/// header is computed once per key.
public struct PassportSigner: Sendable {
    public let key: PassportSigningKey
    private let encodedHeader: String

    public init(key: PassportSigningKey) {
        self.key = key
        var header: [UInt8] = Array("{\"alg\":\"EdDSA\",\"kid\":".utf8)
        JSONWriter.appendString(key.kid, to: &header)
        header += Array(",\"typ\":\"passport+jwt\"}".utf8)
        self.encodedHeader = Base64URL.encode(header)
    }

    public func mint(_ claims: PassportClaims) -> String {
        let input = encodedHeader + "." + Base64URL.encode(claims.json())
        var signingInput = input
        let signature = signingInput.withUTF8 { Ed25519.sign(UnsafeRawBufferPointer($0), secretKey: key.secretKey) }
        return input + "." + Base64URL.encode(signature)
    }
}

extension PassportSigningKey {
    /// An Ed25519 signature of `message` (for JWS of other kinds, such as the
    /// gateway's dev tokens); passports go through `PassportSigner`.
    public func signature(for message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { Ed25519.sign($0, secretKey: secretKey) }
    }
}
