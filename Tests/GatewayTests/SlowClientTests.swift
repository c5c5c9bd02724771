import Foundation
import Testing

@testable import Gateway

/// A client that takes a response slowly, or not at all: while it takes
/// nothing, the gateway stops reading the upstream, so the silence is the
/// client's (`limits.send_timeout`), never the upstream's (`body_timeout`).
/// And a client that sends its request body slowly, or stops
/// (`limits.client_body_timeout`), and one the gateway itself holds back
/// while its upstream reads nothing, which is not the client's stall. The
/// HTTP/2 cases are in `HTTP2EndToEndTests` (a window held for 2.5 s; the
/// held-back upload).
@Suite("slow clients", .serialized)
struct SlowClientTests {
    @Test("HTTP/1.1: a client that takes nothing for 2.5 s mid-response (the upstream's body_timeout is 1 s) then gets the rest of 32 MB intact")
    func pausedReaderGetsEverythingH1() async throws {
        let f = try await ProxyFixture.start()
        defer { Task { await f.stop() } }
        let r = try await TestSupport.pythonTLSClient(ca: f.ca, port: f.port, """
        s.sendall(b"GET /api/big HTTP/1.1\\r\\nHost: localhost\\r\\nX-Demo-Response-Bytes: 32000000\\r\\nConnection: close\\r\\n\\r\\n")
        data = bytearray(s.recv(65536))
        time.sleep(2.5)
        s.settimeout(5)
        while True:
            chunk = s.recv(1 << 20)
            if not chunk: break
            data += chunk
        head, _, body = bytes(data).partition(b"\\r\\n\\r\\n")
        chunked = b"transfer-encoding: chunked" in head.lower()
        complete = body.endswith(b"\\r\\n0\\r\\n\\r\\n") if chunked else len(body) == 32000000
        print(" ".join(head.split(b"\\r\\n")[0].decode().split()[:2]), body.count(b"x"), complete)
        """)
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "HTTP/1.1 200 32000000 True", "\(r.stdout)")
        #expect(!f.gateway.log.contains("upstream_timeout"), "a slow client was blamed on the upstream")
    }

    @Test("a client that takes none of a response for send_timeout is cut off: the response is broken, not short, and the log says client_timeout")
    func stalledReaderIsCut() async throws {
        let f = try await ProxyFixture.start(limits: "{max_body: 1MiB, send_timeout: 1s}")
        defer { Task { await f.stop() } }
        // 32 MB: far more than the socket buffers hold, so the gateway's
        // writes stop while the client sleeps.
        let started = Date()
        let r = try await TestSupport.pythonTLSClient(ca: f.ca, port: f.port, """
        s.sendall(b"GET /api/big HTTP/1.1\\r\\nHost: localhost\\r\\nX-Demo-Response-Bytes: 32000000\\r\\n\\r\\n")
        first = s.recv(65536)
        time.sleep(3)
        try:
            rest = read_all()
        except (ssl.SSLError, OSError) as e:
            rest = b""
        data = first + rest
        head, _, body = data.partition(b"\\r\\n\\r\\n")
        print(head.split(b"\\r\\n")[0].decode(), len(body))
        """)
        #expect(r.code == 0, "\(r.stderr)")
        let words = r.stdout.split(separator: " ")
        #expect(words.first == "HTTP/1.1" && words.dropFirst().first == "200", "\(r.stdout)")
        let received = Int(words.last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) } ?? "") ?? -1
        #expect(received >= 0 && received < 32_000_000, "the client got \(received) bytes of 32000000")
        #expect(Date().timeIntervalSince(started) < 15)
        #expect(await f.gateway.logEventually(contains: "\"error\":\"client_timeout\""))
        #expect(!f.gateway.log.contains("upstream_timeout"))
        // The gateway goes on serving.
        let ok = try await Curl.request(f.url("/api/after"), caFile: f.ca)
        #expect(ok.status == 200)
    }

    @Test("a request body that stalls for client_body_timeout gets 408 client_timeout, the connection closes, and nothing completes upstream")
    func stalledUploadIsCut() async throws {
        let f = try await ProxyFixture.start(limits: "{max_body: 1MiB, client_body_timeout: 1s}")
        defer { Task { await f.stop() } }
        let started = Date()
        let r = try await TestSupport.pythonTLSClient(ca: f.ca, port: f.port, """
        s.sendall(b"POST /api/upload HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Length: 1000\\r\\n\\r\\n" + b"a" * 100)
        time.sleep(2.5)
        data = read_all()
        print(data.split(b"\\r\\n")[0].decode(), b'"error":"client_timeout"' in data)
        """)
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "HTTP/1.1 408 Request Timeout True", "\(r.stdout)")
        #expect(Date().timeIntervalSince(started) < 8, "read_all returned only at its own timeout: the connection stayed open")
        #expect(f.upstream.received.withLockedValue { $0.filter(\.complete).isEmpty }, "a truncated body reached the upstream as complete")
        #expect(await f.gateway.logEventually(contains: "\"error\":\"client_timeout\""))
    }

    @Test("a request body that keeps coming, 200 bytes every 0.6 s for 3 s, is not cut by a 1 s client_body_timeout")
    func slowSteadyUploadCompletes() async throws {
        let f = try await ProxyFixture.start(limits: "{max_body: 1MiB, client_body_timeout: 1s}")
        defer { Task { await f.stop() } }
        let r = try await TestSupport.pythonTLSClient(ca: f.ca, port: f.port, """
        s.sendall(b"POST /api/upload HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Length: 1000\\r\\nConnection: close\\r\\n\\r\\n")
        for i in range(5):
            time.sleep(0.6)
            s.sendall(b"b" * 200)
        data = read_all()
        print(data.split(b"\\r\\n")[0].decode())
        """)
        #expect(r.code == 0, "\(r.stderr)")
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "HTTP/1.1 200 OK", "\(r.stdout)")
        let got = try #require(f.lastReceived)
        #expect(got.complete && got.bodyBytes == 1000, "\(got)")
        #expect(!f.gateway.log.contains("client_timeout"))
    }

    @Test("HTTP/1.1: time the gateway itself does not read an upload, because its upstream takes nothing, is not the client's: a 32 MB upload held back for 2.5 s under a 1 s client_body_timeout completes intact")
    func upstreamBackpressureIsNotClientTimeoutH1() async throws {
        let f = try await HeldUpstream.start("h1up")
        defer { f.stop() }
        // The upstream reads nothing for 2.5 s, then everything. The gateway
        // stops reading the client meanwhile (32 MB is far more than the
        // socket buffers between them hold); that pause is the upstream's,
        // so the 1 s client_body_timeout must not cut the upload.
        let r = try await TestSupport.pythonTLSClient(ca: f.ca, port: f.port, f.script(size: 32_000_000, hold: 2.5) + """
        t0 = time.time()
        s.sendall(b"POST /up HTTP/1.1\\r\\nHost: localhost\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n" % size)
        chunk = b"x" * (1 << 20)
        for i in range(size // len(chunk)): s.sendall(chunk)
        s.sendall(b"x" * (size % len(chunk)))
        data = read_all()
        upstream_thread.join(5)
        print(data.split(b"\\r\\n")[0].decode(), got["body"], data.endswith(b"ok"), round(time.time() - t0, 1))
        """)
        #expect(r.code == 0, "\(r.stderr)")
        let words = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
        #expect(words.prefix(5).joined(separator: " ") == "HTTP/1.1 200 OK 32000000 True", "\(r.stdout)")
        // The upload really was held back longer than client_body_timeout.
        #expect((Double(words.last ?? "") ?? 0) >= 2.4, "\(r.stdout)")
        #expect(!f.gateway.log.contains("client_timeout"), "the upstream's pause was blamed on the client")
    }

    @Test("limits.send_timeout and limits.client_body_timeout must be positive; the error names the file and key path, and the values are read")
    func sendTimeoutValidated() throws {
        let bad = try ConfigFolder(["00-base.yaml": """
        listeners:
          - {name: public, address: "127.0.0.1:0", limits: {send_timeout: 0s, client_body_timeout: 0ms}}
        upstreams:
          - {name: a, endpoints: ["127.0.0.1:7001"]}
        routes: []
        """])
        let text = try #require(bad.error(), "a zero send_timeout was accepted")
        #expect(text.contains(bad.path("00-base.yaml")) && text.contains("listeners[0].limits.send_timeout") && text.contains("must be positive"), "\(text)")
        #expect(text.contains("listeners[0].limits.client_body_timeout"), "\(text)")

        let good = try ConfigFolder(["00-base.yaml": """
        listeners:
          - {name: public, address: "127.0.0.1:0", limits: {send_timeout: 2500ms, client_body_timeout: 3s}}
          - {name: other, address: "127.0.0.1:0"}
        upstreams:
          - {name: a, endpoints: ["127.0.0.1:7001"]}
        routes: []
        """])
        let config = try good.load()
        #expect(config.listeners.map(\.limits.sendTimeout) == [.milliseconds(2500), .seconds(60)])
        #expect(config.listeners.map(\.limits.clientBodyTimeout) == [.seconds(3), .seconds(60)])
    }
}
