import Metrics
import NIOCore
import Synchronization

/// Metric handles of one route, created once per config version.
final class RouteMetrics: Sendable {
    private let route: String
    private let byClass: [Counter]
    private let duration: Metrics.Timer

    init(route: String) {
        self.route = route
        byClass = (1...5).map { Counter(label: "gateway_requests_total", dimensions: [("route", route), ("status_class", "\($0)xx")]) }
        duration = Metrics.Timer(label: "gateway_request_duration_seconds", dimensions: [("route", route)])
    }

    func record(status: Int, duration: TimeAmount) {
        let cls = min(max(status / 100, 1), 5)
        byClass[cls - 1].increment()
        self.duration.recordNanoseconds(duration.nanoseconds)
    }

    /// Rejections by reason; the uncommon path, so the handle is looked up here.
    func rejected(_ code: String) {
        Counter(label: "gateway_rejections_total", dimensions: [("route", route), ("reason", code)]).increment()
    }
}

/// Requests in flight, for graceful shutdown. One atomic add a change (a
/// lock was an acquire and a release for each, twice a request).
final class InFlightCounter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.wrappingAdd(1, ordering: .relaxed) }
    func decrement() { count.wrappingSubtract(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}
