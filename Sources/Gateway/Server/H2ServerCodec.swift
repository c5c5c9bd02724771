import Filters
import Logging
import NIOCore
import NIOHPACK
import NIOHTTP2

/// The server side of HTTP/2's framing layer (RFC 9113) for the listeners,
/// in place of `NIOHTTP2Handler` and its connection-management handler: it
/// reads the connection preface and the frames, keeps the connection's and
/// the streams' states and windows, decodes and encodes header blocks with
/// NIOHPACK, and hands `H2Connection` the same `HTTP2Frame` values and
/// `StreamClosedEvent`s NIOHTTP2 did. Every frame a flush produces goes out
/// in one buffer. (NIOHTTP2's protocol work was ≈ 18 % of an h2 request:
/// bench/README.md, "What the two open lines would take".)
///
/// What it enforces, and answers as RFC 9113 says (a connection error is
/// GOAWAY with the code and the close; a stream error is RST_STREAM):
/// - the preface, SETTINGS first, frame sizes (`maxFrameSize`; fixed
///   lengths of PRIORITY, RST_STREAM, PING, WINDOW_UPDATE, SETTINGS), which
///   frames go on stream 0 and which never do, padding that fits;
/// - stream states: new streams odd and increasing, no frame but HEADERS on
///   an idle stream, DATA or HEADERS after END_STREAM is STREAM_CLOSED,
///   trailers only with END_STREAM, frames on a stream this side reset are
///   dropped (the peer may have sent them before it knew);
/// - header blocks: CONTINUATION only right after its HEADERS on the same
///   stream, at most `maxContinuationFrames` of them and `maxHeaderListSize`
///   bytes of block; an HPACK error or a decoded list over
///   `maxHeaderListSize` is COMPRESSION_ERROR (the decoder's table can no
///   longer be trusted);
/// - `content-length` against the DATA received (the upstream is framed by
///   it: a stream whose DATA disagrees is reset before any of it passes);
/// - flow control: DATA beyond this side's connection or stream window is
///   FLOW_CONTROL_ERROR, a WINDOW_UPDATE of 0 is PROTOCOL_ERROR, a window
///   pushed past 2^31-1 is FLOW_CONTROL_ERROR; DATA written beyond the peer's
///   windows waits here, per stream, in order, until they open;
/// - concurrency: streams beyond `maxConcurrentStreams` are refused
///   (REFUSED_STREAM), as are new streams after GOAWAY;
/// - floods, with NIOHTTP2's limits: more than `maxResets` RST_STREAM or
///   `maxControlFrames` PING, SETTINGS and PRIORITY frames in `rateWindow`,
///   more than `maxGlitches` stream errors on a connection, more than one
///   empty DATA frame in a row (ENHANCE_YOUR_CALM); PING and SETTINGS
///   acknowledgements while the socket does not drain stop at
///   `maxPendingAcks` (ENHANCE_YOUR_CALM), so they cannot pile up;
/// - lifetime: a connection without open streams closes after
///   `idleTimeout` with GOAWAY (NO_ERROR); on shutdown
///   (`ChannelShouldQuiesceEvent`) it sends GOAWAY and closes once its
///   streams finish; after the peer's GOAWAY it closes once they finish.
final class H2ServerCodec: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = HTTP2Frame
    typealias OutboundIn = HTTP2Frame
    typealias OutboundOut = IOData

    struct Configuration {
        var maxConcurrentStreams: Int
        /// SETTINGS_MAX_HEADER_LIST_SIZE: the decoded size of a header list,
        /// and the size of one compressed header block.
        var maxHeaderListSize: Int
        /// SETTINGS_INITIAL_WINDOW_SIZE: each stream's receive window.
        var initialWindow: Int
        var idleTimeout: TimeAmount
        var maxContinuationFrames = 5
        var maxResets = 200
        var maxControlFrames = 200
        var rateWindow = TimeAmount.seconds(30)
        var maxGlitches = 200
        var maxPendingAcks = 10_000
    }

    /// SETTINGS_MAX_FRAME_SIZE of this side: the protocol's default, never raised.
    static let maxFrameSize = 16_384
    static let maxWindow = Int(Int32.max)
    static let preface: [UInt8] = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    struct Stream {
        let id: Int32
        var remoteEnded = false
        var localEnded = false
        var recvWindow: Int
        var sendWindow: Int
        var expectedLength: Int?
        var received = 0
        /// Frames written while the peer's windows were spent, in order.
        var queued: [Queued] = []
    }

    enum Queued {
        case data(ByteBuffer, endStream: Bool)
        case headers(HPACKHeaders, endStream: Bool)
    }

    enum Phase { case preface, settings, open, closed }

    /// A connection error: GOAWAY with `code`, and the close.
    struct ConnectionError: Error {
        let code: HTTP2ErrorCode
        let reason: String
    }

    let config: Configuration
    let logger: Logger
    var context: ChannelHandlerContext?
    var phase = Phase.preface
    var inbound: ByteBuffer?
    var decoder: HPACKDecoder
    var encoder = HPACKResponseEncoder()
    var out: ByteBuffer
    var streams: [Stream] = []
    /// The highest stream id the peer opened (or tried to).
    var highestStream: Int32 = 0
    /// Streams this side reset lately: frames the peer sent before it knew are dropped.
    var recentlyReset: [Int32] = []
    var connectionRecvWindow = 65_535
    var connectionSendWindow = 65_535
    var peerInitialWindow = 65_535
    var peerMaxFrameSize = 16_384
    /// A header block waiting for its CONTINUATION frames.
    var pendingBlock: (stream: Int32, endStream: Bool, block: ByteBuffer, frames: Int, invalidPriority: Bool)?
    /// Closes of streams this side ended, told upstream at the flush that sends them.
    var closedByWrite: [(Int32, HTTP2ErrorCode?)] = []
    var flushing = false
    /// Bytes handed to the next handler since the last flush.
    var unflushed = false
    var goAwaySent = false
    var peerGoingAway = false
    /// Since when the connection has had no open stream (nil: it has one).
    var idleSince: NIODeadline?
    var idleTimer: Scheduled<Void>?
    var resets = RateCounter()
    var controlFrames = RateCounter()
    var glitches = 0
    var emptyDataFrames = 0
    var pendingAcks = 0

    init(configuration: Configuration, logger: Logger) {
        self.config = configuration
        self.logger = logger
        let allocator = ByteBufferAllocator()
        self.decoder = HPACKDecoder(allocator: allocator, maxDynamicTableSize: HPACKDecoder.maxDynamicTableSize,
                                    maxHeaderListSize: configuration.maxHeaderListSize)
        self.out = Self.noBytes
    }

    /// `out` between flushes: no storage of its own.
    static let noBytes = ByteBuffer()

    // MARK: - Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { start(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    var started = false

    /// This side's SETTINGS, the first frame of the connection, and the idle timer.
    func start(_ context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        let settings: [(UInt16, Int)] = [(3, config.maxConcurrentStreams), (4, config.initialWindow), (6, config.maxHeaderListSize)]
        writeFrameHeader(length: 6 * settings.count, type: 4, flags: 0, stream: 0)
        for (id, value) in settings {
            out.writeInteger(id)
            out.writeInteger(UInt32(value))
        }
        idleSince = context.eventLoop.now
        armIdleTimer()
        flush(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        phase = .closed
        idleTimer?.cancel()
        idleTimer = nil
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            // Shutdown: no new streams; the open ones finish, then the close.
            goAway(.noError, context: context)
            closeIfDone(context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { pendingAcks = 0 }
        context.fireChannelWritabilityChanged()
    }

    // MARK: - Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard phase != .closed else { return }
        var bytes = unwrapInboundIn(data)
        if inbound == nil || inbound!.readableBytes == 0 {
            inbound = bytes
        } else {
            inbound!.writeBuffer(&bytes)
        }
        do {
            if phase == .preface {
                guard try readPreface() else { return }
            }
            while phase != .closed, let frame = nextFrame() {
                try handle(frame, context: context)
            }
        } catch let error as ConnectionError {
            connectionError(error, context: context)
        } catch {
            connectionError(ConnectionError(code: .internalError, reason: "\(type(of: error))"), context: context)
        }
        if let buffer = inbound, buffer.readableBytes == 0 {
            inbound = nil
        } else if inbound != nil, inbound!.readerIndex > 64 << 10 {
            inbound!.discardReadBytes()
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.fireChannelReadComplete()
        // Acknowledgements, resets and the DATA a WINDOW_UPDATE let go, made
        // while reading, go out now.
        if out.readableBytes > 0 || unflushed { flush(context: context) }
    }

    func readPreface() throws -> Bool {
        let available = min(inbound!.readableBytes, Self.preface.count)
        let matches = inbound!.withUnsafeReadableBytes { p in
            (0..<available).allSatisfy { p[$0] == Self.preface[$0] }
        }
        guard matches else { throw ConnectionError(code: .protocolError, reason: "no HTTP/2 connection preface") }
        guard available == Self.preface.count else { return false }
        inbound!.moveReaderIndex(forwardBy: Self.preface.count)
        phase = .settings
        return true
    }

    struct Frame {
        var type: UInt8
        var flags: UInt8
        var stream: Int32
        var payload: ByteBuffer
    }

    /// The next whole frame of `inbound`, or nil when it has not all arrived.
    /// A frame longer than `maxFrameSize` is refused before its payload is awaited.
    func nextFrame() -> Frame? {
        guard let buffer = inbound, buffer.readableBytes >= 9 else { return nil }
        let start = buffer.readerIndex
        let length = Int(buffer.getInteger(at: start, as: UInt8.self)!) << 16 | Int(buffer.getInteger(at: start + 1, as: UInt16.self)!)
        if length > Self.maxFrameSize {
            // Handled as a frame of its own kind: `handle` refuses it.
            return Frame(type: 0xFF, flags: 0, stream: -1, payload: ByteBuffer())
        }
        guard buffer.readableBytes >= 9 + length else { return nil }
        let frame = Frame(type: buffer.getInteger(at: start + 3, as: UInt8.self)!,
                          flags: buffer.getInteger(at: start + 4, as: UInt8.self)!,
                          stream: buffer.getInteger(at: start + 5, as: Int32.self)! & 0x7FFF_FFFF,
                          payload: buffer.getSlice(at: start + 9, length: length)!)
        inbound!.moveReaderIndex(forwardBy: 9 + length)
        return frame
    }

    func handle(_ frame: Frame, context: ChannelHandlerContext) throws {
        if frame.stream < 0 { throw ConnectionError(code: .frameSizeError, reason: "a frame larger than SETTINGS_MAX_FRAME_SIZE") }
        if phase == .settings {
            guard frame.type == 4, frame.flags & 1 == 0 else {
                throw ConnectionError(code: .protocolError, reason: "the preface not followed by SETTINGS")
            }
            phase = .open
        }
        if let pending = pendingBlock {
            guard frame.type == 9, frame.stream == pending.stream else {
                throw ConnectionError(code: .protocolError, reason: "a header block interrupted before END_HEADERS")
            }
        }
        switch frame.type {
        case 0: try receiveData(frame, context: context)
        case 1: try receiveHeaders(frame, context: context)
        case 2:
            guard frame.stream != 0 else { throw ConnectionError(code: .protocolError, reason: "PRIORITY on stream 0") }
            try countControlFrame(context)
            if frame.payload.readableBytes != 5 {
                // A stream error (RFC 9113 6.3), but an idle stream cannot be
                // reset (5.1): there it ends the connection.
                guard !isIdle(frame.stream) else {
                    throw ConnectionError(code: .frameSizeError, reason: "PRIORITY of a length other than 5 on an idle stream")
                }
                resetStream(frame.stream, .frameSizeError, context: context, glitch: true)
            }
        case 3: try receiveReset(frame, context: context)
        case 4: try receiveSettings(frame, context: context)
        case 5: throw ConnectionError(code: .protocolError, reason: "PUSH_PROMISE from a client")
        case 6: try receivePing(frame, context: context)
        case 7:
            guard frame.stream == 0, frame.payload.readableBytes >= 8 else {
                throw ConnectionError(code: frame.stream == 0 ? .frameSizeError : .protocolError, reason: "a malformed GOAWAY")
            }
            peerGoingAway = true
            closeIfDone(context)
        case 8: try receiveWindowUpdate(frame, context: context)
        case 9: try receiveContinuation(frame, context: context)
        default:
            break  // Unknown frame types are ignored (RFC 9113 5.5).
        }
    }

    func index(of stream: Int32) -> Int? {
        for i in streams.indices where streams[i].id == stream { return i }
        return nil
    }

    /// Strips the padding of a DATA or HEADERS payload.
    func unpadded(_ frame: Frame) throws -> ByteBuffer {
        var payload = frame.payload
        guard frame.flags & 0x8 != 0 else { return payload }
        guard let pad = payload.readInteger(as: UInt8.self), Int(pad) <= payload.readableBytes else {
            throw ConnectionError(code: .protocolError, reason: "padding longer than the frame")
        }
        return payload.getSlice(at: payload.readerIndex, length: payload.readableBytes - Int(pad))!
    }
}

/// Events counted in a window of time that restarts when it has passed.
struct RateCounter {
    var start = NIODeadline.uptimeNanoseconds(0)
    var events = 0

    /// Counts one more event; the count in the current window.
    mutating func count(now: NIODeadline, within window: TimeAmount) -> Int {
        if now - start > window {
            start = now
            events = 0
        }
        events += 1
        return events
    }
}

@available(*, unavailable)
extension H2ServerCodec: Sendable {}
