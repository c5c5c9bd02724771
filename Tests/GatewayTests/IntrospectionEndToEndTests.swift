import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Passport
import Testing

@testable import Gateway

/// A token introspection endpoint (RFC 7662) over real HTTP: checks the
/// client's Basic credentials, answers by token, counts lookups per token.
final class TestAuthorizationServer: @unchecked Sendable {
    let lookups = NIOLockedValueBox<[String: Int]>([:])
    private(set) var channel: Channel?
    static let credentials = "Basic " + Data("gateway:s3cret".utf8).base64EncodedString()

    func start() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(server: self))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        self.channel = channel
        return channel.localAddress!.port!
    }

    func count(_ token: String) -> Int { lookups.withLockedValue { $0[token] ?? 0 } }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: TestAuthorizationServer
        var head: HTTPRequestHead?
        var body = ""
        init(server: TestAuthorizationServer) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let h): head = h; body = ""
            case .body(let b): body += String(buffer: b)
            case .end:
                guard let head else { return }
                var form: [String: String] = [:]
                for pair in body.split(separator: "&") {
                    let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? "" }
                    if kv.count == 2 { form[kv[0]] = kv[1] }
                }
                let token = form["token"] ?? ""
                server.lookups.withLockedValue { $0[token, default: 0] += 1 }
                let now = Int(Date().timeIntervalSince1970)
                let status: HTTPResponseStatus
                let json: String
                if head.headers.first(name: "authorization") != TestAuthorizationServer.credentials || head.method != .POST {
                    (status, json) = (.unauthorized, #"{"error":"invalid_client"}"#)
                } else if token.hasPrefix("good") || token.hasPrefix("slow") || token.hasPrefix("coalesce") {
                    (status, json) = (.ok, #"{"active":true,"sub":"user-\#(token)","scope":"accounts:read","exp":\#(now + 600),"client_id":"app"}"#)
                } else if token == "numeric-active" {
                    (status, json) = (.ok, #"{"active":1,"sub":"x"}"#)
                } else {
                    (status, json) = (.ok, #"{"active":false}"#)
                }
                let delay: TimeAmount = token.hasPrefix("slow") ? .seconds(2) : token.hasPrefix("coalesce") ? .milliseconds(400) : .zero
                context.eventLoop.scheduleTask(in: delay) { [self] in
                    var h = HTTPHeaders()
                    h.add(name: "content-type", value: "application/json")
                    h.add(name: "content-length", value: String(json.utf8.count))
                    context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: h))), promise: nil)
                    context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: json)))), promise: nil)
                    context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
                }
                self.head = nil
            }
        }
    }
}

@Suite("token introspection end to end", .serialized)
struct IntrospectionEndToEndTests {
    @Test("opaque tokens: active is cached, inactive is cached briefly, concurrent lookups of one token share one request, a silent server is 503")
    func introspection() async throws {
        let state = try TestSupport.temporaryDirectory("introspect")
        try await TestSupport.makeCertificates(in: state)
        try FileManager.default.createDirectory(atPath: state + "/auth", withIntermediateDirectories: true)
        try "s3cret\n".write(toFile: state + "/auth/secret", atomically: true, encoding: .utf8)
        let keys = try await TestSupport.run(try TestSupport.gatewayBinary, ["keys", "generate", "--type", "ed25519", "--kid", "pp",
                                                                             "--out", state + "/passport/pp.json"])
        #expect(keys.code == 0)
        let authServer = TestAuthorizationServer()
        let authPort = try await authServer.start()
        let upstream = DemoUpstreamServer(name: "svc", group: MultiThreadedEventLoopGroup.singleton)
        let upstreamPort = try await upstream.start(port: 0)
        let port = try TestSupport.freePort()
        let gw = try await GatewayProcess.start(yaml: """
        listeners:
          - {name: public, address: "127.0.0.1:\(port)", tls: {cert: localhost.pem, key: localhost-key.pem}}
        upstreams:
          - {name: svc, endpoints: ["127.0.0.1:\(upstreamPort)"]}
        routes:
          - name: api
            listener: public
            match: {path_prefix: /}
            upstream: svc
            filters:
              - authenticate:
                  scopes: [accounts:read]
                  introspection:
                    url: http://127.0.0.1:\(authPort)/oauth/introspect
                    client_id: gateway
                    client_secret_file: auth/secret
                    timeout: 500ms
                    cache_ttl: 60s
                    negative_cache_ttl: 1s
              - passport: {}

        """, stateDir: state)
        defer {
            gw.stop()
            Task { await upstream.stop(); try? await authServer.channel?.close() }
        }
        let url = "https://localhost:\(port)/x"
        func call(_ token: String) async throws -> CurlResponse {
            try await Curl.request(url, caFile: state + "/ca.pem", args: ["-H", "authorization: Bearer \(token)"])
        }

        // Active: 200 twice, one lookup; the passport says how the caller was authenticated.
        for _ in 0..<2 { #expect(try await call("good-1").status == 200) }
        #expect(authServer.count("good-1") == 1, "the second request should come from the cache")
        let got = try #require(upstream.received.withLockedValue { $0.last })
        let jwks = try PassportKeyRing(directory: state + "/passport").published()
        let passport = try #require(header(got, "x-passport").first)
        let claims = try await PassportVerifier(jwks: jwks, audience: "svc").verify(passport)
        #expect(claims.subject == "user-good-1" && claims.methods == ["introspection"])
        #expect(header(got, "authorization").isEmpty)

        // Inactive: 401 twice with one lookup; after the negative TTL, asked again.
        let before = upstream.heads.withLockedValue { $0 }
        for _ in 0..<2 {
            let r = try await call("revoked-1")
            #expect(r.status == 401 && r.headers["www-authenticate"] == "Bearer error=\"invalid_token\"")
        }
        #expect(authServer.count("revoked-1") == 1)
        try await Task.sleep(for: .milliseconds(1100))
        #expect(try await call("revoked-1").status == 401)
        #expect(authServer.count("revoked-1") == 2)
        #expect(try await call("numeric-active").status == 401, "active must be the boolean true")
        #expect(upstream.heads.withLockedValue { $0 } == before, "a refused token reached the upstream")

        // Eight concurrent requests with one new token: one lookup.
        try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<8 { group.addTask { try await call("coalesce-1").status } }
            for try await status in group { #expect(status == 200) }
        }
        #expect(authServer.count("coalesce-1") == 1, "concurrent lookups were not coalesced: \(authServer.count("coalesce-1"))")

        // A server slower than the timeout: 503 auth_unavailable, nothing upstream.
        let headsBeforeSlow = upstream.heads.withLockedValue { $0 }
        let slow = try await call("slow-1")
        #expect(slow.status == 503 && slow.body.contains("\"error\":\"auth_unavailable\""), "\(slow.status) \(slow.body)")
        #expect(upstream.heads.withLockedValue { $0 } == headsBeforeSlow, "a request the gateway could not authenticate reached the upstream")
        for token in ["good-1", "revoked-1", "coalesce-1", "slow-1"] { #expect(!gw.log.contains(token)) }
    }
}
