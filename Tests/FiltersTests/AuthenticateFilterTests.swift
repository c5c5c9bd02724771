import Crypto
import Foundation
import NIOHTTP1
@testable import Passport
import Testing
import _CryptoExtras

@testable import Filters

/// An identity provider for tests: Ed25519, P-256 and RSA keys, a JWK Set
/// file, and tokens signed by any of them.
struct TestIssuer {
    let ed = try! PassportSigningKey.generate(kid: "ed")
    let ec = P256.Signing.PrivateKey()
    let rsa = try! _RSA.Signing.PrivateKey(keySize: .bits2048)
    let issuer = "https://id.test"

    var jwks: JWKSet {
        let ecRaw = Array(ec.publicKey.rawRepresentation)
        let der = Array(rsa.publicKey.pkcs1DERRepresentation)
        let (n, e) = Self.rsaModulusExponent(pkcs1: der)
        return JWKSet(keys: [
            ed.publicJWK,
            JWK(kty: "EC", crv: "P-256", kid: "ec", x: Base64URL.encode(ecRaw[0..<32]), y: Base64URL.encode(ecRaw[32..<64]), use: "sig"),
            JWK(kty: "RSA", kid: "rsa", n: Base64URL.encode(n), e: Base64URL.encode(e), use: "sig"),
        ])
    }

    /// Reads n and e from a PKCS#1 RSAPublicKey (SEQUENCE { INTEGER n, INTEGER e }).
    static func rsaModulusExponent(pkcs1 der: [UInt8]) -> ([UInt8], [UInt8]) {
        var i = 0
        func length() -> Int {
            let first = Int(der[i]); i += 1
            if first < 0x80 { return first }
            var n = 0
            for _ in 0..<(first & 0x7F) { n = n << 8 | Int(der[i]); i += 1 }
            return n
        }
        func integer() -> [UInt8] {
            i += 1  // tag 0x02
            let len = length()
            var bytes = Array(der[i..<(i + len)])
            i += len
            while bytes.first == 0 && bytes.count > 1 { bytes.removeFirst() }
            return bytes
        }
        i += 1  // SEQUENCE
        _ = length()
        return (integer(), integer())
    }

    func token(alg: String = "EdDSA", kid: String? = nil, claims: [String: Any]) -> String {
        var header: [String: Any] = ["alg": alg, "typ": "JWT"]
        let k = kid ?? ["EdDSA": "ed", "ES256": "ec", "RS256": "rsa"][alg] ?? "ed"
        header["kid"] = k
        let h = Base64URL.encode(try! JSONSerialization.data(withJSONObject: header, options: .sortedKeys))
        let p = Base64URL.encode(try! JSONSerialization.data(withJSONObject: claims, options: .sortedKeys))
        let input = Array((h + "." + p).utf8)
        let sig: [UInt8]
        switch alg {
        case "ES256": sig = Array(try! ec.signature(for: input).rawRepresentation)
        case "RS256": sig = Array(try! rsa.signature(for: input, padding: .insecurePKCS1v1_5).rawRepresentation)
        default: sig = input.withUnsafeBytes { Ed25519.sign($0, secretKey: ed.secretKey) }
        }
        return h + "." + p + "." + Base64URL.encode(sig)
    }

    func claims(sub: String = "user-1", scope: String = "accounts:read", exp: Int64? = nil) -> [String: Any] {
        let now = PassportVerifier.currentTime()
        return ["iss": issuer, "aud": "api", "sub": sub, "scope": scope, "exp": exp ?? now + 600, "iat": now, "sid": "s-1"]
    }

    /// A state folder with the JWK Set and a passport key.
    func stateFolder() throws -> String {
        let dir = NSTemporaryDirectory() + "authn-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/passport", withIntermediateDirectories: true)
        try jwks.json().write(to: URL(fileURLWithPath: dir + "/jwks.json"))
        let key = try PassportSigningKey.generate(kid: "pp-test")
        try JSONEncoder().encode(key.privateJWK).write(to: URL(fileURLWithPath: dir + "/passport/pp-test.json"))
        return dir
    }
}

func makeAuthenticate(_ state: String, _ extra: String = "") throws -> AuthenticateFilter {
    let json = #"{"jwt": {"jwks": "jwks.json", "issuer": "https://id.test", "audiences": ["api"]}"# + extra + "}"
    let c = try JSONDecoder().decode(AuthenticateFilter.Configuration.self, from: Data(json.utf8))
    return try AuthenticateFilter(configuration: c, context: FilterContext(stateDirectory: state))
}

@Suite("authenticate and passport filters")
struct AuthenticateFilterTests {
    static let idp = TestIssuer()

    func bearer(_ token: String, _ extra: HeaderFields = [:]) -> Exchange {
        var h = extra
        h.add(name: "authorization", value: "Bearer \(token)")
        return request(.GET, "/x", h)
    }

    @Test("EdDSA, ES256 and RS256 tokens verify and put the principal on the exchange", arguments: ["EdDSA", "ES256", "RS256"])
    func algorithms(alg: String) throws {
        let idp = Self.idp
        let filter = try makeAuthenticate(try idp.stateFolder())
        let e = bearer(idp.token(alg: alg, claims: idp.claims()))
        #expect(verdict(filter.onRequest(e)) == "next")
        let p = try #require(e[PrincipalKey.self])
        #expect(p.subject == "user-1" && p.session == "s-1" && p.scopes == ["accounts:read"] && p.method == "jwt")
    }

    @Test("token68's byte class agrees with RFC 9110 for all 256 bytes; a Bearer credential is one token68")
    func token68() {
        let allowed = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=".utf8)
        for b in 0...255 {
            #expect(AuthenticateFilter.isToken68Byte(UInt8(b)) == allowed.contains(UInt8(b)), "byte \(b)")
        }
        #expect(AuthenticateFilter.bearerToken("Bearer a.b-c_d~e+f/g==") == "a.b-c_d~e+f/g==")
        #expect(AuthenticateFilter.bearerToken("bEaReR  tok  ") == "tok")
        for bad in ["Bearer a,b", "Bearer a b", "Bearer a\u{7F}", "Bearer a@b", "Bearer é", "Bearer ", "Bearertok", "Basic tok"] {
            #expect(AuthenticateFilter.bearerToken(bad) == nil, "\(bad)")
        }
    }

    @Test("refused with 401 invalid_token and WWW-Authenticate", arguments: [
        "missing", "not bearer", "two headers", "garbage", "expired", "wrong issuer", "wrong audience", "no sub",
        "alg none", "HS256 with the public key", "unknown kid", "ES256 header on the Ed25519 key", "tampered claims",
        "not yet valid", "boolean exp",
    ])
    func refusals(kind: String) throws {
        let idp = Self.idp
        let filter = try makeAuthenticate(try idp.stateFolder())
        let now = PassportVerifier.currentTime()
        var c = idp.claims()
        var headers: HeaderFields = [:]
        switch kind {
        case "missing": break
        case "not bearer": headers.add(name: "authorization", value: "Basic dXNlcjpwYXNz")
        case "two headers":
            let t = idp.token(claims: c)
            headers.add(name: "authorization", value: "Bearer \(t)")
            headers.add(name: "authorization", value: "Bearer \(t)")
        case "garbage": headers.add(name: "authorization", value: "Bearer abc.def.ghi")
        case "expired": c["exp"] = now - 100
        case "wrong issuer": c["iss"] = "https://evil.test"
        case "wrong audience": c["aud"] = ["other"]
        case "no sub": c.removeValue(forKey: "sub")
        case "not yet valid": c["nbf"] = now + 600
        case "boolean exp": c["exp"] = true
        default: break
        }
        if headers.isEmpty && kind != "missing" {
            let token: String
            switch kind {
            case "alg none":
                let h = Base64URL.encode(Array(#"{"alg":"none","kid":"ed"}"#.utf8))
                token = h + "." + Base64URL.encode(try JSONSerialization.data(withJSONObject: c)) + "."
            case "HS256 with the public key":
                let h = Base64URL.encode(Array(#"{"alg":"HS256","kid":"ed"}"#.utf8))
                let input = h + "." + Base64URL.encode(try JSONSerialization.data(withJSONObject: c))
                token = input + "." + Base64URL.encode(Sodium.hmacSHA256(key: idp.ed.publicKey, message: Array(input.utf8)))
            case "unknown kid": token = idp.token(kid: "nope", claims: c)
            case "ES256 header on the Ed25519 key": token = idp.token(alg: "ES256", kid: "ed", claims: c)
            case "tampered claims":
                let parts = idp.token(claims: c).split(separator: ".")
                c["sub"] = "admin"
                token = parts[0] + "." + Base64URL.encode(try JSONSerialization.data(withJSONObject: c, options: .sortedKeys)) + "." + parts[2]
            default: token = idp.token(claims: c)
            }
            headers.add(name: "authorization", value: "Bearer \(token)")
        }
        let e = request(.GET, "/x", headers)
        let action = filter.onRequest(e)
        #expect(verdict(action) == "invalid_token", "\(kind)")
        if case .respond(let r) = action {
            #expect(r.status == .unauthorized && r.headers["www-authenticate"] == ["Bearer error=\"invalid_token\""])
        }
        #expect(e[PrincipalKey.self] == nil)
    }

    @Test("a validated token is found again by its field value; sent twice, or with more after it, it is still refused")
    func cachedByFieldValue() throws {
        let idp = Self.idp
        let filter = try makeAuthenticate(try idp.stateFolder())
        let token = idp.token(claims: idp.claims(sub: "cached-user"))
        for value in ["Bearer \(token)", "Bearer \(token)", "bearer  \(token) "] {
            let e = request(.GET, "/x", ["authorization": value])
            #expect(verdict(filter.onRequest(e)) == "next", "\(value.prefix(10))")
            #expect(e[PrincipalKey.self]?.subject == "cached-user")
        }
        let twice: HeaderFields = ["authorization": "Bearer \(token)", "Authorization": "Bearer \(token)"]
        for headers in [twice, ["authorization": "Bearer \(token),x"], ["authorization": "Basic \(token)"]] as [HeaderFields] {
            let e = request(.GET, "/x", headers)
            #expect(verdict(filter.onRequest(e)) == "invalid_token")
            #expect(e[PrincipalKey.self] == nil)
        }
    }

    @Test("the cache files a token by its last bytes but serves it only to the same whole value: a forged token with a cached token's signature is refused")
    func cacheSlotComparesWholeValue() throws {
        let idp = Self.idp
        let filter = try makeAuthenticate(try idp.stateFolder())
        let token = idp.token(claims: idp.claims(sub: "cached-user"))
        #expect(verdict(filter.onRequest(bearer(token))) == "next")
        // Another subject's claims under the cached token's header and signature: the same slot.
        let parts = token.split(separator: ".")
        let otherClaims = idp.token(claims: idp.claims(sub: "mallory")).split(separator: ".")[1]
        let forged = "\(parts[0]).\(otherClaims).\(parts[2])"
        #expect(JWTValidator.slot("Bearer \(forged)") == JWTValidator.slot("Bearer \(token)"))
        let e = bearer(forged)
        #expect(verdict(filter.onRequest(e)) == "invalid_token")
        #expect(e[PrincipalKey.self] == nil)
        // The genuine token is still served from the cache, as itself.
        let again = bearer(token)
        #expect(verdict(filter.onRequest(again)) == "next")
        #expect(again[PrincipalKey.self]?.subject == "cached-user")
    }

    @Test("scopes: a valid token without them is 403 insufficient_scope; optional routes let anonymous requests through")
    func scopesAndOptional() throws {
        let idp = Self.idp
        let state = try idp.stateFolder()
        let strict = try makeAuthenticate(state, #", "scopes": ["accounts:read", "transfers:write"]"#)
        let action = strict.onRequest(bearer(idp.token(claims: idp.claims())))
        #expect(verdict(action) == "forbidden")
        if case .respond(let r) = action {
            #expect(r.headers["www-authenticate"].first?.contains("insufficient_scope") == true)
        }
        #expect(verdict(strict.onRequest(bearer(idp.token(claims: idp.claims(scope: "accounts:read transfers:write"))))) == "next")
        let optional = try makeAuthenticate(state, #", "required": false"#)
        #expect(verdict(optional.onRequest(request())) == "next")
        #expect(verdict(optional.onRequest(bearer("x.y.z"))) == "invalid_token", "a present token is still checked")
    }

    @Test("configuration mistakes fail at load", arguments: [
        #"{"jwt": {"jwks": "nope.json", "issuer": "i"}}"#, #"{"jwt": {"jwks": "jwks.json", "issuer": ""}}"#,
        #"{"jwt": {"jwks": "jwks.json", "issuer": "i", "algorithms": ["HS256"]}}"#, #"{}"#,
        #"{"jwt": {"jwks": "jwks.json", "issuer": "i"}, "scopes": ["a b"]}"#,
    ])
    func badConfig(json: String) throws {
        let state = try Self.idp.stateFolder()
        #expect(throws: (any Error).self, "\(json)") {
            let c = try JSONDecoder().decode(AuthenticateFilter.Configuration.self, from: Data(json.utf8))
            _ = try AuthenticateFilter(configuration: c, context: FilterContext(stateDirectory: state))
        }
    }

    func makePassport(_ state: String, _ json: String = "{}") throws -> PassportFilter {
        let c = try JSONDecoder().decode(PassportFilter.Configuration.self, from: Data(json.utf8))
        return try PassportFilter(configuration: c, context: FilterContext(stateDirectory: state))
    }

    @Test("passport: minted from the principal, verifies with the ring's JWK Set; Authorization removed; reused per credential")
    func passport() throws {
        let idp = Self.idp
        let state = try idp.stateFolder()
        let authn = try makeAuthenticate(state)
        let context = FilterContext(stateDirectory: state)
        let pass = try PassportFilter(configuration: try JSONDecoder().decode(PassportFilter.Configuration.self, from: Data("{}".utf8)),
                                      context: context)
        let token = idp.token(claims: idp.claims())
        let e = bearer(token, ["x-device-id": "dev-7", "x-platform": "ios", "x-app-version": "5.12.0"])
        e.upstream = "accounts"
        #expect(verdict(authn.onRequest(e)) == "next")
        #expect(verdict(pass.onRequest(e)) == "next")
        #expect(e.request.headers["authorization"].isEmpty)
        let minted = try #require(e.request.headers.first(name: "x-passport"))
        let verifier = PassportVerifier(jwks: try context.passportKeys().published(), audience: "accounts")
        let claims = try verifier.verify(minted)
        #expect(claims.subject == "user-1" && claims.session == "s-1" && claims.scope == "accounts:read")
        #expect(claims.methods == ["jwt"] && claims.level == 2 && claims.issuer == "edge-gateway")
        #expect(claims.device == .init(id: "dev-7", platform: "ios", appVersion: "5.12.0"))
        #expect(claims.expiresAt - claims.issuedAt == 300)
        // The same credential and upstream: the same passport; another upstream: another one.
        let again = bearer(token, ["x-device-id": "dev-7", "x-platform": "ios", "x-app-version": "5.12.0"])
        again.upstream = "accounts"
        _ = authn.onRequest(again)
        _ = pass.onRequest(again)
        #expect(again.request.headers.first(name: "x-passport") == minted)
        let other = bearer(token)
        other.upstream = "payments"
        _ = authn.onRequest(other)
        _ = pass.onRequest(other)
        #expect(other.request.headers.first(name: "x-passport") != minted)
        // Each part of the key separates: the same credential and upstream
        // from another app version gets its own passport, with its own `dev`.
        let newer = bearer(token, ["x-device-id": "dev-7", "x-platform": "ios", "x-app-version": "5.13.0"])
        newer.upstream = "accounts"
        _ = authn.onRequest(newer)
        _ = pass.onRequest(newer)
        let newerPassport = try #require(newer.request.headers.first(name: "x-passport"))
        #expect(newerPassport != minted)
        #expect(try verifier.verify(newerPassport).device == .init(id: "dev-7", platform: "ios", appVersion: "5.13.0"))
        let noDevice = bearer(token)
        noDevice.upstream = "accounts"
        _ = authn.onRequest(noDevice)
        _ = pass.onRequest(noDevice)
        #expect(noDevice.request.headers.first(name: "x-passport") != minted)
        #expect(try verifier.verify(try #require(noDevice.request.headers.first(name: "x-passport"))).device == nil)
    }

    @Test("passport: dev takes each device header only when it is one printable value of 1 to 128 characters, names in any case")
    func deviceHeaders() {
        func device(_ fields: [(String, String)]) -> PassportClaims.Device? { PassportFilter.device(HeaderFields(fields)) }
        #expect(device([("X-Device-Id", "d1"), ("x-PLATFORM", "ios"), ("x-app-version", "5.1")])
                == .init(id: "d1", platform: "ios", appVersion: "5.1"))
        #expect(device([("x-device-id", "d1"), ("x-device-id", "d2"), ("x-platform", "ios")]) == .init(id: nil, platform: "ios", appVersion: nil),
                "two values: neither is taken")
        #expect(device([("x-device-id", ""), ("x-platform", String(repeating: "a", count: 129)), ("x-app-version", "1\u{7F}")]) == nil)
        #expect(device([("x-app-version", String(repeating: "9", count: 128))])?.appVersion?.count == 128)
        #expect(device([("x-device", "d1"), ("x-device-ids", "d1"), ("host", "a")]) == nil)
    }

    @Test("passport: anonymous requests get level 1 and no subject; a credential that expires sooner caps exp")
    func anonymousAndShortCredential() throws {
        let idp = Self.idp
        let state = try idp.stateFolder()
        let pass = try makePassport(state, #"{"keep_authorization": true}"#)
        let keys = try FilterContext(stateDirectory: state).passportKeys().published()
        let anon = request(.GET, "/x", ["authorization": "Bearer kept"])
        anon.upstream = "svc"
        _ = pass.onRequest(anon)
        let claims = try PassportVerifier(jwks: keys, audience: "svc").verify(try #require(anon.request.headers.first(name: "x-passport")))
        #expect(claims.subject == nil && claims.level == 1 && claims.methods.isEmpty)
        #expect(anon.request.headers["authorization"] == ["Bearer kept"])

        let authn = try makeAuthenticate(state)
        let soon = PassportVerifier.currentTime() + 100
        let e = bearer(idp.token(claims: idp.claims(sub: "short", exp: soon)))
        e.upstream = "svc"
        _ = authn.onRequest(e)
        _ = pass.onRequest(e)
        let short = try PassportVerifier(jwks: keys, audience: "svc").verify(try #require(e.request.headers.first(name: "x-passport")))
        #expect(short.expiresAt == soon)
    }

    @Test("passport key ring: the newest file signs, older ones stay published for the retention, then go")
    func keyRing() throws {
        let dir = NSTemporaryDirectory() + "ring-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let old = try PassportSigningKey.generate(kid: "old")
        let new = try PassportSigningKey.generate(kid: "new")
        try JSONEncoder().encode(old.privateJWK).write(to: URL(fileURLWithPath: dir + "/old.json"))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -3600)], ofItemAtPath: dir + "/old.json")
        try JSONEncoder().encode(new.privateJWK).write(to: URL(fileURLWithPath: dir + "/new.json"))
        let ring = try PassportKeyRing(directory: dir, retention: 300, now: 1000)
        #expect(ring.signer.key.kid == "new")
        #expect(ring.published(now: 1200).keys.map(\.kid) == ["new", "old"])
        #expect(ring.published(now: 1300).keys.map(\.kid) == ["new"])
        #expect(throws: PassportKeyRing.Failure.self) { try PassportKeyRing(directory: dir + "/missing") }
    }
}

@Suite("authenticate with a JWK Set URL", .serialized)
struct AuthenticateJWKSURLTests {
    @Test("the issuer's keys are fetched again every refresh: a token of a newly published key is accepted without a restart")
    func refresh() async throws {
        let dir = NSTemporaryDirectory() + "jwks-refresh-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let old = try PassportSigningKey.generate(kid: "old")
        let new = try PassportSigningKey.generate(kid: "new")
        try JWKSet(keys: [old.publicJWK]).json().write(to: URL(fileURLWithPath: dir + "/jwks.json"))
        // A random port may be taken (by another test's connection, say):
        // a server that exits at once is started again on another one.
        var server = Process()
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        var filter: AuthenticateFilter?
        for _ in 0..<5 where filter == nil {
            let port = Int.random(in: 20_000..<32_000)
            server = Process()
            server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            server.arguments = ["python3", "-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", dir]
            server.standardOutput = FileHandle.nullDevice
            server.standardError = FileHandle.nullDevice
            try server.run()
            let json = #"{"jwt": {"jwks": "http://127.0.0.1:\#(port)/jwks.json", "issuer": "i", "refresh": "1s"}}"#
            for _ in 0..<100 where filter == nil && server.isRunning {
                filter = try? AuthenticateFilter(configuration: try JSONDecoder().decode(AuthenticateFilter.Configuration.self, from: Data(json.utf8)),
                                                 context: FilterContext(stateDirectory: dir))
                if filter == nil { try await Task.sleep(for: .milliseconds(100)) }
            }
            if filter == nil && server.isRunning { kill(server.processIdentifier, SIGKILL) }
        }
        let f = try #require(filter, "the JWK Set server did not come up")
        func token(_ key: PassportSigningKey) -> String {
            let now = PassportVerifier.currentTime()
            let h = Base64URL.encode(Array(#"{"alg":"EdDSA","kid":"\#(key.kid)"}"#.utf8))
            let p = Base64URL.encode(Array(#"{"iss":"i","sub":"u","exp":\#(now + 600)}"#.utf8))
            return h + "." + p + "." + Base64URL.encode(key.signature(for: Array((h + "." + p).utf8)))
        }
        func call(_ t: String) -> String { verdict(f.onRequest(request(.GET, "/x", ["authorization": "Bearer \(t)"]))) }
        #expect(call(token(old)) == "next")
        #expect(call(token(new)) == "invalid_token")
        try JWKSet(keys: [new.publicJWK, old.publicJWK]).json().write(to: URL(fileURLWithPath: dir + "/jwks.json"))
        var accepted = false
        for _ in 0..<60 where !accepted {
            try await Task.sleep(for: .milliseconds(100))
            accepted = call(token(new)) == "next"
        }
        #expect(accepted, "the new key was never fetched")
    }
}
