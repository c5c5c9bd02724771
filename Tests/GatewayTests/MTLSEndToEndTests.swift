import Filters
import Foundation
import NIOPosix
import Passport
import Testing

@testable import Gateway

/// Listeners with client certificates required or optional, and listeners
/// that trust (or do not trust) `X-Forwarded-Client-Cert`, all in one gateway;
/// certificates from `gateway certs dev`, and a second dev CA the gateway
/// does not trust.
final class MTLSFixture: @unchecked Sendable {
    let state: String
    let otherCA: String
    let upstream: DemoUpstreamServer
    let gateway: GatewayProcess
    let ports: [String: Int]
    let passportJWKS: JWKSet
    var ca: String { state + "/ca.pem" }

    private init(state: String, otherCA: String, upstream: DemoUpstreamServer, gateway: GatewayProcess, ports: [String: Int], passportJWKS: JWKSet) {
        self.state = state
        self.otherCA = otherCA
        self.upstream = upstream
        self.gateway = gateway
        self.ports = ports
        self.passportJWKS = passportJWKS
    }

    static let partner = "spiffe://partners.example/acme"

    static func start() async throws -> MTLSFixture {
        let state = try TestSupport.temporaryDirectory("mtls")
        let otherCA = try TestSupport.temporaryDirectory("mtls-other")
        for dir in [state, otherCA] {
            let r = try await TestSupport.run(try TestSupport.gatewayBinary, ["certs", "dev", "--out", dir])
            guard r.code == 0 else { throw TestError("certs dev: \(r.stderr)") }
        }
        let passportKey = try PassportSigningKey.generate(kid: "pp")
        try KeyFile.write(passportKey.privateJWK, to: state + "/passport/pp.json", replace: false)
        let upstream = DemoUpstreamServer(name: "svc", group: MultiThreadedEventLoopGroup.singleton)
        let upstreamPort = try await upstream.start(port: 0)
        var ports: [String: Int] = [:]
        for name in ["partner", "optional", "mesh", "public", "mesh_elsewhere"] { ports[name] = try TestSupport.freePort() }
        let authz = "{mtls_authz: {allow: [{uri: \"\(partner)\"}, {dns_prefix: partner.}]}}"
        let gateway = try await GatewayProcess.start(yaml: """
        listeners:
          - {name: partner, address: "127.0.0.1:\(ports["partner"]!)", tls: {cert: localhost.pem, key: localhost-key.pem, client_auth: require, client_ca: ca.pem}}
          - {name: optional, address: "127.0.0.1:\(ports["optional"]!)", tls: {cert: localhost.pem, key: localhost-key.pem, client_auth: optional, client_ca: [ca.pem]}}
          - {name: mesh, address: "127.0.0.1:\(ports["mesh"]!)", tls: {cert: localhost.pem, key: localhost-key.pem}, trust_xfcc: {from: [127.0.0.0/8, "::1"]}}
          - {name: public, address: "127.0.0.1:\(ports["public"]!)", tls: {cert: localhost.pem, key: localhost-key.pem}}
          - {name: mesh_elsewhere, address: "127.0.0.1:\(ports["mesh_elsewhere"]!)", tls: {cert: localhost.pem, key: localhost-key.pem}, trust_xfcc: {from: [10.0.0.0/8]}}
        upstreams:
          - name: svc
            endpoints: ["127.0.0.1:\(upstreamPort)"]
        routes:
          - {name: partner, listener: partner, match: {path_prefix: /}, upstream: svc, filters: [\(authz), {passport: {}}]}
          - {name: optional, listener: optional, match: {path_prefix: /}, upstream: svc, filters: [\(authz)]}
          - {name: mesh, listener: mesh, match: {path_prefix: /}, upstream: svc, filters: [\(authz), {passport: {}}]}
          - {name: public, listener: public, match: {path_prefix: /}, upstream: svc}
          - {name: elsewhere, listener: mesh_elsewhere, match: {path_prefix: /}, upstream: svc, filters: [\(authz)]}

        """, stateDir: state)
        return MTLSFixture(state: state, otherCA: otherCA, upstream: upstream, gateway: gateway, ports: ports,
                           passportJWKS: JWKSet(keys: [passportKey.publicJWK]))
    }

    func curl(_ listener: String, cert: String? = nil, certDir: String? = nil, headers: [String] = [], path: String = "/x") async throws -> CurlResponse {
        var args: [String] = []
        if let cert {
            let dir = certDir ?? state
            args += ["--cert", "\(dir)/\(cert).pem", "--key", "\(dir)/\(cert)-key.pem"]
        }
        for h in headers { args += ["-H", h] }
        return try await Curl.request("https://localhost:\(ports[listener]!)\(path)", caFile: ca, args: args)
    }

    var heads: Int { upstream.heads.withLockedValue { $0 } }

    /// The passport the upstream received last, verified.
    func lastPassport() throws -> PassportClaims {
        guard let got = upstream.received.withLockedValue({ $0.last }), let token = header(got, "x-passport").first else {
            throw TestError("no passport upstream")
        }
        return try PassportVerifier(jwks: passportJWKS, audience: "svc").verify(token)
    }

    /// An Envoy XFCC element for a certificate file of the state folder.
    func xfccElement(_ cert: String, dir: String? = nil, hash: String? = nil) throws -> String {
        let pem = try String(contentsOfFile: "\(dir ?? state)/\(cert).pem", encoding: .utf8)
        let identity = try ClientIdentity(pem: pem, source: .xfcc)
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        let encoded = pem.addingPercentEncoding(withAllowedCharacters: allowed)!
        return "By=spiffe://cluster.local/ns/edge/sa/gateway;Hash=\(hash ?? identity.sha256);Cert=\"\(encoded)\";URI=\(identity.uris.first ?? "")"
    }

    func stop() async {
        gateway.stop()
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: gateway.dir)
    }
}

@Suite("mTLS identities end to end (PROTOCOL 3)", .serialized)
struct MTLSEndToEndTests {
    @Test("client_auth require: no certificate or one from another CA fails the handshake; an allowed SAN gets 200 and a passport with cert and lvl; a disallowed SAN 403 with nothing upstream")
    func requiredClientCertificates() async throws {
        let f = try await MTLSFixture.start()
        defer { Task { await f.stop() } }
        let none = try await f.curl("partner")
        #expect(none.exitCode != 0 && none.status == 0, "no client certificate: \(none.status) \(none.stderr)")
        let foreign = try await f.curl("partner", cert: "partner", certDir: f.otherCA)
        #expect(foreign.exitCode != 0 && foreign.status == 0, "another CA: \(foreign.status) \(foreign.stderr)")
        #expect(f.heads == 0)
        let ok = try await f.curl("partner", cert: "partner")
        #expect(ok.status == 200, "\(ok.stderr) \(ok.body)")
        let claims = try f.lastPassport()
        let expected = try ClientIdentity(pem: try String(contentsOfFile: f.state + "/partner.pem", encoding: .utf8), source: .tls)
        #expect(claims.certificate?.sans == [MTLSFixture.partner] && claims.certificate?.sha256 == expected.sha256)
        #expect(claims.level == 2, "a client certificate alone is one verified credential")
        // The fingerprint is what openssl computes.
        let openssl = try await TestSupport.run("/usr/bin/openssl", ["x509", "-in", f.state + "/partner.pem", "-noout", "-fingerprint", "-sha256"])
        #expect(openssl.stdout.lowercased().replacingOccurrences(of: ":", with: "").contains(expected.sha256))
        let heads = f.heads
        let denied = try await f.curl("partner", cert: "gateway-client")
        #expect(denied.status == 403 && denied.body.contains("\"error\":\"forbidden\""), "\(denied.status) \(denied.body)")
        #expect(f.heads == heads)
    }

    @Test("client_auth optional: no certificate is a request without an identity (mtls_authz: 403); a valid one is checked the same way")
    func optionalClientCertificates() async throws {
        let f = try await MTLSFixture.start()
        defer { Task { await f.stop() } }
        let none = try await f.curl("optional")
        #expect(none.status == 403 && none.body.contains("forbidden"))
        #expect(try await f.curl("optional", cert: "partner").status == 200)
        #expect(try await f.curl("optional", cert: "gateway-client").status == 403)
        let foreign = try await f.curl("optional", cert: "partner", certDir: f.otherCA)
        #expect(foreign.status == 0 && foreign.exitCode != 0, "a presented certificate must verify")
    }

    @Test("XFCC on a trusting listener: the last element's certificate is the identity, the same rules apply; malformed: 400; never forwarded")
    func trustedXFCC() async throws {
        let f = try await MTLSFixture.start()
        defer { Task { await f.stop() } }
        let partner = try f.xfccElement("partner")
        let other = try f.xfccElement("gateway-client")
        let ok = try await f.curl("mesh", headers: ["x-forwarded-client-cert: \(partner)"])
        #expect(ok.status == 200, "\(ok.body)")
        let claims = try f.lastPassport()
        #expect(claims.certificate?.sans == [MTLSFixture.partner])
        let got = try #require(f.upstream.received.withLockedValue { $0.last })
        #expect(header(got, "x-forwarded-client-cert").isEmpty, "XFCC must not reach the upstream")
        #expect(try await f.curl("mesh", headers: ["x-forwarded-client-cert: \(other),\(partner)"]).status == 200, "the last element counts")
        #expect(try await f.curl("mesh", headers: ["x-forwarded-client-cert: \(partner),\(other)"]).status == 403)
        #expect(try await f.curl("mesh").status == 403, "no XFCC and no client certificate: no identity")
        let heads = f.heads
        let pem = try String(contentsOfFile: f.state + "/partner.pem", encoding: .utf8)
        let malformed = [
            "By=x;Cert=\"unterminated",
            "Cert=\"not-a-certificate\"",
            try f.xfccElement("partner", hash: String(repeating: "0", count: 64)),
            "By=x;Hash=abc",
            "Cert=" + pem.replacingOccurrences(of: "\n", with: "%0A").prefix(200),
            ",",
        ]
        for value in malformed {
            let r = try await f.curl("mesh", headers: ["x-forwarded-client-cert: \(value)"])
            #expect(r.status == 400 && r.body.contains("\"error\":\"malformed_xfcc\""), "\(value.prefix(40)): \(r.status) \(r.body)")
        }
        #expect(f.heads == heads, "a malformed XFCC reached the upstream")
    }

    @Test("XFCC anywhere else: a forged header is removed and gives no identity (untrusted listener, or a peer outside trust_xfcc.from)")
    func untrustedXFCC() async throws {
        let f = try await MTLSFixture.start()
        defer { Task { await f.stop() } }
        let forged = try f.xfccElement("partner")
        let r = try await f.curl("public", headers: ["x-forwarded-client-cert: \(forged)"])
        #expect(r.status == 200)
        let got = try #require(f.upstream.received.withLockedValue { $0.last })
        #expect(header(got, "x-forwarded-client-cert").isEmpty, "a forged XFCC reached the upstream")
        let heads = f.heads
        let elsewhere = try await f.curl("mesh_elsewhere", headers: ["x-forwarded-client-cert: \(forged)"])
        #expect(elsewhere.status == 403, "127.0.0.1 is not in 10.0.0.0/8: the header must not count")
        #expect(f.heads == heads)
        let garbage = try await f.curl("public", headers: ["x-forwarded-client-cert: Cert=\"broken"])
        #expect(garbage.status == 200, "an untrusted listener does not even parse it")
    }

    @Test("SNI: several certificates on one listener, chosen by server name (exact, then *.domain); no match keeps the default")
    func sni() async throws {
        let state = try TestSupport.temporaryDirectory("sni")
        #expect(try await TestSupport.run(try TestSupport.gatewayBinary, ["certs", "dev", "--out", state]).code == 0)
        let made = try await TestSupport.run("/bin/bash", ["-c", """
            set -e; cd "\(state)"
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout sni-key.pem -out sni.csr -subj "/CN=api.test" 2>/dev/null
            printf "subjectAltName=DNS:api.test,DNS:*.partner.test\\nextendedKeyUsage=serverAuth\\n" > ext.cnf
            openssl x509 -req -in sni.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 -extfile ext.cnf -out sni.pem 2>/dev/null
            """])
        #expect(made.code == 0, "\(made.stderr)")
        let upstream = DemoUpstreamServer(name: "svc", group: MultiThreadedEventLoopGroup.singleton)
        let upstreamPort = try await upstream.start(port: 0)
        defer { Task { await upstream.stop() } }
        let port = try TestSupport.freePort()
        let gw = try await GatewayProcess.start(yaml: """
        listeners:
          - name: web
            address: "127.0.0.1:\(port)"
            tls: {cert: localhost.pem, key: localhost-key.pem, sni: [{server_names: [api.test, "*.partner.test"], cert: sni.pem, key: sni-key.pem}]}
        upstreams: [{name: svc, endpoints: ["127.0.0.1:\(upstreamPort)"]}]
        routes: [{name: r, listener: web, match: {path_prefix: /}, upstream: svc}]

        """, stateDir: state)
        defer { gw.stop() }
        for host in ["api.test", "acme.partner.test", "localhost"] {
            let r = try await Curl.request("https://\(host):\(port)/", caFile: state + "/ca.pem", args: ["--resolve", "\(host):\(port):127.0.0.1"])
            #expect(r.status == 200, "\(host): curl verified the name against the certificate served: \(r.stderr)")
        }
        func served(_ name: String) async throws -> String {
            try await TestSupport.run("/bin/bash", ["-c", "echo | openssl s_client -connect 127.0.0.1:\(port) -servername \(name) 2>/dev/null | openssl x509 -noout -subject"]).stdout
        }
        #expect(try await served("api.test").contains("api.test"))
        #expect(try await served("a.b.partner.test").contains("localhost"), "a wildcard matches one label only")
        #expect(try await served("other.test").contains("localhost"))
    }

    @Test("config: client_auth without client_ca, an unknown mode, a bad trust range, an mtls_authz without rules fail at load with their key path")
    func configErrors() async throws {
        let dir = try TestSupport.temporaryDirectory("mtls-config")
        try FileManager.default.createDirectory(atPath: dir + "/filters.d", withIntermediateDirectories: true)
        let r0 = try await TestSupport.run(try TestSupport.gatewayBinary, ["certs", "dev", "--out", dir])
        #expect(r0.code == 0)
        try """
        listeners:
          - {name: a, address: "127.0.0.1:0", tls: {cert: localhost.pem, key: localhost-key.pem, client_auth: require}}
          - {name: b, address: "127.0.0.1:0", tls: {cert: localhost.pem, key: localhost-key.pem, client_auth: sometimes, client_ca: ca.pem}}
          - {name: c, address: "127.0.0.1:0", trust_xfcc: {from: [10.0.0.0/33]}}
        upstreams: [{name: svc, endpoints: ["127.0.0.1:1"]}]
        routes:
          - {name: r, listener: c, match: {path_prefix: /}, upstream: svc}
        """.write(toFile: dir + "/filters.d/10-mtls.yaml", atomically: true, encoding: .utf8)
        let r = try await TestSupport.run(try TestSupport.gatewayBinary, ["check", "--config", dir + "/filters.d", "--state", dir])
        let text = r.stdout + r.stderr
        #expect(r.code != 0)
        for expected in ["10-mtls.yaml", "listeners[0].tls.client_ca", "client_auth: require needs at least one CA file",
                         "listeners[1].tls.client_auth", "'sometimes' is not none, optional or require", "listeners[2].trust_xfcc.from[0]"] {
            #expect(text.contains(expected), "missing '\(expected)' in: \(text)")
        }
        try """
        listeners: [{name: c, address: "127.0.0.1:0"}]
        upstreams: [{name: svc, endpoints: ["127.0.0.1:1"]}]
        routes:
          - {name: r, listener: c, match: {path_prefix: /}, upstream: svc, filters: [{mtls_authz: {allow: [{uri: a, dns: b}]}}]}
        """.write(toFile: dir + "/filters.d/10-mtls.yaml", atomically: true, encoding: .utf8)
        let r2 = try await TestSupport.run(try TestSupport.gatewayBinary, ["check", "--config", dir + "/filters.d", "--state", dir])
        #expect(r2.code != 0 && (r2.stdout + r2.stderr).contains("routes[0].filters[0].mtls_authz: allow[0]: exactly one of"), "\(r2.stdout)\(r2.stderr)")
    }
}
