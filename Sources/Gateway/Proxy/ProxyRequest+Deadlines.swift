import Filters
import NIOCore

/// Which side a request's one deadline waits on: the client's body
/// (`client_body_timeout`), the upstream (`response_timeout`, `body_timeout`)
/// or the client taking the response (`send_timeout`). The silence of a side
/// the gateway itself stopped reading is never that side's.
extension ProxyRequest {
    static let clientTimeout = GatewayError.rejection("client_timeout", status: .requestTimeout)

    /// The whole request is upstream: the response-head timer starts.
    func requestSent() {
        guard !responseStarted, let timeouts = upstreamTimeouts else { return }
        handler.setDeadline(.upstream, in: timeouts.response)
    }

    /// Starts (or restarts) the wait for the rest of the request body: from
    /// the head, each part that arrives, and each time the gateway takes
    /// reading again after it had stopped.
    func awaitClientBody(now: NIODeadline? = nil) {
        guard framing != .none, !clientEnded, !responseStarted, phase != .finished else { return }
        awaitingClientBody = true
        handler.setDeadline(.upstream, in: env.listener.limits.clientBodyTimeout, now: now)
    }

    func upstreamTimedOut() {
        if awaitingClientBody {
            // The silence is the gateway's while it does not read (its
            // upstream takes no more): the client gets its time again.
            if shouldPauseDownstreamReads { return awaitClientBody() }
            exchange.logger.debug("request body stalled for client_body_timeout")
            return fail(Self.clientTimeout, closeDownstream: true)
        }
        guard phase == .forwarding else { return }
        if waitingOnClient {
            exchange.logger.debug("client took none of the response for send_timeout")
            return fail(Self.clientTimeout)
        }
        fail(.upstreamTimeout)
    }

    /// The client takes nothing for now: from here the response waits on it
    /// (`send_timeout`), until it takes more (`downstreamWritabilityChanged`).
    func waitForClient() {
        guard !waitingOnClient else { return }
        waitingOnClient = true
        handler.setDeadline(.upstream, in: env.listener.limits.sendTimeout)
    }
}
