import Logging
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOHTTP2
import NIOPosix
import NIOSSL
import NIOTLS

/// Binds one listener: TLS with ALPN (`h2`, `http/1.1`) or plaintext HTTP/1.1,
/// each connection ending in a `ProxyHandler` (HTTP/1.1) or an `H2Connection`
/// with a `ProxyHandler` per stream (HTTP/2).
enum ListenerBootstrap {
    static func bind(
        _ listener: ListenerRuntime, group: EventLoopGroup, quiesce: ServerQuiescingHelper, environment: ProxyEnvironment
    ) async throws -> Channel {
        let limits = listener.limits
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(quiesce.makeServerChannelHandler(channel: channel))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try configure(channel: channel, listener: listener, limits: limits, environment: environment)
                }
            }
            .bind(to: listener.address)
            .get()
    }

    static func configure(channel: Channel, listener: ListenerRuntime, limits: ListenerLimitsRuntime, environment: ProxyEnvironment) throws {
        let sync = channel.pipeline.syncOperations
        guard let tls = listener.tls else {
            try configureHTTP1(channel: channel, environment: environment, isTLS: false)
            return
        }
        // A connection that has not finished its handshake and chosen a
        // protocol within the header timeout is closed.
        let handshakeTimer = channel.eventLoop.scheduleTask(in: limits.headerTimeout) { channel.close(promise: nil) }
        try sync.addHandler(NIOSSLServerHandler(context: tls.context))
        try sync.addHandler(ApplicationProtocolNegotiationHandler { result, channel in
            handshakeTimer.cancel()
            return channel.eventLoop.makeCompletedFuture {
                switch result {
                case .negotiated("h2"):
                    try configureHTTP2(channel: channel, limits: limits, environment: environment)
                case .negotiated("http/1.1"), .fallback:
                    try configureHTTP1(channel: channel, environment: environment, isTLS: true)
                case .negotiated:
                    channel.close(promise: nil)
                }
            }
        })
    }

    static func configureHTTP1(channel: Channel, environment: ProxyEnvironment, isTLS: Bool) throws {
        let sync = channel.pipeline.syncOperations
        // ProxyHandler alone: it parses the requests from the bytes
        // (`HTTP1RequestParser`), serialises pipelined ones itself (no
        // read-interest toggling per request), answers parser errors with the
        // gateway's JSON 400 after the requests that came before them, and
        // writes its responses as bytes, validating every header it writes
        // (`DownstreamHTTP1Encoder`): the last guard against a filter that
        // copies untrusted bytes into a header.
        try sync.addHandler(ProxyHandler(environment: environment, isTLS: isTLS))
    }

    static func configureHTTP2(channel: Channel, limits: ListenerLimitsRuntime, environment: ProxyEnvironment) throws {
        let sync = channel.pipeline.syncOperations
        if environment.listener.http2Engine == .gateway {
            // The gateway's own frame layer (`H2ServerCodec`): the protocol,
            // its limits, the idle timeout and the graceful close.
            let codec = H2ServerCodec(
                configuration: .init(maxConcurrentStreams: limits.maxConcurrentStreams, maxHeaderListSize: limits.maxHeadSize,
                                     initialWindow: H2Connection.windowTarget, idleTimeout: limits.idleTimeout),
                logger: environment.logger)
            let connection = H2Connection(environment: environment, eventLoop: channel.eventLoop, peer: Peer(channel.remoteAddress))
            connection.codec = codec
            try sync.addHandler(FlushCoalescer())
            try sync.addHandler(codec)
            try sync.addHandler(connection)
            return
        }
        var connection = NIOHTTP2Handler.ConnectionConfiguration()
        // Request blocks are checked by `H2Request` in the pass that reads
        // them, response blocks by `H2ResponseHead`; NIOHTTP2 would walk each
        // again. (Its content-length checks stay on.)
        connection.headerBlockValidation = .disabled
        connection.initialSettings = [
            HTTP2Setting(parameter: .maxConcurrentStreams, value: limits.maxConcurrentStreams),
            HTTP2Setting(parameter: .maxHeaderListSize, value: limits.maxHeadSize),
            HTTP2Setting(parameter: .initialWindowSize, value: H2Connection.windowTarget),
        ]
        // Closes the connection after idle_timeout without an open stream, and
        // on shutdown sends GOAWAY and closes once the open streams finish
        // (it counts streams from NIOHTTP2's stream events).
        let management = NIOHTTP2ServerConnectionManagementHandler(
            eventLoop: channel.eventLoop,
            configuration: .init(maxIdleTime: limits.idleTimeout, maxAge: nil, maxGraceTime: nil, keepalive: nil))
        try sync.addHandler(FlushCoalescer())
        // No stream multiplexer: `H2Connection` drives each stream's
        // `ProxyHandler` from the frames.
        try sync.addHandler(NIOHTTP2Handler(mode: .server, connectionConfiguration: connection))
        try sync.addHandler(H2Connection(environment: environment, eventLoop: channel.eventLoop, peer: Peer(channel.remoteAddress)))
        try sync.addHandler(management)
    }
}
