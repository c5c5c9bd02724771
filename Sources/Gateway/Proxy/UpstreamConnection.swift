import Filters
import NIOCore
import NIOHTTP1

/// What an upstream connection reports to the request that leases it.
protocol UpstreamDelegate: AnyObject {
    func upstreamResponseHead(_ head: consuming ResponseHead)
    func upstreamResponseBody(_ buffer: ByteBuffer)
    func upstreamResponseEnd()
    func upstreamReadComplete()
    func upstreamFailed(_ error: Error)
    func upstreamWritabilityChanged(_ writable: Bool)
}

/// One pooled HTTP/1.1 connection to an upstream endpoint. Bound to the event
/// loop of its pool; a request that leases it runs on the same loop.
final class UpstreamConnection {
    let id: Int
    let channel: Channel
    let endpoint: String
    /// The request the connection serves. A strong reference, set by the
    /// request when it leases the connection and cleared by every way an
    /// exchange ends (release to the pool, drop, failure, close): a weak one
    /// would give every request a side table and put each of its retains
    /// and releases on the runtime's slow path.
    var delegate: UpstreamDelegate?
    /// Set while the downstream cannot take more bytes: reads are held back.
    var readsPaused = false {
        didSet {
            if !readsPaused, let context = heldRead {
                heldRead = nil
                context.read()
            }
        }
    }
    /// The handler's context whose read was held back while `readsPaused`.
    private var heldRead: ChannelHandlerContext?
    /// Set when the connection must not serve another exchange: the last
    /// response ended with the connection, said `Connection: close`, or was
    /// followed by bytes nobody asked for.
    var mustClose = false
    /// When the connection was last parked idle in its pool.
    var parkedAt = NIODeadline.distantFuture
    var exchanges = 0
    /// The fused HTTP/1.1 codec (nil on an HTTP/2 stream). Strong for the
    /// same reason as `delegate`; the handler clears it when it leaves the
    /// pipeline, which breaks the cycle.
    private var h1: UpstreamHTTP1Handler?

    init(id: Int, channel: Channel, endpoint: String) {
        self.id = id
        self.channel = channel
        self.endpoint = endpoint
        flushTask = makeLoopTask(self, eventLoop: channel.eventLoop) { connection in
            connection.flushScheduled = false
            connection.flushNow()
        }
    }

    var isActive: Bool { channel.isActive }

    /// Writes a request's head, with the edits it gets on the wire.
    func writeHead(_ head: RequestHead, edits: UpstreamHeadEdits) {
        if let h1 {
            h1.sendHead(head, edits: edits)
        } else {
            var head = head
            edits.apply(to: &head)
            channel.write(UpstreamRequestPart.head(head).nio, promise: nil)
        }
    }

    func write(_ part: UpstreamRequestPart) {
        if let h1 {
            h1.send(part)
        } else {
            channel.write(part.nio, promise: nil)
        }
    }

    /// Set while a flush waits for the end of the event-loop tick.
    private var flushScheduled = false

    /// Flushes at the end of the current event-loop tick, once, however many
    /// requests wrote to the connection meanwhile.
    ///
    /// The loop handles every client socket that became readable before it
    /// runs its tasks, so the upstream writes of one tick leave back to back
    /// instead of one between each client's parsing and filters. An upstream
    /// on the same host (a local sidecar, as behind Istio) is then woken once
    /// per tick rather than once per request: a wake-up of a sleeping process
    /// costs the writer a scheduler pass, and on a virtual machine an
    /// interprocessor interrupt, inside its `writev`. Measured with an nginx
    /// upstream on the other core, that was 9–14% of the gateway's samples.
    /// When the loop is idle the task runs right after the read that wrote,
    /// so a lone request is not delayed. (`FlushCoalescer` does the same for
    /// the clients' HTTP/2 connections as a pipeline handler, since NIOHTTP2
    /// flushes through the pipeline; the HTTP/1.1 codec here is called
    /// directly, so the flush is deferred here, without a hop per write.)
    func flush() {
        guard !flushScheduled, let flushTask else { return }
        flushScheduled = true
        channel.eventLoop.execute(flushTask)
    }

    /// The end-of-tick flush, made once. It holds the connection; `closed`
    /// lets go of it (a closed connection has nothing to flush).
    private var flushTask: (@Sendable () -> Void)?

    private func flushNow() {
        if let h1 {
            h1.flush()
        } else {
            channel.flush()
        }
    }

    func close() {
        channel.close(promise: nil)
    }

    /// The codec left the pipeline: nothing is written through it any more.
    func codecRemoved() {
        h1 = nil
    }

    // MARK: - Shared by both handlers

    /// A handler's `read`: passed on unless the downstream cannot take more.
    func read(_ context: ChannelHandlerContext) {
        if readsPaused {
            heldRead = context
        } else {
            context.read()
        }
    }

    /// Ends the current exchange, if any, with `error`.
    func failExchange(_ error: Error) {
        if let delegate {
            self.delegate = nil
            delegate.upstreamFailed(error)
        }
    }

    /// The channel closed: an exchange still on it fails; the pool forgets it.
    func closed(onClose: (UpstreamConnection) -> Void) {
        heldRead = nil
        flushTask = nil
        mustClose = true
        failExchange(ChannelError.eof)
        onClose(self)
    }

    /// Adds this connection's handler: the fused HTTP/1.1 codec
    /// (`UpstreamHTTP1Handler`), or, with `codec: false`, for an HTTP/2
    /// stream whose pipeline already converts HTTP/1 parts, `UpstreamHandler`.
    static func configure(channel: Channel, id: Int, endpoint: String, codec: Bool = true,
                          onClose: @escaping (UpstreamConnection) -> Void) throws -> UpstreamConnection {
        let connection = UpstreamConnection(id: id, channel: channel, endpoint: endpoint)
        if codec {
            // It validates every header it writes: a filter that copies
            // untrusted bytes into a request header cannot split the request.
            let h1 = UpstreamHTTP1Handler(connection: connection, onClose: onClose)
            try channel.pipeline.syncOperations.addHandler(h1)
            connection.h1 = h1
        } else {
            try channel.pipeline.syncOperations.addHandler(UpstreamHandler(connection: connection, onClose: onClose))
        }
        return connection
    }
}

@available(*, unavailable)
extension UpstreamConnection: Sendable {}

/// Turns the client codec's events into `UpstreamDelegate` calls and holds
/// reads back while the downstream is not writable.
final class UpstreamHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = HTTPClientRequestPart
    typealias OutboundOut = HTTPClientRequestPart

    private let connection: UpstreamConnection
    private let onClose: (UpstreamConnection) -> Void

    init(connection: UpstreamConnection, onClose: @escaping (UpstreamConnection) -> Void) {
        self.connection = connection
        self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let delegate = connection.delegate else {
            // A response nobody asked for: the connection is unusable.
            context.close(promise: nil)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head): delegate.upstreamResponseHead(ResponseHead(status: head.status, headers: HeaderFields(head.headers), isLocal: false))
        case .body(let buffer): delegate.upstreamResponseBody(buffer)
        case .end: delegate.upstreamResponseEnd()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection.delegate?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection.delegate?.upstreamWritabilityChanged(context.channel.isWritable)
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.closed(onClose: onClose)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        connection.failExchange(error)
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        connection.read(context)
    }
}

@available(*, unavailable)
extension UpstreamHandler: Sendable {}
