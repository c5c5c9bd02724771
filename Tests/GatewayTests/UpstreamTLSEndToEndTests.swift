import Foundation
import Testing

@testable import Gateway

/// nginx from Debian, started by a test with the `server` blocks it gives,
/// in one process (no master: no worker outlives the test), access log in
/// its folder.
final class NginxProcess: @unchecked Sendable {
    let dir: String
    private var process: Process?

    init(servers: String, keepaliveRequests: Int = 1000) throws {
        dir = try TestSupport.temporaryDirectory("nginx")
        try """
        worker_processes 1;
        master_process off;
        daemon off;
        pid \(dir)/nginx.pid;
        error_log \(dir)/error.log warn;
        events { worker_connections 256; }
        http {
          access_log \(dir)/access.log;
          client_body_temp_path \(dir)/body;
          keepalive_requests \(keepaliveRequests);
        \(servers)
        }
        """.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
    }

    /// Starts nginx and waits until `port` accepts connections.
    func start(waitingFor port: Int) async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/nginx") else {
            throw TestError("nginx is not installed; `make test` installs it (apt-get install nginx)")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/sbin/nginx")
        p.arguments = ["-p", dir, "-c", dir + "/nginx.conf"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try TestSupport.launch(p)
        process = p
        do { try await TestSupport.waitForPort(port, what: "nginx") } catch {
            throw TestError("\(error): \((try? String(contentsOfFile: dir + "/error.log", encoding: .utf8)) ?? "")")
        }
    }

    /// Requests nginx answered (its access log).
    var requests: Int {
        ((try? String(contentsOfFile: dir + "/access.log", encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    func stop() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        process = nil
    }

    deinit { stop() }
}

/// nginx as a mesh service: TLS with a certificate that has only a SPIFFE URI
/// SAN, client certificates required, answering with what it verified and the
/// client certificate's serial.
enum NginxMTLSUpstream {
    static func start(certs: String, keepaliveRequests: Int = 1000) async throws -> (NginxProcess, Int) {
        let port = try TestSupport.freePort()
        let nginx = try NginxProcess(servers: """
          server {
            listen 127.0.0.1:\(port) ssl;
            ssl_certificate \(certs)/payments.pem;
            ssl_certificate_key \(certs)/payments-key.pem;
            ssl_client_certificate \(certs)/ca.pem;
            ssl_verify_client on;
            # Without it nginx completes the handshake and answers 400 itself;
            # with it a client without a certificate fails the handshake.
            ssl_conf_command VerifyMode Peer,Require;
            location / { default_type text/plain; return 200 "verify=$ssl_client_verify serial=$ssl_client_serial\\n"; }
          }
        """, keepaliveRequests: keepaliveRequests)
        try await nginx.start(waitingFor: port)
        return (nginx, port)
    }
}

@Suite("TLS and mTLS to upstreams, and certificates that rotate (PROTOCOL 3)", .serialized)
struct UpstreamTLSEndToEndTests {
    static func certs() async throws -> String {
        let dir = try TestSupport.temporaryDirectory("up-certs")
        let r = try await TestSupport.run(try TestSupport.gatewayBinary, ["certs", "dev", "--out", dir])
        guard r.code == 0 else { throw TestError("certs dev: \(r.stderr)") }
        return dir
    }

    static func gateway(state: String, upstreamPort: Int, tls: String, extraArgs: [String] = []) async throws -> (GatewayProcess, Int) {
        let port = try TestSupport.freePort()
        let gw = try await GatewayProcess.start(yaml: """
        listeners:
          - {name: mesh, address: "127.0.0.1:\(port)", tls: {cert: localhost.pem, key: localhost-key.pem}}
        upstreams:
          - name: payments
            endpoints: ["127.0.0.1:\(upstreamPort)"]
            tls: \(tls)
        routes:
          - {name: pay, listener: mesh, match: {path_prefix: /}, upstream: payments}

        """, stateDir: state, extraArgs: extraArgs)
        return (gw, port)
    }

    static let spiffe = "spiffe://cluster.local/ns/payments/sa/payments"

    @Test("mTLS to nginx (ssl_verify_client on) with a SPIFFE-only certificate: success; the wrong expected SPIFFE ID: 503, counted, nothing sent; the gateway without a client certificate: 503")
    func mtlsToNginx() async throws {
        let certs = try await Self.certs()
        let (nginx, nginxPort) = try await NginxMTLSUpstream.start(certs: certs)
        defer { nginx.stop() }
        let (gw, port) = try await Self.gateway(state: certs, upstreamPort: nginxPort, tls: """
        {ca: ca.pem, cert: gateway-client.pem, key: gateway-client-key.pem, verify_san: ["\(Self.spiffe)"]}
        """)
        defer { gw.stop() }
        let ok = try await Curl.request("https://localhost:\(port)/pay", caFile: certs + "/ca.pem")
        #expect(ok.status == 200 && ok.body.hasPrefix("verify=SUCCESS serial="), "\(ok.status) \(ok.body)")
        let serial = try await TestSupport.run("/usr/bin/openssl", ["x509", "-in", certs + "/gateway-client.pem", "-noout", "-serial"])
        #expect(ok.body.contains(serial.stdout.replacingOccurrences(of: "serial=", with: "").trimmingCharacters(in: .whitespacesAndNewlines)),
                "nginx saw another client certificate: \(ok.body)")

        let (wrong, wrongPort) = try await Self.gateway(state: certs, upstreamPort: nginxPort, tls: """
        {ca: ca.pem, cert: gateway-client.pem, key: gateway-client-key.pem, verify_san: ["spiffe://cluster.local/ns/accounts/sa/accounts"]}
        """)
        defer { wrong.stop() }
        let before = nginx.requests
        let r = try await Curl.request("https://localhost:\(wrongPort)/pay", caFile: certs + "/ca.pem")
        #expect(r.status == 503 && r.body.contains("\"error\":\"upstream_unavailable\""), "\(r.status) \(r.body)")
        #expect(nginx.requests == before, "a request reached an upstream whose identity did not match")
        let metrics = try await TestSupport.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(wrong.adminPort)/metrics"]).stdout
        #expect(metrics.contains("gateway_upstream_tls_failures_total") && metrics.contains("san_mismatch"), "\(metrics.split(separator: "\n").filter { $0.contains("tls") })")

        // The gateway without a client certificate: nginx refuses the handshake; 503, nothing served.
        let (noCert, noCertPort) = try await Self.gateway(state: certs, upstreamPort: nginxPort, tls: "{ca: ca.pem, verify_san: [\"\(Self.spiffe)\"]}")
        defer { noCert.stop() }
        let refused = try await Curl.request("https://localhost:\(noCertPort)/pay", caFile: certs + "/ca.pem")
        #expect(refused.status == 503 && refused.body.contains("upstream_unavailable"), "\(refused.status) \(refused.body)")
        #expect(nginx.requests == before, "nginx served a request from a gateway without a client certificate")
    }

    @Test("an upstream that requires a client certificate the gateway does not have: 503 and the service handles nothing (a Python TLS server with CERT_REQUIRED); a CA that did not sign the upstream: 503")
    func missingClientCertificate() async throws {
        let certs = try await Self.certs()
        let port = try TestSupport.freePort()
        let marker = certs + "/handled"
        let server = """
        import http.server, ssl, sys
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                open(sys.argv[3], "a").write("x\\n")
                self.send_response(200); self.send_header("content-length", "2"); self.end_headers(); self.wfile.write(b"ok")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=sys.argv[2] + "/ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_cert_chain(sys.argv[2] + "/payments.pem", sys.argv[2] + "/payments-key.pem")
        s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
        s.socket = ctx.wrap_socket(s.socket, server_side=True)
        s.serve_forever()
        """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", server, String(port), certs, marker]
        p.standardError = FileHandle.nullDevice
        try TestSupport.launch(p)
        defer { kill(p.processIdentifier, SIGKILL) }
        try await TestSupport.waitForPort(port, what: "the Python TLS server")
        let (noCert, noCertPort) = try await Self.gateway(state: certs, upstreamPort: port, tls: "{ca: ca.pem, verify_san: [\"\(Self.spiffe)\"]}")
        defer { noCert.stop() }
        let r = try await Curl.request("https://localhost:\(noCertPort)/", caFile: certs + "/ca.pem")
        #expect(r.status == 503 && r.body.contains("upstream_unavailable"), "\(r.status) \(r.body)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the service handled a request from a gateway without a certificate")
        // With the certificate, the same service answers.
        let (withCert, withCertPort) = try await Self.gateway(state: certs, upstreamPort: port, tls: """
        {ca: ca.pem, cert: gateway-client.pem, key: gateway-client-key.pem, verify_san: ["\(Self.spiffe)"]}
        """)
        defer { withCert.stop() }
        let ok = try await Curl.request("https://localhost:\(withCertPort)/", caFile: certs + "/ca.pem")
        #expect(ok.status == 200 && ok.body == "ok", "\(ok.status) \(ok.body)")
        // Another CA: the chain does not verify.
        let other = try await Self.certs()
        try FileManager.default.copyItem(atPath: other + "/ca.pem", toPath: certs + "/other-ca.pem")
        let (foreign, foreignPort) = try await Self.gateway(state: certs, upstreamPort: port, tls: """
        {ca: other-ca.pem, cert: gateway-client.pem, key: gateway-client-key.pem, verify_san: ["\(Self.spiffe)"]}
        """)
        defer { foreign.stop() }
        #expect(try await Curl.request("https://localhost:\(foreignPort)/", caFile: certs + "/ca.pem").status == 503)
    }

    /// Sends requests through the gateway from 4 threads for `seconds`; prints
    /// a JSON summary: statuses, failures, and the nginx answers seen.
    static let load = """
    import http.client, json, ssl, sys, threading, time
    port, ca, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    ctx = ssl.create_default_context(cafile=ca)
    statuses, failures, bodies, lock = {}, [], set(), threading.Lock()
    def run():
        end = time.time() + seconds
        while time.time() < end:
            try:
                c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
                for _ in range(5):
                    c.request("GET", "/pay")
                    r = c.getresponse(); body = r.read().decode()
                    with lock:
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                        bodies.add(body.strip())
                c.close()
            except Exception as e:
                with lock: failures.append(repr(e))
    ts = [threading.Thread(target=run) for _ in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
    print(json.dumps({"statuses": statuses, "failures": failures, "bodies": sorted(bodies)}))
    """

    @Test("rotation under load: the listener's and the upstream client's certificate files are replaced while requests flow; none fails, new handshakes present the new certificates; a broken file is refused and the old one keeps serving")
    func rotationUnderLoad() async throws {
        let certs = try await Self.certs()
        // nginx closes each connection after 3 requests, so the pool keeps making new handshakes.
        let (nginx, nginxPort) = try await NginxMTLSUpstream.start(certs: certs, keepaliveRequests: 3)
        defer { nginx.stop() }
        let (gw, port) = try await Self.gateway(state: certs, upstreamPort: nginxPort, tls: """
        {ca: ca.pem, cert: gateway-client.pem, key: gateway-client-key.pem, verify_san: ["\(Self.spiffe)"]}
        """, extraArgs: ["--cert-check", "200ms"])
        defer { gw.stop() }
        func servedFingerprint() async throws -> String {
            let r = try await TestSupport.run("/bin/bash", ["-c",
                "echo | openssl s_client -connect 127.0.0.1:\(port) -servername localhost 2>/dev/null | openssl x509 -noout -fingerprint -sha256"])
            return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func fileFingerprint(_ path: String) async throws -> String {
            try await TestSupport.run("/usr/bin/openssl", ["x509", "-in", path, "-noout", "-fingerprint", "-sha256"]).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func serial(_ path: String) async throws -> String {
            try await TestSupport.run("/usr/bin/openssl", ["x509", "-in", path, "-noout", "-serial"]).stdout
                .replacingOccurrences(of: "serial=", with: "").trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let oldListener = try await servedFingerprint()
        #expect(oldListener == (try await fileFingerprint(certs + "/localhost.pem")))
        let oldClientSerial = try await serial(certs + "/gateway-client.pem")

        // New leaves from the same CA, made aside, then moved into place mid-load.
        let fresh = try TestSupport.temporaryDirectory("up-certs-new")
        for f in ["ca.pem", "ca-key.pem"] { try FileManager.default.copyItem(atPath: "\(certs)/\(f)", toPath: "\(fresh)/\(f)") }
        let made = try await TestSupport.run(try TestSupport.gatewayBinary, ["certs", "dev", "--out", fresh])
        #expect(made.code == 0)
        let newClientSerial = try await serial(fresh + "/gateway-client.pem")
        #expect(newClientSerial != oldClientSerial)

        async let loadResult = TestSupport.run("/usr/bin/env", ["python3", "-c", Self.load, String(port), certs + "/ca.pem", "4"])
        try await Task.sleep(nanoseconds: 1_000_000_000)
        for name in ["localhost", "gateway-client"] {
            // Key first, then certificate, each by rename: a reader sees old or new files, never half of one.
            for suffix in ["-key.pem", ".pem"] {
                try FileManager.default.copyItem(atPath: "\(fresh)/\(name)\(suffix)", toPath: "\(certs)/\(name)\(suffix).new")
                #expect(rename("\(certs)/\(name)\(suffix).new", "\(certs)/\(name)\(suffix)") == 0)
            }
        }
        let result = try await loadResult
        let summary = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout) \(result.stderr)")
        let failures = summary["failures"] as? [String] ?? ["?"]
        let statuses = summary["statuses"] as? [String: Int] ?? [:]
        #expect(failures.isEmpty, "requests failed during rotation: \(failures.prefix(3))")
        #expect(statuses.keys.sorted() == ["200"], "\(statuses)")
        #expect((statuses["200"] ?? 0) > 50, "too little load to mean anything: \(statuses)")
        let bodies = summary["bodies"] as? [String] ?? []
        #expect(bodies.contains { $0.contains(oldClientSerial) } && bodies.contains { $0.contains(newClientSerial) },
                "nginx should have seen the old client certificate, then the new one: \(bodies)")
        #expect(try await servedFingerprint() == (try await fileFingerprint(certs + "/localhost.pem")), "new handshakes present the new certificate")
        #expect(await gw.logEventually(contains: "TLS material reloaded"))

        // A broken certificate file: refused, logged, and the previous one keeps serving.
        let current = try await servedFingerprint()
        try "not a certificate\n".write(toFile: certs + "/localhost.pem", atomically: true, encoding: .utf8)
        #expect(await gw.logEventually(contains: "was refused; the previous certificate keeps serving", timeout: 5))
        #expect(try await servedFingerprint() == current)
        #expect(try await Curl.request("https://localhost:\(port)/pay", caFile: certs + "/ca.pem").status == 200)
    }

    @Test("config: an upstream tls without ca, with a cert but no key, or with neither server_name nor verify_san fails at load")
    func configErrors() async throws {
        let certs = try await Self.certs()
        try FileManager.default.createDirectory(atPath: certs + "/filters.d", withIntermediateDirectories: true)
        try """
        listeners: [{name: l, address: "127.0.0.1:0"}]
        upstreams:
          - {name: a, endpoints: ["127.0.0.1:1"], tls: {verify_san: ["\(Self.spiffe)"]}}
          - {name: b, endpoints: ["127.0.0.1:1"], tls: {ca: ca.pem, cert: gateway-client.pem, server_name: x}}
          - {name: c, endpoints: ["127.0.0.1:1"], tls: {ca: ca.pem}}
          - {name: d, endpoints: ["127.0.0.1:1"], tls: {ca: missing.pem, server_name: x}}
        routes: []
        """.write(toFile: certs + "/filters.d/10.yaml", atomically: true, encoding: .utf8)
        let r = try await TestSupport.run(try TestSupport.gatewayBinary, ["check", "--config", certs + "/filters.d", "--state", certs])
        let text = r.stdout + r.stderr
        #expect(r.code != 0)
        for expected in ["upstreams[0].tls.ca", "upstreams[1].tls.key", "upstreams[2].tls: needs server_name", "upstreams[3].tls.ca[0]: file not found"] {
            #expect(text.contains(expected), "missing '\(expected)' in \(text)")
        }
    }
}

@Suite("HTTP/2 to upstreams: h2 over TLS (ALPN) and h2c with prior knowledge, multiplexed", .serialized)
struct UpstreamHTTP2EndToEndTests {
    @Test("nginx over h2 (TLS, SPIFFE check) and h2c: requests arrive as HTTP/2.0, 40 concurrent requests share a few connections, bodies both ways")
    func h2AndH2c() async throws {
        let certs = try await UpstreamTLSEndToEndTests.certs()
        let tlsPort = try TestSupport.freePort(), clearPort = try TestSupport.freePort()
        let answer = #"location / { default_type text/plain; return 200 "proto=$server_protocol conn=$connection len=$content_length gw=[$http_x_gw_kid] host=$host\n"; }"#
        let nginx = try NginxProcess(servers: """
          server {
            listen 127.0.0.1:\(tlsPort) ssl http2;
            ssl_certificate \(certs)/payments.pem;
            ssl_certificate_key \(certs)/payments-key.pem;
            \(answer)
          }
          server {
            listen 127.0.0.1:\(clearPort) http2;
            \(answer)
          }
        """)
        try await nginx.start(waitingFor: tlsPort)
        defer { nginx.stop() }
        try await TestSupport.waitForPort(clearPort, what: "nginx h2c")
        let port = try TestSupport.freePort()
        let gw = try await GatewayProcess.start(yaml: """
        listeners:
          - {name: l, address: "127.0.0.1:\(port)", tls: {cert: localhost.pem, key: localhost-key.pem}}
        upstreams:
          - name: secure
            endpoints: ["127.0.0.1:\(tlsPort)"]
            protocol: h2
            tls: {ca: ca.pem, verify_san: ["\(UpstreamTLSEndToEndTests.spiffe)"]}
          - name: clear
            endpoints: ["127.0.0.1:\(clearPort)"]
            protocol: h2c
        routes:
          - {name: secure, listener: l, match: {path_prefix: /secure}, upstream: secure}
          - {name: clear, listener: l, match: {path_prefix: /clear}, upstream: clear, filters: [{headers: {request: {set: {x-gw-kid: forged}}}}]}

        """, stateDir: certs)
        defer { gw.stop() }
        for path in ["/secure/x", "/clear/x"] {
            let get = try await Curl.request("https://localhost:\(port)\(path)", caFile: certs + "/ca.pem")
            #expect(get.status == 200 && get.body.hasPrefix("proto=HTTP/2.0"), "\(path): \(get.status) \(get.body)")
            // The upstream's own :authority, and no X-Gw-* header even when a filter sets one (PROTOCOL 2.5).
            #expect(get.body.contains("gw=[] host=127.0.0.1"), "\(path): \(get.body)")
            let post = try await Curl.request("https://localhost:\(port)\(path)", caFile: certs + "/ca.pem", args: ["--data-binary", "hello h2"])
            #expect(post.status == 200 && post.body.contains("len=8"), "\(path): \(post.body)")
            // A chunked request body (no length) is sent as DATA frames all the same.
            let chunked = try await Curl.request("https://localhost:\(port)\(path)", caFile: certs + "/ca.pem",
                                                 args: ["--http1.1", "-H", "transfer-encoding: chunked", "--data-binary", "abc"])
            #expect(chunked.status == 200, "\(path) chunked: \(chunked.status) \(chunked.body)")
        }
        // 40 requests at once: streams on shared connections (2 event loops: at most 2 connections here).
        let script = """
        import http.client, ssl, sys, threading
        ctx = ssl.create_default_context(cafile=sys.argv[2])
        out, lock = [], threading.Lock()
        def one():
            c = http.client.HTTPSConnection("localhost", int(sys.argv[1]), context=ctx, timeout=10)
            c.request("GET", "/clear/many"); r = c.getresponse(); b = r.read().decode()
            with lock: out.append((r.status, b.strip()))
        ts = [threading.Thread(target=one) for _ in range(40)]
        [t.start() for t in ts]; [t.join() for t in ts]
        for s, b in out: print(s, b)
        """
        let r = try await TestSupport.run("/usr/bin/env", ["python3", "-c", script, String(port), certs + "/ca.pem"])
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 40 && lines.allSatisfy { $0.hasPrefix("200 proto=HTTP/2.0") }, "\(r.stdout) \(r.stderr)")
        let connections = Set(lines.compactMap { $0.split(separator: " ").first { $0.hasPrefix("conn=") } })
        #expect(connections.count <= 3, "40 requests should share a few HTTP/2 connections, not \(connections.count)")
    }

    @Test("config: h2 without tls, h2c with tls, an unknown protocol fail at load")
    func configErrors() async throws {
        let dir = try TestSupport.temporaryDirectory("h2-config")
        try FileManager.default.createDirectory(atPath: dir + "/filters.d", withIntermediateDirectories: true)
        #expect(try await TestSupport.run(try TestSupport.gatewayBinary, ["certs", "dev", "--out", dir]).code == 0)
        try """
        listeners: [{name: l, address: "127.0.0.1:0"}]
        upstreams:
          - {name: a, endpoints: ["127.0.0.1:1"], protocol: h2}
          - {name: b, endpoints: ["127.0.0.1:1"], protocol: h2c, tls: {ca: ca.pem, server_name: x}}
          - {name: c, endpoints: ["127.0.0.1:1"], protocol: spdy}
        routes: []
        """.write(toFile: dir + "/filters.d/10.yaml", atomically: true, encoding: .utf8)
        let r = try await TestSupport.run(try TestSupport.gatewayBinary, ["check", "--config", dir + "/filters.d", "--state", dir])
        let text = r.stdout + r.stderr
        for expected in ["upstreams[0].protocol: h2 needs tls", "upstreams[1].protocol: h2c is cleartext", "upstreams[2].protocol: 'spdy'"] {
            #expect(text.contains(expected), "missing '\(expected)' in \(text)")
        }
    }
}
