import Foundation
import Testing

@testable import Gateway

@Suite("admin endpoints, access log, listener limits", .serialized)
struct AdminAndLimitsTests {
    @Test("/healthz, /readyz, /admin/config and /metrics by route and status class")
    func adminEndpoints() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        _ = try await Curl.request(f.url("/api/one"), caFile: f.ca)
        _ = try await Curl.request(f.url("/api/two"), caFile: f.ca, args: ["--http2"])
        _ = try await Curl.request(f.url("/down/x"), caFile: f.ca)
        let health = try await TestSupport.run("/usr/bin/curl", ["-sS", f.adminURL + "/healthz"])
        #expect(health.stdout == "ok\n")
        let ready = try await TestSupport.run("/usr/bin/curl", ["-sS", "-w", "%{http_code}", f.adminURL + "/readyz"])
        #expect(ready.stdout.hasSuffix("200"))
        let config = try await TestSupport.run("/usr/bin/curl", ["-sS", f.adminURL + "/admin/config"])
        #expect(config.stdout.contains("\"digest\":\""))
        #expect(config.stdout.contains("\"routes\":[\"svc\",\"raw\",\"down\",\"get-only\",\"small\"]}"))
        let metrics = try await TestSupport.run("/usr/bin/curl", ["-sS", f.adminURL + "/metrics"]).stdout
        #expect(metrics.contains("gateway_requests_total{route=\"svc\",status_class=\"2xx\"} 2"), "\(metrics)")
        #expect(metrics.contains("gateway_requests_total{route=\"down\",status_class=\"5xx\"} 1"))
        #expect(metrics.contains("gateway_rejections_total{route=\"down\",reason=\"upstream_unavailable\"} 1"))
        #expect(metrics.contains("gateway_request_duration_seconds_count{route=\"svc\"} 2"))
        #expect(metrics.contains("gateway_request_duration_seconds_bucket{route=\"svc\""))
        #expect(metrics.contains("gateway_upstream_connections_idle{upstream=\"svc\"}"))
        #expect(metrics.contains("gateway_upstream_connect_failures_total{upstream=\"down\"} 1"))
        #expect(metrics.contains("gateway_config_info{digest="))
        let unknown = try await TestSupport.run("/usr/bin/curl", ["-sS", "-w", "%{http_code}", f.adminURL + "/nope"])
        #expect(unknown.stdout.hasSuffix("404"))
    }

    @Test("the access log has one JSON line per request and never credentials or the query string")
    func accessLogHasNoSecrets() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await Curl.request(f.url("/api/me?access_token=query-secret"), caFile: f.ca, args: [
            "-H", "authorization: Bearer header-secret", "-H", "cookie: session=cookie-secret", "-H", "x-passport: passport-secret",
        ])
        #expect(r.status == 200)
        let requestID = try #require(r.headers["x-request-id"])
        #expect(await f.gateway.logEventually(contains: requestID))
        let lines = f.gateway.log.split(separator: "\n").filter { $0.contains("\"type\":\"access\"") }
        #expect(lines.count == 1)
        let line = try #require(lines.first)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(json["request_id"] as? String == requestID)
        #expect(json["route"] as? String == "svc")
        #expect(json["upstream"] as? String == "svc")
        #expect(json["status"] as? Int == 200)
        #expect(json["path"] as? String == "/api/me")
        #expect(json["listener"] as? String == "public")
        #expect(json["duration_ms"] != nil && json["bytes_out"] != nil)
        for secret in ["query-secret", "header-secret", "cookie-secret", "passport-secret"] {
            #expect(!f.gateway.log.contains(secret), "\(secret) reached the log")
        }
    }

    @Test("more headers than max_headers: 431, nothing reaches the upstream")
    func tooManyHeaders() async throws {
        let f = try await ProxyFixture.start(limits: "{max_headers: 10}")
        defer { Task { await f.stop() } }
        var args: [String] = []
        for i in 0..<12 { args += ["-H", "x-h\(i): v"] }
        for version in ["--http1.1", "--http2"] {
            let r = try await Curl.request(f.url("/api/x"), caFile: f.ca, args: [version] + args)
            #expect(r.status == 431)
            #expect(r.body.contains("\"error\":\"request_header_fields_too_large\""))
        }
        #expect(f.upstreamHeads == 0)
    }

    @Test("a head bigger than max_head_size: 431")
    func headTooLarge() async throws {
        let f = try await ProxyFixture.start(limits: "{max_head_size: 4KiB}")
        defer { Task { await f.stop() } }
        let big = String(repeating: "a", count: 5000)
        let r = try await Curl.request(f.url("/api/x"), caFile: f.ca, args: ["--http1.1", "-H", "x-big: \(big)"])
        #expect(r.status == 431)
        #expect(f.upstreamHeads == 0)
    }

    @Test("slow header delivery: the connection is closed after header_timeout")
    func slowloris() async throws {
        let f = try await ProxyFixture.start(limits: "{header_timeout: 300ms, idle_timeout: 600ms}")
        defer { Task { await f.stop() } }
        let r = try await TestSupport.pythonTLSClient(ca: f.ca, port: f.port, """
        start = time.time()
        s.sendall(b"GET /api/x HTTP/1.1\\r\\nHost: localhost\\r\\n")
        data = None
        for i in range(60):
            try:
                s.sendall(b"x-slow: 1\\r\\n")
            except OSError:
                data = b""
                break
            readable, _, _ = select.select([s], [], [], 0.05)
            if readable:
                try:
                    data = s.recv(100)
                except OSError:
                    data = b""
                break
        if data is None:
            data = b"still open"
        print("closed after %.2f s, got %d bytes" % (time.time() - start, len(data)))
        """)
        #expect(r.code == 0, "\(r.stderr)")
        let seconds = Double(r.stdout.split(separator: " ")[2]) ?? 99
        #expect(seconds < 1.5, "\(r.stdout)")
        #expect(r.stdout.contains("got 0 bytes"))
        #expect(f.upstreamHeads == 0)
    }

    @Test("an idle keep-alive connection is closed after idle_timeout")
    func idleKeepAlive() async throws {
        let f = try await ProxyFixture.start(limits: "{idle_timeout: 300ms}")
        defer { Task { await f.stop() } }
        let r = try await TestSupport.pythonTLSClient(ca: f.ca, port: f.port, """
        s.sendall(b"GET /api/x HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n")
        s.settimeout(5)
        buf = b""
        while b"\\r\\n\\r\\n" not in buf:
            buf += s.recv(4096)
        start = time.time()
        while True:
            try:
                if not s.recv(4096):
                    break
            except OSError:
                break
        print("%.2f" % (time.time() - start))
        """)
        #expect(r.code == 0, "\(r.stderr)")
        let waited = Double(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 99
        #expect(waited > 0.1 && waited < 2, "\(r.stdout)")
    }

    @Test("requests the proxy refuses itself: 400, nothing reaches the upstream", arguments: [
        ("GET /api/x HTTP/1.1\\r\\n\\r\\n", "bad_request"),                                      // no Host
        ("GET /api/x HTTP/1.1\\r\\nHost: a\\r\\nHost: b\\r\\n\\r\\n", "invalid_host"),              // two Hosts
        ("GET http://evil.example/api/x HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n", "bad_request"),  // absolute-form
    ])
    func proxyRejections(request: String, code: String) async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await TestSupport.pythonTLSClient(ca: f.ca, port: f.port, """
        s.sendall(b"\(request)")
        data = read_all()
        print(data.split(b"\\r\\n")[0].decode())
        print(data.split(b"\\r\\n\\r\\n", 1)[1].decode())
        """)
        #expect(r.stdout.hasPrefix("HTTP/1.1 400"), "\(r.stdout) \(r.stderr)")
        #expect(r.stdout.contains("\"error\":\"\(code)\""))
        #expect(f.upstreamHeads == 0)
    }

    @Test("malformed HTTP/1.1 gets 400 and the connection closes; nothing reaches the upstream")
    func malformedRequest() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await TestSupport.pythonTLSClient(ca: f.ca, port: f.port, """
        s.sendall(b"GET /api/x HTTP/1.1\\r\\nHost: localhost\\r\\nBad Header\\r\\n\\r\\n")
        data = read_all()
        print(data.split(b"\\r\\n")[0].decode())
        """)
        #expect(r.stdout.hasPrefix("HTTP/1.1 400"), "\(r.stdout) \(r.stderr)")
        #expect(f.upstreamHeads == 0)
    }
}
