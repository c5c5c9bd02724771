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
        // A client that asked for 100-continue sends nothing before it.
        if !expectsContinue { awaitClientBody() }
        runFilters(from: 0)
    }

    /// The head's checks and routing; false when the request was answered
    /// here (refused, or the gateway's keys).
    private func admit() -> Bool {
        let head = exchange.request
        let limits = env.listener.limits
        // One pass over the head: its size, and the framing and Host fields.
        var size = head.method.rawValue.utf8.count + head.uri.utf8.count + 12
        // Indices, not values: a loop whose fields are only read borrows
        // them; keeping a value would copy every field's strings.
        var lengthAt = -1, lengths = 0
        var codingAt = -1, codings = 0
        var hostAt = -1, hosts = 0
        let fields = head.headers
        for i in fields.indices {
            let n = fields[i].name.utf8.count
            size += n + fields[i].value.utf8.count + 4
            // Only names of a framing field's length go to the comparison (a
            // field passed to a call is copied).
            guard n == 4 || n == 14 || n == 17 else { continue }
            switch HTTPBytes.framingField(fields[i].name) {
            case .host:
                hostAt = i
                hosts += 1
            case .contentLength:
                lengthAt = i
                lengths += 1
            case .transferEncoding:
                codingAt = i
                codings += 1
            default:
                break
            }
        }
        let length = lengthAt < 0 ? nil : fields[lengthAt].value
        let coding = codingAt < 0 ? nil : fields[codingAt].value
        let host = hostAt < 0 ? nil : fields[hostAt].value
        if head.headers.count > limits.maxHeaders || size > limits.maxHeadSize {
            return answered(respondLocally(.headTooLarge, close: true))
        }
        // Framing: exactly one way to read where the body ends, or nothing is
        // forwarded (PROTOCOL 4; RFC 9112 6.1-6.3). The parser already refused
        // most ambiguity; these are the forms it lets through.
        if let coding {
            // Only `chunked`, spelled exactly so, once, on HTTP/1.1 (HTTP/2
            // streams arrive here with `chunked` added by the codec).
            guard codings == 1, coding == "chunked", lengths == 0, isHTTP2 || head.version == .http1_1 else {
                return answered(respondLocally(.badRequest, close: true))
            }
            framing = .chunked
        } else if let length {
            guard lengths == 1, Self.isPlainLength(length) else { return answered(respondLocally(.badRequest, close: true)) }
            framing = .contentLength
        }
        // Host: one, well-formed; required on HTTP/1.1 (RFC 9112 3.2).
        if hosts > 1 { return answered(respondLocally(.invalidHost, close: true)) }
        if let host {
            guard HostSyntax.isValid(host) else { return answered(respondLocally(.invalidHost, close: true)) }
        } else if !isHTTP2 && head.version.minor >= 1 {
            return answered(respondLocally(.badRequest, close: true))
        }
        // One canonical path for routing and the upstream; the raw target stays in `originalTarget`.
        let (rawPath, query) = Router.split(Substring(head.uri))
        guard rawPath.hasPrefix("/") else { return answered(respondLocally(.badRequest, close: true)) }
        if let query, !Self.isCleanQuery(query) { return answered(respondLocally(.badRequest, close: true)) }
        switch env.listener.sanitize.paths.canonicalTarget(path: rawPath, query: query) {
        case .success(let target):
            if let target { exchange.setCanonicalTarget(target) }
        case .failure(.invalid(let reason)):
            exchange.logger.debug("path refused", metadata: ["reason": "\(reason)"])
            return answered(respondLocally(.invalidPath, close: true))
        }

        // The caller's certificate: from a trusted hop's XFCC, else from the handshake.
        var identity = handler.tlsIdentity
        if let trust = env.listener.sanitize.xfccTrust, trust.trusts(exchange.clientAddress) {
            let forwarded = head.headers["x-forwarded-client-cert"]
            if !forwarded.isEmpty {
                do { identity = try XFCC.identity(forwarded.joined(separator: ",")) } catch {
                    exchange.logger.debug("X-Forwarded-Client-Cert refused", metadata: ["reason": "\(error)"])
                    return answered(respondLocally(.rejection("malformed_xfcc")))
                }
            }
        }
        if let identity { exchange[ClientIdentityKey.self] = identity }

        if let keys = env.listener.gatewayKeys, Router.split(Substring(exchange.canonicalTarget)).0 == Self.gatewayKeysPath {
            return answered(serveGatewayKeys(keys))
        }

        switch env.listener.router.match(method: head.method.rawValue, host: Substring(exchange.originalHost),
                                         target: Substring(exchange.canonicalTarget), headers: head.headers) {
        case .noRoute:
            return answered(respondLocally(.noRoute))
        case .methodNotAllowed(let allow):
            return answered(respondLocally(.methodNotAllowed, headers: ["allow": allow.joined(separator: ", ")]))
        case .matched(let route):
            self.route = route
            exchange.setRoute(route.name, buffersBody: route.buffersBody)
            if framing == .contentLength, let length, let n = Int(length), n > route.maxBody {
                return answered(respondLocally(.bodyTooLarge))
            }
            var rng = SystemRandomNumberGenerator()
            exchange.upstream = route.targets.pick(head.headers, using: &rng)
            return true
        }
    }

    /// For `return answered(respondLocally(...))` in `admit`: the response
    /// is on its way; the request goes no further.
    private func answered(_: Void) -> Bool { false }

    /// `Content-Length`: 1 to 18 digits and nothing else (no sign, no
    /// spaces, no list), so that every parser reads the same number.
    static func isPlainLength(_ value: String) -> Bool {
        let u = value.utf8
        return !u.isEmpty && u.count <= 18 && u.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// A query of printable ASCII without spaces or `#` (HTTP/2 `:path` is not
    /// checked by an HTTP/1 parser).
    static func isCleanQuery(_ query: Substring) -> Bool {
        query.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "#") }
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
        guard let route, let pool = handler.loop.pools[exchange.upstream] else {
            exchange.logger.error("no pool for upstream", metadata: ["upstream": "\(exchange.upstream)"])
            return respondLocally(.upstreamUnavailable)
        }
        self.pool = pool
        // The filters have read the head; its `X-Gw-*` headers stay off the
        // wire (PROTOCOL 2.5), and the upstream's `Host` goes on it.
        setUpstreamHost(route, upstream: pool.definition)
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
