import NIOCore
import NIOHTTP1

/// What an upstream connection reports to the request that leases it.
protocol UpstreamDelegate: AnyObject {
    func upstreamResponseHead(_ head: HTTPResponseHead)
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
    weak var delegate: UpstreamDelegate?
    /// Set while the downstream cannot take more bytes: reads are held back.
    var readsPaused = false {
        didSet { if !readsPaused, let handler, handler.readPending { handler.resumeRead() } }
    }
    var keepAliveTimer: Scheduled<Void>?
    var exchanges = 0
    fileprivate weak var handler: UpstreamHandler?

    init(id: Int, channel: Channel, endpoint: String) {
        self.id = id
        self.channel = channel
        self.endpoint = endpoint
    }

    var isActive: Bool { channel.isActive }

    func write(_ part: HTTPClientRequestPart) {
        channel.write(part, promise: nil)
    }

    func flush() { channel.flush() }

    func close() {
        channel.close(promise: nil)
    }

    /// Adds the HTTP/1.1 client handlers and this connection's handler.
    /// `codec: false` for an HTTP/2 stream whose pipeline already converts HTTP/1 parts.
    static func configure(channel: Channel, id: Int, endpoint: String, codec: Bool = true,
                          onClose: @escaping (UpstreamConnection) -> Void) throws -> UpstreamConnection {
        let connection = UpstreamConnection(id: id, channel: channel, endpoint: endpoint)
        let handler = UpstreamHandler(connection: connection, onClose: onClose)
        connection.handler = handler
        // Outbound header validation stays on: a filter that copies untrusted
        // bytes into a request header must not be able to split the request.
        if codec { try channel.pipeline.syncOperations.addHTTPClientHandlers() }
        try channel.pipeline.syncOperations.addHandler(handler)
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
    private var context: ChannelHandlerContext?
    fileprivate var readPending = false

    init(connection: UpstreamConnection, onClose: @escaping (UpstreamConnection) -> Void) {
        self.connection = connection
        self.onClose = onClose
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let delegate = connection.delegate else {
            // A response nobody asked for: the connection is unusable.
            context.close(promise: nil)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head): delegate.upstreamResponseHead(head)
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
        connection.keepAliveTimer?.cancel()
        if let delegate = connection.delegate {
            connection.delegate = nil
            delegate.upstreamFailed(ChannelError.eof)
        }
        onClose(connection)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let delegate = connection.delegate {
            connection.delegate = nil
            delegate.upstreamFailed(error)
        }
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if connection.readsPaused {
            readPending = true
        } else {
            context.read()
        }
    }

    fileprivate func resumeRead() {
        readPending = false
        context?.read()
    }
}

@available(*, unavailable)
extension UpstreamHandler: Sendable {}
