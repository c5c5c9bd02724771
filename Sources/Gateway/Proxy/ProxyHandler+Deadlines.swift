import NIOCore

/// The deadlines of a downstream connection or stream: one timer per HTTP/1.1
/// connection, a shared sweep per HTTP/2 connection.
extension ProxyHandler {
    /// Sets the deadline that applies now: waiting for a request head, or the
    /// current request waiting on its upstream. HTTP/2 streams share their
    /// connection's sweep instead of a timer each.
    /// `now`: a reading of `NIODeadline.now()` the caller made in the same
    /// call (a clock read is 20–45 ns, and a request sets half a dozen
    /// deadlines); never one from an earlier event.
    func setDeadline(_ kind: DeadlineTimer.Kind, in amount: TimeAmount, now: NIODeadline? = nil) {
        let now = now ?? .now()
        if let streamDeadlines {
            if streamDeadline == nil { streamDeadlines.register(self) }
            streamDeadline = now + amount
            return
        }
        if timer.set(kind, at: now + amount) { scheduleTimer() }
    }

    func clearDeadline() {
        if let streamDeadlines {
            if streamDeadline != nil { streamDeadlines.unregister(self) }
            streamDeadline = nil
            return
        }
        timer.clear()
    }

    /// Called by the connection's `StreamDeadlines` when this stream's request
    /// waited on its upstream for too long.
    func streamDeadlineExpired() {
        streamDeadline = nil
        request?.upstreamTimedOut()
    }

    private func scheduleTimer() {
        guard let context else { return }
        // A strong capture: `handlerRemoved` and `channelInactive` cancel the
        // timer. A weak one would move every retain and release of this
        // handler onto the runtime's slow (side table) path.
        timer.scheduled = context.eventLoop.scheduleTask(deadline: timer.fireAt) { self.timerFired() }
    }

    private func timerFired() {
        switch timer.fired(now: .now()) {
        case .none:
            return
        case .reschedule:
            scheduleTimer()
        case .expired(.awaitingHead):
            if request == nil { context?.close(promise: nil) }
        case .expired(.upstream):
            request?.upstreamTimedOut()
        }
    }
}

/// A connection's peer address and its text form, computed once when an
/// HTTP/2 connection is set up and shared by all its streams (a stream
/// channel asks its parent under a lock, and the text form is a conversion
/// and an allocation, per stream otherwise).
struct Peer: Sendable {
    let address: SocketAddress?
    let ip: String?

    init(_ address: SocketAddress?) {
        self.address = address
        self.ip = address?.ipAddress
    }
}
