import NIOCore

/// The upstream deadlines of the streams of one HTTP/2 connection, checked by
/// one sweep every `granularity` while any stream waits on its upstream.
///
/// A timer per stream costs a scheduled task per request, and NIO cancels
/// scheduled tasks by searching its queue: with hundreds of streams in flight
/// that is several µs a request. Here a stream registers once per request;
/// moving its deadline only writes a field of the stream's handler. A deadline
/// fires at most `granularity` late.
final class StreamDeadlines {
    private let eventLoop: EventLoop
    private let granularity: TimeAmount
    /// Handlers with a deadline; each removes itself when its deadline is
    /// cleared or it leaves the pipeline, so these references never dangle.
    private var waiting: [ObjectIdentifier: ProxyHandler] = [:]
    private var sweep: Scheduled<Void>?

    init(eventLoop: EventLoop, granularity: TimeAmount = .milliseconds(100)) {
        self.eventLoop = eventLoop
        self.granularity = granularity
    }

    func register(_ handler: ProxyHandler) {
        waiting[ObjectIdentifier(handler)] = handler
        if sweep == nil {
            sweep = eventLoop.scheduleTask(in: granularity) { [weak self] in self?.runSweep() }
        }
    }

    func unregister(_ handler: ProxyHandler) {
        waiting.removeValue(forKey: ObjectIdentifier(handler))
    }

    private func runSweep() {
        sweep = nil
        let now = NIODeadline.now()
        let expired = waiting.values.filter { $0.streamDeadline.map { $0 <= now } ?? true }
        for handler in expired {
            waiting.removeValue(forKey: ObjectIdentifier(handler))
            handler.streamDeadlineExpired()
        }
        if !waiting.isEmpty {
            sweep = eventLoop.scheduleTask(in: granularity) { [weak self] in self?.runSweep() }
        }
    }

    /// The connection closed: no more sweeps, no more references.
    func cancel() {
        sweep?.cancel()
        sweep = nil
        waiting.removeAll()
    }
}

@available(*, unavailable)
extension StreamDeadlines: Sendable {}
