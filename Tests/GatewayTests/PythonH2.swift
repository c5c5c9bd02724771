import Foundation
import Testing

@testable import Gateway

/// python-h2 as the client of the HTTP/2 end-to-end tests. Every script
/// starts with the same preamble: `s`, a TLS socket to 127.0.0.1 that
/// negotiated `h2` (argv[1] the CA file, argv[2] the port, argv[3] the socket
/// timeout), and `raw`, the configuration of a client whose own header
/// checks are off, to send what a conforming client would not. The script's
/// own arguments start at argv[4].
enum PythonH2 {
    static let preamble = """
    import json, re, socket, ssl, sys, time
    import h2.config, h2.connection, h2.events, h2.exceptions, h2.settings
    ctx = ssl.create_default_context(cafile=sys.argv[1]); ctx.set_alpn_protocols(["h2"])
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=float(sys.argv[3])), server_hostname="localhost")
    raw = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False,
                                    validate_inbound_headers=False, header_encoding=None)

    """

    /// Runs the preamble and `script`; its standard output, or an error with
    /// its standard error when it fails.
    static func output(_ script: String, ca: String, port: Int, timeout: Double = 5, args: [String] = []) async throws -> String {
        let r = try await TestSupport.run("/usr/bin/env", ["python3", "-c", preamble + script, ca, String(port), String(timeout)] + args)
        guard r.code == 0 else { throw TestFailure("h2 client failed: \(r.stderr)") }
        return r.stdout
    }

    /// The script's output read as one JSON object.
    static func json(_ script: String, ca: String, port: Int, timeout: Double = 5, args: [String] = []) async throws -> [String: Any] {
        let out = try await output(script, ca: ca, port: port, timeout: timeout, args: args)
        return try #require(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], "\(out)")
    }
}

extension SanitizeFixture {
    struct H2Result: Decodable {
        var status: Int?
        var error: String?
        var reset: String?
        var body: String
    }

    /// Opens an HTTP/2 connection with python-h2, its own header validation
    /// off, sends one request as given (headers as pairs, optional DATA) and
    /// reports the status and error code, or the stream reset.
    func h2(_ headers: [(String, String)], data: String? = nil, trailers: [(String, String)]? = nil) async throws -> H2Result {
        let script = """
        spec = json.loads(sys.argv[4])
        c = h2.connection.H2Connection(raw); c.initiate_connection()
        hdrs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in spec["headers"]]
        data = spec.get("data"); trailers = spec.get("trailers")
        c.send_headers(1, hdrs, end_stream=data is None)
        if data is not None:
            c.send_data(1, data.encode(), end_stream=trailers is None)
        if trailers is not None:
            c.send_headers(1, [(k.encode(), v.encode()) for k, v in trailers], end_stream=True)
        s.sendall(c.data_to_send())
        result = {"status": None, "error": None, "reset": None, "body": ""}
        body = b""; done = False
        try:
            while not done:
                d = s.recv(65536)
                if not d: break
                for ev in c.receive_data(d):
                    if isinstance(ev, h2.events.ResponseReceived): result["status"] = int(dict(ev.headers)[b":status"])
                    elif isinstance(ev, h2.events.DataReceived):
                        body += ev.data; c.acknowledge_received_data(len(ev.data), ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded): done = True
                    elif isinstance(ev, h2.events.StreamReset): result["reset"] = ev.error_code.name; done = True
                    elif isinstance(ev, h2.events.ConnectionTerminated): result["reset"] = "GOAWAY " + ev.error_code.name; done = True
                s.sendall(c.data_to_send())
        except socket.timeout:
            pass
        m = re.search(rb'"error":"([a-z_]+)"', body)
        result["error"] = m.group(1).decode() if m else None
        result["body"] = body[:600].decode("latin-1")
        print(json.dumps(result))
        """
        var spec: [String: Any] = ["headers": headers.map { [$0.0, $0.1] }]
        if let data { spec["data"] = data }
        if let trailers { spec["trailers"] = trailers.map { [$0.0, $0.1] } }
        let json = String(decoding: try JSONSerialization.data(withJSONObject: spec), as: UTF8.self)
        let out = try await PythonH2.output(script, ca: ca, port: tlsPort, timeout: 3, args: [json])
        return try JSONDecoder().decode(H2Result.self, from: Data(out.utf8))
    }
}
