import NIOCore

/// Turns the flushes that happen during one event-loop tick into one, and
/// the small writes before a flush into one buffer.
///
/// On an HTTP/2 connection every stream whose response ends flushes the
/// connection. Those flushes come from upstream channels' reads, outside the
/// connection's own read loop, so NIO would write (and encrypt) once per
/// stream. This handler, placed under the HTTP/2 handler, lets the first
/// flush of a tick schedule one real flush at the end of the tick, after the
/// loop has handled the rest of its ready channels.
///
/// NIOHTTP2 writes every frame as its own buffer (a DATA frame as two: its
/// header, then its payload), and NIOSSL seals every write as its own TLS
/// record: a small response on a stream was four records. Writes up to
/// `joinLimit` are therefore copied into one buffer, handed on when a larger
/// write, a write with a promise, a flush or a close comes, or when it
/// reaches `recordSize` (a full TLS record); larger writes pass as they are,
/// in order.
final class FlushCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    static let joinLimit = 4 << 10
    static let recordSize = 16 << 10

    private var scheduled = false
    private var task: (@Sendable () -> Void)?
    private var joined: ByteBuffer?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .byteBuffer(var bytes) = unwrapOutboundIn(data), bytes.readableBytes <= Self.joinLimit else {
            writeJoined(context)
            context.write(data, promise: promise)
            return
        }
        if joined == nil {
            joined = context.channel.allocator.buffer(capacity: Self.recordSize)
        }
        joined!.writeBuffer(&bytes)
        // A promise completes when its own bytes are written: hand them on now.
        if promise != nil || joined!.readableBytes >= Self.recordSize {
            writeJoined(context, promise: promise)
        }
    }

    private func writeJoined(_ context: ChannelHandlerContext, promise: EventLoopPromise<Void>? = nil) {
        guard let bytes = joined else { return }
        joined = nil
        context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        task = nil
    }

    /// A close never loses what waits for the deferred flush.
    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if scheduled || joined != nil {
            scheduled = false
            writeJoined(context)
            context.flush()
        }
        context.close(mode: mode, promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        guard !scheduled else { return }
        scheduled = true
        if task == nil {
            // Made once: the handler's context is the same for its lifetime.
            // The task holds both until `handlerRemoved` lets go.
            task = makeLoopTask(self, eventLoop: context.eventLoop) { handler in
                guard handler.scheduled else { return }
                handler.scheduled = false
                handler.writeJoined(context)
                context.flush()
            }
        }
        context.eventLoop.execute(task!)
    }
}

@available(*, unavailable)
extension FlushCoalescer: Sendable {}
