import Logging
import NIOCore

/// The pools of every upstream for one event loop.
final class LoopPools {
    let pools: [String: UpstreamPool]
    init(pools: [String: UpstreamPool]) { self.pools = pools }
}

/// Per-loop pools for every event loop of the group, built once at start.
/// Each `LoopPools` is only touched on its own loop.
final class PoolDirectory: @unchecked Sendable {
    private let byLoop: [ObjectIdentifier: LoopPools]

    init(group: EventLoopGroup, upstreams: [String: UpstreamDefinition]) {
        var metrics: [String: UpstreamMetrics] = [:]
        for name in upstreams.keys { metrics[name] = UpstreamMetrics(upstream: name) }
        var byLoop: [ObjectIdentifier: LoopPools] = [:]
        for loop in group.makeIterator() {
            var pools: [String: UpstreamPool] = [:]
            for (name, def) in upstreams { pools[name] = UpstreamPool(definition: def, eventLoop: loop, metrics: metrics[name]!) }
            byLoop[ObjectIdentifier(loop)] = LoopPools(pools: pools)
        }
        self.byLoop = byLoop
    }

    func pools(for loop: EventLoop) -> LoopPools? { byLoop[ObjectIdentifier(loop)] }

    func shutdown() {
        for (_, lp) in byLoop {
            guard let any = lp.pools.values.first else { continue }
            any.eventLoop.execute { for p in lp.pools.values { p.shutdown() } }
        }
    }
}

/// What every downstream connection of a listener shares.
struct ProxyEnvironment: @unchecked Sendable {
    let listener: ListenerRuntime
    let pools: PoolDirectory
    let accessLog: AccessLog
    let inFlight: InFlightCounter
    let logger: Logger
    /// Metrics for requests that matched no route.
    let unrouted: RouteMetrics
}
