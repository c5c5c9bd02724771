import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import Gateway

/// A gateway process over real TLS on loopback, an in-test upstream that
/// records what it received, and curl as the client.
final class ProxyFixture: @unchecked Sendable {
    let state: String
    let upstream: DemoUpstreamServer
    let gateway: GatewayProcess
    let port: Int
    /// A second, plaintext listener with its own route table.
    let plainPort: Int
    var ca: String { state + "/ca.pem" }
    func url(_ path: String) -> String { "https://localhost:\(port)\(path)" }

    private init(state: String, upstream: DemoUpstreamServer, gateway: GatewayProcess, port: Int, plainPort: Int) {
        self.state = state
        self.upstream = upstream
        self.gateway = gateway
        self.port = port
        self.plainPort = plainPort
    }

    /// `engine`: the public listener's `http2_engine` (nil: the default).
    static func start(limits: String = "{max_body: 1MiB}", engine: String? = nil, extraArgs: [String] = []) async throws -> ProxyFixture {
        let state = try TestSupport.temporaryDirectory("state")
        try await TestSupport.makeCertificates(in: state)
        let upstream = DemoUpstreamServer(name: "svc", group: MultiThreadedEventLoopGroup.singleton)
        let upstreamPort = try await upstream.start(port: 0)
        let deadPort = try TestSupport.freePort()  // nothing listens there
        let port = try TestSupport.freePort()
        let plainPort = try TestSupport.freePort()
        let yaml = """
        listeners:
          - name: public
            address: 127.0.0.1:\(port)
            tls: {cert: localhost.pem, key: localhost-key.pem}
            limits: \(limits)
        \(engine.map { "    http2_engine: \($0)" } ?? "")
            filters:
              - headers: {response: {set: {x-frame-options: DENY}, remove: [server]}}
          - name: internal
            address: 127.0.0.1:\(plainPort)
        upstreams:
          - name: svc
            endpoints: ["127.0.0.1:\(upstreamPort)"]
            response_timeout: 500ms
            body_timeout: 1s
          - name: down
            endpoints: ["127.0.0.1:\(deadPort)"]
            connect_timeout: 500ms
        routes:
          - name: svc
            listener: public
            match: {path_prefix: /api}
            rewrite: {strip_prefix: /api}
            upstream: svc
            max_body: 8MiB
            filters:
              - headers: {request: {set: {x-env: test, x-gw-kid: forged}, remove: [x-debug]}, response: {add: {x-route: svc}}}
          - name: raw
            listener: public
            match: {path_prefix: /raw}
            upstream: svc
            disabled_filters: [headers]
          - name: down
            listener: public
            match: {path_prefix: /down}
            upstream: down
          - name: get-only
            listener: public
            match: {path: /only-get, methods: [GET, HEAD]}
            upstream: svc
          - name: small
            listener: public
            match: {path_prefix: /small}
            upstream: svc
          - name: internal-only
            listener: internal
            match: {path_prefix: /internal}
            upstream: svc

        """
        let gateway = try await GatewayProcess.start(yaml: yaml, stateDir: state, extraArgs: extraArgs)
        return ProxyFixture(state: state, upstream: upstream, gateway: gateway, port: port, plainPort: plainPort)
    }

    /// The first request the upstream saw end incomplete (its connection
    /// closed mid-body), waited for up to 2 s.
    func incompleteRequest() async throws -> ReceivedRequest? {
        for _ in 0..<100 {
            if let r = upstream.received.withLockedValue({ $0.first { !$0.complete } }) { return r }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        return nil
    }

    var adminURL: String { "http://127.0.0.1:\(gateway.adminPort)" }
    var upstreamHeads: Int { upstream.heads.withLockedValue { $0 } }
    var lastReceived: ReceivedRequest? { upstream.received.withLockedValue { $0.last } }

    func stop() async {
        gateway.stop()
        await upstream.stop()
        try? FileManager.default.removeItem(atPath: state)
        try? FileManager.default.removeItem(atPath: gateway.dir)
    }
}

func header(_ r: ReceivedRequest, _ name: String) -> [String] {
    r.headers.filter { $0.0.lowercased() == name }.map(\.1)
}

@Suite("proxy end to end", .serialized)
struct ProxyEndToEndTests {
    @Test("curl h1 and h2: rewritten path, forwarded headers, 5 MB body intact, no hop-by-hop", arguments: ["--http1.1", "--http2"])
    func forwardsRequest(version: String) async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let bodyPath = f.state + "/body.bin"
        var bytes = [UInt8](repeating: 0, count: 5_000_000)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 8) }
        try Data(bytes).write(to: URL(fileURLWithPath: bodyPath))
        let expectedSHA = try await TestSupport.run("/usr/bin/sha256sum", [bodyPath]).stdout.prefix(64)

        var args = [version, "-X", "POST", "--data-binary", "@\(bodyPath)", "-H", "content-type: application/octet-stream",
                    "-H", "x-forwarded-for: 6.6.6.6", "-H", "x-request-id: client-chosen"]
        if version == "--http1.1" {
            args += ["-H", "Connection: keep-alive, x-hop", "-H", "x-hop: secret", "-H", "Keep-Alive: timeout=5",
                     "-H", "Proxy-Connection: keep-alive", "-H", "TE: trailers"]
        }
        let r = try await Curl.request(f.url("/api/echo/1?x=1"), caFile: f.ca, args: args)
        #expect(r.status == 200, "\(r.stderr) \(r.body)")
        let got = try #require(f.lastReceived)
        #expect(got.method == "POST")
        #expect(got.uri == "/echo/1?x=1")
        #expect(got.complete)
        #expect(got.bodyBytes == 5_000_000)
        #expect(Substring(got.bodySHA256) == expectedSHA)
        #expect(header(got, "x-forwarded-for") == ["127.0.0.1"])
        #expect(header(got, "x-forwarded-proto") == ["https"])
        #expect(header(got, "x-forwarded-host") == ["localhost:\(f.port)"])
        let requestID = try #require(r.headers["x-request-id"])
        #expect(requestID.count == 32 && requestID != "client-chosen")
        #expect(header(got, "x-request-id") == [requestID])
        for hop in ["connection", "keep-alive", "proxy-connection", "te", "x-hop", "upgrade"] {
            #expect(header(got, hop).isEmpty, "hop-by-hop header \(hop) reached the upstream")
        }
        #expect(await f.gateway.logEventually(contains: "\"request_id\":\"\(requestID)\""))
    }

    @Test("filter chains: listener defaults then route filters; responses and gateway errors decorated; a route can disable a default")
    func filterChains() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await Curl.request(f.url("/api/x"), caFile: f.ca, args: ["-H", "x-debug: 1"])
        #expect(r.status == 200)
        let got = try #require(f.lastReceived)
        #expect(header(got, "x-env") == ["test"])
        #expect(header(got, "x-debug").isEmpty)
        #expect(header(got, "x-gw-kid").isEmpty, "an X-Gw-* header a filter set reached the upstream (PROTOCOL 2.5)")
        #expect(r.headers["x-frame-options"] == "DENY")
        #expect(r.headers["x-route"] == "svc")
        #expect(r.headers["server"] == nil, "the listener default removes the upstream's Server header")

        let raw = try await Curl.request(f.url("/raw/x"), caFile: f.ca, args: ["-H", "x-debug: 1"])
        #expect(raw.status == 200)
        #expect(raw.headers["x-frame-options"] == nil)
        #expect(raw.headers["server"] == "demo-upstream")
        #expect(header(try #require(f.lastReceived), "x-debug") == ["1"])

        let error = try await Curl.request(f.url("/down/x"), caFile: f.ca)
        #expect(error.status == 503)
        #expect(error.headers["x-frame-options"] == "DENY", "response filters decorate gateway errors too")
        let notFound = try await Curl.request(f.url("/nowhere"), caFile: f.ca)
        #expect(notFound.status == 404)
        #expect(notFound.headers["x-frame-options"] == "DENY", "the listener's defaults decorate 404s")
        #expect(notFound.headers["x-route"] == nil)
    }

    @Test("HEAD: headers only, the connection stays usable", arguments: ["--http1.1", "--http2"])
    func head(version: String) async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        for extra in [[], ["-H", "x-demo-response-bytes: 1000"]] {
            let r = try await TestSupport.run("/usr/bin/curl", ["-sS", version, "--cacert", f.ca, "-I", "-m", "5"] + extra
                + [f.url("/only-get"), f.url("/only-get")])
            #expect(r.code == 0, "\(r.stderr)")
            #expect(r.stdout.components(separatedBy: " 200").count == 3, "\(r.stdout)")
        }
        #expect(f.upstream.received.withLockedValue { $0.allSatisfy { $0.method == "HEAD" } })
        #expect(f.upstreamHeads == 4)
    }

    @Test("listeners have their own routes; a plaintext listener speaks HTTP/1.1 and says so upstream")
    func listenersAreSeparate() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let viaTLS = try await Curl.request(f.url("/internal/x"), caFile: f.ca)
        #expect(viaTLS.status == 404, "a route of another listener must not match")
        let plain = try await Curl.request("http://127.0.0.1:\(f.plainPort)/internal/x", caFile: f.ca)
        #expect(plain.status == 200)
        let got = try #require(f.lastReceived)
        #expect(header(got, "x-forwarded-proto") == ["http"])
        #expect(plain.headers["x-frame-options"] == nil, "the public listener's defaults do not apply here")
        let publicRouteOnPlain = try await Curl.request("http://127.0.0.1:\(f.plainPort)/api/x", caFile: f.ca)
        #expect(publicRouteOnPlain.status == 404)
        #expect(f.upstreamHeads == 1)
    }

    @Test("a listener that cannot bind: exit 1 naming it, nothing served")
    func bindFailure() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let folder = try ConfigFolder(["00.yaml": """
        admin: {address: "127.0.0.1:\(try TestSupport.freePort())"}
        listeners:
          - {name: taken, address: "127.0.0.1:\(f.plainPort)"}
        """])
        let r = try await TestSupport.run(try TestSupport.gatewayBinary, ["serve", "--config", folder.dir, "--state", folder.state])
        #expect(r.code == 1)
        #expect(r.stderr.contains("listener 'taken' cannot bind 127.0.0.1:\(f.plainPort)"))
        #expect(!r.stderr.contains("ERROR"), "\(r.stderr)")
    }

    @Test("a large response streams back intact", arguments: ["--http1.1", "--http2"])
    func streamsResponse(version: String) async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await Curl.request(f.url("/api/big"), caFile: f.ca, args: [version, "-H", "x-demo-response-bytes: 8000000"])
        #expect(r.status == 200)
        #expect(r.body.utf8.count == 8_000_000)
        #expect(r.body.utf8.allSatisfy { $0 == UInt8(ascii: "x") })
    }

    @Test("no route: 404 no_route; wrong method: 405 with Allow; nothing reaches the upstream")
    func routingRejections() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let notFound = try await Curl.request(f.url("/nowhere"), caFile: f.ca)
        #expect(notFound.status == 404)
        #expect(notFound.body.contains("\"error\":\"no_route\""))
        #expect(notFound.headers["content-type"] == "application/json")
        let wrongMethod = try await Curl.request(f.url("/only-get"), caFile: f.ca, args: ["-X", "DELETE"])
        #expect(wrongMethod.status == 405)
        #expect(wrongMethod.body.contains("\"error\":\"method_not_allowed\""))
        #expect(wrongMethod.headers["allow"] == "GET, HEAD")
        #expect(f.upstreamHeads == 0)
    }

    @Test("body over the limit: 413 body_too_large, nothing reaches the upstream", arguments: ["--http1.1", "--http2"])
    func bodyTooLarge(version: String) async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let bodyPath = f.state + "/2mb.bin"
        try Data(repeating: 65, count: 2 << 20).write(to: URL(fileURLWithPath: bodyPath))
        let r = try await Curl.request(f.url("/small/upload"), caFile: f.ca, args: [version, "--data-binary", "@\(bodyPath)"])
        #expect(r.status == 413)
        #expect(r.body.contains("\"error\":\"body_too_large\""))
        #expect(f.upstreamHeads == 0)
    }

    @Test("chunked body growing past the limit: 413, and the upstream never gets it as complete")
    func chunkedBodyTooLarge() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let bodyPath = f.state + "/2mb.bin"
        try Data(repeating: 65, count: 2 << 20).write(to: URL(fileURLWithPath: bodyPath))
        let r = try await Curl.request(f.url("/small/upload"), caFile: f.ca,
                                       args: ["--http1.1", "-H", "transfer-encoding: chunked", "--data-binary", "@\(bodyPath)"])
        #expect(r.status == 413)
        #expect(r.body.contains("\"error\":\"body_too_large\""))
        try await Task.sleep(nanoseconds: 200_000_000)
        let completes = f.upstream.received.withLockedValue { $0.filter(\.complete) }
        #expect(completes.isEmpty, "the upstream took a truncated body as complete")
    }

    @Test("upstream down: 503 upstream_unavailable")
    func upstreamDown() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await Curl.request(f.url("/down/x"), caFile: f.ca)
        #expect(r.status == 503)
        #expect(r.body.contains("\"error\":\"upstream_unavailable\""))
    }

    @Test("upstream slower than response_timeout: 504 upstream_timeout", arguments: ["--http1.1", "--http2"])
    func upstreamTimeout(version: String) async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await Curl.request(f.url("/api/slow"), caFile: f.ca, args: [version, "-H", "x-demo-delay: 3s"])
        #expect(r.status == 504)
        #expect(r.body.contains("\"error\":\"upstream_timeout\""))
        // The next request still works.
        let ok = try await Curl.request(f.url("/api/fast"), caFile: f.ca, args: [version])
        #expect(ok.status == 200)
    }

    @Test("upstream stalls mid-response: the client sees a broken response, not a short one")
    func upstreamStallsMidBody() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await Curl.request(f.url("/api/stall"), caFile: f.ca, args: ["--http1.1", "-H", "x-demo-stall: 1"])
        #expect(r.status == 200)
        #expect(r.exitCode != 0, "curl must report the truncated transfer")
    }

    @Test("client disconnecting mid-body cancels the upstream exchange")
    func clientDisconnectMidBody() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await TestSupport.pythonTLSClient(ca: f.ca, port: f.port, """
        s.sendall(b"POST /api/upload HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Length: 1000000\\r\\n\\r\\n" + b"a" * 100000)
        time.sleep(0.3)
        s.close()
        """)
        #expect(r.code == 0, "\(r.stderr)")
        let got = try #require(try await f.incompleteRequest(), "the upstream connection was not closed when the client left")
        #expect(got.bodyBytes <= 100_000)
        #expect(f.upstream.received.withLockedValue { $0.filter(\.complete).isEmpty })
        let ok = try await Curl.request(f.url("/api/after"), caFile: f.ca)
        #expect(ok.status == 200)
        #expect(await f.gateway.logEventually(contains: "\"error\":\"client_closed\""))
    }

    @Test("pipelined HTTP/1.1 requests are answered one after another, in order")
    func pipelining() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await TestSupport.pythonTLSClient(ca: f.ca, port: f.port, """
        reqs = b""
        for p in ["/api/one", "/nowhere", "/api/two", "/api/three"]:
            reqs += ("GET %s HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n" % p).encode()
        reqs += b"GET /api/last HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n"
        s.sendall(reqs)
        data = read_all()
        import re
        for status in re.findall(rb"HTTP/1.1 (\\d{3})", data):
            print(status.decode())
        for path in re.findall(rb'"path":"([^"]*)"', data):
            print("path " + path.decode())
        """)
        #expect(r.code == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        let statuses = lines.filter { $0.count == 3 }
        #expect(statuses == ["200", "404", "200", "200", "200"], "\(r.stdout)")
        let paths = lines.filter { $0.hasPrefix("path ") }.map { String($0.dropFirst(5)) }
        #expect(paths == ["/one", "/two", "/three", "/last"], "\(r.stdout)")
    }

    @Test("a pooled connection the upstream closed as it was reused: a bodiless GET is sent again once; a POST gets 503")
    func staleConnectionRetry() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        // One curl, one downstream connection, so one event loop and one pool:
        // the second request reuses the upstream connection of the first.
        let get = try await TestSupport.run("/usr/bin/curl", [
            "-sS", "--http1.1", "--cacert", f.ca, "-o", "/dev/null", "-w", "%{http_code}\n",
            "-H", "x-demo-drop-next: 1", f.url("/api/first"),
            "--next", "-sS", "--http1.1", "--cacert", f.ca, "-o", "/dev/null", "-w", "%{http_code}\n", f.url("/api/second"),
        ])
        #expect(get.stdout == "200\n200\n", "\(get.stdout) \(get.stderr)")
        #expect(f.upstream.received.withLockedValue { $0.map(\.uri) } == ["/first", "/second"])
        let metrics = try await TestSupport.run("/usr/bin/curl", ["-sS", f.adminURL + "/metrics"]).stdout
        #expect(metrics.contains("gateway_upstream_stale_retries_total{upstream=\"svc\"} 1"), "\(metrics)")

        let post = try await TestSupport.run("/usr/bin/curl", [
            "-sS", "--http1.1", "--cacert", f.ca, "-o", "/dev/null", "-w", "%{http_code}\n",
            "-H", "x-demo-drop-next: 1", f.url("/api/third"),
            "--next", "-sS", "--http1.1", "--cacert", f.ca, "-w", "\n%{http_code}\n", "-d", "body", f.url("/api/fourth"),
        ])
        #expect(post.stdout.hasSuffix("503\n"), "a POST must not be sent twice: \(post.stdout)")
        #expect(post.stdout.contains("\"error\":\"upstream_unavailable\""))
        #expect(!f.upstream.received.withLockedValue { $0.contains { $0.uri == "/fourth" } })
    }

    @Test("keep-alive: several requests on one h1 connection reuse it")
    func keepAlive() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await TestSupport.run("/usr/bin/curl", [
            "-sS", "--http1.1", "--cacert", f.ca, "-w", "%{num_connects}\n",
            f.url("/api/a"), "-o", "/dev/null", f.url("/api/b"), "-o", "/dev/null", f.url("/nowhere"), "-o", "/dev/null",
            f.url("/api/c"), "-o", "/dev/null",
        ])
        #expect(r.code == 0)
        let connects = r.stdout.split(separator: "\n").compactMap { Int($0) }
        #expect(connects == [1, 0, 0, 0], "\(r.stdout)")
        #expect(f.upstreamHeads == 3)
    }

    @Test("SIGTERM: stops accepting, finishes the in-flight slow request, exits 0",
          arguments: [("--http1.1", "gateway"), ("--http2", "gateway"), ("--http2", "nio")])
    func gracefulShutdown(version: String, engine: String) async throws {
        let f = try await ProxyFixture.start(engine: engine)
        defer { Task { await f.stop() } }
        async let slow = Curl.request(f.url("/api/slow"), caFile: f.ca, args: [version, "-H", "x-demo-delay: 400ms"])
        for _ in 0..<100 where f.upstreamHeads == 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        #expect(f.upstreamHeads == 1)
        f.gateway.signal(SIGTERM)
        let r = try await slow
        #expect(r.status == 200)
        #expect(r.body.contains("\"path\":\"/slow\""))
        let code = await f.gateway.waitForExit(timeout: 10)
        #expect(code == 0)
        #expect(!f.gateway.log.contains("ERROR"), "\(f.gateway.log)")
        #expect(f.gateway.log.contains("\"message\":\"stopped\""))
        let after = try await Curl.request(f.url("/api/after"), caFile: f.ca)
        #expect(after.status == 0, "a new request was accepted after shutdown")
    }
}
