import NIOCore

/// Turns the flushes that happen during one event-loop tick into one.
///
/// On an HTTP/2 connection every stream whose response ends flushes the
/// connection. Those flushes come from upstream channels' reads, outside the
/// connection's own read loop, so NIO would write (and encrypt) once per
/// stream. This handler, placed under the HTTP/2 handler, lets the first
/// flush of a tick schedule one real flush at the end of the tick, after the
/// loop has handled the rest of its ready channels.
final class FlushCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var scheduled = false

    /// A close never loses what waits for the deferred flush.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if scheduled {
            scheduled = false
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        guard !scheduled else { return }
        scheduled = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            guard handler.scheduled else { return }
            handler.scheduled = false
            context.flush()
        }
    }
}

@available(*, unavailable)
extension FlushCoalescer: Sendable {}
