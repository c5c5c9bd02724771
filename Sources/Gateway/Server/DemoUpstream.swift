import Filters
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Passport

/// What a demo upstream received, for tests and for the demo's JSON answer.
struct ReceivedRequest: Sendable {
    var method: String
    var uri: String
    var headers: [(String, String)]
    var bodyBytes: Int
    var bodySHA256: String
    var complete: Bool
    var trailers: [(String, String)] = []
}

/// A small upstream service for `make run` and the tests: answers every
/// request with JSON describing what it received. Request headers steer it:
/// `x-demo-delay: 500ms` waits before answering, `x-demo-status: 503` sets the
/// status, `x-demo-response-bytes: N` streams an N-byte body in 64 KiB chunks,
/// `x-demo-stall: 1` sends the head and then nothing, `x-demo-drop-next: 1`
/// closes the connection when its next request arrives.
final class DemoUpstreamServer: @unchecked Sendable {
    let name: String
    let group: EventLoopGroup
    private(set) var channel: Channel?
    let received = NIOLockedValueBox<[ReceivedRequest]>([])
    /// Requests whose head arrived, complete or not.
    let heads = NIOLockedValueBox<Int>(0)

    /// When set, an `X-Passport` is verified and the answer shows its claims.
    let passportVerifier: PassportVerifier?

    /// TLS (with client certificates, when the context requires them), as a mesh service.
    let tls: NIOSSLContext?

    init(name: String, group: EventLoopGroup, passportVerifier: PassportVerifier? = nil, tls: NIOSSLContext? = nil) {
        self.name = name
        self.group = group
        self.passportVerifier = passportVerifier
        self.tls = tls
    }

    func start(host: String = "127.0.0.1", port: Int) async throws -> Int {
        let tls = self.tls
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(DemoUpstreamHandler(server: self))
                }
            }
            .bind(host: host, port: port).get()
        self.channel = channel
        return channel.localAddress?.port ?? port
    }

    func stop() async {
        try? await channel?.close()
    }
}

final class DemoUpstreamHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let server: DemoUpstreamServer
    private var head: HTTPRequestHead?
    private var hasher = SHA256Hasher()
    private var bytes = 0
    /// Set by `x-demo-drop-next: 1`: the next request on this connection is
    /// met with a close, as when a server's keep-alive runs out.
    private var dropNext = false

    init(server: DemoUpstreamServer) { self.server = server }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            if dropNext {
                context.close(promise: nil)
                return
            }
            dropNext = h.headers.first(name: "x-demo-drop-next") == "1"
            head = h
            hasher = SHA256Hasher()
            bytes = 0
            server.heads.withLockedValue { $0 += 1 }
        case .body(let buffer):
            bytes += buffer.readableBytes
            buffer.withUnsafeReadableBytes { hasher.update($0) }
        case .end(let trailers):
            guard let h = head else { return }
            head = nil
            let digest = Hex.encode(hasher.finalize())
            let record = ReceivedRequest(method: h.method.rawValue, uri: h.uri, headers: h.headers.map { ($0.name, $0.value) },
                                         bodyBytes: bytes, bodySHA256: digest, complete: true,
                                         trailers: trailers.map { $0.map { ($0.name, $0.value) } } ?? [])
            server.received.withLockedValue { $0.append(record) }
            let delay = h.headers.first(name: "x-demo-delay").flatMap { try? ConfigDuration(parsing: $0) }
            if let delay {
                context.eventLoop.scheduleTask(in: delay.timeAmount) { self.answer(context: context, head: h, record: record) }
            } else {
                answer(context: context, head: h, record: record)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let h = head {
            // The connection ended mid-request: record the incomplete body.
            let record = ReceivedRequest(method: h.method.rawValue, uri: h.uri, headers: h.headers.map { ($0.name, $0.value) },
                                         bodyBytes: bytes, bodySHA256: "", complete: false)
            server.received.withLockedValue { $0.append(record) }
            head = nil
        }
        context.fireChannelInactive()
    }

    /// What a service sees in the passport: verified claims, or why not.
    static func describePassport(_ token: String, _ verifier: PassportVerifier) -> String {
        do {
            let c = try verifier.verify(token)
            let amr = c.methods.map(JSONText.quote).joined(separator: ",")
            return "{\"valid\":true,\"sub\":\(c.subject.map(JSONText.quote) ?? "null"),\"aud\":\(JSONText.quote(c.audience)),"
                + "\"lvl\":\(c.level),\"amr\":[\(amr)],\"scope\":\(c.scope.map(JSONText.quote) ?? "null"),\"exp\":\(c.expiresAt)"
                + (c.certificate.map { ",\"cert\":{\"san\":[" + $0.sans.map(JSONText.quote).joined(separator: ",") + "]}" } ?? "") + "}"
        } catch {
            return "{\"valid\":false,\"error\":\(JSONText.quote("\(error)"))}"
        }
    }

    private func answer(context: ChannelHandlerContext, head h: HTTPRequestHead, record: ReceivedRequest) {
        guard context.channel.isActive else { return }
        let status = h.headers.first(name: "x-demo-status").flatMap { Int($0) }.map { HTTPResponseStatus(statusCode: $0) } ?? .ok
        var headers = HTTPHeaders()
        headers.add(name: "x-upstream", value: server.name)
        if h.headers.first(name: "x-demo-stall") == "1" {
            headers.add(name: "content-length", value: "100")
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
            return
        }
        if let n = h.headers.first(name: "x-demo-response-bytes").flatMap({ Int($0) }), n >= 0 {
            headers.add(name: "content-type", value: "application/octet-stream")
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
            var left = h.method == .HEAD ? 0 : n
            let chunk = ByteBuffer(repeating: UInt8(ascii: "x"), count: 64 << 10)
            while left > 0 {
                let size = min(left, chunk.readableBytes)
                context.write(wrapOutboundOut(.body(.byteBuffer(chunk.getSlice(at: 0, length: size)!))), promise: nil)
                left -= size
            }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        var json = "{\"upstream\":\(JSONText.quote(server.name)),\"method\":\(JSONText.quote(record.method)),\"path\":\(JSONText.quote(record.uri))"
        json += ",\"headers\":{"
        // Credentials are shown by name only: the answer is printed in terminals.
        json += record.headers.map { name, value in
            let lower = name.lowercased()
            let shown = lower == "authorization" || lower == "x-passport" ? "(\(value.utf8.count) bytes, not shown)" : value
            return "\(JSONText.quote(lower)):\(JSONText.quote(shown))"
        }.joined(separator: ",")
        json += "},\"body_bytes\":\(record.bodyBytes),\"body_sha256\":\"\(record.bodySHA256)\""
        if server.tls != nil {
            // The caller's verified client certificate, as a mesh service sees it.
            let ssl = try? context.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
            let peer = ssl?.peerCertificate.flatMap { try? $0.toDERBytes() }.flatMap { try? ClientIdentity(der: $0, source: .tls) }
            json += ",\"client_certificate\":" + (peer.map { "{\"san\":[" + $0.sans.map(JSONText.quote).joined(separator: ",") + "]}" } ?? "null")
        }
        if let verifier = server.passportVerifier, let token = h.headers.first(name: "x-passport") {
            json += ",\"passport\":" + Self.describePassport(token, verifier)
        }
        json += "}\n"
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(json.utf8.count))
        headers.add(name: "server", value: "demo-upstream")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
        if h.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: json)))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}
