import Filters
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTP2
import NIOSSL

/// The request path of one downstream HTTP/1.1 connection or one HTTP/2
/// stream: route, filters, upstream lease, streaming both ways, timeouts,
/// access log. An HTTP/1.1 connection's handler is the last in its pipeline
/// and parses the bytes itself (`HTTP1RequestParser`); an HTTP/2 stream's is
/// in no pipeline: its connection's `H2Connection` creates it and hands it
/// the stream's frames (ProxyHandler+HTTP2.swift).
///
/// Everything runs on the channel's event loop. Filters that return `.next`
/// or `.respond` cost no allocation beyond the `Exchange`; only a filter that
/// suspends makes a future.
final class ProxyHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let env: ProxyEnvironment
    let isHTTP2: Bool
    private let isTLS: Bool
    /// HTTP/1.1: the handler's own context while it is in the pipeline.
    /// HTTP/2: its connection's `H2Connection` context while the stream is
    /// open. Dropped at the end either way, or the context and the handler
    /// would keep each other alive.
    var context: ChannelHandlerContext?
    var loop: LoopLocal!
    private(set) var request: ProxyRequest?
    /// Whether the current request's `.end` has arrived.
    var requestEnded = true
    /// Parts of a request the gateway already answered are dropped until its end.
    var discardingBody = false
    /// HTTP/1.1: bytes read and not parsed yet. A request pipelined behind
    /// the current one stays here as bytes until that one's response ends;
    /// reads pause while any wait, so this stays small.
    private var inbound: ByteBuffer
    /// What `inbound` becomes once it is all parsed: holding on to a read's
    /// buffer would keep NIO from reusing it for the next read (an
    /// allocation a read).
    private let noBytes: ByteBuffer
    private var parser: HTTP1RequestParser
    /// Set while `parseInbound` runs (a request answered at once ends its
    /// response inside it, and must not start a second parse loop).
    private var parsing = false
    /// Set once the parser refused the connection's bytes: nothing after them is read.
    private var parserFailed = false
    private var readPending = false
    private var quiescing = false
    var timer = DeadlineTimer()
    /// The peer's address and its text form, looked up once per connection:
    /// an HTTP/2 stream gets its connection's (`Peer`), an HTTP/1.1
    /// connection looks them up on first use.
    private(set) lazy var remoteAddress: SocketAddress? = peer?.address ?? context?.channel.remoteAddress
    private(set) lazy var clientIP: String? = peer?.ip ?? remoteAddress?.ipAddress
    private let peer: Peer?
    /// The client certificate the TLS handshake verified (listeners with
    /// `client_auth`), read once per connection or stream; nil without one.
    private(set) lazy var tlsIdentity: ClientIdentity? = {
        guard isTLS, env.listener.requestsClientCertificates, let channel = context?.channel else { return nil }
        // An HTTP/2 stream's TLS handler is on its connection's channel.
        let tls = (try? channel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self))
            ?? (try? channel.parent?.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self))
        guard let certificate = tls?.peerCertificate, let der = try? certificate.toDERBytes() else { return nil }
        return try? ClientIdentity(der: der, source: .tls)
    }()

    /// The deadlines of the HTTP/2 connection this stream belongs to, and
    /// this stream's own (nil when it waits on nothing).
    let streamDeadlines: StreamDeadlines?
    var streamDeadline: NIODeadline?

    /// HTTP/2: the stream, its connection (until the stream closes), and its
    /// flow control (see `H2Connection`).
    let streamID: HTTP2StreamID
    var connection: H2Connection?
    var h2Request = H2RequestState.awaitingHead
    /// The peer's send window for this stream's DATA.
    var sendWindow = 0
    /// DATA received on this stream and not returned to the peer yet.
    var unreturned = 0
    /// The writability the request was last told of.
    var reportedWritable = true

    /// HTTP/1.1: responses are written as bytes from here (nil on an HTTP/2
    /// stream, whose responses are written as frames, see `sendH2`).
    var encoder: DownstreamHTTP1Encoder?
    /// Set when the response being written ends only with the connection.
    var closeAfterResponse = false
    /// HTTP/1.1: the head of the response being written, held until its
    /// first body bytes, its end or a flush, so that a small response leaves
    /// as one TLS record (one `SSL_write`) instead of two.
    var unsentHead: ByteBuffer?
    /// HTTP/2: the last DATA payload written, held until the next part or a
    /// flush, so that the frame that ends the stream carries it.
    var unsentData: ByteBuffer?

    /// An HTTP/1.1 connection's handler.
    convenience init(environment: ProxyEnvironment, isTLS: Bool) {
        self.init(environment: environment, isHTTP2: false, isTLS: isTLS, stream: .rootStream, connection: nil, peer: nil)
    }

    /// An HTTP/2 stream's handler (always over TLS).
    convenience init(environment: ProxyEnvironment, stream: HTTP2StreamID, connection: H2Connection, peer: Peer) {
        self.init(environment: environment, isHTTP2: true, isTLS: true, stream: stream, connection: connection, peer: peer)
    }

    private init(environment: ProxyEnvironment, isHTTP2: Bool, isTLS: Bool, stream: HTTP2StreamID, connection: H2Connection?, peer: Peer?) {
        self.env = environment
        self.peer = peer
        self.isHTTP2 = isHTTP2
        self.isTLS = isTLS
        self.streamID = stream
        self.connection = connection
        self.streamDeadlines = connection?.deadlines
        self.encoder = isHTTP2 ? nil : DownstreamHTTP1Encoder()
        // The exact head limits are `ProxyRequest.start`'s (431 either way);
        // the parser's keeps what it buffers of a head bounded.
        self.parser = HTTP1RequestParser(maxHeadBytes: environment.listener.limits.maxHeadSize + 1024)
        self.noBytes = ByteBuffer()
        self.inbound = noBytes
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.loop = env.loops.local(for: context.eventLoop)
        setDeadline(.awaitingHead, in: env.listener.limits.headerTimeout)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer.cancel()
        self.context = nil
        dropRequest()
    }

    /// Ends a request still in flight as the client's leaving and lets go of
    /// it (it holds this handler strongly: `ProxyRequest.handler`). Whenever
    /// the downstream ends: the connection, the handler, an HTTP/2 stream.
    func dropRequest() {
        guard let r = request else { return }
        r.downstreamClosed()
        requestGone(r)
    }

    /// True from a read's first message to its `channelReadComplete`: the
    /// upstream is flushed once per read, after the parser has seen every
    /// byte of it, so a request refused later in the same read never leaves.
    var reading = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        guard !parserFailed else { return }
        var bytes = unwrapInboundIn(data)
        if inbound.readableBytes == 0 {
            inbound = bytes
        } else {
            if inbound.readerIndex > 16 << 10 { inbound.discardReadBytes() }
            inbound.writeBuffer(&bytes)
        }
        parseInbound()
    }

    /// Whether an HTTP/1.1 request waits, as bytes, for the current response.
    private var pipelinedWaiting: Bool {
        request != nil && requestEnded && inbound.readableBytes > 0
    }

    /// HTTP/1.1: parses and dispatches what `inbound` holds, up to the end
    /// of a request that then waits for its response.
    private func parseInbound() {
        guard !parsing, !parserFailed else { return }
        parsing = true
        defer { parsing = false }
        // A response that ended inside `dispatch` may have closed the
        // connection (`parserFailed`): nothing more is parsed then.
        while !parserFailed, !(request != nil && requestEnded) {
            let next: InboundRequestPart?
            do {
                next = try parser.next(&inbound)
            } catch {
                // Nothing after the bytes the parser refused is read; requests
                // before them were answered first (they were parsed first).
                parserFailed = true
                inbound = noBytes
                env.logger.debug("request refused by the parser", metadata: ["reason": "\(error)", "listener": "\(env.listener.name)"])
                protocolError((error as? HTTP1ParseError)?.tooLarge == true ? .headTooLarge : .badRequest)
                return
            }
            guard let part = consume next else { break }
            dispatch(consume part)
        }
        if inbound.readableBytes == 0 { inbound = noBytes }
    }

    /// Takes the part (`consuming`): a head handed on rather than copied
    /// leaves the request the only holder of its header list, which the
    /// proxy and the filters then edit in place.
    func dispatch(_ part: consuming InboundRequestPart) {
        switch consume part {
        case .head(let head):
            discardingBody = false
            requestEnded = false
            clearDeadline()
            startRequest(consume head)
        case .body(let buffer):
            if discardingBody { return }
            request?.receivedBody(buffer)
        case .end(let trailers):
            if discardingBody {
                discardingBody = false
                return
            }
            requestEnded = true
            request?.receivedEnd(trailers)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        request?.flushUpstream()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer.cancel()
        inbound = noBytes
        dropRequest()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        request?.downstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Close now if idle, else after the current response. (On
            // HTTP/2 the frame layer sends GOAWAY and the streams finish.)
            quiescing = true
            if request == nil { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        env.logger.debug("downstream error", metadata: ["error": "\(error)", "listener": "\(env.listener.name)"])
        context.close(promise: nil)
    }

    /// Answers a request whose bytes (HTTP/1.1) or header block (HTTP/2)
    /// could not be read.
    func protocolError(_ error: GatewayError) {
        // A client that left mid-request is `client_closed`, in channelInactive.
        guard let context, context.channel.isActive else { return }
        if let request, !requestEnded {
            // The body of the current request is what is broken: never let the
            // upstream take what arrived of it for the whole.
            request.fail(error, closeDownstream: true)
            return
        }
        respondWithoutRequest(error)
    }

    /// Answers a request that has no usable head (the parser refused it) with
    /// the gateway's JSON error, then closes the connection (HTTP/1.1) or
    /// ends the stream (HTTP/2).
    private func respondWithoutRequest(_ error: GatewayError) {
        guard let context else { return }
        let requestID = loop.newRequestID()
        let body = "{\"error\":\"\(error.errorCode)\",\"request_id\":\"\(requestID)\"}"
        var headers = HeaderFields()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "content-length", value: String(body.utf8.count))
        headers.add(name: "x-request-id", value: requestID)
        if !isHTTP2 { headers.add(name: "connection", value: "close") }
        env.listener.sanitize.addSecurityHeaders(&headers)
        env.unrouted.rejected(error.errorCode)
        env.unrouted.record(status: Int(error.status.code), duration: .zero)
        env.accessLog.log(AccessLogEntry(
            requestID: requestID, listener: env.listener.name, route: "", upstream: "", method: "-", path: "-",
            status: Int(error.status.code), bytesIn: 0, bytesOut: body.utf8.count, durationNanos: 0, upstreamNanos: nil,
            client: clientIP, protocolName: isHTTP2 ? "HTTP/2" : "HTTP/1.1", error: error.errorCode))
        send(.head(.local(error.status, headers)), context: context)
        send(.body(context.channel.allocator.buffer(string: body)), context: context)
        parserFailed = true
        inbound = noBytes
        sendEnd(context: context, thenClose: true)
    }

    /// Holds reads back while pipelined requests wait or the upstream cannot
    /// take more request bytes. Reads are otherwise never toggled, so a
    /// keep-alive connection costs no epoll change per request.
    func read(context: ChannelHandlerContext) {
        if pipelinedWaiting || request?.shouldPauseDownstreamReads == true {
            readPending = true
        } else {
            context.read()
        }
    }

    /// The request can take more bytes: reads go on (HTTP/1.1), or the
    /// stream's window is returned (HTTP/2).
    func resumeReadsIfNeeded() {
        if isHTTP2 { return returnStreamCredit() }
        guard readPending, !pipelinedWaiting, !(request?.shouldPauseDownstreamReads ?? false) else { return }
        readPending = false
        context?.read()
    }

    // MARK: - Requests

    private func startRequest(_ head: consuming RequestHead) {
        guard let context else { return }
        let r = ProxyRequest(handler: self, head: consume head, env: env, isHTTP2: isHTTP2, isTLS: isTLS,
                             clientAddress: remoteAddress, eventLoop: context.eventLoop)
        request = r
        env.inFlight.increment()
        r.start()
    }

    /// Writes the response's end; then closes the connection, or goes on with
    /// the next request on it.
    /// `now`: the request's end as it read it, in this same call.
    func endResponse(_ r: ProxyRequest, close: Bool, bodyPending: Bool, now: NIODeadline? = nil) {
        guard request === r else { return }
        request = nil
        env.inFlight.decrement()
        clearDeadline()
        guard let ctx = context else { return }
        if isHTTP2 {
            sendEnd(context: ctx, thenClose: false)
            return
        }
        if close || quiescing || closeAfterResponse {
            parserFailed = true
            inbound = noBytes
            sendEnd(context: ctx, thenClose: true)
            return
        }
        sendEnd(context: ctx, thenClose: false)
        if bodyPending { discardingBody = true }
        requestEnded = true
        setDeadline(.awaitingHead, in: env.listener.limits.idleTimeout, now: now)
        // The next request, if its bytes are here (parsed now, in order).
        parseInbound()
        resumeReadsIfNeeded()
    }

    /// The response cannot be completed: end the connection (HTTP/1) or the
    /// stream (HTTP/2) so the client sees it broken, never short.
    func abortResponse(_ r: ProxyRequest) {
        guard request === r else { return }
        request = nil
        env.inFlight.decrement()
        clearDeadline()
        closeDownstream()
    }

    /// Ends the connection (HTTP/1.1) or resets the stream (HTTP/2).
    func closeDownstream() {
        if isHTTP2 { return resetStream(.cancel) }
        context?.close(promise: nil)
    }

    /// The client went away during the request.
    func requestGone(_ r: ProxyRequest) {
        guard request === r else { return }
        request = nil
        env.inFlight.decrement()
        clearDeadline()
    }

    func flush() {
        guard let context else { return }
        writeUnsent(context)
        context.flush()
    }

    var downstreamWritable: Bool {
        guard let context else { return false }
        if isHTTP2 { return sendWindow > 0 && (connection?.sendWindow ?? 0) > 0 && context.channel.isWritable }
        return context.channel.isWritable
    }
}

@available(*, unavailable)
extension ProxyHandler: Sendable {}
