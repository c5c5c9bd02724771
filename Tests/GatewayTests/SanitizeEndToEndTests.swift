import Foundation
import NIOPosix
import Testing

@testable import Gateway

/// A gateway with a plaintext listener (for raw HTTP/1.1 bytes) and a TLS one
/// (for raw HTTP/2 frames), both routing `/admin` to the `admin` upstream and
/// everything else to `svc`: a path trick that slips past the `/admin` route
/// shows up as a request at `svc`.
final class SanitizeFixture: @unchecked Sendable {
    let state: String
    let upstream: DemoUpstreamServer
    let admin: DemoUpstreamServer
    let gateway: GatewayProcess
    let plainPort: Int
    let tlsPort: Int
    var ca: String { state + "/ca.pem" }

    private init(state: String, upstream: DemoUpstreamServer, admin: DemoUpstreamServer, gateway: GatewayProcess,
                 plainPort: Int, tlsPort: Int) {
        self.state = state
        self.upstream = upstream
        self.admin = admin
        self.gateway = gateway
        self.plainPort = plainPort
        self.tlsPort = tlsPort
    }

    static func start() async throws -> SanitizeFixture {
        let state = try TestSupport.temporaryDirectory("sanitize")
        try await TestSupport.makeCertificates(in: state)
        let upstream = DemoUpstreamServer(name: "svc", group: MultiThreadedEventLoopGroup.singleton)
        let upstreamPort = try await upstream.start(port: 0)
        let admin = DemoUpstreamServer(name: "admin", group: MultiThreadedEventLoopGroup.singleton)
        let adminPort = try await admin.start(port: 0)
        let plainPort = try TestSupport.freePort()
        let tlsPort = try TestSupport.freePort()
        var yaml = """
        listeners:
          - name: raw
            address: 127.0.0.1:\(plainPort)
            limits: {max_body: 1KiB, max_head_size: 4KiB, max_headers: 20, header_timeout: 1s}
            sanitize:
              strip_request_headers: [x-user-id, "x-internal-*"]
              strip_response_headers: [server, x-powered-by]
          - name: public
            address: 127.0.0.1:\(tlsPort)
            tls: {cert: localhost.pem, key: localhost-key.pem}
            limits: {max_body: 1KiB}
        upstreams:
          - name: svc
            endpoints: ["127.0.0.1:\(upstreamPort)"]
          - name: admin
            endpoints: ["127.0.0.1:\(adminPort)"]
        routes:

        """
        for listener in ["raw", "public"] {
            yaml += """
              - name: \(listener)-admin
                listener: \(listener)
                match: {path_prefix: /admin}
                upstream: admin
              - name: \(listener)-strict
                listener: \(listener)
                match: {path_prefix: /strict}
                upstream: svc
                filters:
                  - sanitize:
                      methods: [POST]
                      content_types: [application/json]
                      query: {deny: [debug]}
                      params: {limit: {type: int, min: 1, max: 10, out_of_range: clamp}}
                      max_body: 512
                      json: {max_depth: 4}
              - name: \(listener)-trailers
                listener: \(listener)
                match: {path_prefix: /trailers}
                upstream: svc
                allow_trailers: true
              - name: \(listener)-all
                listener: \(listener)
                match: {path_prefix: /}
                upstream: svc

            """
        }
        let gateway = try await GatewayProcess.start(yaml: yaml, stateDir: state)
        return SanitizeFixture(state: state, upstream: upstream, admin: admin, gateway: gateway, plainPort: plainPort,
                               tlsPort: tlsPort)
    }

    var heads: Int { upstream.heads.withLockedValue { $0 } }

    /// Whether the gateway's leased upstream connections return to 0 within 2 s.
    func upstreamConnectionsSettle() async -> Bool {
        for _ in 0..<40 {
            let metrics = (try? await TestSupport.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(gateway.adminPort)/metrics"]).stdout) ?? ""
            let active = metrics.split(separator: "\n").filter { $0.hasPrefix("gateway_upstream_connections_active{") }
            if !active.isEmpty && active.allSatisfy({ $0.hasSuffix(" 0.0") || $0.hasSuffix(" 0") }) { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
    var received: [ReceivedRequest] { upstream.received.withLockedValue { $0 } }

    func stop() async {
        gateway.stop()
        await upstream.stop()
        await admin.stop()
        try? FileManager.default.removeItem(atPath: state)
        try? FileManager.default.removeItem(atPath: gateway.dir)
    }

    struct RawResult: Decodable {
        var statuses: [Int]
        var errors: [String]
        var closed: Bool
        var raw: String
    }

    /// Sends `bytes` on a new plaintext connection and reads until the
    /// gateway closes it (or 3 s pass): every status line and error code seen.
    func raw(_ bytes: [UInt8]) async throws -> RawResult {
        let script = """
        import json, re, socket, sys
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
        s.sendall(bytes.fromhex(sys.argv[2]))
        out = b""; closed = True
        try:
            while True:
                d = s.recv(65536)
                if not d: break
                out += d
        except socket.timeout:
            closed = False
        except ConnectionResetError:
            pass
        statuses = [int(m) for m in re.findall(rb"(?m)^HTTP/1\\.1 (\\d{3}) ", out)]
        errors = [e.decode() for e in re.findall(rb'"error":"([a-z_]+)"', out)]
        print(json.dumps({"statuses": statuses, "errors": errors, "closed": closed, "raw": out[:600].decode("latin-1")}))
        """
        let hex = bytes.map { String(format: "%02x", $0) }.joined()
        let r = try await TestSupport.run("/usr/bin/env", ["python3", "-c", script, String(plainPort), hex])
        guard r.code == 0, let data = r.stdout.data(using: .utf8) else { throw TestFailure("raw client failed: \(r.stderr)") }
        return try JSONDecoder().decode(RawResult.self, from: data)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One malformed or ambiguous HTTP/1.1 request and what the gateway must do.
struct RawCase: Sendable {
    let name: String
    let bytes: String
    /// The statuses the client gets, in order (a well-formed request before the
    /// bad one is answered first).
    var statuses: [Int] = [400]
    /// The error code of the last answer; nil when the answer carries no body.
    var error: String? = "bad_request"
    /// Requests the upstream must have received from this case.
    var forwarded = 0
    /// A streamed body refused midway: its head may have gone upstream, never the whole request.
    var partialMayReach = false
}

@Suite("request sanitizing end to end", .serialized)
struct SanitizeEndToEndTests {
    static let get = "GET / HTTP/1.1\r\nHost: a\r\n"
    static let post = "POST / HTTP/1.1\r\nHost: a\r\n"

    static let h1Corpus: [RawCase] = [
        // Content-Length and Transfer-Encoding together, or ambiguous.
        RawCase(name: "CL.TE", bytes: post + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        RawCase(name: "TE.CL", bytes: post + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n"),
        RawCase(name: "duplicate CL", bytes: post + "Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd"),
        RawCase(name: "CL list", bytes: post + "Content-Length: 4, 4\r\n\r\nabcd"),
        RawCase(name: "CL with sign", bytes: post + "Content-Length: +4\r\n\r\nabcd"),
        RawCase(name: "CL negative", bytes: post + "Content-Length: -1\r\n\r\n"),
        RawCase(name: "CL hex", bytes: post + "Content-Length: 0x4\r\n\r\nabcd"),
        RawCase(name: "CL inner space", bytes: post + "Content-Length: 1 2\r\n\r\nabcd"),
        RawCase(name: "CL empty", bytes: post + "Content-Length: \r\n\r\n"),
        RawCase(name: "CL overflow", bytes: post + "Content-Length: 99999999999999999999999\r\n\r\n"),
        // TE.TE obfuscations.
        RawCase(name: "TE identity", bytes: post + "Transfer-Encoding: identity\r\n\r\n"),
        RawCase(name: "TE list gzip, chunked", bytes: post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
        RawCase(name: "TE list chunked, chunked", bytes: post + "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n"),
        RawCase(name: "TE uppercase", bytes: post + "Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n"),
        RawCase(name: "TE trailing space", bytes: post + "Transfer-Encoding: chunked \r\n\r\n0\r\n\r\n"),
        RawCase(name: "TE xchunked", bytes: post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        RawCase(name: "TE twice", bytes: post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        RawCase(name: "TE space before colon", bytes: post + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
        RawCase(name: "TE obs-fold", bytes: post + "X-A: b\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        RawCase(name: "TE on HTTP/1.0", bytes: "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        // Chunk-size tricks.
        RawCase(name: "chunk size overflow", bytes: post + "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\nabcd\r\n0\r\n\r\n"),
        RawCase(name: "chunk size junk", bytes: post + "Transfer-Encoding: chunked\r\n\r\n4x\r\nabcd\r\n0\r\n\r\n"),
        RawCase(name: "chunk size negative", bytes: post + "Transfer-Encoding: chunked\r\n\r\n-4\r\nabcd\r\n0\r\n\r\n"),
        RawCase(name: "chunk extension with NUL", bytes: post + "Transfer-Encoding: chunked\r\n\r\n4;\u{0}\r\nabcd\r\n0\r\n\r\n"),
        RawCase(name: "chunk bare LF", bytes: post + "Transfer-Encoding: chunked\r\n\r\n4\nabcd\n0\n\n"),
        RawCase(name: "chunk data overrun", bytes: post + "Transfer-Encoding: chunked\r\n\r\n4\r\nabcdX0\r\n\r\n"),
        RawCase(name: "trailer smuggling Content-Length", bytes: post + "Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\nX-Passport: x\r\n\r\n"),
        // Line endings, control bytes, header-name tricks.
        RawCase(name: "obs-fold", bytes: get + "X-A: b\r\n c\r\n\r\n"),
        RawCase(name: "bare LF line endings", bytes: "GET / HTTP/1.1\nHost: a\n\n"),
        RawCase(name: "bare LF in headers", bytes: "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n"),
        RawCase(name: "bare CR", bytes: "GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n"),
        RawCase(name: "NUL in value", bytes: get + "X-A: b\u{0}c\r\n\r\n"),
        RawCase(name: "control byte in value", bytes: get + "X-A: b\u{1}c\r\n\r\n"),
        RawCase(name: "NUL in name", bytes: get + "X-\u{0}A: b\r\n\r\n"),
        RawCase(name: "space before colon", bytes: get + "X-A : b\r\n\r\n"),
        RawCase(name: "empty header name", bytes: get + ": b\r\n\r\n"),
        RawCase(name: "invalid name character", bytes: get + "X(A): b\r\n\r\n"),
        RawCase(name: "header without colon", bytes: get + "Bad Header\r\n\r\n"),
        // Request line.
        RawCase(name: "invalid method", bytes: "G@T / HTTP/1.1\r\nHost: a\r\n\r\n"),
        RawCase(name: "lowercase method", bytes: "get / HTTP/1.1\r\nHost: a\r\n\r\n"),
        RawCase(name: "absolute-form target", bytes: "GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n"),
        RawCase(name: "authority-form target on GET", bytes: "GET evil:80 HTTP/1.1\r\nHost: a\r\n\r\n"),
        RawCase(name: "asterisk target on GET", bytes: "GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
        // NIO never writes a body after a CONNECT request; the code is in the access log.
        RawCase(name: "CONNECT", bytes: "CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n", error: nil),
        RawCase(name: "HTTP/0.9", bytes: "GET /\r\n\r\n"),
        RawCase(name: "HTTP/1.2", bytes: "GET / HTTP/1.2\r\nHost: a\r\n\r\n"),
        RawCase(name: "HTTP/2.0 over HTTP/1 framing", bytes: "GET / HTTP/2.0\r\nHost: a\r\n\r\n"),
        RawCase(name: "space in target", bytes: "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"),
        RawCase(name: "control byte in target", bytes: "GET /a\u{1}b HTTP/1.1\r\nHost: a\r\n\r\n"),
        // Outside RFC 3986's characters: the upstream could not be sent it.
        RawCase(name: "quote and braces in target", bytes: "GET /a\"{b} HTTP/1.1\r\nHost: a\r\n\r\n"),
        RawCase(name: "trailing space in request line", bytes: "GET / HTTP/1.1 \r\nHost: a\r\n\r\n"),
        // Host.
        RawCase(name: "no Host on HTTP/1.1", bytes: "GET / HTTP/1.1\r\n\r\n"),
        RawCase(name: "two Hosts", bytes: get + "Host: b\r\n\r\n", error: "invalid_host"),
        RawCase(name: "Host with userinfo", bytes: "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", error: "invalid_host"),
        RawCase(name: "Host with invalid port", bytes: "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", error: "invalid_host"),
        RawCase(name: "Host with a space", bytes: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", error: "invalid_host"),
        // Pipelining: the good request before the bad one is answered, the bad one ends the connection.
        RawCase(name: "good request, then duplicate CL", bytes: "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n" + post
                    + "Content-Length: 1\r\nContent-Length: 2\r\n\r\n", statuses: [200, 400], forwarded: 1),
        RawCase(name: "good request, then obs-fold", bytes: "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n" + get + "X-A: b\r\n c\r\n\r\n",
                statuses: [200, 400], forwarded: 1),
        RawCase(name: "GET with a body that hides a request", bytes: "GET /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n",
                statuses: [200, 400], forwarded: 1),
        // Limits.
        RawCase(name: "more headers than max_headers", bytes: get + (0..<25).map { "X-\($0): v\r\n" }.joined() + "\r\n",
                statuses: [431], error: "request_header_fields_too_large"),
        RawCase(name: "head over max_head_size", bytes: get + "X-Big: " + String(repeating: "a", count: 5000) + "\r\n\r\n",
                statuses: [431], error: "request_header_fields_too_large"),
        // Past max_head_size + 1 KiB the parser itself refuses the head (the case above is refused by the request's checks).
        RawCase(name: "head over the parser's bound", bytes: get + "X-Big: " + String(repeating: "a", count: 6000) + "\r\n\r\n",
                statuses: [431], error: "request_header_fields_too_large"),
        RawCase(name: "Content-Length over max_body", bytes: post + "Content-Length: 2000\r\n\r\n", statuses: [413], error: "body_too_large"),
        RawCase(name: "chunked body growing past max_body", bytes: post + "Transfer-Encoding: chunked\r\n\r\n200\r\n"
                    + String(repeating: "a", count: 512) + "\r\n200\r\n" + String(repeating: "b", count: 512) + "\r\n200\r\n"
                    + String(repeating: "c", count: 512) + "\r\n0\r\n\r\n", statuses: [413], error: "body_too_large",
                partialMayReach: true),
        // Paths that have no canonical form.
        RawCase(name: "encoded slash", bytes: "GET /admin%2Fx HTTP/1.1\r\nHost: a\r\n\r\n", error: "invalid_path"),
        RawCase(name: "dot-dot above the root", bytes: "GET /../admin HTTP/1.1\r\nHost: a\r\n\r\n", error: "invalid_path"),
    ]

    @Test("HTTP/1.1 corpus over raw TCP: status, error code, connection closed, nothing (or only the good request) upstream")
    func h1Corpus() async throws {
        #expect(Self.h1Corpus.count >= 40)
        let f = try await SanitizeFixture.start()
        defer { Task { await f.stop() } }
        for c in Self.h1Corpus {
            let before = f.received.count
            let headsBefore = f.heads
            let r = try await f.raw(Array(c.bytes.utf8))
            #expect(r.statuses == c.statuses, "\(c.name): got \(r.statuses): \(r.raw)")
            #expect(r.closed, "\(c.name): the connection stayed open")
            if let code = c.error { #expect(r.errors.last == code, "\(c.name): \(r.errors)") }
            // The upstream sees a whole request only for the good ones; a
            // refused one never even sends its head upstream.
            try await Task.sleep(for: .milliseconds(20))
            let got = Array(f.received.dropFirst(before)).filter { $0.complete || !c.partialMayReach }
            #expect(got.count == c.forwarded, "\(c.name): upstream got \(got.map(\.uri)) \(r.raw)")
            if !c.partialMayReach { #expect(f.heads - headsBefore == c.forwarded, "\(c.name): a head reached the upstream") }
            if c.forwarded == 1 { #expect(got.first?.uri == "/ok" && got.first?.complete == true, "\(c.name)") }
        }
        // Every error path gave its upstream connection back (or closed it).
        #expect(await f.upstreamConnectionsSettle(), "upstream connections still leased after the corpus")
    }

    @Test("route bypass attempts against the /admin route: each spelling reaches the admin upstream or is refused, never the catch-all", arguments: [
        ("/admin", "/admin"), ("/./admin", "/admin"), ("/x/../admin", "/admin"), ("/%61dmin", "/admin"),
        ("/%61%64%6d%69%6e/x", "/admin/x"), ("/x/%2e%2e/admin", "/admin"), ("/admin/", "/admin/"),
        ("//admin", nil), ("/admin%2F", nil), ("/admin%2fx", nil), ("/admin;x", nil), ("/admin%00", nil), ("/admin%5c", nil),
        ("/%2e%2e/admin", nil), ("/admin%C0%AF", nil), ("/admin\\x", nil),
    ] as [(String, String?)])
    func bypass(path: String, adminSees: String?) async throws {
        let f = try await SanitizeFixture.start()
        defer { Task { await f.stop() } }
        let r = try await f.raw(Array("GET \(path) HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".utf8))
        if let adminSees {
            #expect(r.statuses == [200], "\(path): \(r.raw)")
            #expect(f.admin.received.withLockedValue { $0.map(\.uri) } == [adminSees], "\(path)")
        } else {
            #expect(r.statuses == [400], "\(path): \(r.raw)")
            #expect(r.errors.last == "invalid_path" || (path.contains("\\") && r.errors.last == "bad_request"), "\(path): \(r.errors)")
            #expect(f.admin.heads.withLockedValue { $0 } == 0)
        }
        #expect(f.heads == 0, "\(path) reached the catch-all upstream")
    }

    @Test("matching is case-sensitive: /ADMIN is not /admin, and the upstream gets /ADMIN unchanged")
    func caseSensitive() async throws {
        let f = try await SanitizeFixture.start()
        defer { Task { await f.stop() } }
        let r = try await f.raw(Array("GET /ADMIN HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".utf8))
        #expect(r.statuses == [200])
        #expect(f.received.map(\.uri) == ["/ADMIN"])
        #expect(f.admin.heads.withLockedValue { $0 } == 0)
    }

    @Test("the upstream gets the canonical path; filters keep the raw target")
    func canonicalUpstream() async throws {
        let f = try await SanitizeFixture.start()
        defer { Task { await f.stop() } }
        let r = try await f.raw(Array("GET /a/./b/../%63?q=%41&x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".utf8))
        #expect(r.statuses == [200])
        #expect(f.received.map(\.uri) == ["/a/c?q=%41&x"])
    }

    @Test("spoofing: X-Passport, X-Forwarded-*, X-User-Id, X-Gw-*, XFCC and X-Request-Id never arrive upstream as sent")
    func spoofing() async throws {
        let f = try await SanitizeFixture.start()
        defer { Task { await f.stop() } }
        let forged = "X-Passport: eyJforged\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\n"
            + "Forwarded: for=6.6.6.6\r\nX-Forwarded-Prefix: /admin\r\nX-Forwarded-Port: 1\r\nX-User-Id: 1\r\nX-Internal-Role: admin\r\nX-Gw-Kid: k\r\n"
            + "X-Forwarded-Client-Cert: Hash=abc\r\nX-Request-Id: chosen\r\nX-Kept: yes\r\n"
        let r = try await f.raw(Array("GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\(forged)\r\n".utf8))
        #expect(r.statuses == [200], "\(r.raw)")
        let got = try #require(f.received.last)
        for name in ["x-passport", "x-user-id", "x-internal-role", "x-gw-kid", "x-forwarded-client-cert", "forwarded",
                     "x-forwarded-prefix", "x-forwarded-port"] {
            #expect(header(got, name).isEmpty, "\(name) reached the upstream")
        }
        #expect(header(got, "x-forwarded-for") == ["127.0.0.1"])
        #expect(header(got, "x-forwarded-host") == ["a"])
        #expect(header(got, "x-forwarded-proto") == ["http"])
        #expect(header(got, "x-request-id").count == 1 && header(got, "x-request-id") != ["chosen"])
        #expect(header(got, "x-kept") == ["yes"])
        // And from the upstream back: its Server header is stripped on this listener.
        #expect(!r.raw.lowercased().contains("server: demo-upstream"), "\(r.raw)")
        #expect(!r.raw.lowercased().contains("strict-transport-security"), "HSTS on a plaintext listener")
    }

    @Test("TLS listeners add HSTS and nosniff by default, to upstream and gateway answers alike")
    func securityHeaders() async throws {
        let f = try await SanitizeFixture.start()
        defer { Task { await f.stop() } }
        for path in ["/x", "/admin"] {
            let r = try await Curl.request("https://localhost:\(f.tlsPort)\(path)", caFile: f.ca)
            #expect(r.headers["strict-transport-security"] == SecurityHeadersConfig.defaultHSTS, "\(path) \(r.headers)")
            #expect(r.headers["x-content-type-options"] == "nosniff", "\(path)")
        }
    }

    @Test("trailers: dropped unless the route allows them; never framing or owned fields", arguments: ["/x", "/trailers/x"])
    func trailers(path: String) async throws {
        let f = try await SanitizeFixture.start()
        defer { Task { await f.stop() } }
        let body = "POST \(path) HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
            + "X-Checksum: 1\r\nX-Passport: forged\r\nAuthorization: Bearer x\r\n\r\n"
        let r = try await f.raw(Array(body.utf8))
        #expect(r.statuses == [200], "\(r.raw)")
        let got = try #require(f.received.last)
        #expect(got.bodyBytes == 3 && got.complete)
        #expect(got.trailers.map { $0.0.lowercased() } == (path == "/x" ? [] : ["x-checksum"]), "\(got.trailers)")
        #expect(header(got, "x-passport").isEmpty && header(got, "authorization").isEmpty && header(got, "x-checksum").isEmpty)
    }

    @Test("a listener may trust X-Request-Id; the id must be short and plain")
    func trustedRequestID() async throws {
        let state = try TestSupport.temporaryDirectory("rid")
        let upstream = DemoUpstreamServer(name: "svc", group: MultiThreadedEventLoopGroup.singleton)
        let upstreamPort = try await upstream.start(port: 0)
        let port = try TestSupport.freePort()
        let gw = try await GatewayProcess.start(yaml: """
        listeners:
          - {name: mesh, address: "127.0.0.1:\(port)", trust_request_id: true}
        upstreams:
          - {name: svc, endpoints: ["127.0.0.1:\(upstreamPort)"]}
        routes:
          - {name: all, listener: mesh, match: {path_prefix: /}, upstream: svc}

        """, stateDir: state)
        defer { gw.stop(); Task { await upstream.stop() } }
        let good = try await Curl.request("http://127.0.0.1:\(port)/x", caFile: "/dev/null", args: ["-H", "X-Request-Id: trace-42"])
        #expect(good.headers["x-request-id"] == "trace-42")
        let bad = try await Curl.request("http://127.0.0.1:\(port)/x", caFile: "/dev/null", args: ["-H", "X-Request-Id: a b;c"])
        #expect(bad.headers["x-request-id"]?.count == 32)
        let ids = upstream.received.withLockedValue { $0.map { header($0, "x-request-id") } }
        #expect(ids.first == ["trace-42"] && ids.last?.first?.count == 32)
    }

    @Test("sanitize filter end to end: distinct codes, counted by route; valid JSON buffered and sent with Content-Length", arguments: ["--http1.1", "--http2"])
    func sanitizeFilter(version: String) async throws {
        let f = try await SanitizeFixture.start()
        defer { Task { await f.stop() } }
        let url = "https://localhost:\(f.tlsPort)"
        let json = ["-H", "content-type: application/json"]
        let rejections: [([String], String, Int, String)] = [
            (["-X", "GET"], "/strict", 400, "method_rejected"),
            (["-d", "{\"a\":1}", "-H", "content-type: text/plain"], "/strict", 400, "content_type_rejected"),
            (json + ["-d", "{\"a\":"], "/strict", 400, "invalid_json"),
            (json + ["-d", "[[[[[1]]]]]"], "/strict", 400, "json_too_deep"),
            (json + ["-d", "{}"], "/strict?debug=1", 400, "query_param_denied"),
            (json + ["-d", "{}"], "/strict?limit=x", 400, "param_invalid"),
            (json + ["-d", "[" + String(repeating: "1,", count: 300) + "1]"], "/strict", 413, "body_too_large"),
            (json + ["-H", "transfer-encoding: chunked", "-d", "[" + String(repeating: "1,", count: 300) + "1]"], "/strict", 413, "body_too_large"),
        ]
        for (args, path, status, code) in rejections {
            let r = try await Curl.request(url + path, caFile: f.ca, args: [version] + args)
            #expect(r.status == status && r.body.contains("\"error\":\"\(code)\""), "\(code): \(r.status) \(r.body)")
        }
        #expect(f.heads == 0, "a refused request reached the upstream")
        let metrics = try await TestSupport.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(f.gateway.adminPort)/metrics"]).stdout
        for code in ["method_rejected", "content_type_rejected", "invalid_json", "json_too_deep", "query_param_denied", "param_invalid", "body_too_large"] {
            #expect(metrics.contains("gateway_rejections_total{route=\"public-strict\",reason=\"\(code)\"}"), "\(code) not counted")
        }

        for extra in [[], ["-H", "transfer-encoding: chunked"]] {
            let ok = try await Curl.request(url + "/strict?limit=99&x=1", caFile: f.ca, args: [version] + json + extra + ["-d", "{\"a\": [1, 2]}"])
            #expect(ok.status == 200, "\(ok.body)")
            let got = try #require(f.received.last)
            #expect(got.uri == "/strict?limit=10&x=1")
            #expect(got.bodyBytes == 13 && got.complete)
            #expect(header(got, "content-length") == ["13"] && header(got, "transfer-encoding").isEmpty, "\(got.headers)")
        }
    }
}
