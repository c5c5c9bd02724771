import Logging
import NIOCore
import NIOHTTP2

/// The streams of one HTTP/2 connection, driven from its frames: each stream
/// is a `ProxyHandler` that is not in any pipeline. It replaces NIOHTTP2's
/// stream multiplexer, which made a child channel per stream (a channel, a
/// pipeline, two handler contexts and their set-up and tear-down: about a
/// tenth of an HTTP/2 request's samples, with a hop through the child's
/// pipeline for every frame).
///
/// The frame layer below it does the protocol: `H2ServerCodec`, the
/// gateway's own (the default), or `NIOHTTP2Handler` without a multiplexer
/// (`http2_engine: nio`). Either parses the frames, keeps the connection and
/// stream state machines, SETTINGS, PING, GOAWAY, the limits on concurrent
/// streams, resets and other floods, and the content-length checks, and
/// hands this handler `HTTP2Frame`s and `StreamClosedEvent`s. What NIOHTTP2's
/// stream multiplexer did on top of that is done here:
/// - **Receive windows.** The gateway returns the DATA it read in
///   WINDOW_UPDATE frames once half of `windowTarget` is used: on the
///   connection always, on a stream only while its request can take more
///   (`ProxyRequest.shouldPauseDownstreamReads`), so that a slow upstream
///   stops the client at the stream's window, as the multiplexer's child
///   channel did by not reading.
/// - **Send windows.** Each stream counts the DATA it writes against the
///   peer's windows (SETTINGS_INITIAL_WINDOW_SIZE, WINDOW_UPDATE frames, on
///   the stream and the connection) and reports itself unwritable when either
///   is spent, so its upstream stops being read instead of NIOHTTP2 buffering
///   the response without bound.
/// - **Stream lifetime.** A stream's handler lives from its first HEADERS
///   frame to NIOHTTP2's `StreamClosedEvent` (or the connection's end).
///
/// With `NIOHTTP2Handler` it sits before NIOHTTP2's connection management
/// handler (idle timeout, graceful shutdown), to which it passes the stream
/// events, the end of each read and the PING frames, whose acknowledgements
/// that handler's graceful close waits for; no other frame. `H2ServerCodec`
/// does those itself.
final class H2Connection: ChannelInboundHandler {
    typealias InboundIn = HTTP2Frame
    typealias OutboundOut = HTTP2Frame

    /// The receive window kept open on each stream (the listener's SETTINGS
    /// advertise it as SETTINGS_INITIAL_WINDOW_SIZE) and on the connection.
    static let windowTarget = 1 << 20

    let env: ProxyEnvironment
    let deadlines: StreamDeadlines
    /// The gateway's frame layer below, when it is the one (`http2_engine:
    /// gateway`): response heads go to it directly, encoded from the
    /// gateway's own head.
    var codec: H2ServerCodec?
    private let peer: Peer
    private var context: ChannelHandlerContext?
    /// The event loop's pools and request ids, looked up once per connection.
    private var loop: LoopLocal?
    private var streams: [HTTP2StreamID: ProxyHandler] = [:]
    /// The streams NIOHTTP2 announced open and has not closed yet.
    private var announced: Set<HTTP2StreamID> = []
    /// Streams that received frames during the current read, told when it completes.
    private var readers: [ProxyHandler] = []
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE: a new stream's send window.
    private var peerInitialWindow = 65535
    /// The connection's send window (RFC 9113 6.9.1): DATA written, against
    /// the WINDOW_UPDATE frames received on stream 0.
    private(set) var sendWindow = 65535
    /// DATA received on the connection and not returned yet.
    private var unreturned = 0
    /// The connection's receive window starts at 65,535 (no setting changes
    /// it); the first return also raises it to `windowTarget`.
    private var windowRaised = false

    init(environment: ProxyEnvironment, eventLoop: EventLoop, peer: Peer) {
        self.env = environment
        self.deadlines = StreamDeadlines(eventLoop: eventLoop)
        self.peer = peer
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.loop = env.loops.local(for: context.eventLoop)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        closeAll()
        self.context = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.payload {
        case .headers(let headers):
            let stream = streams[frame.streamID] ?? open(frame.streamID, context: context)
            reading(stream)
            stream.receivedHeaders(headers)
        case .data(let data):
            let length = data.data.readableBytes + (data.paddingBytes.map { $0 + 1 } ?? 0)
            returnConnectionCredit(length, context: context)
            if let stream = streams[frame.streamID] {
                reading(stream)
                stream.receivedData(data, flowControlledLength: length)
            }
        case .windowUpdate(let increment):
            if frame.streamID == .rootStream {
                let wasOpen = sendWindow > 0
                sendWindow += increment
                if !wasOpen && sendWindow > 0 { writabilityMayHaveChanged() }
            } else {
                streams[frame.streamID]?.sendWindowChanged(by: increment)
            }
        case .settings(.settings(let settings)):
            for setting in settings where setting.parameter == .initialWindowSize {
                // RFC 9113 6.9.2: the change applies to every open stream's window.
                let delta = setting.value - peerInitialWindow
                peerInitialWindow = setting.value
                if delta != 0 {
                    for stream in streams.values { stream.sendWindowChanged(by: delta) }
                }
            }
        case .ping:
            // The management handler's graceful close (GOAWAY, PING, then the
            // last GOAWAY and the close once the PING is answered) waits for
            // the acknowledgement.
            context.fireChannelRead(data)
        default:
            break
        }
    }

    /// A stream's handler, from its first HEADERS frame on.
    func open(_ id: HTTP2StreamID, context: ChannelHandlerContext) -> ProxyHandler {
        let stream = ProxyHandler(environment: env, stream: id, connection: self, peer: peer)
        streams[id] = stream
        stream.streamOpened(context: context, loop: loop, sendWindow: peerInitialWindow)
        return stream
    }

    func stream(_ id: HTTP2StreamID) -> ProxyHandler? { streams[id] }

    /// Marks a stream as read in this read (its upstream is flushed once, at
    /// the read's end).
    private func reading(_ stream: ProxyHandler) {
        guard !stream.reading else { return }
        stream.reading = true
        readers.append(stream)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        let done = readers
        readers.removeAll(keepingCapacity: true)
        for stream in done { stream.streamReadComplete() }
        context.fireChannelReadComplete()
    }

    /// Returns the connection's share of received DATA, raising its window to
    /// `windowTarget` the first time. Always at once: a stream that cannot
    /// take more holds back its own window, never the connection's.
    private func returnConnectionCredit(_ length: Int, context: ChannelHandlerContext) {
        unreturned += length
        guard unreturned >= Self.windowTarget / 2 || !windowRaised else { return }
        var increment = unreturned
        if !windowRaised {
            windowRaised = true
            increment += Self.windowTarget - 65535
        }
        unreturned = 0
        context.write(wrapOutboundOut(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: increment))),
                      promise: nil)
        context.flush()
    }

    /// Malformed header blocks this connection sent. NIOHTTP2 counts the
    /// streams it resets itself against its DoS limits; these are reset by
    /// the gateway, and counted here instead.
    private var malformedBlocks = 0
    static let malformedBlockLimit = 100

    /// A stream was reset for a malformed header block: past
    /// `malformedBlockLimit` on one connection, the connection is closed.
    func refusedMalformedBlock() {
        malformedBlocks += 1
        guard malformedBlocks > Self.malformedBlockLimit, let context else { return }
        env.logger.debug("HTTP/2 connection closed: too many malformed header blocks", metadata: ["listener": "\(env.listener.name)"])
        context.close(promise: nil)
    }

    /// DATA a stream wrote, counted against the connection's send window.
    func spentSendWindow(_ length: Int) {
        let wasOpen = sendWindow > 0
        sendWindow -= length
        if wasOpen && sendWindow <= 0 { writabilityMayHaveChanged() }
    }

    private func writabilityMayHaveChanged() {
        for stream in streams.values { stream.streamWritabilityMayHaveChanged() }
    }

    /// Stream events go on to the connection management handler after this
    /// one, which counts open streams from them, except the close of a
    /// stream NIOHTTP2 never announced: it resets a stream whose first
    /// HEADERS it refused (e.g. a content-length that is not a number) and
    /// reports it closed without having reported it created, which the
    /// management handler's count takes for a broken invariant. Window
    /// events stop here: the windows are kept from the frames, and the
    /// handlers after this one have no use for them (each event cost the
    /// management handler three dynamic casts).
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        let kind = type(of: event)
        if kind == NIOHTTP2WindowUpdatedEvent.self || kind == NIOHTTP2BulkStreamWindowChangeEvent.self { return }
        if kind == NIOHTTP2StreamCreatedEvent.self, let created = event as? NIOHTTP2StreamCreatedEvent {
            announced.insert(created.streamID)
        } else if kind == StreamClosedEvent.self, let closed = event as? StreamClosedEvent {
            if let stream = streams.removeValue(forKey: closed.streamID) { stream.streamClosed() }
            guard announced.remove(closed.streamID) != nil else { return }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        writabilityMayHaveChanged()
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        closeAll()
        context.fireChannelInactive()
    }

    private func closeAll() {
        let open = streams.values
        streams.removeAll()
        readers.removeAll()
        for stream in open { stream.streamClosed() }
        deadlines.cancel()
    }

    /// NIOHTTP2 has already answered what it reports here: a stream error
    /// with RST_STREAM (its `StreamClosedEvent` follows), a connection error
    /// with GOAWAY (the client closes; a connection left open closes after
    /// idle_timeout without streams). Errors of either kind arrive as the
    /// bare underlying error, so they cannot be told apart here: closing on
    /// them would end every stream of a connection for one malformed request.
    /// TLS errors close the connection in NIOSSL.
    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // The error's type only: some of NIOHTTP2's and NIOHPACK's errors
        // carry header fields, which may be credentials.
        env.logger.debug("HTTP/2 error", metadata: ["error": "\(type(of: error))", "listener": "\(env.listener.name)"])
    }
}

@available(*, unavailable)
extension H2Connection: Sendable {}
