import Filters
import Logging
import NIOCore
import NIOHTTP1

/// The request path of one downstream HTTP/1.1 connection or one HTTP/2
/// stream (HTTP/2 streams arrive here as HTTP/1 parts): route, filters,
/// upstream lease, streaming both ways, timeouts, access log.
///
/// Everything runs on the channel's event loop. Filters that return `.next`
/// or `.respond` cost no allocation beyond the `Exchange`; only a filter that
/// suspends makes a future.
final class ProxyHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let env: ProxyEnvironment
    private let isHTTP2: Bool
    private let isTLS: Bool
    private var context: ChannelHandlerContext!
    private var request: ProxyRequest?
    /// Parts of a request the gateway already answered are dropped until its end.
    private var discardingBody = false
    private var readPending = false
    private var waitTimer: Scheduled<Void>?
    private var quiescing = false
    private var requestsOnConnection = 0

    init(environment: ProxyEnvironment, isHTTP2: Bool, isTLS: Bool) {
        self.env = environment
        self.isHTTP2 = isHTTP2
        self.isTLS = isTLS
    }

    // MARK: - Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if !isHTTP2 { armWaitTimer(env.listener.limits.headerTimeout) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        waitTimer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            waitTimer?.cancel()
            waitTimer = nil
            discardingBody = false
            guard request == nil else {
                // The pipelining helper serialises requests; this is a peer bug.
                context.close(promise: nil)
                return
            }
            requestsOnConnection += 1
            startRequest(head)
        case .body(let buffer):
            if discardingBody { return }
            request?.receivedBody(buffer)
        case .end:
            if discardingBody {
                discardingBody = false
                return
            }
            request?.receivedEnd()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        request?.flushUpstream()
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        waitTimer?.cancel()
        request?.downstreamClosed()
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        request?.downstreamWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            quiescing = true
            if request == nil && !isHTTP2 { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // Protocol errors are answered by NIO's error handler before us;
        // anything else ends the connection.
        env.logger.debug("downstream error", metadata: ["error": "\(error)", "listener": "\(env.listener.name)"])
        context.close(promise: nil)
    }

    /// Holds reads back while the upstream cannot take more request bytes.
    func read(context: ChannelHandlerContext) {
        if let request, request.shouldPauseDownstreamReads {
            readPending = true
        } else {
            context.read()
        }
    }

    func resumeReadsIfNeeded() {
        guard readPending, !(request?.shouldPauseDownstreamReads ?? false) else { return }
        readPending = false
        context.read()
    }

    // MARK: - Requests

    private func startRequest(_ head: HTTPRequestHead) {
        let r = ProxyRequest(handler: self, head: head, env: env, isHTTP2: isHTTP2, isTLS: isTLS,
                             clientAddress: context.channel.remoteAddress, eventLoop: context.eventLoop)
        request = r
        env.inFlight.increment()
        r.start()
    }

    /// Writes the response's end; then closes the connection, or waits for
    /// the next request on it.
    func endResponse(_ r: ProxyRequest, close: Bool, bodyPending: Bool) {
        guard request === r else { return }
        request = nil
        env.inFlight.decrement()
        let ctx = context!
        if isHTTP2 {
            ctx.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        if close || quiescing {
            ctx.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in ctx.close(promise: nil) }
            return
        }
        ctx.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        if bodyPending { discardingBody = true }
        armWaitTimer(env.listener.limits.idleTimeout)
        resumeReadsIfNeeded()
    }

    /// The response cannot be completed: end the connection (HTTP/1) or the
    /// stream (HTTP/2) so the client sees it broken, never short.
    func abortResponse(_ r: ProxyRequest) {
        guard request === r else { return }
        request = nil
        env.inFlight.decrement()
        context.close(promise: nil)
    }

    /// The client went away during the request.
    func requestGone(_ r: ProxyRequest) {
        guard request === r else { return }
        request = nil
        env.inFlight.decrement()
    }

    func write(_ part: HTTPServerResponsePart) {
        context.write(wrapOutboundOut(part), promise: nil)
    }

    func flush() { context.flush() }

    var downstreamWritable: Bool { context.channel.isWritable }

    private func armWaitTimer(_ timeout: TimeAmount) {
        waitTimer?.cancel()
        let ctx = context!
        waitTimer = ctx.eventLoop.scheduleTask(in: timeout) { [weak self] in
            guard let self, self.request == nil else { return }
            ctx.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension ProxyHandler: Sendable {}
