import Filters
import Foundation
import NIOPosix
import Passport
import Testing

@testable import Gateway

/// One app-channel request over curl, with the body as raw bytes both ways.
struct AppResponse {
    var status: Int
    var headers: [String: String]
    var body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    var code: String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] else { return nil }
        return object["error"] as? String
    }
}

enum AppCurl {
    static func send(port: Int, ca: String, method: String, target: String, headers: [(name: String, value: String)], body: [UInt8],
                     extra: [String] = []) async throws -> AppResponse {
        let dir = try TestSupport.temporaryDirectory("appcurl")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var args = ["-sS", "--cacert", ca, "-D", dir + "/h", "-o", dir + "/b", "--max-time", "20", "--path-as-is"] + extra
        if method == "HEAD" { args.append("--head") } else { args += ["-X", method] }
        for (name, value) in headers { args += ["-H", "\(name): \(value)"] }
        if !body.isEmpty {
            try Data(body).write(to: URL(fileURLWithPath: dir + "/req"))
            args += ["--data-binary", "@" + dir + "/req", "-H", "content-type: application/octet-stream"]
        }
        let r = try await TestSupport.run("/usr/bin/curl", args + ["https://localhost:\(port)\(target)"])
        guard r.code == 0 else { throw TestError("curl failed (\(r.code)): \(r.stderr)") }
        var status = 0
        var parsed: [String: String] = [:]
        for line in ((try? String(contentsOfFile: dir + "/h", encoding: .utf8)) ?? "").components(separatedBy: "\r\n") {
            if line.hasPrefix("HTTP/") {
                status = Int(line.split(separator: " ")[1]) ?? 0
                parsed = [:]
            } else if let colon = line.firstIndex(of: ":") {
                parsed[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        let body = (try? Data(contentsOf: URL(fileURLWithPath: dir + "/b"))).map { Array($0) } ?? []
        return AppResponse(status: status, headers: parsed, body: body)
    }
}

/// A gateway with app-channel routes, three gateway keys of different ages
/// (current, old within its grace, expired), a JWT issuer, a passport key and
/// the recording upstream that verifies passports.
final class AppChannelFixture: @unchecked Sendable {
    let state: String
    let upstream: DemoUpstreamServer
    let gateway: GatewayProcess
    let port: Int
    let issuer: PassportSigningKey
    var gatewayKeys: [String: [UInt8]] = [:]
    var ca: String { state + "/ca.pem" }

    private init(state: String, upstream: DemoUpstreamServer, gateway: GatewayProcess, port: Int, issuer: PassportSigningKey) {
        self.state = state
        self.upstream = upstream
        self.gateway = gateway
        self.port = port
        self.issuer = issuer
    }

    /// Writes the state folder: certificates, gateway keys with their ages, IdP and passport keys.
    static func makeState() async throws -> (String, PassportSigningKey, [String: [UInt8]], JWKSet) {
        let state = try TestSupport.temporaryDirectory("app")
        try await TestSupport.makeCertificates(in: state)
        let now = Date().timeIntervalSince1970
        var keys: [String: [UInt8]] = [:]
        for (kid, age) in [("k-expired", 5.0 * 3600), ("k-old", 3.0 * 3600), ("k-new", 1800.0)] {
            let r = try await TestSupport.run(try TestSupport.gatewayBinary, ["keys", "generate", "--type", "x25519", "--kid", kid,
                                                                              "--out", state + "/app-channel/\(kid).json"])
            guard r.code == 0 else { throw TestError("keys generate: \(r.stderr)") }
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: now - age)],
                                                  ofItemAtPath: state + "/app-channel/\(kid).json")
            keys[kid] = Base64URL.decode(try KeyFile.read(state + "/app-channel/\(kid).json").x!)
        }
        let passportKey = try PassportSigningKey.generate(kid: "pp")
        try KeyFile.write(passportKey.privateJWK, to: state + "/passport/pp.json", replace: false)
        let issuer = try PassportSigningKey.generate(kid: "idp")
        try JWKSet(keys: [issuer.publicJWK]).json().write(to: URL(fileURLWithPath: state + "/idp-jwks.json"))
        return (state, issuer, keys, JWKSet(keys: [passportKey.publicJWK]))
    }

    static func routes(_ signature: String) -> String {
        """
        routes:
          - name: signed
            listener: app
            match: {path_prefix: /signed}
            upstream: svc
            filters:
              - request_signature: \(signature)
              - decrypt_payload: {required: false}
          - name: enc
            listener: app
            match: {path_prefix: /enc}
            upstream: svc
            filters:
              - request_signature: \(signature)
              - decrypt_payload: {required: true, max_body: 1KiB}
          - name: small
            listener: app
            match: {path_prefix: /small}
            upstream: svc
            filters:
              - request_signature: \(signature)
              - decrypt_payload: {max_response_body: 1KiB}
          - name: bound
            listener: app
            match: {path_prefix: /bound}
            upstream: svc
            filters:
              - authenticate:
                  jwt: {jwks: idp-jwks.json, issuer: "https://idp.test", audiences: [app]}
              - request_signature: {key_grace: 1h, require_key_binding: true}
              - decrypt_payload: {required: false}
              - passport: {issuer: edge-gateway, ttl: 5m}

        """
    }

    static func start(signature: String = "{key_grace: 1h}", extraYAML: String = "", state existing: (String, PassportSigningKey, [String: [UInt8]], JWKSet)? = nil,
                      upstream given: DemoUpstreamServer? = nil) async throws -> AppChannelFixture {
        let made: (String, PassportSigningKey, [String: [UInt8]], JWKSet)
        if let existing { made = existing } else { made = try await makeState() }
        let (state, issuer, keys, passportJWKS) = made
        let upstream = given ?? DemoUpstreamServer(name: "svc", group: MultiThreadedEventLoopGroup.singleton,
                                                   passportVerifier: PassportVerifier(jwks: passportJWKS, audience: "svc"))
        let upstreamPort: Int
        if let given { upstreamPort = given.channel?.localAddress?.port ?? 0 } else { upstreamPort = try await upstream.start(port: 0) }
        let port = try TestSupport.freePort()
        let gateway = try await GatewayProcess.start(yaml: """
        listeners:
          - name: app
            address: 127.0.0.1:\(port)
            tls: {cert: localhost.pem, key: localhost-key.pem}
        upstreams:
          - name: svc
            endpoints: ["127.0.0.1:\(upstreamPort)"]
        \(routes(signature))\(extraYAML)
        """, stateDir: state)
        let f = AppChannelFixture(state: state, upstream: upstream, gateway: gateway, port: port, issuer: issuer)
        f.gatewayKeys = keys
        return f
    }

    func client(_ kid: String = "k-new") throws -> AppChannelClient {
        guard let key = gatewayKeys[kid], let client = AppChannelClient(kid: kid, gatewayKey: key) else { throw TestError("no gateway key \(kid)") }
        return client
    }

    func token(gwk: String?) -> String {
        let now = Int64(Date().timeIntervalSince1970)
        var claims: [String: Any] = ["iss": "https://idp.test", "aud": "app", "sub": "user-7", "iat": now, "exp": now + 600]
        if let gwk { claims["cnf"] = ["gwk": gwk] }
        let header = Base64URL.encode(Array(#"{"alg":"EdDSA","kid":"idp","typ":"JWT"}"#.utf8))
        let payload = Base64URL.encode(try! JSONSerialization.data(withJSONObject: claims, options: .sortedKeys))
        return header + "." + payload + "." + Base64URL.encode(issuer.signature(for: Array((header + "." + payload).utf8)))
    }

    func send(_ p: AppChannelClient.Prepared, _ method: String, _ target: String, headers: [(name: String, value: String)] = [],
              extra: [String] = []) async throws -> AppResponse {
        try await AppCurl.send(port: port, ca: ca, method: method, target: target, headers: p.headers + headers, body: p.body, extra: extra)
    }

    var upstreamHeads: Int { upstream.heads.withLockedValue { $0 } }

    func stop() async {
        gateway.stop()
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: gateway.dir)
    }
}

@Suite("the app channel end to end (PROTOCOL 2)", .serialized)
struct AppChannelEndToEndTests {
    @Test("an encrypted POST: the service gets the plaintext with its type and length and no X-Gw-*; the answer is sealed and opens only with K_resp and the request's nonce; over HTTP/1.1 and HTTP/2")
    func encryptedRoundTrip() async throws {
        let f = try await AppChannelFixture.start()
        defer { Task { await f.stop() } }
        let client = try f.client()
        let plaintext = Array(#"{"amount":1000,"to":"110-222"}"#.utf8)
        for http2 in [false, true] {
            let p = client.prepare(method: "POST", target: "/enc/transfers?dry=1", body: plaintext, encrypt: true, contentType: "application/json")
            let r = try await f.send(p, "POST", "/enc/transfers?dry=1", extra: http2 ? ["--http2"] : ["--http1.1"])
            #expect(r.status == 200, "\(r.text)")
            #expect(r.headers["x-gw-encrypted"] == "1" && r.headers["content-type"] == "application/octet-stream")
            #expect(r.headers["x-gw-content-type"] == "application/json")
            #expect(r.body.count == Int(r.headers["content-length"] ?? "") ?? -1)
            let opened = try #require(client.openResponse(status: 200, body: r.body, request: p), "the sealed response must open")
            let seen = try #require(try JSONSerialization.jsonObject(with: Data(opened)) as? [String: Any])
            // What the service received, as it told us inside the sealed answer.
            let headers = try #require(seen["headers"] as? [String: String])
            #expect(seen["body_sha256"] as? String == Sodium.sha256(plaintext).map { String(format: "%02x", $0) }.joined())
            #expect(headers["content-type"] == "application/json" && headers["content-length"] == String(plaintext.count))
            #expect(headers.keys.allSatisfy { !$0.hasPrefix("x-gw-") }, "\(headers.keys.sorted())")
            #expect(headers["accept-encoding"] == nil)
            // The seal binds status and request nonce; another session cannot open it.
            #expect(AppChannelCrypto.openResponse(r.body, keys: client.keys, aad: Array("201\n\(p.nonce)".utf8)) == nil)
            let other = client.prepare(method: "POST", target: "/enc/transfers?dry=1", body: plaintext, encrypt: true)
            #expect(client.openResponse(status: 200, body: r.body, request: other) == nil)
            #expect(try f.client().openResponse(status: 200, body: r.body, request: p) == nil)
        }
        // The upstream's own status is in the seal (404 here), and its body is sealed too.
        let p404 = client.prepare(method: "GET", target: "/enc/missing", body: [], encrypt: true)
        let r404 = try await f.send(p404, "GET", "/enc/missing", headers: [("x-demo-status", "404")])
        #expect(r404.status == 404 && r404.headers["x-gw-encrypted"] == "1")
        #expect(client.openResponse(status: 404, body: r404.body, request: p404) != nil)
        #expect(client.openResponse(status: 200, body: r404.body, request: p404) == nil)
        // HEAD: no body by HTTP's rules, so nothing to seal.
        let head = client.prepare(method: "HEAD", target: "/enc/h", body: [], encrypt: true)
        let rh = try await f.send(head, "HEAD", "/enc/h")
        #expect(rh.status == 200 && rh.headers["x-gw-encrypted"] == nil && rh.headers["content-type"] == "application/json", "\(rh.headers)")
        // A signed plain request on a route that does not require encryption goes through in the clear.
        let plain = client.prepare(method: "POST", target: "/signed/x", body: plaintext, encrypt: false)
        let rp = try await f.send(plain, "POST", "/signed/x")
        #expect(rp.status == 200 && rp.headers["x-gw-encrypted"] == nil && rp.text.contains("\"body_bytes\":\(plaintext.count)"))
        // Nothing secret in the log: no decrypted body, no signature, no client key.
        #expect(await f.gateway.logEventually(contains: "/enc/transfers"))
        #expect(!f.gateway.log.contains("110-222") && !f.gateway.log.contains(client.keys.mac.map { String($0) }.joined()))
        for (_, value) in plain.headers where value.count > 20 { #expect(!f.gateway.log.contains(value)) }
    }

    @Test("/.well-known/gateway-keys.json: the current key first, the old one within its grace, never an expired or private one; the old kid still works, the expired one is unknown")
    func gatewayKeys() async throws {
        let f = try await AppChannelFixture.start()
        defer { Task { await f.stop() } }
        let r = try await Curl.request("https://localhost:\(f.port)/.well-known/gateway-keys.json", caFile: f.ca)
        #expect(r.status == 200 && r.headers["content-type"] == "application/json")
        let expected = #"{"keys":[{"kty":"OKP","crv":"X25519","kid":"k-new","x":"\#(Base64URL.encode(f.gatewayKeys["k-new"]!))"},"#
            + #"{"kty":"OKP","crv":"X25519","kid":"k-old","x":"\#(Base64URL.encode(f.gatewayKeys["k-old"]!))"}]}"#
        #expect(r.body == expected)
        let post = try await Curl.request("https://localhost:\(f.port)/.well-known/gateway-keys.json", caFile: f.ca, args: ["-X", "POST"])
        #expect(post.status == 405)
        let old = try f.client("k-old").prepare(method: "GET", target: "/signed/a", body: [], encrypt: false)
        #expect(try await f.send(old, "GET", "/signed/a").status == 200)
        let before = f.upstreamHeads
        let expired = try f.client("k-expired").prepare(method: "GET", target: "/signed/a", body: [], encrypt: false)
        let re = try await f.send(expired, "GET", "/signed/a")
        #expect(re.status == 401 && re.code == "unknown_key")
        #expect(f.upstreamHeads == before)
    }

    @Test("every row of PROTOCOL 2.3 and the errors of 2.4: status, code, nothing upstream, and never X-Gw-Encrypted on the gateway's own answers")
    func rejections() async throws {
        let f = try await AppChannelFixture.start()
        defer { Task { await f.stop() } }
        let client = try f.client()
        let body = Array(#"{"a":1}"#.utf8)
        func check(_ name: String, _ r: AppResponse, _ status: Int, _ code: String) {
            #expect(r.status == status && r.code == code, "\(name): \(r.status) \(r.text)")
            #expect(r.headers["x-gw-encrypted"] == nil, "\(name): a gateway answer is never sealed")
        }
        let before = f.upstreamHeads
        let good = client.prepare(method: "POST", target: "/signed/t", body: body, encrypt: false)
        func replacing(_ p: AppChannelClient.Prepared, _ name: String, _ value: String?) -> [(name: String, value: String)] {
            p.headers.compactMap { $0.name == name ? value.map { v in (name, v) } : $0 }
        }
        func sendHeaders(_ headers: [(name: String, value: String)], method: String = "POST", target: String = "/signed/t",
                         body b: [UInt8]? = nil) async throws -> AppResponse {
            try await AppCurl.send(port: f.port, ca: f.ca, method: method, target: target, headers: headers, body: b ?? good.body)
        }
        // Row 1: malformed.
        for name in ["X-Gw-Kid", "X-Gw-Client-Key", "X-Gw-Timestamp", "X-Gw-Nonce", "X-Gw-Signature"] {
            check("no \(name)", try await sendHeaders(replacing(good, name, nil)), 400, "malformed_signature")
        }
        check("short nonce", try await sendHeaders(replacing(good, "X-Gw-Nonce", Base64URL.encode([UInt8](repeating: 1, count: 8)))), 400, "malformed_signature")
        check("timestamp in seconds with a sign", try await sendHeaders(replacing(good, "X-Gw-Timestamp", "-5")), 400, "malformed_signature")
        check("two signatures", try await sendHeaders(good.headers + [("X-Gw-Signature", good.headers.last!.value)]), 400, "malformed_signature")
        check("no headers at all", try await sendHeaders([]), 400, "malformed_signature")
        // Row 2: unknown kid.
        check("unknown kid", try await sendHeaders(replacing(good, "X-Gw-Kid", "k-nope")), 401, "unknown_key")
        // Row 3: outside the window (signed correctly, at the wrong time).
        let now = AppChannelKeyRing.now()
        check("11 s old", try await f.send(client.prepare(method: "POST", target: "/signed/t", body: body, encrypt: false, timestamp: now - 11_000), "POST", "/signed/t"),
              401, "request_expired")
        check("3 s ahead", try await f.send(client.prepare(method: "POST", target: "/signed/t", body: body, encrypt: false, timestamp: now + 3_000), "POST", "/signed/t"),
              401, "request_expired")
        // Row 4: tampering with each signed part.
        check("path", try await sendHeaders(good.headers, target: "/signed/u"), 401, "invalid_signature")
        check("query", try await sendHeaders(good.headers, target: "/signed/t?x=1"), 401, "invalid_signature")
        check("method", try await sendHeaders(good.headers, method: "PUT"), 401, "invalid_signature")
        check("timestamp", try await sendHeaders(replacing(good, "X-Gw-Timestamp", String(now - 1))), 401, "invalid_signature")
        check("nonce", try await sendHeaders(replacing(good, "X-Gw-Nonce", Base64URL.encode(Sodium.randomBytes(16)))), 401, "invalid_signature")
        var flipped = good.body
        flipped[3] ^= 0x01
        check("body byte", try await sendHeaders(good.headers, body: flipped), 401, "invalid_signature")
        check("kid (another valid key)", try await sendHeaders(replacing(good, "X-Gw-Kid", "k-old")), 401, "invalid_signature")
        check("client key", try await sendHeaders(replacing(good, "X-Gw-Client-Key", Base64URL.encode(X25519.generate().publicKey))), 401, "invalid_signature")
        check("dot segment in the path", try await sendHeaders(client.prepare(method: "POST", target: "/signed/./t", body: body, encrypt: false).headers,
                                                                target: "/signed/t"), 401, "invalid_signature")
        // Row 5: key binding.
        let bound = client.prepare(method: "GET", target: "/bound/me", body: [], encrypt: false)
        check("token bound to another key", try await f.send(bound, "GET", "/bound/me",
                                                             headers: [("authorization", "Bearer " + f.token(gwk: Base64URL.encode(X25519.generate().publicKey)))]),
              401, "key_binding_mismatch")
        let unbound = client.prepare(method: "GET", target: "/bound/me", body: [], encrypt: false)
        check("token without cnf.gwk", try await f.send(unbound, "GET", "/bound/me", headers: [("authorization", "Bearer " + f.token(gwk: nil))]),
              401, "key_binding_mismatch")
        // 2.4: encryption required, undecryptable bodies.
        check("plain on an encrypted route", try await f.send(client.prepare(method: "POST", target: "/enc/t", body: body, encrypt: false), "POST", "/enc/t"),
              400, "encryption_required")
        check("plain GET on an encrypted route", try await f.send(client.prepare(method: "GET", target: "/enc/t", body: [], encrypt: false), "GET", "/enc/t"),
              400, "encryption_required")
        let sealedForA = client.prepare(method: "POST", target: "/enc/a", body: body, encrypt: true)
        let ts = sealedForA.headers.first { $0.name == "X-Gw-Timestamp" }!.value
        let movedSig = client.signature(method: "POST", target: "/enc/b", timestamp: ts, nonce: sealedForA.nonce, sentBody: sealedForA.body)
        check("ciphertext moved to another path", try await AppCurl.send(port: f.port, ca: f.ca, method: "POST", target: "/enc/b",
                                                                         headers: replacing(sealedForA, "X-Gw-Signature", movedSig), body: sealedForA.body),
              400, "undecryptable_payload")
        let big = client.prepare(method: "POST", target: "/enc/t", body: [UInt8](repeating: 0x61, count: 2048), encrypt: true)
        check("encrypted body over max_body", try await f.send(big, "POST", "/enc/t"), 413, "body_too_large")
        #expect(f.upstreamHeads == before, "a refused request reached the upstream")
        // Row 6: replay. The first goes through; the same bytes again do not.
        let once = client.prepare(method: "POST", target: "/signed/t", body: body, encrypt: false)
        #expect(try await f.send(once, "POST", "/signed/t").status == 200)
        check("replay", try await f.send(once, "POST", "/signed/t"), 401, "replayed_request")
        #expect(f.upstreamHeads == before + 1)
        // A refused signature does not burn the nonce: the genuine request with it still passes.
        let genuine = client.prepare(method: "POST", target: "/signed/t", body: body, encrypt: false)
        check("forged first", try await sendHeaders(replacing(genuine, "X-Gw-Signature", Base64URL.encode([UInt8](repeating: 0, count: 32)))), 401, "invalid_signature")
        #expect(try await f.send(genuine, "POST", "/signed/t").status == 200)
        // The rejections are counted per route and code.
        let metrics = try await TestSupport.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(f.gateway.adminPort)/metrics"]).stdout
        for code in ["malformed_signature", "unknown_key", "request_expired", "invalid_signature", "replayed_request"] {
            #expect(metrics.contains("gateway_rejections_total{route=\"signed\",reason=\"\(code)\"}") || metrics.contains("reason=\"\(code)\",route=\"signed\""),
                    "\(code) not counted")
        }
    }

    @Test("an upstream answer larger than max_response_body cannot be sealed: 502 upstream_response_too_large, unsealed, nothing of it sent; a smaller one is sealed, and so is one read in many pieces")
    func responseTooLargeToSeal() async throws {
        let f = try await AppChannelFixture.start()
        defer { Task { await f.stop() } }
        let client = try f.client()
        let big = client.prepare(method: "GET", target: "/small/x", body: [], encrypt: true)
        let r = try await f.send(big, "GET", "/small/x", headers: [("x-demo-response-bytes", "5000")])
        #expect(r.status == 502 && r.code == "upstream_response_too_large", "\(r.status) \(r.text)")
        #expect(r.headers["x-gw-encrypted"] == nil && !r.text.contains("xxxx"), "the gateway's own answer, none of the upstream's bytes")
        let small = client.prepare(method: "GET", target: "/small/y", body: [], encrypt: true)
        let ok = try await f.send(small, "GET", "/small/y", headers: [("x-demo-response-bytes", "1000")])
        #expect(ok.status == 200 && ok.headers["x-gw-encrypted"] == "1")
        #expect(client.openResponse(status: 200, body: ok.body, request: small) == [UInt8](repeating: UInt8(ascii: "x"), count: 1000))
        // An answer that arrives in many reads: its first piece is held as
        // read, the others joined after it, and the whole is sealed.
        let many = client.prepare(method: "GET", target: "/enc/z", body: [], encrypt: true)
        let m = try await f.send(many, "GET", "/enc/z", headers: [("x-demo-response-bytes", "200000")])
        #expect(m.status == 200 && m.headers["x-gw-encrypted"] == "1")
        #expect(client.openResponse(status: 200, body: m.body, request: many) == [UInt8](repeating: UInt8(ascii: "x"), count: 200_000))
        let metrics = try await TestSupport.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(f.gateway.adminPort)/metrics"]).stdout
        #expect(metrics.contains("upstream_response_too_large"))
    }

    @Test("key binding that matches: the passport says lvl 3 (credential plus app-channel signature), and the service never sees the token")
    func boundPassport() async throws {
        let f = try await AppChannelFixture.start()
        defer { Task { await f.stop() } }
        let client = try f.client()
        let p = client.prepare(method: "GET", target: "/bound/me", body: [], encrypt: true)
        let r = try await f.send(p, "GET", "/bound/me", headers: [("authorization", "Bearer " + f.token(gwk: Base64URL.encode(client.publicKey)))])
        #expect(r.status == 200)
        let opened = String(decoding: try #require(client.openResponse(status: 200, body: r.body, request: p)), as: UTF8.self)
        #expect(opened.contains("\"valid\":true") && opened.contains("\"lvl\":3") && opened.contains("\"sub\":\"user-7\""), "\(opened)")
        #expect(opened.contains("\"authorization\"") == false)
    }

    /// The app's side written from PROTOCOL.md with PyNaCl (libsodium) and
    /// the standard library's hmac/hashlib, not from the Swift code.
    static let pythonApp = #"""
    import base64, hashlib, hmac, http.client, json, os, ssl, sys, time
    from nacl.bindings import crypto_kx_keypair, crypto_kx_client_session_keys, \
        crypto_aead_xchacha20poly1305_ietf_encrypt as seal, crypto_aead_xchacha20poly1305_ietf_decrypt as unseal

    port, ca = int(sys.argv[1]), sys.argv[2]
    b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    unb64u = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
    ctx = ssl.create_default_context(cafile=ca)

    def request(method, target, headers, body):
        c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
        c.request(method, target, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    status, _, keys = request("GET", "/.well-known/gateway-keys.json", {}, None)
    key = json.loads(keys)["keys"][0]
    gpk = unb64u(key["x"])
    cpk, csk = crypto_kx_keypair()
    c_rx, c_tx = crypto_kx_client_session_keys(cpk, csk, gpk)
    k_mac = hashlib.blake2b(b"GW1 mac", key=c_tx, digest_size=32).digest()
    k_req = hashlib.blake2b(b"GW1 request", key=c_tx, digest_size=32).digest()
    k_resp = hashlib.blake2b(b"GW1 response", key=c_rx, digest_size=32).digest()

    def call(method, target, plaintext, encrypt=True):
        ts = str(int(time.time() * 1000))
        nonce = b64u(os.urandom(16))
        body = plaintext
        headers = {"X-Gw-Kid": key["kid"], "X-Gw-Client-Key": b64u(cpk), "X-Gw-Timestamp": ts, "X-Gw-Nonce": nonce}
        if encrypt:
            headers["X-Gw-Encrypted"] = "1"
            headers["X-Gw-Content-Type"] = "application/json"
            if plaintext:
                n = os.urandom(24)
                body = n + seal(plaintext, f"{method}\n{target}\n{ts}\n{nonce}".encode(), n, k_req)
        canonical = "\n".join(["GW1", method, target, ts, nonce, key["kid"], b64u(hashlib.sha256(body).digest())])
        headers["X-Gw-Signature"] = b64u(hmac.new(k_mac, canonical.encode(), hashlib.sha256).digest())
        status, rh, data = request(method, target, headers, body if body else None)
        out = {"status": status, "encrypted": rh.get("x-gw-encrypted") == "1", "content_type": rh.get("x-gw-content-type")}
        if out["encrypted"]:
            out["body"] = unseal(data[24:], f"{status}\n{nonce}".encode(), data[:24], k_resp).decode()
        else:
            out["body"] = data.decode()
        return out, (method, target, headers, body if body else None)

    results = {}
    results["post"], sent = call("POST", "/enc/transfers?dry=1", b'{"amount":1000,"to":"110-222"}')
    results["get"], _ = call("GET", "/enc/accounts/42", b"")
    status, rh, data = request(*sent)
    results["replay"] = {"status": status, "body": data.decode()}
    results["plain_on_enc"], _ = call("POST", "/enc/t", b'{"a":1}', encrypt=False)
    print(json.dumps(results))
    """#

    @Test("interoperability: a Python app built on PyNaCl and hmac/hashlib, written from PROTOCOL.md, signs, encrypts and decrypts through the gateway over TLS")
    func pythonInterop() async throws {
        let f = try await AppChannelFixture.start()
        defer { Task { await f.stop() } }
        let r = try await TestSupport.run("/usr/bin/env", ["python3", "-c", Self.pythonApp, String(f.port), f.ca])
        #expect(r.code == 0, "\(r.stderr)")
        let results = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: [String: Any]], "\(r.stdout) \(r.stderr)")
        let post = try #require(results["post"])
        #expect(post["status"] as? Int == 200 && post["encrypted"] as? Bool == true && post["content_type"] as? String == "application/json")
        let seen = try #require(try JSONSerialization.jsonObject(with: Data((post["body"] as? String ?? "").utf8)) as? [String: Any])
        let plaintextHash = Sodium.sha256(Array(#"{"amount":1000,"to":"110-222"}"#.utf8)).map { String(format: "%02x", $0) }.joined()
        #expect(seen["body_sha256"] as? String == plaintextHash && seen["path"] as? String == "/enc/transfers?dry=1")
        let get = try #require(results["get"])
        #expect(get["status"] as? Int == 200 && get["encrypted"] as? Bool == true && (get["body"] as? String ?? "").contains("\"method\":\"GET\""))
        #expect(results["replay"]?["status"] as? Int == 401 && (results["replay"]?["body"] as? String ?? "").contains("replayed_request"))
        #expect(results["plain_on_enc"]?["status"] as? Int == 400 && results["plain_on_enc"]?["encrypted"] as? Bool == false)
        #expect(f.upstreamHeads == 2)
    }

    @Test("gateway app-call: fetches the keys, signs and encrypts, and prints the decrypted answer; exit 1 on a refusal")
    func appCallCLI() async throws {
        let f = try await AppChannelFixture.start()
        defer { Task { await f.stop() } }
        let ok = try await TestSupport.run(try TestSupport.gatewayBinary, ["app-call", "--gateway", "https://localhost:\(f.port)", "--cacert", f.ca,
                                                                           "POST", "/enc/transfers", #"{"amount":5}"#])
        #expect(ok.code == 0, "\(ok.stderr)")
        #expect(ok.stderr.contains("HTTP 200 (kid k-new, signed and encrypted request)") && ok.stderr.contains("decrypted, application/json"))
        #expect(ok.stdout.contains("\"path\":\"/enc/transfers\"") && ok.stdout.contains("\"body_bytes\":12"), "\(ok.stdout)")
        let old = try await TestSupport.run(try TestSupport.gatewayBinary, ["app-call", "--gateway", "https://localhost:\(f.port)", "--cacert", f.ca,
                                                                            "--kid", "k-old", "GET", "/signed/x"])
        #expect(old.code == 0 && old.stderr.contains("kid k-old"), "\(old.stderr)")
        let plain = try await TestSupport.run(try TestSupport.gatewayBinary, ["app-call", "--gateway", "https://localhost:\(f.port)", "--cacert", f.ca,
                                                                              "--plain", "POST", "/enc/t", "{}"])
        #expect(plain.code == 1 && plain.stdout.contains("encryption_required") && plain.stderr.contains("not encrypted"))
        let noKid = try await TestSupport.run(try TestSupport.gatewayBinary, ["app-call", "--gateway", "https://localhost:\(f.port)", "--cacert", f.ca,
                                                                              "--kid", "k-expired", "GET", "/signed/x"])
        #expect(noKid.code != 0 && noKid.stderr.contains("no usable gateway key with kid 'k-expired'"), "\(noKid.stderr)")
    }

    @Test("config: decrypt_payload without request_signature before it, or require_key_binding without authenticate, fails at load with the file and key path")
    func configOrder() async throws {
        let dir = try TestSupport.temporaryDirectory("app-config")
        let (state, _, _, _) = try await AppChannelFixture.makeState()
        try FileManager.default.createDirectory(atPath: dir + "/filters.d", withIntermediateDirectories: true)
        try """
        listeners: [{name: app, address: "127.0.0.1:0"}]
        upstreams: [{name: svc, endpoints: ["127.0.0.1:1"]}]
        routes:
          - name: wrong-order
            listener: app
            match: {path_prefix: /a}
            upstream: svc
            filters:
              - decrypt_payload: {}
              - request_signature: {}
          - name: unbound
            listener: app
            match: {path_prefix: /b}
            upstream: svc
            filters:
              - request_signature: {require_key_binding: true}
        """.write(toFile: dir + "/filters.d/10-app.yaml", atomically: true, encoding: .utf8)
        let r = try await TestSupport.run(try TestSupport.gatewayBinary, ["check", "--config", dir + "/filters.d", "--state", state])
        #expect(r.code != 0)
        let text = r.stdout + r.stderr
        #expect(text.contains("10-app.yaml") && text.contains("'decrypt_payload' needs 'request_signature' before it"), "\(text)")
        #expect(text.contains("'request_signature' needs 'authenticate' before it"), "\(text)")
        let noKeys = try TestSupport.temporaryDirectory("app-nokeys")
        let r2 = try await TestSupport.run(try TestSupport.gatewayBinary, ["check", "--config", dir + "/filters.d", "--state", noKeys])
        #expect(r2.code != 0 && (r2.stdout + r2.stderr).contains("app-channel"), "\(r2.stdout)\(r2.stderr)")
    }
}

@Suite("the app channel's shared nonce store on a real redis-server", .serialized)
struct AppChannelRedisTests {
    static func redisSignature(_ port: Int, failOpen: Bool = false) -> String {
        "{key_grace: 1h, nonce_store: redis, fail_open: \(failOpen), redis: {address: \"127.0.0.1:\(port)\", timeout: 200ms, prefix: \"gw:e2e:\"}}"
    }

    @Test("two gateway replicas share one redis: a request accepted by the first is refused as a replay by the second")
    func replayAcrossReplicas() async throws {
        let redis = try RedisServerProcess()
        try await redis.start()
        defer { redis.kill() }
        let state = try await AppChannelFixture.makeState()
        let first = try await AppChannelFixture.start(signature: Self.redisSignature(redis.port), state: state)
        defer { Task { await first.stop() } }
        let second = try await AppChannelFixture.start(signature: Self.redisSignature(redis.port), state: state, upstream: first.upstream)
        defer { Task { second.gateway.stop() } }
        let client = try first.client()
        let p = client.prepare(method: "POST", target: "/enc/t", body: Array(#"{"n":1}"#.utf8), encrypt: true)
        let a = try await first.send(p, "POST", "/enc/t")
        #expect(a.status == 200 && a.headers["x-gw-encrypted"] == "1")
        let heads = first.upstreamHeads
        let b = try await second.send(p, "POST", "/enc/t")
        #expect(b.status == 401 && b.code == "replayed_request", "\(b.status) \(b.text)")
        #expect(first.upstreamHeads == heads, "the replay reached the upstream")
        // And the other way round, with a fresh request.
        let q = client.prepare(method: "GET", target: "/signed/x", body: [], encrypt: false)
        #expect(try await second.send(q, "GET", "/signed/x").status == 200)
        #expect(try await first.send(q, "GET", "/signed/x").code == "replayed_request")
    }

    @Test("redis killed: 503 replay_store_unavailable and nothing upstream (fail closed); restarted: requests pass again without a gateway restart; fail_open passes, logs and counts")
    func outageAndRecovery() async throws {
        let redis = try RedisServerProcess()
        try await redis.start()
        defer { redis.kill() }
        let f = try await AppChannelFixture.start(signature: Self.redisSignature(redis.port), extraYAML: """
          - name: lenient
            listener: app
            match: {path_prefix: /lenient}
            upstream: svc
            filters:
              - request_signature: \(Self.redisSignature(redis.port, failOpen: true))

        """)
        defer { Task { await f.stop() } }
        let client = try f.client()
        #expect(try await f.send(client.prepare(method: "GET", target: "/signed/1", body: [], encrypt: false), "GET", "/signed/1").status == 200)
        await redis.stop()
        let heads = f.upstreamHeads
        for i in 0..<3 {
            let r = try await f.send(client.prepare(method: "GET", target: "/signed/\(i)", body: [], encrypt: false), "GET", "/signed/\(i)")
            #expect(r.status == 503 && r.code == "replay_store_unavailable" && r.headers["x-gw-encrypted"] == nil, "\(r.status) \(r.text)")
        }
        #expect(f.upstreamHeads == heads)
        // fail_open: passes while the store is down, and says so in the log and metrics.
        let lenient = try await f.send(client.prepare(method: "GET", target: "/lenient/1", body: [], encrypt: false), "GET", "/lenient/1")
        #expect(lenient.status == 200)
        #expect(await f.gateway.logEventually(contains: "request passed without replay check (fail_open)"))
        let metrics = try await TestSupport.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(f.gateway.adminPort)/metrics"]).stdout
        let lines = metrics.split(separator: "\n").filter { $0.hasPrefix("gateway_nonce_store_unavailable_total{") }
        #expect(lines.contains { $0.contains("outcome=\"passed\"") && $0.hasSuffix(" 1") }, "\(lines)")
        #expect(lines.contains { $0.contains("outcome=\"refused\"") && $0.hasSuffix(" 3") }, "\(lines)")
        // Redis back on the same port: the gateway reconnects on its own.
        try await redis.start()
        var status = 0
        for i in 0..<40 {
            status = try await f.send(client.prepare(method: "GET", target: "/signed/r\(i)", body: [], encrypt: false), "GET", "/signed/r\(i)").status
            if status == 200 { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(status == 200, "no recovery after redis came back")
    }
}
