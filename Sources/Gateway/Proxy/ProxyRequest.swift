import Filters
import Logging
import NIOCore
import NIOHTTP1

/// One request on its way through the gateway: filters, the upstream
/// exchange, and the response back. Created by `ProxyHandler` per request,
/// on the request's event loop.
final class ProxyRequest: UpstreamDelegate {
    unowned let handler: ProxyHandler
    let env: ProxyEnvironment
    let isHTTP2: Bool
    let eventLoop: EventLoop
    let exchange: Exchange
    let startedAt: NIODeadline
    let method: HTTPMethod
    let keepAlive: Bool

    var route: CompiledRoute?
    /// How many filters' `onRequest` was reached; their `onResponse` run.
    var filtersReached = 0

    enum Framing { case none, contentLength, chunked }
    var framing = Framing.none

    enum Phase { case filtering, acquiring, forwarding, finished }
    var phase = Phase.filtering
    var pool: UpstreamPool?
    var connection: UpstreamConnection?

    /// Request parts that arrived before the upstream connection was ready.
    var pending = CircularBuffer<HTTPClientRequestPart>()
    var pendingBytes = 0
    static let pendingLimit = 256 << 10
    var requestBodyBytes = 0
    var clientEnded = false

    var responseStarted = false
    var responseStatus: UInt = 0
    var responseBytes = 0
    var upstreamHeadAt: NIODeadline?
    var upstreamKeepAlive = true
    var errorCode: String?
    var expectsContinue = false
    /// Whether the request was already sent again after a reused connection failed.
    var retried = false

    init(handler: ProxyHandler, head: HTTPRequestHead, env: ProxyEnvironment, isHTTP2: Bool, isTLS: Bool,
         clientAddress: SocketAddress?, eventLoop: EventLoop) {
        self.handler = handler
        self.env = env
        self.isHTTP2 = isHTTP2
        self.eventLoop = eventLoop
        self.startedAt = .now()
        self.method = head.method
        self.keepAlive = head.isKeepAlive
        self.exchange = Exchange(request: head, requestID: handler.loop.newRequestID(), listener: env.listener.name,
                                 clientAddress: clientAddress, isTLS: isTLS, eventLoop: eventLoop, logger: env.logger)
    }

    var shouldPauseDownstreamReads: Bool {
        if phase == .forwarding, let connection { return !connection.channel.isWritable }
        return pendingBytes >= Self.pendingLimit
    }

    // MARK: - Request side

    func start() {
        let head = exchange.request
        let limits = env.listener.limits
        if head.headers.count > limits.maxHeaders || Self.headSize(head) > limits.maxHeadSize {
            return respondLocally(.headTooLarge)
        }
        let hosts = head.headers[canonicalForm: "host"]
        if hosts.count > 1 || (!isHTTP2 && head.version.minor >= 1 && hosts.isEmpty) {
            return respondLocally(.badRequest, close: true)
        }
        let target = Substring(head.uri)
        guard target.hasPrefix("/") else { return respondLocally(.badRequest, close: true) }

        // Framing of the body to send upstream.
        let lengths = head.headers[canonicalForm: "content-length"]
        if let cl = lengths.first {
            guard lengths.count == 1, let n = Int(cl), n >= 0 else { return respondLocally(.badRequest, close: true) }
            framing = .contentLength
        } else if head.headers.contains(name: "transfer-encoding") {
            framing = .chunked
        }

        switch env.listener.router.match(method: head.method.rawValue, host: Substring(exchange.originalHost),
                                         target: target, headers: head.headers) {
        case .noRoute:
            return respondLocally(.noRoute)
        case .methodNotAllowed(let allow):
            return respondLocally(.methodNotAllowed, headers: ["allow": allow.joined(separator: ", ")])
        case .matched(let route):
            self.route = route
            exchange.setRoute(route.name)
            if let cl = head.headers.first(name: "content-length"), let n = Int(cl), n > route.maxBody {
                return respondLocally(.bodyTooLarge)
            }
            var rng = SystemRandomNumberGenerator()
            exchange.upstream = route.targets.pick(head.headers, using: &rng)
            prepareUpstreamHead(route)
            runFilters(from: 0)
        }
    }

    /// Rewrite, forwarding headers, hop-by-hop removal: the request as the upstream will see it.
    func prepareUpstreamHead(_ route: CompiledRoute) {
        var head = exchange.request
        let (path, query) = Router.split(Substring(head.uri))
        let newPath = route.rewrite.apply(path)
        head.uri = query.map { newPath + "?" + $0 } ?? newPath
        head.version = .http1_1
        let (headers, expectsContinue) = HeaderRules.upstreamRequestHeaders(
            from: head.headers, requestID: exchange.requestID, clientIP: handler.clientIP, isTLS: exchange.isTLS,
            originalHost: exchange.originalHost, chunked: framing == .chunked)
        head.headers = headers
        exchange.request = head
        self.expectsContinue = expectsContinue && !isHTTP2
    }

    /// Whether the downstream connection must close after the response: the
    /// client asked for it, or a body is still on its way that nobody will read.
    var mustCloseDownstream: Bool {
        !isHTTP2 && (!keepAlive || (framing != .none && !clientEnded))
    }

    func setUpstreamHost(_ route: CompiledRoute, upstream: UpstreamDefinition) {
        let host = route.upstreamHost(clientHost: exchange.originalHost, upstream: upstream)
        if host != exchange.originalHost || exchange.request.headers["host"].isEmpty {
            exchange.request.headers.replaceOrAdd(name: "host", value: host)
        }
    }

    func runFilters(from index: Int) {
        guard let route, phase == .filtering else { return }
        var i = index
        while i < route.filters.count {
            filtersReached = i + 1
            switch route.filters[i].onRequest(exchange) {
            case .next:
                i += 1
            case .respond(let response):
                return respondLocally(response)
            case .suspend(let future):
                let next = i + 1
                future.hop(to: eventLoop).whenComplete { [self] result in
                    guard phase == .filtering else { return }
                    switch result {
                    case .success(.next): runFilters(from: next)
                    case .success(.respond(let response)): respondLocally(response)
                    case .success(.suspend(let again)):
                        // A filter may chain futures; resolve before moving on.
                        again.hop(to: eventLoop).whenComplete { [self] r in
                            switch r {
                            case .success(.respond(let response)): respondLocally(response)
                            case .success: runFilters(from: next)
                            case .failure: respondLocally(.internalError)
                            }
                        }
                    case .failure(let error):
                        exchange.logger.error("filter failed", metadata: ["filter": "\(route.filterNames[i])", "error": "\(error)"])
                        respondLocally(.internalError)
                    }
                }
                return
            }
        }
        acquireUpstream()
    }

    func acquireUpstream() {
        guard let route, let pool = handler.loop.pools[exchange.upstream] else {
            exchange.logger.error("no pool for upstream", metadata: ["upstream": "\(exchange.upstream)"])
            return respondLocally(.upstreamUnavailable)
        }
        self.pool = pool
        setUpstreamHost(route, upstream: pool.definition)
        phase = .acquiring
        if expectsContinue {
            // Only now that every filter let the request through is the client
            // invited to send its body.
            handler.write(.head(HTTPResponseHead(version: .http1_1, status: .continue)))
            handler.flush()
        }
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
        c.write(.head(exchange.request))
        var endWritten = false
        while let part = pending.popFirst() {
            if case .end = part { endWritten = true }
            c.write(part)
        }
        // A retry of a bodiless request: its end went to the failed connection.
        if clientEnded && !endWritten { c.write(.end(nil)) }
        pendingBytes = 0
        c.flush()
        if clientEnded { requestSent() }
        handler.resumeReadsIfNeeded()
    }

    func receivedBody(_ buffer: ByteBuffer) {
        guard phase != .finished, let route else { return }
        requestBodyBytes += buffer.readableBytes
        if requestBodyBytes > route.maxBody {
            // Never let the upstream take a truncated body for a complete one.
            return fail(.bodyTooLarge, closeDownstream: true)
        }
        if framing == .none {
            // A body on a request that announced none (HTTP/2 GET with DATA).
            return fail(.badRequest, closeDownstream: true)
        }
        if phase == .forwarding, let connection {
            connection.write(.body(.byteBuffer(buffer)))
        } else {
            pending.append(.body(.byteBuffer(buffer)))
            pendingBytes += buffer.readableBytes
        }
    }

    func receivedEnd() {
        guard phase != .finished else { return }
        clientEnded = true
        if phase == .forwarding, let connection {
            connection.write(.end(nil))
            connection.flush()
            requestSent()
        } else {
            pending.append(.end(nil))
        }
    }

    func flushUpstream() {
        if phase == .forwarding { connection?.flush() }
    }

    /// The whole request is upstream: the response-head timer starts.
    func requestSent() {
        guard !responseStarted, let pool else { return }
        handler.setDeadline(.upstream, in: pool.definition.responseTimeout)
    }

    /// Ends the exchange on an error: the upstream connection is closed (a
    /// body it was receiving stays incomplete, never silently short); the
    /// client gets the error, or, when the response already started, a
    /// broken response instead of a short one.
    func fail(_ error: GatewayError, closeDownstream: Bool = false) {
        if let connection { dropConnection(connection) }
        if responseStarted {
            errorCode = error.errorCode
            complete(status: responseStatus)
            handler.abortResponse(self)
        } else {
            respondLocally(error, close: closeDownstream)
        }
    }

    func upstreamTimedOut() {
        guard phase == .forwarding else { return }
        fail(.upstreamTimeout)
    }
}

@available(*, unavailable)
extension ProxyRequest: Sendable {}
