import Filters
import NIOCore
import NIOHTTP1

/// The response side of `ProxyRequest`: the upstream's response streaming
/// back, the gateway's own answers, and completion.
extension ProxyRequest {
    // MARK: - Upstream response

    func upstreamResponseHead(_ head: consuming ResponseHead) {
        guard phase == .forwarding, let timeouts = upstreamTimeouts else { return }
        if head.status.code < 200 { return }  // 1xx are not forwarded
        responseStarted = true
        let now = NIODeadline.now()
        upstreamHeadAt = now
        responseStatus = head.status.code
        // An answer before the whole request: the response's deadlines apply.
        awaitingClientBody = false
        handler.setDeadline(.upstream, in: timeouts.body, now: now)
        // Edited in place: the parser's list is this head's alone.
        HeaderRules.prepareResponseHeaders(&head.headers, requestID: exchange.requestID, policy: env.listener.sanitize)
        runResponseFilters(&head)
        if mustCloseDownstream { head.headers.replaceOrAdd(name: "connection", value: "close") }
        if exchange.responseBodyTransform != nil && Self.hasBody(status: head.status, method: method) {
            // The transform needs the whole body: hold the head until the end.
            heldHead = head
            heldBody = ByteBuffer()
            return
        }
        handler.write(.head(head))
        if !handler.downstreamWritable { waitForClient() }
    }

    /// Whether a response has a body by HTTP's rules (RFC 9110 6.4.1).
    static func hasBody(status: HTTPResponseStatus, method: HTTPMethod) -> Bool {
        method != .HEAD && status.code >= 200 && status != .noContent && status != .notModified
    }

    func upstreamResponseBody(_ buffer: ByteBuffer) {
        guard phase == .forwarding, responseStarted, let timeouts = upstreamTimeouts else { return }
        responseBytes += buffer.readableBytes
        // Bytes already read when the client stopped taking more do not
        // restart its clock.
        if !waitingOnClient { handler.setDeadline(.upstream, in: timeouts.body) }
        if heldHead != nil {
            guard responseBytes <= exchange.responseBodyLimit else {
                exchange.logger.warning("upstream response too large to seal", metadata: ["limit": "\(exchange.responseBodyLimit)"])
                return fail(.rejection("upstream_response_too_large", status: .badGateway))
            }
            // The first part is kept as it is (usually the whole body, read
            // with the head); later ones are copied after it.
            if heldBody!.readableBytes == 0 {
                heldBody = buffer
            } else {
                var b = buffer
                heldBody!.writeBuffer(&b)
            }
            return
        }
        handler.write(.body(buffer))
    }

    func upstreamResponseEnd() {
        guard phase == .forwarding, responseStarted else { return }
        // Whether the upstream keeps the connection is the connection's own
        // business (`UpstreamConnection.mustClose`, from its parser).
        let reusable = clientEnded
        if let connection, let pool {
            self.connection = nil
            pool.release(connection, reusable: reusable)
        }
        if var head = heldHead, let body = heldBody, let transform = exchange.responseBodyTransform {
            heldHead = nil
            heldBody = nil
            let sealed = transform(head.status, &head.headers, body)
            head.headers.replace("transfer-encoding", "content-length", with: ("content-length", String(sealed.readableBytes)))
            responseBytes = sealed.readableBytes
            handler.write(.head(head))
            handler.write(.body(sealed))
        }
        let close = mustCloseDownstream
        let now = complete(status: responseStatus)
        handler.endResponse(self, close: close, bodyPending: !clientEnded, now: now)
    }

    func upstreamReadComplete() {
        if phase == .forwarding { handler.flush() }
    }

    static func isIdempotent(_ method: HTTPMethod) -> Bool {
        switch method {
        case .GET, .HEAD, .OPTIONS, .TRACE, .PUT, .DELETE: return true
        default: return false
        }
    }

    func upstreamFailed(_ error: Error) {
        guard phase == .forwarding else { return }
        exchange.logger.debug("upstream failed", metadata: ["upstream": "\(exchange.upstream)", "error": "\(error)"])
        // A pooled connection the upstream closed just as it was reused (its
        // keep-alive ran out): nothing of the response came, and an idempotent
        // request (RFC 9110 9.2.2) without a body can be sent again as it was,
        // once, on a new connection.
        if let connection, connection.exchanges > 1, !responseStarted, !retried, framing == .none, clientEnded,
           Self.isIdempotent(method) {
            retried = true
            dropConnection(connection)
            pool?.metricsRetried()
            acquireUpstream()
            return
        }
        fail(.upstreamUnavailable)
    }

    func upstreamWritabilityChanged(_ writable: Bool) {
        guard writable else { return }
        // Reading again: the client's body gets its full time from here.
        if awaitingClientBody { awaitClientBody() }
        handler.resumeReadsIfNeeded()
    }

    func downstreamWritabilityChanged(_ writable: Bool) {
        connection?.readsPaused = !writable
        // Only a response being streamed to the client waits on it (a held
        // one is not written before its end).
        guard phase == .forwarding, responseStarted, heldHead == nil, let timeouts = upstreamTimeouts else { return }
        if !writable {
            waitForClient()
        } else if waitingOnClient {
            waitingOnClient = false
            handler.setDeadline(.upstream, in: timeouts.body)
        }
    }

    /// The client went away: cancel the upstream exchange.
    func downstreamClosed() {
        guard phase != .finished else { return }
        if let connection { dropConnection(connection) }
        errorCode = "client_closed"
        complete(status: responseStarted ? responseStatus : 499)
        handler.requestGone(self)
    }

    func dropConnection(_ c: UpstreamConnection) {
        connection = nil
        c.delegate = nil
        pool?.release(c, reusable: false)
        c.close()
    }

    // MARK: - Local responses and completion

    func respondLocally(_ error: GatewayError, headers: HeaderFields = [:], close: Bool = false) {
        respondLocally(FilterResponse(error: error, headers: headers), close: close)
    }

    func respondLocally(_ response: FilterResponse, close forceClose: Bool = false) {
        guard phase != .finished else { return }
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
        env.listener.sanitize.addSecurityHeaders(&headers)
        var head = ResponseHead(status: response.status, headers: headers, isLocal: true)
        runResponseFilters(&head)
        let close = !isHTTP2 && (forceClose || mustCloseDownstream)
        if close { head.headers.replaceOrAdd(name: "connection", value: "close") }
        responseStarted = true
        responseStatus = head.status.code
        handler.write(.head(head))
        if let body, method != .HEAD, body.readableBytes > 0 {
            responseBytes = body.readableBytes
            handler.write(.body(body))
        }
        let now = complete(status: responseStatus)
        handler.endResponse(self, close: close, bodyPending: !clientEnded, now: now)
    }

    func runResponseFilters(_ head: inout ResponseHead) {
        guard let route else {
            // No route: only the listener's defaults can decorate the answer.
            for filter in env.listener.defaultFilters.reversed() { filter.onResponse(exchange, &head) }
            return
        }
        var i = filtersReached
        while i > 0 {
            i -= 1
            route.chain[i]._withUnsafeGuaranteedRef { $0.onResponse(exchange, &head) }
        }
    }

    /// Records the request (metrics, access log) once; the handler then ends,
    /// aborts or forgets the downstream side. Returns the time it read (for
    /// the handler's next deadline, set in the same call), nil when the
    /// request was already recorded.
    @discardableResult
    func complete(status: UInt) -> NIODeadline? {
        guard phase != .finished else { return nil }
        phase = .finished
        pending.removeAll()
        let end = NIODeadline.now()
        let duration = end - startedAt
        (route?.metrics ?? env.unrouted).record(status: Int(status), duration: duration)
        env.accessLog.log(AccessLogEntry(
            requestID: exchange.requestID, listener: exchange.listener, route: exchange.route, upstream: exchange.upstream,
            method: method.rawValue, path: exchange.originalTarget, status: Int(status), bytesIn: requestBodyBytes,
            bytesOut: responseBytes, durationNanos: duration.nanoseconds,
            upstreamNanos: upstreamHeadAt.map { ($0 - startedAt).nanoseconds }, client: handler.clientIP,
            protocolName: isHTTP2 ? "HTTP/2" : "HTTP/1.1", error: errorCode))
        return end
    }
}

extension ProxyRequest {
    static let gatewayKeysPath = "/.well-known/gateway-keys.json"

    /// The app-channel public keys (PROTOCOL 2.1), on every public listener of
    /// a config that uses them; never a private half.
    func serveGatewayKeys(_ keys: AppChannelKeyRing) {
        guard method == .GET || method == .HEAD else {
            return respondLocally(.methodNotAllowed, headers: ["allow": "GET, HEAD"])
        }
        var headers = HeaderFields()
        headers.add(name: "content-type", value: "application/json")
        headers.add(name: "cache-control", value: "public, max-age=300")
        respondLocally(FilterResponse(status: .ok, headers: headers, body: ByteBuffer(string: keys.publishedJSON(now: AppChannelKeyRing.now()))))
    }
}
