import Metrics
import NIOCore
import NIOSSL
import NIOTLS
import Filters
import NIOPosix

/// Pooled keep-alive connections to one upstream, owned by one event loop.
/// Requests on that loop lease connections from it, so a request never
/// changes thread. The bookkeeping is `PoolStateMachine`; this class carries
/// out its actions: connecting, parking, closing, failing waiters.
///
/// Its timers and connection callbacks hold it strongly, never weakly: a
/// weak reference would give the pool a side table, and each of the six
/// retains and releases a request makes of it would take the runtime's slow
/// path. None outlives its cause: `shutdown()` cancels the timers and closes
/// the connections, a waiter's timer goes when it is served, and a pool
/// dropped without `shutdown()` lives until its idle sweep has closed its
/// connections.
final class UpstreamPool {
    let definition: UpstreamDefinition
    let eventLoop: EventLoop
    private var state: PoolStateMachine
    private var connections: [Int: UpstreamConnection] = [:]
    private var waiters: [Int: (promise: EventLoopPromise<NIOLoopBound<UpstreamConnection>>, timeout: Scheduled<Void>)] = [:]
    private var nextConnectionID = 0
    private var nextWaiterID = 0
    private var nextEndpoint = 0
    private var isShutDown = false
    private let metrics: UpstreamMetrics

    struct Unavailable: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }

    init(definition: UpstreamDefinition, eventLoop: EventLoop, metrics: UpstreamMetrics) {
        self.definition = definition
        self.eventLoop = eventLoop
        self.metrics = metrics
        // Waiters beyond this are refused at once rather than queued.
        self.state = PoolStateMachine(maxConnections: definition.maxConnections, maxWaiters: max(64, definition.maxConnections * 4))
    }

    /// An idle connection, leased at once, or nil when none is idle (then
    /// `acquire()`): no future, no closure on the usual path.
    func acquireIdle() -> UpstreamConnection? {
        eventLoop.assertInEventLoop()
        if isShutDown { return nil }
        while let cid = state.leaseIdle() {
            metrics.unparked()
            // Drop idle connections the upstream closed since they were parked.
            guard let connection = connections[cid], connection.isActive else {
                _ = state.released(cid, reusable: false)
                connections[cid] = nil
                continue
            }
            metrics.leased()
            return connection
        }
        return nil
    }

    /// A connection for one exchange. Succeeds synchronously when an idle
    /// connection is available; fails with `Unavailable` on connect failure,
    /// saturation, or when none frees up within the connect timeout.
    func acquire() -> EventLoopFuture<NIOLoopBound<UpstreamConnection>> {
        eventLoop.preconditionInEventLoop()
        if isShutDown { return eventLoop.makeFailedFuture(Unavailable(reason: "pool shut down")) }
        if let connection = acquireIdle() {
            return eventLoop.makeSucceededFuture(NIOLoopBound(connection, eventLoop: eventLoop))
        }
        let waiterID = nextWaiterID
        nextWaiterID += 1
        let action = state.acquire(waiter: waiterID)
        if action.reject {
            metrics.rejected()
            return eventLoop.makeFailedFuture(Unavailable(reason: "connection pool saturated"))
        }
        let promise = eventLoop.makePromise(of: NIOLoopBound<UpstreamConnection>.self)
        let timeout = eventLoop.scheduleTask(in: definition.connectTimeout) { [self] in
            guard self.state.cancelWaiter(waiterID) else { return }
            self.waiters.removeValue(forKey: waiterID)?.promise.fail(Unavailable(reason: "no connection within connect timeout"))
        }
        waiters[waiterID] = (promise, timeout)
        run(action)
        return promise.futureResult
    }

    /// Returns a leased connection. `reusable` when the exchange completed and
    /// both sides allow keep-alive.
    func release(_ connection: UpstreamConnection, reusable: Bool) {
        eventLoop.preconditionInEventLoop()
        connection.delegate = nil
        connection.readsPaused = false
        metrics.released()
        let ok = reusable && connection.isActive && !connection.mustClose && !isShutDown
        run(state.released(connection.id, reusable: ok))
    }

    /// Counts a request sent again after its reused connection failed.
    func metricsRetried() { metrics.retried() }

    /// One timer per pool, at the oldest idle connection's expiry, instead of
    /// one scheduled and cancelled per exchange.
    private var idleSweep: Scheduled<Void>?

    private func scheduleIdleSweep(at deadline: NIODeadline) {
        idleSweep = eventLoop.scheduleTask(deadline: deadline) { [self] in self.sweepIdle() }
    }

    /// Closes the connections idle for `keepalive_timeout`; then waits for the next one to be.
    private func sweepIdle() {
        idleSweep = nil
        let now = NIODeadline.now()
        var next = NIODeadline.distantFuture
        for cid in state.idle {
            guard let connection = connections[cid] else { continue }
            let expiry = connection.parkedAt + definition.keepaliveTimeout
            if expiry <= now {
                state.idleClosed(cid)
                connections[cid] = nil
                metrics.connectionClosed(wasIdle: true)
                connection.close()
            } else if expiry < next {
                next = expiry
            }
        }
        if next != .distantFuture { scheduleIdleSweep(at: next) }
    }

    func shutdown() {
        isShutDown = true
        idleSweep?.cancel()
        idleSweep = nil
        for (_, c) in connections { c.close() }
        for (id, w) in waiters {
            w.timeout.cancel()
            _ = state.cancelWaiter(id)
            w.promise.fail(Unavailable(reason: "pool shut down"))
        }
        waiters.removeAll()
    }

    private func run(_ action: PoolStateMachine.Action) {
        if let (cid, waiter) = action.lease, let waiter, let connection = connections[cid] {
            metrics.leased()
            if let w = waiters.removeValue(forKey: waiter) {
                w.timeout.cancel()
                w.promise.succeed(NIOLoopBound(connection, eventLoop: eventLoop))
            }
        }
        if let cid = action.park, let connection = connections[cid] {
            metrics.parked()
            connection.parkedAt = .now()
            if idleSweep == nil { scheduleIdleSweep(at: connection.parkedAt + definition.keepaliveTimeout) }
        }
        if let cid = action.close, let connection = connections[cid] {
            connection.close()
        }
        if let waiter = action.fail, let w = waiters.removeValue(forKey: waiter) {
            w.timeout.cancel()
            w.promise.fail(Unavailable(reason: "connect failed"))
        }
        if action.connect { connect() }
    }

    private func connect() {
        let index = nextEndpoint % definition.endpoints.count
        nextEndpoint &+= 1
        let address = definition.endpoints[index]
        let endpointText = definition.endpointTexts[index]
        let id = nextConnectionID
        nextConnectionID += 1
        let tls = definition.tls
        let metrics = self.metrics
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(definition.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.autoRead, value: true)
        if let tls {
            bootstrap = bootstrap.channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try UpstreamTLSSupport.handler(tls, metrics: metrics))
                    try channel.pipeline.syncOperations.addHandler(HandshakeWaiter(promise: channel.eventLoop.makePromise()))
                }
            }
        }
        bootstrap
            .connect(to: address)
            .flatMap { channel -> EventLoopFuture<Channel> in
                // A TLS upstream counts as connected once the handshake and
                // the SAN check passed: a failure fails the connect, never a request half-sent.
                guard tls != nil, let waiter = try? channel.pipeline.syncOperations.handler(type: HandshakeWaiter.self) else {
                    return channel.eventLoop.makeSucceededFuture(channel)
                }
                let timeout = channel.eventLoop.scheduleTask(in: self.definition.connectTimeout) {
                    waiter.promise.fail(UpstreamTLSSupport.Failure(description: "TLS handshake timed out"))
                }
                return waiter.promise.futureResult.map { channel }.flatMapErrorThrowing { error in
                    timeout.cancel()
                    metrics.tlsFailed(error)
                    channel.close(promise: nil)
                    throw error
                }.always { _ in timeout.cancel() }
            }
            .flatMapThrowing { [self] channel -> UpstreamConnection in
                try UpstreamConnection.configure(channel: channel, id: id, endpoint: endpointText) { [self] c in
                    self.closed(c)
                }
            }
            .whenComplete { [self] result in
                switch result {
                case .success(let connection):
                    self.connections[id] = connection
                    if self.isShutDown { connection.close() }
                    self.run(self.state.connected(id))
                case .failure:
                    self.metrics.connectFailed()
                    self.run(self.state.connectFailed())
                }
            }
    }

    private func closed(_ connection: UpstreamConnection) {
        guard connections.removeValue(forKey: connection.id) != nil else { return }
        let wasIdle = state.idle.contains(connection.id)
        state.idleClosed(connection.id)
        metrics.connectionClosed(wasIdle: wasIdle)
    }
}

@available(*, unavailable)
extension UpstreamPool: Sendable {}

/// Pool gauges for one upstream, shared by the pools of every event loop.
final class UpstreamMetrics: Sendable {
    private let active: Meter
    private let idle: Meter
    private let connectFailures: Counter
    private let saturated: Counter
    private let retries: Counter
    private let upstream: String

    init(upstream: String) {
        self.upstream = upstream
        let d = [("upstream", upstream)]
        active = Meter(label: "gateway_upstream_connections_active", dimensions: d)
        idle = Meter(label: "gateway_upstream_connections_idle", dimensions: d)
        connectFailures = Counter(label: "gateway_upstream_connect_failures_total", dimensions: d)
        saturated = Counter(label: "gateway_upstream_pool_rejections_total", dimensions: d)
        retries = Counter(label: "gateway_upstream_stale_retries_total", dimensions: d)
    }

    func connectFailed() { connectFailures.increment() }
    /// A TLS handshake with the upstream failed (`reason`: `san_mismatch` or `handshake`).
    func tlsFailed(_ error: Error) {
        let reason = error is UpstreamTLSSupport.SANMismatch ? "san_mismatch" : "handshake"
        Counter(label: "gateway_upstream_tls_failures_total", dimensions: [("upstream", upstream), ("reason", reason)]).increment()
    }
    func rejected() { saturated.increment() }
    func retried() { retries.increment() }
    func leased() { active.increment() }
    func released() { active.decrement() }
    func parked() { idle.increment() }
    /// A parked connection was leased again.
    func unparked() { idle.decrement() }
    func connectionClosed(wasIdle: Bool) { if wasIdle { idle.decrement() } }
}

/// The client side of TLS to an upstream: the reloading context's current
/// material, SNI, and the URI SAN check after the chain verified.
enum UpstreamTLSSupport {
    struct Failure: Error, CustomStringConvertible { let description: String }
    struct SANMismatch: Error, CustomStringConvertible {
        let presented: [String]
        var description: String { "the upstream's certificate carries none of the expected URI SANs (it has \(presented))" }
    }

    static func handler(_ tls: UpstreamTLS, metrics: UpstreamMetrics) throws -> NIOSSLClientHandler {
        let context = tls.context.context
        guard !tls.verifySANs.isEmpty else { return try NIOSSLClientHandler(context: context, serverHostname: tls.serverName) }
        let expected = Set(tls.verifySANs)
        // Runs after BoringSSL verified the chain against `ca`.
        return try NIOSSLClientHandler._makeSSLClientHandler(context: context, serverHostname: tls.serverName) { certificate, channel in
            guard let der = try? certificate.toDERBytes(), let identity = try? ClientIdentity(der: der, source: .tls) else {
                return channel.eventLoop.makeFailedFuture(SANMismatch(presented: []))
            }
            guard identity.uris.contains(where: expected.contains) else {
                return channel.eventLoop.makeFailedFuture(SANMismatch(presented: identity.uris))
            }
            return channel.eventLoop.makeSucceededVoidFuture()
        }
    }
}

/// Completes its promise when the TLS handshake (and the SAN check) is done,
/// or fails it when the connection errs or closes first; then steps aside.
final class HandshakeWaiter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    let promise: EventLoopPromise<Void>
    /// The ALPN protocol the handshake agreed on.
    private(set) var negotiated: String?

    init(promise: EventLoopPromise<Void>) { self.promise = promise }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted(let proto) = event {
            negotiated = proto
            promise.succeed(())
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(UpstreamTLSSupport.Failure(description: "the upstream closed the connection during the TLS handshake"))
        context.fireChannelInactive()
    }
}
