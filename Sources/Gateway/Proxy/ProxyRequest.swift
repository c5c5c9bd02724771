import Filters
import Logging
import NIOCore
import NIOHTTP1

/// One request on its way through the gateway: filters, the upstream
/// exchange, and the response back. Created by `ProxyHandler` per request,
/// on the request's event loop.
final class ProxyRequest: UpstreamDelegate {
    /// Strong, a cycle while the handler holds this request: the handler
    /// lets go of it when the response ends, the client leaves, or the
    /// handler is removed. (`unowned` cost two atomic reference-count
    /// operations at each of about 15 uses a request, to check it was alive;
    /// a strong `let` is read as it is.)
    let handler: ProxyHandler
    let env: ProxyEnvironment
    let isHTTP2: Bool
    let eventLoop: EventLoop
    let exchange: Exchange
    let startedAt: NIODeadline
    let method: HTTPMethod
    let keepAlive: Bool
    /// An HTTP/1.0 client: its answers are never chunked.
    let isHTTP10: Bool

    var route: CompiledRoute?
    /// How many filters' `onRequest` was reached; their `onResponse` run.
    var filtersReached = 0

    enum Framing { case none, contentLength, chunked }
    var framing = Framing.none

    /// What the head gets on the wire only (`Host`, a collected body's length).
    var wireEdits = UpstreamHeadEdits()

    enum Phase { case filtering, buffering, acquiring, forwarding, finished }
    var phase = Phase.filtering
    var pool: (any UpstreamPooling)?
    /// The upstream's response-head and body timeouts, read from its
    /// definition once when the pool is chosen (each read through the pool
    /// was a reference to the definition taken and dropped).
    var upstreamTimeouts: (response: TimeAmount, body: TimeAmount)?
    var connection: UpstreamConnection?

    /// Request parts that arrived before the upstream connection was ready.
    /// (An array: no allocation for the usual request, which has none.)
    var pending: [UpstreamRequestPart] = []
    var pendingBytes = 0
    static let pendingLimit = 256 << 10
    var requestBodyBytes = 0
    var clientEnded = false
    /// The whole body, on routes with a filter that needs it.
    var bufferedBody: ByteBuffer?

    var responseStarted = false
    var responseStatus: UInt = 0
    var responseBytes = 0
    var upstreamHeadAt: NIODeadline?
    var errorCode: String?
    var expectsContinue = false
    /// The upstream's response head and body, held while a filter's
    /// `responseBodyTransform` needs the whole body.
    var heldHead: ResponseHead?
    var heldBody: ByteBuffer?
    /// Whether the request was already sent again after a reused connection failed.
    var retried = false
    /// The client takes no more of the response for now: the upstream is not
    /// read, and the deadline is the listener's `send_timeout`, not the
    /// upstream's `body_timeout` (the silence is the client's).
    var waitingOnClient = false
    /// The request's body is on its way and the deadline is the listener's
    /// `client_body_timeout`, restarted by every part of it that arrives.
    var awaitingClientBody = false

    init(handler: ProxyHandler, head: consuming RequestHead, env: ProxyEnvironment, isHTTP2: Bool, isTLS: Bool,
         clientAddress: SocketAddress?, eventLoop: EventLoop) {
        self.handler = handler
        self.env = env
        self.isHTTP2 = isHTTP2
        self.eventLoop = eventLoop
        self.startedAt = .now()
        self.method = head.method
        self.keepAlive = head.isKeepAlive
        self.isHTTP10 = !isHTTP2 && head.version.major == 1 && head.version.minor == 0
        var requestID: String?
        if env.listener.sanitize.trustRequestID, let given = head.headers.first(name: "x-request-id"),
           SanitizePolicy.isAcceptableRequestID(given) {
            requestID = given
        }
        self.exchange = Exchange(request: consume head, requestID: requestID ?? handler.loop.newRequestID(), listener: env.listener.name,
                                 clientAddress: clientAddress, isTLS: isTLS, eventLoop: eventLoop, logger: env.logger)
    }

    var bodyLimit: Int {
        let routeLimit = route?.maxBody ?? env.listener.limits.maxBody
        guard let own = exchange.bodyLimit else { return routeLimit }
        return min(own, routeLimit)
    }

    var shouldPauseDownstreamReads: Bool {
        if phase == .forwarding, let connection { return !connection.channel.isWritable }
        return pendingBytes >= Self.pendingLimit
    }

    // MARK: - Request side

    func start() {
        guard admit(), let route else { return }
        // After `admit`, which held a copy of the head: the request's header
        // list is its own again, and is edited in place.
        prepareUpstreamHead(route)
        // A client that asked for 100-continue sends nothing before it. The
        // wait starts with the request (`start` runs in the event that made it).
        if !expectsContinue { awaitClientBody(now: startedAt) }
        runFilters(from: 0)
    }

    /// Rewrite, forwarding headers, hop-by-hop removal: the request as the upstream will see it.
    func prepareUpstreamHead(_ route: CompiledRoute) {
        // The target and version are set only when they change: setting one
        // copies the head's shared storage.
        if case .none = route.rewrite {} else {
            let (path, query) = Router.split(Substring(exchange.request.uri))
            let newPath = route.rewrite.apply(path)
            if newPath != path { exchange.request.uri = query.map { newPath + "?" + $0 } ?? newPath }
        }
        if exchange.request.version != .http1_1 { exchange.request.version = .http1_1 }
        // In place: the request's list is its own (the parser's value was
        // handed on, not copied), so no field is copied.
        let expectsContinue = HeaderRules.prepareUpstreamRequestHeaders(
            &exchange.request.headers, requestID: exchange.requestID, clientIP: handler.clientIP, isTLS: exchange.isTLS,
            originalHost: exchange.originalHost, chunked: framing == .chunked, policy: env.listener.sanitize,
            keepAppChannel: route.keepsAppChannelHeaders)
        self.expectsContinue = expectsContinue && !isHTTP2
    }

    /// Whether the downstream connection must close after the response: the
    /// client asked for it, or a body is still on its way that nobody will read.
    var mustCloseDownstream: Bool {
        !isHTTP2 && (!keepAlive || (framing != .none && !clientEnded))
    }

    /// The `Host` the upstream gets, when it is not the one in the head.
    func setUpstreamHost(_ route: CompiledRoute, upstream: UpstreamDefinition) {
        let host = route.upstreamHost(clientHost: exchange.originalHost, upstream: upstream)
        let keep = host == exchange.originalHost && exchange.request.headers.contains(name: "host")
        wireEdits.host = keep ? nil : host
    }

    func acquireUpstream() {
        guard let route, let pool = handler.loop.pool(named: exchange.upstream) else {
            exchange.logger.error("no pool for upstream", metadata: ["upstream": "\(exchange.upstream)"])
            return respondLocally(.upstreamUnavailable)
        }
        self.pool = pool
        let definition = pool.definition
        upstreamTimeouts = (definition.responseTimeout, definition.bodyTimeout)
        // The filters have read the head; its `X-Gw-*` headers stay off the
        // wire (PROTOCOL 2.5), and the upstream's `Host` goes on it.
        setUpstreamHost(route, upstream: definition)
        phase = .acquiring
        if expectsContinue {
            // Only now that every filter let the request through is the client
            // invited to send its body.
            handler.write(.head(.local(.continue)))
            handler.flush()
            awaitClientBody()
        }
        // Writing the 100 may have found the client gone.
        guard phase == .acquiring else { return }
        if let c = pool.acquireIdle() { return attach(c) }
        pool.acquire().whenComplete { [self] result in
            guard phase == .acquiring else {
                if case .success(let c) = result { pool.release(c.value, reusable: true) }
                return
            }
            switch result {
            case .success(let c): attach(c.value)
            case .failure(let error):
                exchange.logger.debug("upstream unavailable", metadata: ["upstream": "\(exchange.upstream)", "error": "\(error)"])
                respondLocally(.upstreamUnavailable)
            }
        }
    }

    func attach(_ c: UpstreamConnection) {
        connection = c
        c.delegate = self
        c.readsPaused = !handler.downstreamWritable
        c.exchanges += 1
        phase = .forwarding
        c.writeHead(exchange.request, edits: wireEdits)
        var endWritten = false
        let parts = pending
        pending.removeAll()
        for part in parts {
            // A write that failed the exchange ends it.
            guard phase == .forwarding else { break }
            if case .end = part { endWritten = true }
            c.write(part)
        }
        // A retry of a bodiless request: its end went to the failed connection.
        if clientEnded && !endWritten { c.write(.end(nil)) }
        pendingBytes = 0
        // Inside a downstream read, the flush waits for the read's end: bytes
        // further on that the parser refuses then cancel the request before
        // any of it leaves (see `ProxyHandler.reading`).
        if !handler.reading { c.flush() }
        if clientEnded { requestSent() }
        if awaitingClientBody { awaitClientBody() }
        handler.resumeReadsIfNeeded()
    }

    func receivedBody(_ buffer: ByteBuffer) {
        guard phase != .finished, let route else { return }
        if awaitingClientBody { awaitClientBody() }
        requestBodyBytes += buffer.readableBytes
        if requestBodyBytes > bodyLimit {
            // Never let the upstream take a truncated body for a complete one.
            return fail(.bodyTooLarge, closeDownstream: true)
        }
        if framing == .none {
            // A body on a request that announced none (HTTP/2 GET with DATA).
            return fail(.badRequest, closeDownstream: true)
        }
        if route.buffersBody {
            if bufferedBody == nil {
                bufferedBody = buffer
            } else {
                var b = buffer
                bufferedBody!.writeBuffer(&b)
            }
        } else if phase == .forwarding, let connection {
            connection.write(.body(.byteBuffer(buffer)))
        } else {
            pending.append(.body(.byteBuffer(buffer)))
            pendingBytes += buffer.readableBytes
        }
    }

    func receivedEnd(_ trailers: HeaderFields? = nil) {
        guard phase != .finished else { return }
        clientEnded = true
        if awaitingClientBody {
            awaitingClientBody = false
            if !responseStarted { handler.clearDeadline() }
        }
        if route?.buffersBody == true {
            if phase == .buffering { runBodyFilters(from: 0) }
            return
        }
        // Trailers only where the route allows them, only on a chunked
        // upstream request, and never one that frames, routes or is owned.
        var forwarded: HeaderFields?
        if let trailers, !trailers.isEmpty, route?.allowTrailers == true, framing == .chunked {
            var kept = HeaderFields()
            for (name, value) in trailers where HeaderRules.isForwardableTrailer(name) { kept.add(name: name, value: value) }
            if !kept.isEmpty { forwarded = kept }
        }
        if phase == .forwarding, let connection {
            connection.write(.end(forwarded))
            if !handler.reading { connection.flush() }
            requestSent()
        } else {
            pending.append(.end(forwarded))
        }
    }

    func flushUpstream() {
        if phase == .forwarding { connection?.flush() }
    }

    /// Ends the exchange on an error: the upstream connection is closed (a
    /// body it was receiving stays incomplete, never silently short); the
    /// client gets the error, or, when the response already started, a
    /// broken response instead of a short one.
    func fail(_ error: GatewayError, closeDownstream: Bool = false) {
        if let connection { dropConnection(connection) }
        if heldHead != nil {
            // Nothing of the held response went out: the client gets a clean error.
            heldHead = nil
            heldBody = nil
            responseStarted = false
        }
        if responseStarted {
            errorCode = error.errorCode
            complete(status: responseStatus)
            handler.abortResponse(self)
        } else {
            respondLocally(error, close: closeDownstream)
        }
    }
}

@available(*, unavailable)
extension ProxyRequest: Sendable {}
