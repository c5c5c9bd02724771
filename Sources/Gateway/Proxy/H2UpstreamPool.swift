import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

/// What `ProxyRequest` needs of a pool: a connection for one exchange, and
/// its return.
protocol UpstreamPooling: AnyObject {
    var definition: UpstreamDefinition { get }
    func acquire() -> EventLoopFuture<NIOLoopBound<UpstreamConnection>>
    /// A connection at once when one is idle (HTTP/1.1), else nil: then `acquire()`.
    func acquireIdle() -> UpstreamConnection?
    func release(_ connection: UpstreamConnection, reusable: Bool)
    func metricsRetried()
    func shutdown()
}

extension UpstreamPool: UpstreamPooling {}

/// HTTP/2 to one upstream (`protocol: h2` over TLS with ALPN, or `h2c` with
/// prior knowledge), owned by one event loop. Each exchange is a new stream
/// on a shared connection: the request travels as HTTP/1 parts through
/// NIOHTTP2's codec, so the rest of the proxy is the same as for HTTP/1.1.
/// A connection carries up to `streamsPerConnection` streams at once; more
/// open another, up to `max_connections`.
final class H2UpstreamPool: UpstreamPooling {
    let definition: UpstreamDefinition
    let eventLoop: EventLoop
    private let metrics: UpstreamMetrics
    static let streamsPerConnection = 100

    private final class Parent {
        let channel: Channel
        let multiplexer: NIOHTTP2Handler.StreamMultiplexer
        /// For logs: the peer address, once per connection.
        let endpoint: String
        var open = 0
        var idleTimer: Scheduled<Void>?
        init(channel: Channel, multiplexer: NIOHTTP2Handler.StreamMultiplexer) {
            self.channel = channel
            self.multiplexer = multiplexer
            self.endpoint = "\(channel.remoteAddress.map { "\($0)" } ?? "?") h2"
        }
    }

    private var parents: [Parent] = []
    private var connecting: EventLoopFuture<Parent>?
    private var nextEndpoint = 0
    private var nextStreamID = 0
    private var isShutDown = false

    init(definition: UpstreamDefinition, eventLoop: EventLoop, metrics: UpstreamMetrics) {
        self.definition = definition
        self.eventLoop = eventLoop
        self.metrics = metrics
    }

    func acquire() -> EventLoopFuture<NIOLoopBound<UpstreamConnection>> {
        eventLoop.preconditionInEventLoop()
        return parentWithRoom().flatMap { parent in self.openStream(on: parent) }
    }

    /// Every exchange opens a stream, which takes a round trip through NIOHTTP2.
    func acquireIdle() -> UpstreamConnection? { nil }

    func release(_ connection: UpstreamConnection, reusable: Bool) {
        // A stream serves one exchange; its connection stays for the next.
        connection.delegate = nil
        connection.close()
    }

    func metricsRetried() { metrics.retried() }

    func shutdown() {
        isShutDown = true
        for p in parents { p.channel.close(promise: nil) }
        parents.removeAll()
    }

    private func parentWithRoom() -> EventLoopFuture<Parent> {
        if isShutDown { return eventLoop.makeFailedFuture(UpstreamPool.Unavailable(reason: "pool shut down")) }
        parents.removeAll { !$0.channel.isActive }
        if let p = parents.first(where: { $0.open < Self.streamsPerConnection }) { return eventLoop.makeSucceededFuture(p) }
        if let connecting { return connecting }
        guard parents.count < definition.maxConnections else {
            metrics.rejected()
            return eventLoop.makeFailedFuture(UpstreamPool.Unavailable(reason: "every HTTP/2 connection is at its stream limit"))
        }
        let future = connect()
        connecting = future
        future.whenComplete { result in
            self.connecting = nil
            if case .success(let p) = result {
                if self.isShutDown { p.channel.close(promise: nil) } else { self.parents.append(p) }
                p.channel.closeFuture.whenComplete { _ in self.parents.removeAll { $0 === p } }
            } else {
                self.metrics.connectFailed()
            }
        }
        return future
    }

    private func connect() -> EventLoopFuture<Parent> {
        let address = definition.endpoints[nextEndpoint % definition.endpoints.count]
        nextEndpoint &+= 1
        let tls = definition.tls
        let metrics = self.metrics
        let timeout = definition.connectTimeout
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls {
                        try channel.pipeline.syncOperations.addHandler(try UpstreamTLSSupport.handler(tls, metrics: metrics))
                        try channel.pipeline.syncOperations.addHandler(HandshakeWaiter(promise: channel.eventLoop.makePromise()))
                    }
                }
            }
            .connect(to: address)
            .flatMap { channel -> EventLoopFuture<Channel> in
                guard tls != nil, let waiter = try? channel.pipeline.syncOperations.handler(type: HandshakeWaiter.self) else {
                    return channel.eventLoop.makeSucceededFuture(channel)
                }
                let timer = channel.eventLoop.scheduleTask(in: timeout) {
                    waiter.promise.fail(UpstreamTLSSupport.Failure(description: "TLS handshake timed out"))
                }
                return waiter.promise.futureResult.flatMapThrowing { _ -> Channel in
                    timer.cancel()
                    // Never fall back to HTTP/1.1 on a connection configured for HTTP/2.
                    guard waiter.negotiated == "h2" else {
                        throw UpstreamTLSSupport.Failure(description: "the upstream did not negotiate h2 (ALPN: \(waiter.negotiated ?? "none"))")
                    }
                    return channel
                }.flatMapErrorThrowing { error in
                    timer.cancel()
                    metrics.tlsFailed(error)
                    channel.close(promise: nil)
                    throw error
                }
            }
            .flatMapThrowing { channel -> Parent in
                let multiplexer = try channel.pipeline.syncOperations.configureHTTP2Pipeline(
                    mode: .client, connectionConfiguration: .init(), streamConfiguration: .init()
                ) { stream in stream.close() }  // the upstream may not push
                return Parent(channel: channel, multiplexer: multiplexer)
            }
    }

    private func openStream(on parent: Parent) -> EventLoopFuture<NIOLoopBound<UpstreamConnection>> {
        parent.open += 1
        parent.idleTimer?.cancel()
        parent.idleTimer = nil
        let id = nextStreamID
        nextStreamID &+= 1
        let scheme: HTTP2FramePayloadToHTTP1ClientCodec.HTTPProtocol = definition.tls == nil ? .http : .https
        let promise = eventLoop.makePromise(of: Channel.self)
        parent.multiplexer.createStreamChannel(promise: promise) { stream in
            stream.eventLoop.makeCompletedFuture {
                try stream.pipeline.syncOperations.addHandler(HTTP2FramePayloadToHTTP1ClientCodec(httpProtocol: scheme))
            }
        }
        let endpoint = parent.endpoint
        return promise.futureResult.flatMapThrowing { stream -> NIOLoopBound<UpstreamConnection> in
            let connection = try UpstreamConnection.configure(channel: stream, id: id, endpoint: endpoint, codec: false) { _ in }
            self.metrics.leased()
            stream.closeFuture.whenComplete { _ in
                self.metrics.released()
                self.streamClosed(on: parent)
            }
            return NIOLoopBound(connection, eventLoop: self.eventLoop)
        }.flatMapErrorThrowing { error in
            self.streamClosed(on: parent)
            throw error
        }
    }

    /// A connection without streams is closed after `keepalive_timeout`.
    private func streamClosed(on parent: Parent) {
        parent.open -= 1
        guard parent.open == 0 else { return }
        parent.idleTimer = eventLoop.scheduleTask(in: definition.keepaliveTimeout) {
            if parent.open == 0 { parent.channel.close(promise: nil) }
        }
    }
}
