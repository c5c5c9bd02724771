import Filters
import Logging
import NIOCore
import NIOHTTP1

/// One request on its way through the gateway: filters, the upstream
/// exchange, and the response back. Created by `ProxyHandler` per request,
/// on the request's event loop.
final class ProxyRequest: UpstreamDelegate {
    private unowned let handler: ProxyHandler
    private let env: ProxyEnvironment
    private let isHTTP2: Bool
    private let eventLoop: EventLoop
    let exchange: Exchange
    private let startedAt: NIODeadline
    private let method: HTTPMethod
    private let keepAlive: Bool

    private var route: CompiledRoute?
    /// How many filters' `onRequest` was reached; their `onResponse` run.
    private var filtersReached = 0

    private enum Framing { case none, contentLength, chunked }
    private var framing = Framing.none

    private enum Phase { case filtering, acquiring, forwarding, finished }
    private var phase = Phase.filtering
    private var pool: UpstreamPool?
    private var connection: UpstreamConnection?

    /// Request parts that arrived before the upstream connection was ready.
    private var pending = CircularBuffer<HTTPClientRequestPart>()
    private var pendingBytes = 0
    private static let pendingLimit = 256 << 10
    private var requestBodyBytes = 0
    private var clientEnded = false
    private var upstreamEnded = false

    private var responseStarted = false
    private var responseStatus: UInt = 0
    private var responseBytes = 0
    private var upstreamHeadAt: NIODeadline?
    private var upstreamKeepAlive = true
    private var timer: Scheduled<Void>?
    private var errorCode: String?
    private var expectsContinue = false

    init(handler: ProxyHandler, head: HTTPRequestHead, env: ProxyEnvironment, isHTTP2: Bool, isTLS: Bool,
         clientAddress: SocketAddress?, eventLoop: EventLoop) {
        self.handler = handler
        self.env = env
        self.isHTTP2 = isHTTP2
        self.eventLoop = eventLoop
        self.startedAt = .now()
        self.method = head.method
        self.keepAlive = head.isKeepAlive
        self.exchange = Exchange(request: head, requestID: HeaderRules.newRequestID(), listener: env.listener.name,
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
            return respondLocally(.badRequest)
        }
        let target = Substring(head.uri)
        guard target.hasPrefix("/") else { return respondLocally(.badRequest) }

        // Framing of the body to send upstream.
        let lengths = head.headers[canonicalForm: "content-length"]
        if let cl = lengths.first {
            guard lengths.count == 1, let n = Int(cl), n >= 0 else { return respondLocally(.badRequest) }
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
    private func prepareUpstreamHead(_ route: CompiledRoute) {
        var head = exchange.request
        let (path, query) = Router.split(Substring(head.uri))
        let newPath = route.rewrite.apply(path)
        head.uri = query.map { newPath + "?" + $0 } ?? newPath
        head.version = .http1_1
        var headers = head.headers
        let expectsContinue = headers.first(name: "expect")?.lowercased() == "100-continue"
        HeaderRules.removeHopByHop(&headers)
        headers.remove(name: "expect")
        headers.remove(name: "x-request-id")
        headers.remove(name: "forwarded")
        headers.replaceOrAdd(name: "x-request-id", value: exchange.requestID)
        if let ip = HeaderRules.clientIP(exchange.clientAddress) {
            headers.replaceOrAdd(name: "x-forwarded-for", value: ip)
        } else {
            headers.remove(name: "x-forwarded-for")
        }
        headers.replaceOrAdd(name: "x-forwarded-proto", value: exchange.isTLS ? "https" : "http")
        if exchange.originalHost.isEmpty {
            headers.remove(name: "x-forwarded-host")
        } else {
            headers.replaceOrAdd(name: "x-forwarded-host", value: exchange.originalHost)
        }
        if framing == .chunked { headers.replaceOrAdd(name: "transfer-encoding", value: "chunked") }
        head.headers = headers
        exchange.request = head
        self.expectsContinue = expectsContinue && !isHTTP2
    }

    /// Whether the downstream connection must close after the response: the
    /// client asked for it, or a body is still on its way that nobody will read.
    private var mustCloseDownstream: Bool {
        !isHTTP2 && (!keepAlive || (framing != .none && !clientEnded))
    }

    private func setUpstreamHost(_ route: CompiledRoute, upstream: UpstreamDefinition) {
        if let h = route.hostRewrite {
            exchange.request.headers.replaceOrAdd(name: "host", value: h)
        } else if !route.preserveHost {
            exchange.request.headers.replaceOrAdd(name: "host", value: upstream.host)
        }
    }

    private func runFilters(from index: Int) {
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

    private func acquireUpstream() {
        guard let route, let pools = env.pools.pools(for: eventLoop), let pool = pools.pools[exchange.upstream] else {
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

    private func attach(_ c: UpstreamConnection) {
        connection = c
        c.delegate = self
        c.readsPaused = !handler.downstreamWritable
        c.exchanges += 1
        phase = .forwarding
        c.write(.head(exchange.request))
        while let part = pending.popFirst() { c.write(part) }
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
    private func requestSent() {
        guard !responseStarted, let pool else { return }
        timer?.cancel()
        timer = eventLoop.scheduleTask(in: pool.definition.responseTimeout) { [weak self] in
            self?.upstreamTimedOut()
        }
    }

    /// Ends the exchange on an error: the upstream connection is closed (a
    /// body it was receiving stays incomplete, never silently short); the
    /// client gets the error, or, when the response already started, a
    /// broken response instead of a short one.
    private func fail(_ error: GatewayError, closeDownstream: Bool = false) {
        if let connection { dropConnection(connection) }
        if responseStarted {
            errorCode = error.errorCode
            complete(status: responseStatus)
            handler.abortResponse(self)
        } else {
            respondLocally(error, close: closeDownstream)
        }
    }

    private func upstreamTimedOut() {
        guard phase == .forwarding else { return }
        fail(.upstreamTimeout)
    }

    // MARK: - Upstream response

    func upstreamResponseHead(_ head: HTTPResponseHead) {
        guard phase == .forwarding, let pool else { return }
        if head.status.code < 200 { return }  // 1xx are not forwarded
        responseStarted = true
        upstreamHeadAt = .now()
        responseStatus = head.status.code
        upstreamKeepAlive = head.isKeepAlive
        timer?.cancel()
        timer = eventLoop.scheduleTask(in: pool.definition.bodyTimeout) { [weak self] in self?.upstreamTimedOut() }
        var headers = head.headers
        HeaderRules.removeHopByHop(&headers)
        headers.replaceOrAdd(name: "x-request-id", value: exchange.requestID)
        var response = ResponseHead(status: head.status, headers: headers, isLocal: false)
        runResponseFilters(&response)
        if mustCloseDownstream { response.headers.replaceOrAdd(name: "connection", value: "close") }
        handler.write(.head(HTTPResponseHead(version: isHTTP2 ? .http2 : .http1_1, status: response.status, headers: response.headers)))
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard phase == .forwarding, responseStarted, let pool else { return }
        responseBytes += buffer.readableBytes
        timer?.cancel()
        timer = eventLoop.scheduleTask(in: pool.definition.bodyTimeout) { [weak self] in self?.upstreamTimedOut() }
        handler.write(.body(.byteBuffer(buffer)))
    }

    func upstreamResponseEnd() {
        guard phase == .forwarding, responseStarted else { return }
        timer?.cancel()
        let reusable = clientEnded && upstreamKeepAlive
        if let connection, let pool {
            self.connection = nil
            pool.release(connection, reusable: reusable)
        }
        let close = mustCloseDownstream
        complete(status: responseStatus)
        handler.endResponse(self, close: close, bodyPending: !clientEnded)
    }

    func upstreamReadComplete() {
        if phase == .forwarding { handler.flush() }
    }

    func upstreamFailed(_ error: Error) {
        guard phase == .forwarding else { return }
        exchange.logger.debug("upstream failed", metadata: ["upstream": "\(exchange.upstream)", "error": "\(error)"])
        fail(.upstreamUnavailable)
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        if writable { handler.resumeReadsIfNeeded() }
    }

    func downstreamWritabilityChanged(_ writable: Bool) {
        connection?.readsPaused = !writable
    }

    /// The client went away: cancel the upstream exchange.
    func downstreamClosed() {
        guard phase != .finished else { return }
        if let connection { dropConnection(connection) }
        errorCode = "client_closed"
        complete(status: responseStarted ? responseStatus : 499)
        handler.requestGone(self)
    }

    private func dropConnection(_ c: UpstreamConnection) {
        connection = nil
        c.delegate = nil
        pool?.release(c, reusable: false)
        c.close()
    }

    // MARK: - Local responses and completion

    private func respondLocally(_ error: GatewayError, headers: HTTPHeaders = [:], close: Bool = false) {
        respondLocally(FilterResponse(error: error, headers: headers), close: close)
    }

    private func respondLocally(_ response: FilterResponse, close forceClose: Bool = false) {
        guard phase != .finished else { return }
        timer?.cancel()
        if let connection { dropConnection(connection) }
        var headers = response.headers
        var body = response.body
        if let code = response.errorCode {
            errorCode = code
            var buffer = ByteBufferAllocator().buffer(capacity: 64)
            buffer.writeString("{\"error\":\"\(code)\",\"request_id\":\"\(exchange.requestID)\"}")
            body = buffer
            headers.replaceOrAdd(name: "content-type", value: "application/json")
            (route?.metrics ?? env.unrouted).rejected(code)
        }
        headers.replaceOrAdd(name: "content-length", value: String(body?.readableBytes ?? 0))
        headers.replaceOrAdd(name: "x-request-id", value: exchange.requestID)
        var head = ResponseHead(status: response.status, headers: headers, isLocal: true)
        runResponseFilters(&head)
        let close = !isHTTP2 && (forceClose || mustCloseDownstream)
        if close { head.headers.replaceOrAdd(name: "connection", value: "close") }
        responseStarted = true
        responseStatus = head.status.code
        handler.write(.head(HTTPResponseHead(version: isHTTP2 ? .http2 : .http1_1, status: head.status, headers: head.headers)))
        if let body, method != .HEAD, body.readableBytes > 0 {
            responseBytes = body.readableBytes
            handler.write(.body(.byteBuffer(body)))
        }
        complete(status: responseStatus)
        handler.endResponse(self, close: close, bodyPending: !clientEnded)
    }

    private func runResponseFilters(_ head: inout ResponseHead) {
        guard let route else {
            // No route: only the listener's defaults can decorate the answer.
            for filter in env.listener.defaultFilters.reversed() { filter.onResponse(exchange, &head) }
            return
        }
        var i = filtersReached
        while i > 0 {
            i -= 1
            route.filters[i].onResponse(exchange, &head)
        }
    }

    /// Records the request (metrics, access log) once; the handler then ends,
    /// aborts or forgets the downstream side.
    private func complete(status: UInt) {
        guard phase != .finished else { return }
        phase = .finished
        timer?.cancel()
        pending.removeAll()
        let end = NIODeadline.now()
        let duration = end - startedAt
        (route?.metrics ?? env.unrouted).record(status: Int(status), duration: duration)
        env.accessLog.log(AccessLogEntry(
            requestID: exchange.requestID, listener: exchange.listener, route: exchange.route, upstream: exchange.upstream,
            method: method.rawValue, path: exchange.originalTarget, status: Int(status), bytesIn: requestBodyBytes,
            bytesOut: responseBytes, durationNanos: duration.nanoseconds,
            upstreamNanos: upstreamHeadAt.map { ($0 - startedAt).nanoseconds }, client: exchange.clientAddress?.ipAddress,
            protocolName: isHTTP2 ? "HTTP/2" : "HTTP/1.1", error: errorCode))
    }

    static func headSize(_ head: HTTPRequestHead) -> Int {
        var size = head.method.rawValue.utf8.count + head.uri.utf8.count + 12
        for (name, value) in head.headers { size += name.utf8.count + value.utf8.count + 4 }
        return size
    }
}

@available(*, unavailable)
extension ProxyRequest: Sendable {}
