import Foundation
import Testing

@testable import Gateway

/// A raw TCP upstream in Python that answers each path with exact bytes,
/// including ones no well-behaved server sends. Every body names the
/// connection it came on (`conn=N`); the log says when the gateway closed one.
final class ScriptedUpstream: @unchecked Sendable {
    let port: Int
    let dir: String
    private let process = Process()

    static let script = #"""
    import signal, socket, sys, threading
    # The test process may hand its blocked signals down: SIGTERM must stop this.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    port, logpath = int(sys.argv[1]), sys.argv[2]
    log = open(logpath, "a", buffering=1)
    lock = threading.Lock()
    count = [0]

    def answer(path, n):
        c = b"conn=%d" % n
        if path == "/close":
            return b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + c + b" until close", True
        if path == "/chunked":
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=\"x\"\r\nabc\r\n"
                    b"a\r\n0123456789\r\n0\r\nX-Checksum: 1\r\n\r\n"), False
        if path == "/glued":
            return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(c) + c
                    + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nPWNED"), False
        if path == "/continue":
            return b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(c) + c, False
        if path == "/head":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", False
        if path == "/bad/bare-lf":
            return b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", False
        if path == "/bad/cl-te":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False
        if path == "/bad/two-cl":
            return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", False
        if path == "/bad/fold":
            return b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 2\r\n\r\nok", False
        if path == "/bad/status":
            return b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok", False
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(c) + c, False

    def serve(s, n):
        data = b""
        while True:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    log.write("conn %d closed by peer\n" % n)
                    s.close()
                    return
                data += chunk
            head, data = data.split(b"\r\n\r\n", 1)
            line = head.split(b"\r\n")[0].decode()
            path = line.split(" ")[1]
            log.write("conn %d %s\n" % (n, line))
            reply, close = answer(path, n)
            s.sendall(reply)
            if close:
                s.close()
                return

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    while True:
        s, _ = srv.accept()
        with lock:
            count[0] += 1
            n = count[0]
        threading.Thread(target=serve, args=(s, n), daemon=True).start()
    """#

    init() throws {
        port = try TestSupport.freePort()
        dir = try TestSupport.temporaryDirectory("scripted")
        try Self.script.write(toFile: dir + "/upstream.py", atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: dir + "/log", contents: nil)
    }

    func start() async throws {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [dir + "/upstream.py", String(port), dir + "/log"]
        try TestSupport.launch(process)
        try await TestSupport.waitForPort(port, what: "scripted upstream")
    }

    var log: String { (try? String(contentsOfFile: dir + "/log", encoding: .utf8)) ?? "" }

    func stop() {
        TestSupport.stop(process, signal: SIGKILL)
    }

    deinit { stop() }
}

@Suite("upstream responses as the upstream sends them", .serialized)
struct UpstreamResponseEndToEndTests {
    /// One gateway event loop, so every request shares one upstream pool.
    static func start(keepalive: String = "30s") async throws -> (ScriptedUpstream, GatewayProcess, Int) {
        let upstream = try ScriptedUpstream()
        try await upstream.start()
        let port = try TestSupport.freePort()
        let gateway = try await GatewayProcess.start(yaml: """
            listeners:
              - name: plain
                address: 127.0.0.1:\(port)
            upstreams:
              - name: raw
                endpoints: ["127.0.0.1:\(upstream.port)"]
                response_timeout: 3s
                keepalive_timeout: \(keepalive)
            routes:
              - name: all
                listener: plain
                match: {path_prefix: /}
                upstream: raw
            """, stateDir: try TestSupport.temporaryDirectory("state"), extraArgs: ["--threads", "1"])
        return (upstream, gateway, port)
    }

    @Test("a body that runs to the close, chunks with extensions and trailers, 100 Continue, HEAD: each arrives whole")
    func wellFormed() async throws {
        let (upstream, gateway, port) = try await Self.start()
        defer { gateway.stop(); upstream.stop() }
        let base = "http://127.0.0.1:\(port)"
        let close = try await Curl.request(base + "/close", caFile: "/dev/null")
        #expect(close.status == 200)
        #expect(close.body.hasPrefix("conn=") && close.body.hasSuffix(" until close"), "\(close.body)")
        let chunked = try await Curl.request(base + "/chunked", caFile: "/dev/null")
        #expect(chunked.status == 200 && chunked.body == "abc0123456789", "\(chunked.body)")
        #expect(chunked.headers["x-checksum"] == nil)
        let cont = try await Curl.request(base + "/continue", caFile: "/dev/null")
        #expect(cont.status == 200 && cont.body.hasPrefix("conn="), "\(cont.body)")
        let head = try await Curl.request(base + "/head", caFile: "/dev/null", args: ["-I"])
        #expect(head.status == 200 && head.headers["content-length"] == "1000")
        // After the bodiless HEAD answer, its connection serves the next request.
        let after = try await Curl.request(base + "/after-head", caFile: "/dev/null")
        #expect(after.status == 200)
        let headConn = upstream.log.split(separator: "\n").first { $0.contains("HEAD /head") }?.split(separator: " ")[1]
        #expect(headConn != nil && after.body == "conn=\(headConn!)", "HEAD's connection was not reused: \(upstream.log)")
    }

    @Test("bytes glued after a response are never read as the next one: the connection is closed")
    func glued() async throws {
        let (upstream, gateway, port) = try await Self.start()
        defer { gateway.stop(); upstream.stop() }
        let base = "http://127.0.0.1:\(port)"
        let first = try await Curl.request(base + "/glued", caFile: "/dev/null")
        #expect(first.status == 200 && first.body.hasPrefix("conn="))
        let conn = String(first.body.dropFirst(5))
        for i in 0..<3 {
            let next = try await Curl.request(base + "/next\(i)", caFile: "/dev/null")
            #expect(next.status == 200 && next.body != "PWNED" && next.body != "conn=\(conn)", "\(next.body)")
        }
        #expect(upstream.log.contains("conn \(conn) closed by peer"), "\(upstream.log)")
    }

    @Test("malformed or ambiguous response heads: 503 upstream_unavailable, none of their bytes forwarded", arguments: [
        "bare-lf", "cl-te", "two-cl", "fold", "status",
    ])
    func malformed(name: String) async throws {
        let (upstream, gateway, port) = try await Self.start()
        defer { gateway.stop(); upstream.stop() }
        let r = try await Curl.request("http://127.0.0.1:\(port)/bad/\(name)", caFile: "/dev/null")
        #expect(r.status == 503, "\(name): \(r.status) \(r.body)")
        #expect(r.body.contains("\"error\":\"upstream_unavailable\""), "\(name): \(r.body)")
        #expect(!r.body.contains("ok"))
        // The gateway dropped that connection; the next request gets a fresh one.
        let next = try await Curl.request("http://127.0.0.1:\(port)/fine", caFile: "/dev/null")
        #expect(next.status == 200 && next.body.hasPrefix("conn="))
        let bad = upstream.log.split(separator: "\n").first { $0.contains("/bad/") }?.split(separator: " ")[1]
        #expect(bad != nil && next.body != "conn=\(bad!)", "\(upstream.log)")
    }

    @Test("an idle pooled connection is reused within keepalive_timeout and closed after it")
    func keepaliveTimeout() async throws {
        let (upstream, gateway, port) = try await Self.start(keepalive: "400ms")
        defer { gateway.stop(); upstream.stop() }
        let base = "http://127.0.0.1:\(port)"
        let first = try await Curl.request(base + "/a", caFile: "/dev/null")
        try await Task.sleep(nanoseconds: 150_000_000)
        let second = try await Curl.request(base + "/b", caFile: "/dev/null")
        #expect(first.status == 200 && second.body == first.body, "not reused within the timeout: \(first.body) \(second.body)")
        let conn = String(first.body.dropFirst(5))
        try await Task.sleep(nanoseconds: 250_000_000)
        #expect(!upstream.log.contains("conn \(conn) closed by peer"), "closed before its timeout: \(upstream.log)")
        // 400 ms after its last use (plus scheduling), and not much later.
        var closed = false
        for _ in 0..<40 where !closed {
            try await Task.sleep(nanoseconds: 25_000_000)
            closed = upstream.log.contains("conn \(conn) closed by peer")
        }
        #expect(closed, "not closed after keepalive_timeout: \(upstream.log)")
        let metrics = try await TestSupport.run("/usr/bin/curl", ["-s", "http://127.0.0.1:\(gateway.adminPort)/metrics"]).stdout
        #expect(metrics.contains("gateway_upstream_connections_idle{upstream=\"raw\"} 0"), "\(metrics)")
        let third = try await Curl.request(base + "/c", caFile: "/dev/null")
        #expect(third.status == 200 && third.body != first.body)
    }

    @Test("an HTTP/1.0 client gets a body without length unchunked, ended by the close; HTTP/1.1 gets it chunked")
    func http10Client() async throws {
        let (upstream, gateway, port) = try await Self.start()
        defer { gateway.stop(); upstream.stop() }
        let script = """
        import socket, sys
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
        s.sendall(sys.argv[2].encode().replace(b"|", b"\\r\\n"))
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        sys.stdout.write(data.decode())
        """
        let old = try await TestSupport.run("/usr/bin/python3", ["-c", script, String(port), "GET /chunked HTTP/1.0|Host: x||"])
        let lower = old.stdout.lowercased()
        #expect(old.stdout.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(old.stdout) \(old.stderr)")
        #expect(!lower.contains("transfer-encoding") && lower.contains("\r\nconnection: close\r\n"), "\(old.stdout)")
        #expect(old.stdout.hasSuffix("\r\n\r\nabc0123456789"), "\(old.stdout)")
        let new = try await TestSupport.run("/usr/bin/python3", ["-c", script, String(port), "GET /chunked HTTP/1.1|Host: x|Connection: close||"])
        #expect(new.stdout.lowercased().contains("transfer-encoding: chunked"), "\(new.stdout)")
        #expect(new.stdout.contains("abc") && new.stdout.hasSuffix("0123456789\r\n0\r\n\r\n"), "\(new.stdout)")
    }
}
