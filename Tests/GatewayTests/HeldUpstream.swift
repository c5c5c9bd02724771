import Foundation

/// A TLS gateway whose one route (`/up`, bodies to 64 MiB, a 1 s
/// `client_body_timeout`) goes to an upstream the test's Python script
/// plays (`script(size:hold:)`): a thread on a small receive buffer that
/// reads nothing for `hold` seconds, then the whole body, and answers 200
/// `ok`. For the tests of an upload the gateway must hold back, over
/// HTTP/1.1 and HTTP/2, while its upstream takes nothing.
struct HeldUpstream {
    let gateway: GatewayProcess
    let state: String
    let port: Int
    let upstreamPort: Int
    var ca: String { state + "/ca.pem" }

    static func start(_ name: String) async throws -> HeldUpstream {
        let state = try TestSupport.temporaryDirectory(name)
        try await TestSupport.makeCertificates(in: state)
        let port = try TestSupport.freePort()
        let upstreamPort = try TestSupport.freePort()
        let gateway = try await GatewayProcess.start(yaml: """
        listeners:
          - {name: public, address: "127.0.0.1:\(port)", tls: {cert: localhost.pem, key: localhost-key.pem}, limits: {max_body: 64MiB, client_body_timeout: 1s}}
        upstreams:
          - {name: slow, endpoints: ["127.0.0.1:\(upstreamPort)"], response_timeout: 10s}
        routes:
          - {name: up, listener: public, match: {path_prefix: /up}, upstream: slow, max_body: 64MiB}

        """, stateDir: state)
        return HeldUpstream(gateway: gateway, state: state, port: port, upstreamPort: upstreamPort)
    }

    func stop() {
        gateway.stop()
        try? FileManager.default.removeItem(atPath: state)
        try? FileManager.default.removeItem(atPath: gateway.dir)
    }

    /// Python that starts the upstream thread; `got["body"]` is the number
    /// of body bytes it read, `upstream_thread` the thread.
    func script(size: Int, hold: Double) -> String {
        """
        import threading
        size = \(size); got = {"body": -1}
        srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        srv.bind(("127.0.0.1", \(upstreamPort))); srv.listen(8)
        def upstream():
            conn, _ = srv.accept()
            time.sleep(\(hold))
            data = b""
            while b"\\r\\n\\r\\n" not in data: data += conn.recv(65536)
            n = len(data.split(b"\\r\\n\\r\\n", 1)[1])
            while n < size:
                d = conn.recv(1 << 20)
                if not d: break
                n += len(d)
            got["body"] = n
            conn.sendall(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok")
            time.sleep(1); conn.close()
        upstream_thread = threading.Thread(target=upstream, daemon=True); upstream_thread.start()

        """
    }
}
