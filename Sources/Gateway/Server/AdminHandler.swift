import NIOCore
import NIOHTTP1
import Prometheus

/// The admin listener's endpoints, on the same HTTP stack as the data plane:
/// `/healthz`, `/readyz`, `/metrics` (Prometheus text), `/admin/config`, and
/// `/.well-known/passport-jwks.json` (never on a public listener, PROTOCOL 1).
final class AdminHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let state: GatewayState
    private var head: HTTPRequestHead?

    init(state: GatewayState) { self.state = state }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            respond(context: context, to: h)
        }
    }

    private func respond(context: ChannelHandlerContext, to head: HTTPRequestHead) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let (status, type, body): (HTTPResponseStatus, String, String)
        switch (head.method, path) {
        case (.GET, "/healthz"), (.HEAD, "/healthz"):
            (status, type, body) = (.ok, "text/plain", "ok\n")
        case (.GET, "/readyz"), (.HEAD, "/readyz"):
            (status, type, body) = state.isReady ? (.ok, "text/plain", "ready\n") : (.serviceUnavailable, "text/plain", "not ready\n")
        case (.GET, "/metrics"):
            state.refreshGauges()
            var bytes: [UInt8] = []
            state.metricsRegistry.emit(into: &bytes)
            (status, type, body) = (.ok, "text/plain; version=0.0.4", String(decoding: bytes, as: UTF8.self))
        case (.GET, "/admin/config"):
            (status, type, body) = (.ok, "application/json", state.configSummary())
        case (.GET, "/.well-known/passport-jwks.json"):
            if let keys = state.passportKeys {
                (status, type, body) = (.ok, "application/json", String(decoding: keys.published().json(), as: UTF8.self))
            } else {
                (status, type, body) = (.notFound, "application/json", "{\"error\":\"no_passport_keys\"}")
            }
        case (_, "/healthz"), (_, "/readyz"), (_, "/metrics"), (_, "/admin/config"), (_, "/.well-known/passport-jwks.json"):
            (status, type, body) = (.methodNotAllowed, "application/json", "{\"error\":\"method_not_allowed\"}")
        default:
            (status, type, body) = (.notFound, "application/json", "{\"error\":\"not_found\"}")
        }
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: type)
        headers.add(name: "content-length", value: String(body.utf8.count))
        headers.add(name: "cache-control", value: "no-store")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: body)))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}
