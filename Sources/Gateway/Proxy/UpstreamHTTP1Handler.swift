import Filters
import NIOCore
import NIOHTTP1

/// The HTTP/1.1 client side of a pooled upstream connection in one piece:
/// request heads are validated and written straight into a buffer, and
/// responses are parsed straight from the bytes read. It replaces NIO's
/// request encoder, request-header validator and response decoder (three
/// pipeline hops per message part, each boxing it) on the hot path; HTTP/2
/// upstream streams keep NIO's codec.
///
/// It is strict where a lenient reading could let one response be taken for
/// another on a reused connection: CRLF line ends only, no folded or
/// space-before-colon headers, one plain `Content-Length`, no
/// `Content-Length` with `Transfer-Encoding`, well-formed chunks, and no byte
/// after a response that no request asked for (the connection is then closed
/// instead of reused; see `UpstreamResponseParser`).
///
/// It is the only handler (after TLS) of a pooled HTTP/1.1 upstream connection:
/// `UpstreamConnection.write` calls it directly to encode request parts,
/// and it parses the response bytes into `UpstreamDelegate` calls. Reads
/// are held back while the downstream is not writable.
final class UpstreamHTTP1Handler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let connection: UpstreamConnection
    private let onClose: (UpstreamConnection) -> Void
    private var context: ChannelHandlerContext?
    private var parser = UpstreamResponseParser()
    /// Bytes of a response part that has not arrived whole.
    private var received: ByteBuffer?
    private var chunked = false
    /// Set once a request could not be encoded: nothing more is written.
    private var broken = false
    /// The request bytes written since the last flush, held to go as one
    /// buffer: a head and a small body are one write to the channel, not
    /// two (each write is a trip through the channel's checks and its
    /// queue of pending writes, and two buffers a vectored write).
    private var held: ByteBuffer?
    /// Bytes up to this size join the held ones (a copy); larger pieces go
    /// as they are.
    private static let joinLimit = 8 << 10
    /// The last buffer written, cleared and filled again by the next
    /// request: by then the channel has written it and holds it no more, so
    /// its storage is reused instead of allocated (a fresh `ByteBuffer` is
    /// two allocations). If it is still shared, `clear` gives the request
    /// fresh storage and never writes into the bytes going out.
    private var spare: ByteBuffer?
    private var heldIsOurs = false

    init(connection: UpstreamConnection, onClose: @escaping (UpstreamConnection) -> Void) {
        self.connection = connection
        self.onClose = onClose
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        connection.codecRemoved()
    }

    // MARK: - Requests

    func sendHead(_ head: RequestHead, edits: UpstreamHeadEdits) {
        guard let context, !broken else { return }
        do {
            // Room for a usual head, and for a collected body that will join it.
            let body = edits.contentLength.map { $0 <= Self.joinLimit ? $0 : 0 } ?? 0
            var buffer: ByteBuffer
            if var reused = spare.take() {
                reused.clear(minimumCapacity: 1024 + body)
                buffer = reused
            } else {
                buffer = context.channel.allocator.buffer(capacity: 1024 + body)
            }
            chunked = try UpstreamRequestEncoder.writeHead(head, edits: edits, into: &buffer)
            parser.requestSent(head.method)
            emit(buffer, ours: true, context: context)
        } catch {
            fail(error, context: context)
        }
    }

    /// Queues request bytes: joined to the held ones when small, else
    /// written after them.
    /// `ours`: a buffer `sendHead` allocated, which may be kept as the
    /// spare once written (a body piece is a slice of another's storage).
    private func emit(_ bytes: ByteBuffer, ours: Bool = false, context: ChannelHandlerContext) {
        if held == nil {
            held = bytes
            heldIsOurs = ours
        } else if bytes.readableBytes <= Self.joinLimit, held!.readableBytes <= Self.joinLimit {
            held!.writeImmutableBuffer(bytes)
        } else {
            writeHeld(context)
            held = bytes
            heldIsOurs = ours
        }
    }

    private func writeHeld(_ context: ChannelHandlerContext) {
        guard let bytes = held else { return }
        held = nil
        context.write(wrapOutboundOut(bytes), promise: nil)
        if heldIsOurs && bytes.capacity <= 16 << 10 { spare = bytes }
    }

    /// A request that could not be encoded: what was held of it is dropped
    /// (never half a request on the wire), and the connection fails.
    private func fail(_ error: Error, context: ChannelHandlerContext) {
        broken = true
        held = nil
        errorCaught(context: context, error: error)
    }

    func send(_ part: UpstreamRequestPart) {
        guard let context, !broken else { return }
        do {
            switch part {
            case .head(let head):
                return sendHead(head, edits: UpstreamHeadEdits())
            case .body(.byteBuffer(let body)):
                writeBody(body, context: context)
            case .body(.fileRegion):
                // The proxy only forwards buffers.
                throw UpstreamRequestEncoder.InvalidRequest(description: "file regions are not supported")
            case .end(let trailers):
                guard chunked else { return }
                var buffer = context.channel.allocator.buffer(capacity: 8)
                try UpstreamRequestEncoder.writeChunkedEnd(trailers, into: &buffer)
                emit(buffer, context: context)
            }
        } catch {
            fail(error, context: context)
        }
    }

    private func writeBody(_ body: ByteBuffer, context: ChannelHandlerContext) {
        guard body.readableBytes > 0 else { return }
        guard chunked else { return emit(body, context: context) }
        HTTPBytes.writeChunk(body, allocator: context.channel.allocator) { emit($0, context: context) }
    }

    func flush() {
        guard let context else { return }
        writeHeld(context)
        context.flush()
    }

    // MARK: - Responses

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if var earlier = received {
            received = nil
            earlier.writeBuffer(&buffer)
            buffer = earlier
        }
        do {
            while let event = try parser.next(&buffer) {
                guard let delegate = connection.delegate else {
                    // A response nobody is waiting for: the connection is unusable.
                    context.close(promise: nil)
                    return
                }
                // Consumed: the head's header list goes to the request unshared.
                switch consume event {
                case .head(let head):
                    delegate.upstreamResponseHead(head)
                case .body(let body):
                    delegate.upstreamResponseBody(body)
                case .end:
                    // Bytes after a response that no request asked for: never
                    // let them be read as the next request's response.
                    if parser.mustClose || (buffer.readableBytes > 0 && parser.isIdle) { connection.mustClose = true }
                    delegate.upstreamResponseEnd()
                }
            }
        } catch {
            errorCaught(context: context, error: error)
            return
        }
        if buffer.readableBytes > 0 {
            if buffer.readerIndex > 4096 { buffer.discardReadBytes() }
            received = buffer
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        connection.delegate?.upstreamReadComplete()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        connection.delegate?.upstreamWritabilityChanged(context.channel.isWritable)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // A body that runs until the close has ended.
        if case .end = parser.endOfInput(), let delegate = connection.delegate {
            connection.mustClose = true
            delegate.upstreamResponseEnd()
        }
        connection.closed(onClose: onClose)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        connection.mustClose = true
        connection.failExchange(error)
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        connection.read(context)
    }
}

@available(*, unavailable)
extension UpstreamHTTP1Handler: Sendable {}
