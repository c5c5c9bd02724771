import Foundation
import Testing

@testable import Passport

/// `../shared/vectors/passport-v1.json` (made with PyNaCl and PyJWT), copied
/// into `Tests/PassportTests/Vectors/`.
struct PassportVectors: Decodable {
    struct Valid: Decodable {
        var token: String
        var claims: PassportClaims
        var verify_at: Int64
        var audience: String
    }
    struct Invalid: Decodable {
        var why: String
        var token: String
        var verify_at: Int64?
        var audience: String?
    }
    var signing_seed_hex: String
    var jwks: JWKSet
    var valid: Valid
    var invalid: [Invalid]

    static func load(_ name: String = "passport-v1.json") throws -> PassportVectors {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Vectors/\(name)")
        return try JSONDecoder().decode(PassportVectors.self, from: Data(contentsOf: url))
    }

    var seed: [UInt8] {
        var out: [UInt8] = []
        var s = Substring(signing_seed_hex)
        while !s.isEmpty {
            out.append(UInt8(s.prefix(2), radix: 16)!)
            s = s.dropFirst(2)
        }
        return out
    }
}

@Suite("passport v1 (PROTOCOL 1)")
struct PassportTests {
    @Test("minting the vector's claims with its seed gives its token byte for byte; its JWK Set too")
    func mintMatchesVector() throws {
        let v = try PassportVectors.load()
        let key = try PassportSigningKey(kid: "pp-1", seed: v.seed)
        #expect(JWKSet(keys: [key.publicJWK]) == v.jwks)
        #expect(PassportSigner(key: key).mint(v.valid.claims) == v.valid.token)
    }

    @Test("the valid token verifies at verify_at with its claims")
    func validVerifies() throws {
        let v = try PassportVectors.load()
        let verifier = PassportVerifier(jwks: v.jwks, audience: v.valid.audience)
        let claims = try verifier.verify(v.valid.token, now: v.valid.verify_at)
        #expect(claims == v.valid.claims)
        #expect(claims.device?.appVersion == "5.12.0" && claims.methods == ["jwt", "app_channel"] && claims.level == 3)
    }

    @Test("every invalid vector is refused for its stated reason")
    func invalidRefused() throws {
        let v = try PassportVectors.load()
        let expected: [String: PassportError] = [
            "signature tampered": .badSignature, "expired at verify_at": .expired, "wrong audience": .wrongAudience,
            "alg none": .unsupportedAlgorithm("none"), "unknown kid": .unknownKey("pp-9"),
        ]
        #expect(Set(v.invalid.map(\.why)) == Set(expected.keys), "the vectors changed: \(v.invalid.map(\.why))")
        for case_ in v.invalid {
            let verifier = PassportVerifier(jwks: v.jwks, audience: case_.audience ?? v.valid.audience)
            #expect(throws: expected[case_.why]!, "\(case_.why)") {
                try verifier.verify(case_.token, now: case_.verify_at ?? v.valid.verify_at)
            }
        }
    }

    static func fresh(kid: String = "k1", now: Int64 = 1_800_000_000) throws -> (PassportSigner, PassportClaims) {
        let signer = PassportSigner(key: try .generate(kid: kid))
        let claims = PassportClaims(issuer: "gw", audience: "svc", issuedAt: now, expiresAt: now + 300, id: "j1",
                                    subject: "u \"quoted\" é", methods: ["jwt"], level: 2,
                                    certificate: .init(sans: ["spiffe://x/y"], sha256: "ab"))
        return (signer, claims)
    }

    @Test("round trip; tampered header, claims or signature; wrong kid; expired; issued in the future; too long a lifetime")
    func tampering() throws {
        let (signer, claims) = try Self.fresh()
        let token = signer.mint(claims)
        let set = JWKSet(keys: [signer.key.publicJWK])
        let verifier = PassportVerifier(jwks: set, audience: "svc", maxLifetime: 300, cacheCapacity: 0)
        #expect(try verifier.verify(token, now: 1_800_000_010) == claims)
        let parts = token.split(separator: ".").map(String.init)
        func swapped(_ i: Int, _ text: String) -> String {
            var p = parts
            p[i] = Base64URL.encode(Array(text.utf8))
            return p.joined(separator: ".")
        }
        var otherClaims = claims
        otherClaims.subject = "admin"
        let forgedClaims = parts[0] + "." + Base64URL.encode(otherClaims.json()) + "." + parts[2]
        #expect(throws: PassportError.badSignature) { try verifier.verify(forgedClaims, now: 1_800_000_010) }
        let forgedHeader = swapped(0, #"{"alg":"EdDSA","kid":"k1","typ":"passport+jwt","x":1}"#)
        #expect(throws: PassportError.badSignature) { try verifier.verify(forgedHeader, now: 1_800_000_010) }
        var sig = Base64URL.decode(parts[2])!
        sig[10] ^= 1
        #expect(throws: PassportError.badSignature) {
            try verifier.verify(parts[0] + "." + parts[1] + "." + Base64URL.encode(sig), now: 1_800_000_010)
        }
        #expect(throws: PassportError.unknownKey("k2")) { try verifier.verify(PassportSigner(key: try .generate(kid: "k2")).mint(claims), now: 1_800_000_010) }
        #expect(throws: PassportError.expired) { try verifier.verify(token, now: 1_800_000_330) }
        #expect(try verifier.verify(token, now: 1_800_000_320) == claims, "30 s of leeway")
        #expect(throws: PassportError.notYetValid) { try verifier.verify(token, now: 1_799_999_900) }
        var long = claims
        long.expiresAt += 1
        #expect(throws: PassportError.lifetimeTooLong) { try verifier.verify(signer.mint(long), now: 1_800_000_010) }
        #expect(throws: PassportError.wrongType("jwt")) {
            try verifier.verify(Self.resigned(swapped(0, #"{"alg":"EdDSA","kid":"k1","typ":"jwt"}"#), signer), now: 1_800_000_010)
        }
        #expect(throws: PassportError.malformed("crit header not supported")) {
            try verifier.verify(Self.resigned(swapped(0, #"{"alg":"EdDSA","kid":"k1","crit":["exp"]}"#), signer), now: 1_800_000_010)
        }
        for junk in ["", "a.b", "a.b.c.d", "!!.e30.", String(repeating: "a", count: 9000)] {
            #expect(throws: PassportError.self) { try verifier.verify(junk, now: 1_800_000_010) }
        }
    }

    /// Signs the first two parts of `token` again with `signer`'s key.
    static func resigned(_ token: String, _ signer: PassportSigner) -> String {
        let input = token.split(separator: ".").prefix(2).joined(separator: ".")
        let sig = Array(input.utf8).withUnsafeBytes { Ed25519.sign($0, secretKey: signer.key.secretKey) }
        return input + "." + Base64URL.encode(sig)
    }

    @Test("alg none and HS256 with the public key as the HMAC secret are refused")
    func algorithmConfusion() throws {
        let (signer, claims) = try Self.fresh()
        let verifier = PassportVerifier(jwks: JWKSet(keys: [signer.key.publicJWK]), audience: "svc")
        let payload = Base64URL.encode(claims.json())
        let none = Base64URL.encode(Array(#"{"alg":"none","kid":"k1","typ":"passport+jwt"}"#.utf8)) + "." + payload + "."
        #expect(throws: PassportError.unsupportedAlgorithm("none")) { try verifier.verify(none, now: 1_800_000_010) }
        // An HMAC "signature" keyed with the public key: the classic confusion.
        let header = Base64URL.encode(Array(#"{"alg":"HS256","kid":"k1","typ":"passport+jwt"}"#.utf8))
        let mac = Sodium.hmacSHA256(key: signer.key.publicKey, message: Array((header + "." + payload).utf8))
        #expect(throws: PassportError.unsupportedAlgorithm("HS256")) {
            try verifier.verify(header + "." + payload + "." + Base64URL.encode(mac), now: 1_800_000_010)
        }
    }

    @Test("JWK Set round trip; private keys refused in a set; key files keep their seed")
    func jwks() throws {
        let a = try PassportSigningKey.generate(kid: "a")
        let b = try PassportSigningKey.generate(kid: "b")
        let set = JWKSet(keys: [a.publicJWK, b.publicJWK])
        #expect(try JWKSet(json: set.json()) == set)
        #expect(String(decoding: set.json(), as: UTF8.self).contains("\"kty\":\"OKP\""))
        #expect(throws: PassportError.self) { try JWKSet(json: JWKSet(keys: [a.privateJWK]).json()) }
        #expect(throws: PassportError.self) { try JWKSet(json: JWKSet(keys: [a.publicJWK, a.publicJWK]).json()) }
        let reloaded = try PassportSigningKey(jwk: a.privateJWK)
        #expect(reloaded.publicKey == a.publicKey && reloaded.kid == "a")
        var mismatched = a.privateJWK
        mismatched.x = b.publicJWK.x
        #expect(throws: PassportError.self) { try PassportSigningKey(jwk: mismatched) }
    }

    @Test("rotation: passports of the old key verify until they expire while the new key signs")
    func rotation() throws {
        let (old, claims) = try Self.fresh(kid: "2026-01")
        let new = PassportSigner(key: try .generate(kid: "2026-02"))
        let issuedBefore = old.mint(claims)
        let verifier = PassportVerifier(jwks: JWKSet(keys: [new.key.publicJWK, old.key.publicJWK]), audience: "svc")
        #expect(try verifier.verify(issuedBefore, now: 1_800_000_100).id == "j1")
        #expect(try verifier.verify(new.mint(claims), now: 1_800_000_100).id == "j1")
        // Once the old key is withdrawn (one TTL later), its passports are refused, cached or not.
        verifier.replaceKeys(JWKSet(keys: [new.key.publicJWK]))
        #expect(throws: PassportError.unknownKey("2026-01")) { try verifier.verify(issuedBefore, now: 1_800_000_100) }
    }

    @Test("the cache: a cached passport is still checked for expiry; the cache is bounded")
    func cache() throws {
        let (signer, claims) = try Self.fresh()
        let verifier = PassportVerifier(jwks: JWKSet(keys: [signer.key.publicJWK]), audience: "svc", cacheCapacity: 2)
        let token = signer.mint(claims)
        _ = try verifier.verify(token, now: 1_800_000_010)
        _ = try verifier.verify(token, now: 1_800_000_011)
        #expect(throws: PassportError.expired) { try verifier.verify(token, now: 1_800_001_000) }
        var cache = BoundedCache<VerifiedToken>(capacity: 2)
        for t in ["a", "b", "c"] { cache.put(t, VerifiedToken(claims: claims, kid: "k1")) }
        #expect(cache.get("a") == nil && cache.get("b") != nil && cache.get("c") != nil)
    }

    @Test("base64url: no padding, one encoding per value")
    func base64url() {
        for n in 0..<40 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base64URL.decode(Base64URL.encode(bytes)) == bytes)
        }
        #expect(Base64URL.encode(Array("hi?>".utf8)) == "aGk_Pg")
        #expect(Base64URL.decode("aGk_Pg==") == nil)
        #expect(Base64URL.decode("aGk/Pg") == nil)
        #expect(Base64URL.decode("aGk_Ph") == nil, "non-zero unused bits")
        #expect(Base64URL.decode("a") == nil)
    }

    @Test("base64url agrees with Foundation's base64 for every length and byte, from strings and substrings")
    func base64urlAgainstFoundation() {
        var generator = SystemRandomNumberGenerator()
        for n in 0..<70 {
            let bytes = n == 0 ? [] : (0..<n).map { i in i < 256 ? UInt8(i) : UInt8.random(in: 0...255, using: &generator) }
            let reference = Data(bytes).base64EncodedString()
                .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
                .replacingOccurrences(of: "=", with: "")
            #expect(Base64URL.encode(bytes) == reference)
            #expect(Base64URL.encode(bytes[...]) == reference, "an array slice")
            #expect(Base64URL.decode(reference) == bytes)
            let framed = "<" + reference + ">"
            #expect(Base64URL.decode(framed.dropFirst().dropLast()) == bytes, "a substring is read in place")
            #expect(Base64URL.decode(reference + "*") == nil)
        }
        for n in 0..<70 {
            // Into caller-owned buffers of exactly the documented size: the
            // same bytes, the length returned, nothing written past it.
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 53 &+ 7) }
            let text = Base64URL.encode(bytes)
            var out = [UInt8](repeating: 0xEE, count: Base64URL.encodedCount(n) + 3)
            let written = bytes.withUnsafeBytes { b in
                out.withUnsafeMutableBytes { Base64URL.encode(b, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<Base64URL.encodedCount(n)])) }
            }
            #expect(written == text.utf8.count && Array(out[..<written]) == Array(text.utf8) && out[written...].allSatisfy { $0 == 0xEE })
            var back = [UInt8](repeating: 0xEE, count: text.utf8.count * 3 / 4 + 2)
            let decoded = Array(text.utf8).withUnsafeBytes { t in
                back.withUnsafeMutableBytes { Base64URL.decode(t, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<(text.utf8.count * 3 / 4)])) }
            }
            #expect(decoded == n && Array(back[..<n]) == bytes && back[n...].allSatisfy { $0 == 0xEE })
            let bad = Array((text + "!").utf8)
            #expect(bad.withUnsafeBytes { t in back.withUnsafeMutableBytes { Base64URL.decode(t, into: $0) } } == nil)
        }
        let all = (0...255).map { UInt8($0) }
        #expect(Base64URL.decode(Base64URL.encode(all)) == all)
        #expect(Base64URL.decode("AA\u{E9}") == nil, "a non-ASCII byte is outside the alphabet")
    }
}
