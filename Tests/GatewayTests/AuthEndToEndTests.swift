import Foundation
import NIOPosix
import Passport
import Testing

@testable import Gateway

/// A gateway with an `authenticate` + `passport` route, an identity provider
/// made by a Python script (PyJWT with `cryptography`: P-256, RSA and Ed25519
/// keys, a JWK Set file, tokens), and the recording upstream.
final class AuthFixture: @unchecked Sendable {
    let state: String
    let upstream: DemoUpstreamServer
    let gateway: GatewayProcess
    let port: Int
    var ca: String { state + "/ca.pem" }
    var admin: String { "http://127.0.0.1:\(gateway.adminPort)" }

    private init(state: String, upstream: DemoUpstreamServer, gateway: GatewayProcess, port: Int) {
        self.state = state
        self.upstream = upstream
        self.gateway = gateway
        self.port = port
    }

    /// Makes the IdP's keys and JWK Set in `<state>/idp/`, and prints a JSON
    /// map of tokens: one per algorithm, an expired one, one for another audience.
    static let idpScript = """
    import json, os, sys, time
    import jwt
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm, OKPAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, rsa, ed25519
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    keys = {"ES256": ec.generate_private_key(ec.SECP256R1()), "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "EdDSA": ed25519.Ed25519PrivateKey.generate()}
    algs = {"ES256": ECAlgorithm, "RS256": RSAAlgorithm, "EdDSA": OKPAlgorithm}
    jwks = []
    for alg, k in keys.items():
        j = json.loads(algs[alg].to_jwk(k.public_key()))
        j["kid"] = "idp-" + alg.lower(); j["use"] = "sig"
        jwks.append(j)
    open(os.path.join(d, "jwks.json"), "w").write(json.dumps({"keys": jwks}))
    now = int(time.time())
    def tok(alg, **over):
        c = {"iss": "https://idp.test", "aud": "api", "sub": "user-" + alg, "scope": "accounts:read", "iat": now, "exp": now + 600, "sid": "s1"}
        c.update(over)
        return jwt.encode(c, keys[alg], algorithm=alg, headers={"kid": "idp-" + alg.lower()})
    print(json.dumps({"ES256": tok("ES256"), "RS256": tok("RS256"), "EdDSA": tok("EdDSA"),
                      "expired": tok("ES256", exp=now - 120, iat=now - 900), "other-audience": tok("RS256", aud="other"),
                      "no-scope": tok("EdDSA", scope="transfers:write")}))
    """

    static func start() async throws -> (AuthFixture, [String: String]) {
        let state = try TestSupport.temporaryDirectory("auth")
        try await TestSupport.makeCertificates(in: state)
        let idp = try await TestSupport.run("/usr/bin/env", ["python3", "-c", idpScript, state + "/idp"])
        guard idp.code == 0, let tokens = try JSONSerialization.jsonObject(with: Data(idp.stdout.utf8)) as? [String: String] else {
            throw TestFailure("IdP script failed: \(idp.stderr)")
        }
        let keys = try await TestSupport.run(try TestSupport.gatewayBinary, ["keys", "generate", "--type", "ed25519", "--kid", "pp-e2e",
                                                                             "--out", state + "/passport/pp-e2e.json"])
        guard keys.code == 0 else { throw TestFailure("keys generate failed: \(keys.stderr)") }
        let upstream = DemoUpstreamServer(name: "accounts", group: MultiThreadedEventLoopGroup.singleton)
        let upstreamPort = try await upstream.start(port: 0)
        let port = try TestSupport.freePort()
        let gateway = try await GatewayProcess.start(yaml: """
        listeners:
          - name: public
            address: 127.0.0.1:\(port)
            tls: {cert: localhost.pem, key: localhost-key.pem}
        upstreams:
          - name: accounts
            endpoints: ["127.0.0.1:\(upstreamPort)"]
        routes:
          - name: me
            listener: public
            match: {path_prefix: /me}
            upstream: accounts
            filters:
              - authenticate:
                  jwt: {jwks: idp/jwks.json, issuer: "https://idp.test", audiences: [api]}
                  scopes: [accounts:read]
              - passport: {issuer: edge-gateway, ttl: 5m}

        """, stateDir: state)
        return (AuthFixture(state: state, upstream: upstream, gateway: gateway, port: port), tokens)
    }

    func stop() async {
        gateway.stop()
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: state)
        try? FileManager.default.removeItem(atPath: gateway.dir)
    }
}

@Suite("authentication and passports end to end", .serialized)
struct AuthEndToEndTests {
    /// PyJWT verifies a passport against the JWK Set fetched from the admin listener.
    static let pyjwtVerify = """
    import json, sys, urllib.request
    import jwt
    from jwt import PyJWKSet
    jwks = PyJWKSet.from_json(urllib.request.urlopen(sys.argv[1]).read().decode())
    token = sys.argv[2]
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience=sys.argv[3], issuer="edge-gateway")
    print(json.dumps(claims, sort_keys=True))
    """

    @Test("a valid JWT (ES256, RS256, EdDSA from PyJWT) reaches the upstream as a passport that verifies, in Swift and with PyJWT")
    func validTokens() async throws {
        let (f, tokens) = try await AuthFixture.start()
        defer { Task { await f.stop() } }
        for alg in ["ES256", "RS256", "EdDSA"] {
            let token = try #require(tokens[alg])
            let r = try await Curl.request("https://localhost:\(f.port)/me", caFile: f.ca, args: [
                "-H", "authorization: Bearer \(token)", "-H", "x-passport: forged", "-H", "x-device-id: dev-9"])
            #expect(r.status == 200, "\(alg): \(r.body)")
            let got = try #require(f.upstream.received.withLockedValue { $0.last })
            #expect(header(got, "authorization").isEmpty, "the token reached the upstream")
            let passport = try #require(header(got, "x-passport").first)
            #expect(header(got, "x-passport").count == 1 && passport != "forged")
            // Swift verifier, keys from the admin endpoint.
            let jwks = try await JWKSSource("\(f.admin)/.well-known/passport-jwks.json").load()
            let verifier = PassportVerifier(jwks: jwks, audience: "accounts")
            let claims = try await verifier.verify(passport)
            #expect(claims.subject == "user-\(alg)" && claims.level == 2 && claims.methods == ["jwt"] && claims.scope == "accounts:read")
            #expect(claims.device?.id == "dev-9" && claims.session == "s1")
            // PyJWT, independently.
            let py = try await TestSupport.run("/usr/bin/env", ["python3", "-c", Self.pyjwtVerify,
                                                                "\(f.admin)/.well-known/passport-jwks.json", passport, "accounts"])
            #expect(py.code == 0, "PyJWT refused the passport: \(py.stderr)")
            #expect(py.stdout.contains("\"sub\": \"user-\(alg)\"") && py.stdout.contains("\"lvl\": 2"), "\(py.stdout)")
        }
        // The JWK Set is on the admin listener only.
        let publicJWKS = try await Curl.request("https://localhost:\(f.port)/.well-known/passport-jwks.json", caFile: f.ca)
        #expect(publicJWKS.status == 404)
    }

    @Test("invalid, expired, wrong-audience or missing tokens: 401 invalid_token with WWW-Authenticate; nothing reaches the upstream")
    func refusedTokens() async throws {
        let (f, tokens) = try await AuthFixture.start()
        defer { Task { await f.stop() } }
        let cases: [(String, [String])] = [
            ("missing", []),
            ("garbage", ["-H", "authorization: Bearer abc.def.ghi"]),
            ("expired", ["-H", "authorization: Bearer \(tokens["expired"]!)"]),
            ("other audience", ["-H", "authorization: Bearer \(tokens["other-audience"]!)"]),
            ("basic", ["-H", "authorization: Basic dXNlcjpwYXNz"]),
            ("a valid token sent twice", ["-H", "authorization: Bearer \(tokens["EdDSA"]!)", "-H", "authorization: Bearer \(tokens["EdDSA"]!)"]),
            ("forged passport only", ["-H", "x-passport: \(tokens["EdDSA"]!)"]),
        ]
        for (name, args) in cases {
            let r = try await Curl.request("https://localhost:\(f.port)/me", caFile: f.ca, args: args)
            #expect(r.status == 401 && r.body.contains("\"error\":\"invalid_token\""), "\(name): \(r.status) \(r.body)")
            #expect(r.headers["www-authenticate"] == "Bearer error=\"invalid_token\"", "\(name)")
        }
        // A valid token without the route's scope: 403, and nothing upstream either.
        let noScope = try await Curl.request("https://localhost:\(f.port)/me", caFile: f.ca,
                                             args: ["-H", "authorization: Bearer \(tokens["no-scope"]!)"])
        #expect(noScope.status == 403 && noScope.body.contains("\"error\":\"forbidden\""), "\(noScope.body)")
        #expect(noScope.headers["www-authenticate"] == "Bearer error=\"insufficient_scope\", scope=\"accounts:read\"")
        #expect(f.upstream.heads.withLockedValue { $0 } == 0)
        // The log says why, never the token.
        #expect(await f.gateway.logEventually(contains: "\"error\":\"invalid_token\""))
        for token in tokens.values { #expect(!f.gateway.log.contains(token)) }
    }

    @Test("gateway passport verify and inspect: exit 0 only for a valid passport; --at evaluates expiry then")
    func cli() async throws {
        let (f, tokens) = try await AuthFixture.start()
        defer { Task { await f.stop() } }
        let r = try await Curl.request("https://localhost:\(f.port)/me", caFile: f.ca, args: ["-H", "authorization: Bearer \(tokens["ES256"]!)"])
        #expect(r.status == 200)
        let last = try #require(f.upstream.received.withLockedValue { $0.last })
        let passport = try #require(header(last, "x-passport").first)
        let jwksURL = "\(f.admin)/.well-known/passport-jwks.json"
        let gw = try TestSupport.gatewayBinary
        let ok = try await TestSupport.run(gw, ["passport", "verify", passport, "--jwks", jwksURL, "--audience", "accounts"])
        #expect(ok.code == 0 && ok.stdout.hasPrefix("valid: sub=user-ES256"), "\(ok.stdout)\(ok.stderr)")
        let wrongAudience = try await TestSupport.run(gw, ["passport", "verify", passport, "--jwks", jwksURL, "--audience", "payments"])
        #expect(wrongAudience.code == 1 && wrongAudience.stdout.contains("wrong audience"))
        let later = Int(Date().timeIntervalSince1970) + 3600
        let expired = try await TestSupport.run(gw, ["passport", "verify", passport, "--jwks", jwksURL, "--at", String(later)])
        #expect(expired.code == 1 && expired.stdout.contains("expired"))
        let inspect = try await TestSupport.run(gw, ["passport", "inspect", passport, "--at", String(later)])
        #expect(inspect.code == 0 && inspect.stdout.contains("EXPIRED") && inspect.stdout.contains("\"sub\" : \"user-ES256\""), "\(inspect.stdout)")
        let badJWKS = try await TestSupport.run(gw, ["passport", "verify", passport, "--jwks", "/nonexistent.json"])
        #expect(badJWKS.code == 2)
    }
}
