import Filters
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// The `OutboundHTTPClient` filters get: one HTTP/1.1 request per connection
/// (introspection results are cached, so lookups are rare), on the caller's
/// event loop, TLS verified against the system's trust roots for `https`,
/// bounded in time and in response size.
final class GatewayHTTPClient: OutboundHTTPClient {
    static let maxResponseBytes = 64 << 10
    /// One per process: the TLS context is built once.
    static let shared = GatewayHTTPClient()
    private let tls: NIOSSLContext?

    init() {
        tls = try? NIOSSLContext(configuration: .makeClientConfiguration())
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    func post(url: URL, headers: HTTPHeaders, body: [UInt8], timeout: TimeAmount, on eventLoop: EventLoop)
        -> EventLoopFuture<(status: Int, body: [UInt8])> {
        send(method: .POST, url: url, headers: headers, body: body, timeout: timeout, on: eventLoop).map { ($0.status, $0.body) }
    }

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    /// One request on its own connection. `tls` replaces the system trust
    /// roots (the CLI's `--cacert`).
    func send(method: HTTPMethod, url: URL, headers: HTTPHeaders, body: [UInt8], timeout: TimeAmount, on eventLoop: EventLoop,
              tls customTLS: NIOSSLContext? = nil, maxResponseBytes: Int = GatewayHTTPClient.maxResponseBytes)
        -> EventLoopFuture<Response> {
        let promise = eventLoop.makePromise(of: Response.self)
        guard let host = url.host, let scheme = url.scheme, scheme == "http" || scheme == "https" else {
            promise.fail(Failure(description: "not an http(s) URL"))
            return promise.futureResult
        }
        let https = scheme == "https"
        let tls = customTLS ?? self.tls
        if https && tls == nil {
            promise.fail(Failure(description: "no TLS client context"))
            return promise.futureResult
        }
        let port = url.port ?? (https ? 443 : 80)
        var target = url.path.isEmpty ? "/" : url.path
        if let query = url.query { target += "?" + query }
        let timer = eventLoop.scheduleTask(in: timeout) { promise.fail(Failure(description: "timed out after \(timeout)")) }
        promise.futureResult.whenComplete { _ in timer.cancel() }
        ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if https, let tls { try sync.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: host)) }
                    try sync.addHTTPClientHandlers()
                    try sync.addHandler(ResponseCollector(promise: promise, limit: maxResponseBytes))
                }
            }
            .connect(host: host, port: port)
            .whenComplete { result in
                switch result {
                case .failure(let error):
                    promise.fail(error)
                case .success(let channel):
                    promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
                    var h = headers
                    h.replaceOrAdd(name: "host", value: url.port.map { "\(host):\($0)" } ?? host)
                    if !body.isEmpty || method == .POST || method == .PUT || method == .PATCH {
                        h.replaceOrAdd(name: "content-length", value: String(body.count))
                    }
                    h.replaceOrAdd(name: "connection", value: "close")
                    let head = HTTPRequestHead(version: .http1_1, method: method, uri: target, headers: h)
                    channel.write(HTTPClientRequestPart.head(head), promise: nil)
                    if !body.isEmpty { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
                    channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                }
            }
        return promise.futureResult
    }
}

/// Collects one response, at most `limit` bytes of body.
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<GatewayHTTPClient.Response>
    private let limit: Int
    private var status = 0
    private var headers = HTTPHeaders()
    private var body: [UInt8] = []

    init(promise: EventLoopPromise<GatewayHTTPClient.Response>, limit: Int) {
        self.promise = promise
        self.limit = limit
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            headers = head.headers
        case .body(let buffer):
            guard body.count + buffer.readableBytes <= limit else {
                promise.fail(GatewayHTTPClient.Failure(description: "response larger than \(limit) bytes"))
                context.close(promise: nil)
                return
            }
            body += buffer.readableBytesView
        case .end:
            promise.succeed(.init(status: status, headers: headers, body: body))
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(GatewayHTTPClient.Failure(description: "connection closed before the response ended"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
