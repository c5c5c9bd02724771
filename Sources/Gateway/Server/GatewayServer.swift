import Filters
import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOExtras
import NIOHTTP1
import NIOPosix
import Passport
import Prometheus
import ServiceLifecycle

/// What the admin endpoints read: readiness, metrics, the active config.
final class GatewayState: Sendable {
    let metricsRegistry: PrometheusCollectorRegistry
    private let ready = NIOLockedValueBox(false)
    private let config: NIOLockedValueBox<RuntimeConfig?> = NIOLockedValueBox(nil)

    init(metricsRegistry: PrometheusCollectorRegistry) { self.metricsRegistry = metricsRegistry }

    var isReady: Bool { ready.withLockedValue { $0 } }
    func setReady(_ value: Bool) { ready.withLockedValue { $0 = value } }
    func setConfig(_ c: RuntimeConfig) { config.withLockedValue { $0 = c } }
    var passportKeys: PassportKeyRing? { config.withLockedValue { $0?.passportKeys } }

    /// Sets the gauges that are read when `/metrics` is scraped, not kept
    /// up to date on the request path: how full each in-process nonce
    /// store is (its cap, a constant, is set once with the config).
    func refreshGauges() {
        guard let c = config.withLockedValue({ $0 }) else { return }
        for store in c.nonceStores {
            Gauge(label: "gateway_nonce_store_entries", dimensions: store.metricDimensions).record(store.entries)
        }
    }

    func configSummary() -> String {
        guard let c = config.withLockedValue({ $0 }) else { return "{}" }
        let listeners = c.listeners.map {
            "{\"name\":\(JSONText.quote($0.name)),\"address\":\(JSONText.quote($0.addressText)),\"tls\":\($0.tls != nil),\"routes\":[\($0.router.routes.map { JSONText.quote($0.name) }.joined(separator: ","))]}"
        }
        let upstreams = c.upstreams.keys.sorted().map { JSONText.quote($0) }
        return "{\"digest\":\"\(c.digest)\",\"listeners\":[\(listeners.joined(separator: ","))],\"upstreams\":[\(upstreams.joined(separator: ","))]}\n"
    }
}

/// Runs the listeners and the admin endpoint until graceful shutdown:
/// then stops accepting, lets in-flight requests finish within the grace
/// period, and closes what is left.
final class GatewayServer: Service, @unchecked Sendable {
    let config: RuntimeConfig
    let state: GatewayState
    let group: MultiThreadedEventLoopGroup
    let logger: Logger
    let grace: TimeAmount
    let accessLog: AccessLog
    /// Bound listeners, each with the helper that quiesces its connections.
    /// Dropped before the event loops stop: a helper touches its loop when freed.
    private var listeners: [(channel: Channel, quiesce: ServerQuiescingHelper)] = []
    private var admin: Channel?
    private let inFlight = InFlightCounter()
    private let loops: LoopDirectory
    /// Addresses actually bound, by listener name ("admin" for the admin listener).
    let boundAddresses = NIOLockedValueBox<[String: SocketAddress]>([:])

    init(config: RuntimeConfig, state: GatewayState, threads: Int, grace: TimeAmount, accessLog: AccessLog, logger: Logger) {
        self.config = config
        self.state = state
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        self.logger = logger
        self.grace = grace
        self.accessLog = accessLog
        self.loops = LoopDirectory(group: group, upstreams: config.upstreams)
    }

    func run() async throws {
        do {
            try await start()
        } catch {
            await closeAll()
            // A failed bind leaves its cleanup queued on a loop (the listener's
            // quiescing helper is freed there, and schedules a task as it goes):
            // let every loop run what is queued before the loops stop.
            for loop in group.makeIterator() { try? await loop.submit {}.get() }
            try? await group.shutdownGracefully()
            throw error
        }
        await withGracefulShutdownHandler {
            try? await waitForever()
        } onGracefulShutdown: {
            self.logger.info("shutting down: no new connections; waiting for in-flight requests")
        }
        await drain()
        try? await group.shutdownGracefully()
    }

    private func waitForever() async throws {
        // Returns when graceful shutdown (or cancellation) is requested.
        try await gracefulShutdown()
    }

    /// Polls the certificate and key files of listeners and upstreams.
    private var watcher: CertificateWatcher?
    /// Seconds between checks of the TLS files.
    var certificateCheckInterval = 1.0

    func start() async throws {
        state.setConfig(config)
        let reloading = config.listeners.compactMap(\.tls) + config.upstreams.values.compactMap { $0.tls?.context }
        if !reloading.isEmpty {
            watcher = CertificateWatcher(contexts: reloading, interval: certificateCheckInterval, logger: logger)
        }
        for listener in config.listeners {
            let env = ProxyEnvironment(listener: listener, loops: loops, accessLog: accessLog, inFlight: inFlight,
                                       logger: logger, unrouted: RouteMetrics(route: ""))
            let channel: Channel
            let quiesce = ServerQuiescingHelper(group: group)
            do {
                channel = try await ListenerBootstrap.bind(listener, group: group, quiesce: quiesce, environment: env)
                listeners.append((channel, quiesce))
            } catch {
                throw StartupError(message: "listener '\(listener.name)' cannot bind \(listener.addressText): \(error)")
            }
            if let a = channel.localAddress { boundAddresses.withLockedValue { $0[listener.name] = a } }
            logger.info("listening", metadata: ["listener": "\(listener.name)", "address": "\(channel.localAddress.map { "\($0)" } ?? listener.addressText)",
                                                "tls": "\(listener.tls != nil)"])
        }
        let state = self.state
        let admin: Channel
        do {
            admin = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(AdminHandler(state: state))
                    }
                }
                .bind(to: config.adminAddress).get()
        } catch {
            throw StartupError(message: "admin listener cannot bind \(config.adminAddressText): \(error)")
        }
        self.admin = admin
        if let a = admin.localAddress { boundAddresses.withLockedValue { $0["admin"] = a } }
        logger.info("admin listening", metadata: ["address": "\(admin.localAddress.map { "\($0)" } ?? config.adminAddressText)"])
        Gauge(label: "gateway_config_info", dimensions: [("digest", config.digest)]).record(1)
        for store in config.nonceStores {
            Gauge(label: "gateway_nonce_store_capacity", dimensions: store.metricDimensions).record(store.capacity)
        }
        state.setReady(true)
        logger.info("ready", metadata: ["config_digest": "\(config.digest)"])
    }

    /// Stops accepting, waits for in-flight requests up to the grace period.
    func drain() async {
        state.setReady(false)
        // Each listener stops accepting; its connections get ChannelShouldQuiesceEvent:
        // idle HTTP/1.1 connections close, busy ones close after their response,
        // HTTP/2 connections send GOAWAY and close when their streams finish.
        let quiesced = listeners.map { entry -> EventLoopFuture<Void> in
            let promise = group.next().makePromise(of: Void.self)
            entry.quiesce.initiateShutdown(promise: promise)
            return promise.futureResult
        }
        let done = NIOLockedValueBox(false)
        EventLoopFuture.andAllComplete(quiesced, on: group.next()).whenComplete { _ in done.withLockedValue { $0 = true } }
        let deadline = NIODeadline.now() + grace
        while NIODeadline.now() < deadline {
            if done.withLockedValue({ $0 }) || inFlight.value == 0 { break }
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        if inFlight.value > 0 {
            logger.warning("grace period over; closing requests still in flight", metadata: ["in_flight": "\(inFlight.value)"])
        }
        await closeAll()
        loops.shutdown()
        logger.info("stopped")
        LogSink.shared.drain()
    }
}

extension GatewayServer {
    /// Closes the listeners and the admin endpoint and drops the quiescing
    /// helpers while the event loops still run.
    fileprivate func closeAll() async {
        watcher?.stop()
        watcher = nil
        for entry in listeners { try? await entry.channel.close() }
        listeners.removeAll()
        try? await admin?.close()
        admin = nil
    }
}

struct StartupError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

extension MemoryNonceStore {
    /// The labels of a store's gauges: one store a replay window.
    var metricDimensions: [(String, String)] { [("store", "memory"), ("window_ms", String(window))] }
}
