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

    private struct Stream {
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

    private enum Queued {
        case data(ByteBuffer, endStream: Bool)
        case headers(HPACKHeaders, endStream: Bool)
    }

    private enum Phase { case preface, settings, open, closed }

    /// A connection error: GOAWAY with `code`, and the close.
    private struct ConnectionError: Error {
        let code: HTTP2ErrorCode
        let reason: String
    }

    private let config: Configuration
    private let logger: Logger
    private var context: ChannelHandlerContext?
    private var phase = Phase.preface
    private var inbound: ByteBuffer?
    private var decoder: HPACKDecoder
    private var encoder = HPACKResponseEncoder()
    private var out: ByteBuffer
    private var streams: [Stream] = []
    /// The highest stream id the peer opened (or tried to).
    private var highestStream: Int32 = 0
    /// Streams this side reset lately: frames the peer sent before it knew are dropped.
    private var recentlyReset: [Int32] = []
    private var connectionRecvWindow = 65_535
    private var connectionSendWindow = 65_535
    private var peerInitialWindow = 65_535
    private var peerMaxFrameSize = 16_384
    /// A header block waiting for its CONTINUATION frames.
    private var pendingBlock: (stream: Int32, endStream: Bool, block: ByteBuffer, frames: Int, invalidPriority: Bool)?
    /// Closes of streams this side ended, told upstream at the flush that sends them.
    private var closedByWrite: [(Int32, HTTP2ErrorCode?)] = []
    private var flushing = false
    /// Bytes handed to the next handler since the last flush.
    private var unflushed = false
    private var goAwaySent = false
    private var peerGoingAway = false
    /// Since when the connection has had no open stream (nil: it has one).
    private var idleSince: NIODeadline?
    private var idleTimer: Scheduled<Void>?
    private var resets = RateCounter()
    private var controlFrames = RateCounter()
    private var glitches = 0
    private var emptyDataFrames = 0
    private var pendingAcks = 0

    init(configuration: Configuration, logger: Logger) {
        self.config = configuration
        self.logger = logger
        let allocator = ByteBufferAllocator()
        self.decoder = HPACKDecoder(allocator: allocator, maxDynamicTableSize: HPACKDecoder.maxDynamicTableSize,
                                    maxHeaderListSize: configuration.maxHeaderListSize)
        self.out = allocator.buffer(capacity: 0)
    }

    // MARK: - Lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        out = context.channel.allocator.buffer(capacity: 1024)
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

    private var started = false

    /// This side's SETTINGS, the first frame of the connection, and the idle timer.
    private func start(_ context: ChannelHandlerContext) {
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
            connectionError(ConnectionError(code: .internalError, reason: "\(error)"), context: context)
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

    private func readPreface() throws -> Bool {
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

    private struct Frame {
        var type: UInt8
        var flags: UInt8
        var stream: Int32
        var payload: ByteBuffer
    }

    /// The next whole frame of `inbound`, or nil when it has not all arrived.
    /// A frame longer than `maxFrameSize` is refused before its payload is awaited.
    private func nextFrame() -> Frame? {
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

    private func handle(_ frame: Frame, context: ChannelHandlerContext) throws {
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
            if frame.payload.readableBytes != 5 { resetStream(frame.stream, .frameSizeError, context: context, glitch: true) }
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

    private func index(of stream: Int32) -> Int? {
        for i in streams.indices where streams[i].id == stream { return i }
        return nil
    }

    /// Strips the padding of a DATA or HEADERS payload.
    private func unpadded(_ frame: Frame) throws -> ByteBuffer {
        var payload = frame.payload
        guard frame.flags & 0x8 != 0 else { return payload }
        guard let pad = payload.readInteger(as: UInt8.self), Int(pad) <= payload.readableBytes else {
            throw ConnectionError(code: .protocolError, reason: "padding longer than the frame")
        }
        return payload.getSlice(at: payload.readerIndex, length: payload.readableBytes - Int(pad))!
    }

    private func receiveData(_ frame: Frame, context: ChannelHandlerContext) throws {
        guard frame.stream != 0 else { throw ConnectionError(code: .protocolError, reason: "DATA on stream 0") }
        guard frame.stream <= highestStream else { throw ConnectionError(code: .protocolError, reason: "DATA on an idle stream") }
        let length = frame.payload.readableBytes
        guard length <= connectionRecvWindow else {
            throw ConnectionError(code: .flowControlError, reason: "DATA beyond the connection's window")
        }
        connectionRecvWindow -= length
        let data = try unpadded(frame)
        let endStream = frame.flags & 1 != 0
        if data.readableBytes == 0 && !endStream {
            emptyDataFrames += 1
            if emptyDataFrames > 1 { throw ConnectionError(code: .enhanceYourCalm, reason: "empty DATA frames in a row") }
        } else {
            emptyDataFrames = 0
        }
        // `H2Connection` returns the connection's share of every DATA frame,
        // also of those the stream no longer takes.
        let padding = frame.flags & 0x8 != 0 ? length - data.readableBytes - 1 : nil
        let up = HTTP2Frame(streamID: HTTP2StreamID(frame.stream),
                            payload: .data(.init(data: .byteBuffer(data), endStream: endStream, paddingBytes: padding)))
        guard let i = index(of: frame.stream) else {
            if !recentlyReset.contains(frame.stream) { resetStream(frame.stream, .streamClosed, context: context, glitch: true) }
            return context.fireChannelRead(wrapInboundOut(up))
        }
        if streams[i].remoteEnded {
            resetStream(frame.stream, .streamClosed, context: context, glitch: true)
            return context.fireChannelRead(wrapInboundOut(up))
        }
        guard length <= streams[i].recvWindow else {
            resetStream(frame.stream, .flowControlError, context: context, glitch: true)
            return context.fireChannelRead(wrapInboundOut(up))
        }
        streams[i].recvWindow -= length
        streams[i].received += data.readableBytes
        if let expected = streams[i].expectedLength,
           streams[i].received > expected || (endStream && streams[i].received != expected) {
            resetStream(frame.stream, .protocolError, context: context, glitch: true)
            return context.fireChannelRead(wrapInboundOut(up))
        }
        if endStream { streams[i].remoteEnded = true }
        context.fireChannelRead(wrapInboundOut(up))
        if endStream { closeIfEnded(frame.stream, context: context) }
    }

    private func receiveHeaders(_ frame: Frame, context: ChannelHandlerContext) throws {
        guard frame.stream != 0 else { throw ConnectionError(code: .protocolError, reason: "HEADERS on stream 0") }
        var block = try unpadded(frame)
        var invalidPriority = false
        if frame.flags & 0x20 != 0 {
            guard let dependency = block.readInteger(as: UInt32.self), block.readInteger(as: UInt8.self) != nil else {
                throw ConnectionError(code: .frameSizeError, reason: "HEADERS too short for its priority")
            }
            invalidPriority = Int32(bitPattern: dependency & 0x7FFF_FFFF) == frame.stream
        }
        let endStream = frame.flags & 1 != 0
        guard frame.flags & 0x4 != 0 else {
            guard block.readableBytes <= config.maxHeaderListSize else {
                throw ConnectionError(code: .enhanceYourCalm, reason: "a header block larger than SETTINGS_MAX_HEADER_LIST_SIZE")
            }
            var copy = context.channel.allocator.buffer(capacity: block.readableBytes * 2)
            copy.writeBuffer(&block)
            pendingBlock = (frame.stream, endStream, copy, 0, invalidPriority)
            return
        }
        try headerBlock(stream: frame.stream, endStream: endStream, block: &block, invalidPriority: invalidPriority, context: context)
    }

    private func receiveContinuation(_ frame: Frame, context: ChannelHandlerContext) throws {
        guard var pending = pendingBlock else {
            throw ConnectionError(code: .protocolError, reason: "CONTINUATION without HEADERS")
        }
        pending.frames += 1
        guard pending.frames <= config.maxContinuationFrames else {
            throw ConnectionError(code: .enhanceYourCalm, reason: "too many CONTINUATION frames")
        }
        var fragment = frame.payload
        guard pending.block.readableBytes + fragment.readableBytes <= config.maxHeaderListSize else {
            throw ConnectionError(code: .enhanceYourCalm, reason: "a header block larger than SETTINGS_MAX_HEADER_LIST_SIZE")
        }
        pendingBlock = nil
        pending.block.writeBuffer(&fragment)
        if frame.flags & 0x4 != 0 {
            try headerBlock(stream: pending.stream, endStream: pending.endStream, block: &pending.block,
                            invalidPriority: pending.invalidPriority, context: context)
        } else {
            pendingBlock = pending
        }
    }

    /// A whole header block: decoded (always: the decoder's table must follow
    /// the peer's), then a new stream, trailers, or an error.
    private func headerBlock(stream id: Int32, endStream: Bool, block: inout ByteBuffer, invalidPriority: Bool,
                             context: ChannelHandlerContext) throws {
        let headers: HPACKHeaders
        do {
            headers = try decoder.decodeHeaders(from: &block)
        } catch {
            throw ConnectionError(code: .compressionError, reason: "header block: \(error)")
        }
        emptyDataFrames = 0
        let up = HTTP2Frame(streamID: HTTP2StreamID(id), payload: .headers(.init(headers: headers, endStream: endStream)))
        if let i = index(of: id) {
            // Trailers: they end the stream, and the body had the length it announced.
            if streams[i].remoteEnded { return resetStream(id, .streamClosed, context: context, glitch: true) }
            guard endStream, !invalidPriority else { return resetStream(id, .protocolError, context: context, glitch: true) }
            if let expected = streams[i].expectedLength, streams[i].received != expected {
                return resetStream(id, .protocolError, context: context, glitch: true)
            }
            streams[i].remoteEnded = true
            context.fireChannelRead(wrapInboundOut(up))
            return closeIfEnded(id, context: context)
        }
        if id <= highestStream {
            if recentlyReset.contains(id) { return }
            throw ConnectionError(code: .streamClosed, reason: "HEADERS on a closed stream")
        }
        guard id & 1 == 1 else { throw ConnectionError(code: .protocolError, reason: "a client stream with an even id") }
        highestStream = id
        if goAwaySent || streams.count >= config.maxConcurrentStreams {
            return resetStream(id, .refusedStream, context: context, glitch: false)
        }
        if invalidPriority { return resetStream(id, .protocolError, context: context, glitch: true) }
        var stream = Stream(id: id, recvWindow: config.initialWindow, sendWindow: peerInitialWindow)
        if let length = headers.first(name: "content-length") {
            guard let n = Self.contentLength(length), !endStream || n == 0 else {
                return resetStream(id, .protocolError, context: context, glitch: true)
            }
            stream.expectedLength = n
        }
        stream.remoteEnded = endStream
        streams.append(stream)
        idleSince = nil
        context.fireChannelRead(wrapInboundOut(up))
    }

    /// A `content-length` value: 1 to 18 digits.
    static func contentLength(_ value: String) -> Int? {
        let u = value.utf8
        guard !u.isEmpty, u.count <= 18 else { return nil }
        var n = 0
        for b in u {
            guard b >= 0x30 && b <= 0x39 else { return nil }
            n = n * 10 + Int(b - 0x30)
        }
        return n
    }

    private func receiveReset(_ frame: Frame, context: ChannelHandlerContext) throws {
        guard frame.stream != 0 else { throw ConnectionError(code: .protocolError, reason: "RST_STREAM on stream 0") }
        guard var payload = Optional(frame.payload), payload.readableBytes == 4, let code = payload.readInteger(as: UInt32.self) else {
            throw ConnectionError(code: .frameSizeError, reason: "RST_STREAM of a length other than 4")
        }
        guard frame.stream <= highestStream else { throw ConnectionError(code: .protocolError, reason: "RST_STREAM on an idle stream") }
        guard resets.count(now: context.eventLoop.now, within: config.rateWindow) <= config.maxResets else {
            throw ConnectionError(code: .enhanceYourCalm, reason: "too many RST_STREAM frames")
        }
        guard let i = index(of: frame.stream) else { return }
        streams.remove(at: i)
        streamsChanged(context)
        context.fireUserInboundEventTriggered(StreamClosedEvent(streamID: HTTP2StreamID(frame.stream),
                                                                reason: HTTP2ErrorCode(networkCode: Int(code))))
        closeIfDone(context)
    }

    private func receiveSettings(_ frame: Frame, context: ChannelHandlerContext) throws {
        guard frame.stream == 0 else { throw ConnectionError(code: .protocolError, reason: "SETTINGS on a stream") }
        var payload = frame.payload
        if frame.flags & 1 != 0 {
            guard payload.readableBytes == 0 else { throw ConnectionError(code: .frameSizeError, reason: "a SETTINGS ACK with a payload") }
            return
        }
        guard payload.readableBytes % 6 == 0 else { throw ConnectionError(code: .frameSizeError, reason: "SETTINGS of a length not a multiple of 6") }
        try countControlFrame(context)
        var windowSettings: [HTTP2Setting] = []
        while let id = payload.readInteger(as: UInt16.self), let value = payload.readInteger(as: UInt32.self) {
            switch id {
            case 1:
                // The peer's decoder table: this side's encoder stays within it.
                encoder.setPeerLimit(Int(value))
            case 2:
                guard value <= 1 else { throw ConnectionError(code: .protocolError, reason: "SETTINGS_ENABLE_PUSH other than 0 or 1") }
            case 4:
                guard value <= UInt32(Self.maxWindow) else {
                    throw ConnectionError(code: .flowControlError, reason: "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1")
                }
                // RFC 9113 6.9.2: the change applies to every open stream's send window.
                let delta = Int(value) - peerInitialWindow
                peerInitialWindow = Int(value)
                for i in streams.indices {
                    streams[i].sendWindow += delta
                    guard streams[i].sendWindow <= Self.maxWindow else {
                        throw ConnectionError(code: .flowControlError, reason: "a stream's window pushed above 2^31-1")
                    }
                }
                windowSettings.append(HTTP2Setting(parameter: .initialWindowSize, value: Int(value)))
            case 5:
                guard value >= 16_384 && value <= 16_777_215 else {
                    throw ConnectionError(code: .protocolError, reason: "SETTINGS_MAX_FRAME_SIZE out of range")
                }
                peerMaxFrameSize = Int(value)
            default:
                break  // SETTINGS_MAX_CONCURRENT_STREAMS (no push here), SETTINGS_MAX_HEADER_LIST_SIZE (advisory), unknown ones.
            }
        }
        try acknowledge()
        writeFrameHeader(length: 0, type: 4, flags: 1, stream: 0)
        if !windowSettings.isEmpty {
            context.fireChannelRead(wrapInboundOut(HTTP2Frame(streamID: .rootStream, payload: .settings(.settings(windowSettings)))))
            sendQueued(context)
        }
    }

    private func receivePing(_ frame: Frame, context: ChannelHandlerContext) throws {
        guard frame.stream == 0 else { throw ConnectionError(code: .protocolError, reason: "PING on a stream") }
        guard frame.payload.readableBytes == 8 else { throw ConnectionError(code: .frameSizeError, reason: "PING of a length other than 8") }
        guard frame.flags & 1 == 0 else { return }
        try countControlFrame(context)
        try acknowledge()
        var payload = frame.payload
        writeFrameHeader(length: 8, type: 6, flags: 1, stream: 0)
        out.writeBuffer(&payload)
    }

    private func receiveWindowUpdate(_ frame: Frame, context: ChannelHandlerContext) throws {
        guard var payload = Optional(frame.payload), payload.readableBytes == 4, let raw = payload.readInteger(as: UInt32.self) else {
            throw ConnectionError(code: .frameSizeError, reason: "WINDOW_UPDATE of a length other than 4")
        }
        let increment = Int(raw & 0x7FFF_FFFF)
        if frame.stream == 0 {
            guard increment > 0 else { throw ConnectionError(code: .protocolError, reason: "a WINDOW_UPDATE of 0") }
            connectionSendWindow += increment
            guard connectionSendWindow <= Self.maxWindow else {
                throw ConnectionError(code: .flowControlError, reason: "the connection's window pushed above 2^31-1")
            }
        } else {
            guard frame.stream <= highestStream else { throw ConnectionError(code: .protocolError, reason: "WINDOW_UPDATE on an idle stream") }
            guard let i = index(of: frame.stream) else { return }
            guard increment > 0 else { return resetStream(frame.stream, .protocolError, context: context, glitch: true) }
            streams[i].sendWindow += increment
            guard streams[i].sendWindow <= Self.maxWindow else {
                return resetStream(frame.stream, .flowControlError, context: context, glitch: true)
            }
        }
        context.fireChannelRead(wrapInboundOut(HTTP2Frame(streamID: HTTP2StreamID(frame.stream), payload: .windowUpdate(windowSizeIncrement: increment))))
        sendQueued(context)
    }

    private func countControlFrame(_ context: ChannelHandlerContext) throws {
        guard controlFrames.count(now: context.eventLoop.now, within: config.rateWindow) <= config.maxControlFrames else {
            throw ConnectionError(code: .enhanceYourCalm, reason: "too many PING, SETTINGS or PRIORITY frames")
        }
    }

    /// An acknowledgement to write: past `maxPendingAcks` while the socket
    /// does not drain, the peer is not reading what it asks for.
    private func acknowledge() throws {
        guard let context, !context.channel.isWritable else { return }
        pendingAcks += 1
        guard pendingAcks <= config.maxPendingAcks else {
            throw ConnectionError(code: .enhanceYourCalm, reason: "acknowledgements the peer does not read")
        }
    }

    // MARK: - Streams

    /// A stream error: RST_STREAM, and the stream closes (told upstream if it was open).
    private func resetStream(_ id: Int32, _ code: HTTP2ErrorCode, context: ChannelHandlerContext, glitch: Bool) {
        writeFrameHeader(length: 4, type: 3, flags: 0, stream: id)
        out.writeInteger(UInt32(code.networkCode))
        rememberReset(id)
        if let i = index(of: id) {
            streams.remove(at: i)
            streamsChanged(context)
            context.fireUserInboundEventTriggered(StreamClosedEvent(streamID: HTTP2StreamID(id), reason: code))
        }
        if glitch {
            glitches += 1
            if glitches > config.maxGlitches {
                connectionError(ConnectionError(code: .enhanceYourCalm, reason: "too many stream errors"), context: context)
                return
            }
        }
        closeIfDone(context)
    }

    private func rememberReset(_ id: Int32) {
        if recentlyReset.count >= 32 { recentlyReset.removeFirst() }
        recentlyReset.append(id)
    }

    /// The peer ended its side: the stream closes if this side ended too.
    private func closeIfEnded(_ id: Int32, context: ChannelHandlerContext) {
        guard let i = index(of: id), streams[i].localEnded, streams[i].remoteEnded else { return }
        streams.remove(at: i)
        streamsChanged(context)
        context.fireUserInboundEventTriggered(StreamClosedEvent(streamID: HTTP2StreamID(id), reason: nil))
        closeIfDone(context)
    }

    private func streamsChanged(_ context: ChannelHandlerContext) {
        if streams.isEmpty && idleSince == nil {
            idleSince = context.eventLoop.now
            armIdleTimer()
        }
    }

    /// After GOAWAY either way, the connection closes once its streams are done.
    private func closeIfDone(_ context: ChannelHandlerContext) {
        guard (goAwaySent || peerGoingAway), streams.isEmpty, phase != .closed else { return }
        phase = .closed
        flush(context: context)
        context.close(promise: nil)
    }

    private func goAway(_ code: HTTP2ErrorCode, context: ChannelHandlerContext) {
        guard !goAwaySent else { return }
        goAwaySent = true
        writeFrameHeader(length: 8, type: 7, flags: 0, stream: 0)
        out.writeInteger(UInt32(bitPattern: highestStream))
        out.writeInteger(UInt32(code.networkCode))
        flush(context: context)
    }

    private func connectionError(_ error: ConnectionError, context: ChannelHandlerContext) {
        guard phase != .closed else { return }
        logger.debug("HTTP/2 connection error", metadata: ["code": "\(error.code)", "reason": "\(error.reason)"])
        goAwaySent = false
        goAway(error.code, context: context)
        phase = .closed
        inbound = nil
        context.close(promise: nil)
    }

    /// One timer a connection at a time: when it fires early (the connection
    /// was busy meanwhile), it is set again for what is left.
    private func armIdleTimer() {
        guard idleTimer == nil, let context, let since = idleSince else { return }
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(deadline: since + config.idleTimeout) { [self] in
            idleTimer = nil
            guard phase != .closed, let context = self.context, let since = idleSince else { return }
            if context.eventLoop.now >= since + config.idleTimeout {
                goAway(.noError, context: context)
                closeIfDone(context)
            } else {
                armIdleTimer()
            }
        }
    }

    // MARK: - Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        let id = Int32(frame.streamID)
        switch frame.payload {
        case .headers(let h):
            guard let i = index(of: id), !streams[i].localEnded else { break }
            if streams[i].queued.isEmpty {
                writeHeaders(h.headers, endStream: h.endStream, stream: id)
                if h.endStream { localEnd(i) }
            } else {
                streams[i].queued.append(.headers(h.headers, endStream: h.endStream))
            }
        case .data(let d):
            guard case .byteBuffer(let bytes) = d.data, let i = index(of: id), !streams[i].localEnded else { break }
            if !streams[i].queued.isEmpty {
                streams[i].queued.append(.data(bytes, endStream: d.endStream))
            } else if let rest = sendData(bytes, endStream: d.endStream, at: i, context: context) {
                streams[i].queued.append(.data(rest, endStream: d.endStream))
            } else if d.endStream {
                localEnd(i)
            }
        case .windowUpdate(let increment):
            if id == 0 {
                connectionRecvWindow += increment
            } else if let i = index(of: id) {
                streams[i].recvWindow += increment
            } else {
                break
            }
            writeFrameHeader(length: 4, type: 8, flags: 0, stream: id)
            out.writeInteger(UInt32(increment))
        case .rstStream(let code):
            guard let i = index(of: id) else { break }
            writeFrameHeader(length: 4, type: 3, flags: 0, stream: id)
            out.writeInteger(UInt32(code.networkCode))
            rememberReset(id)
            streams.remove(at: i)
            closedByWrite.append((id, code))
        default:
            break
        }
        if let promise {
            // Completes when its bytes are written.
            writeOut(context, promise: promise)
        }
    }

    func flush(context: ChannelHandlerContext) {
        writeOut(context, promise: nil)
        unflushed = false
        context.flush()
        guard !flushing else { return }
        flushing = true
        defer { flushing = false }
        // The streams this flush ended, told upstream now that their last
        // frames are on their way (as NIOHTTP2 did at the flush).
        while !closedByWrite.isEmpty {
            let closed = closedByWrite
            closedByWrite.removeAll()
            for (id, reason) in closed {
                context.fireUserInboundEventTriggered(StreamClosedEvent(streamID: HTTP2StreamID(id), reason: reason))
            }
            streamsChanged(context)
            closeIfDone(context)
        }
    }

    private func writeOut(_ context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard out.readableBytes > 0 else {
            promise?.succeed(())
            return
        }
        let bytes = out
        out = context.channel.allocator.buffer(capacity: 1024)
        unflushed = true
        context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: promise)
    }

    /// This side ended stream `i`: it closes now if the peer had ended too
    /// (upstream hears of it at the flush). Whether it closed.
    @discardableResult
    private func localEnd(_ i: Int) -> Bool {
        streams[i].localEnded = true
        guard streams[i].remoteEnded else { return false }
        closedByWrite.append((streams[i].id, nil))
        streams.remove(at: i)
        return true
    }

    /// A stream's response head, encoded from the gateway's own head (no
    /// `HPACKHeaders` in between). False when a field could not be sent:
    /// nothing is written.
    func writeResponseHead(_ head: ResponseHead, stream id: HTTP2StreamID) -> Bool {
        guard let i = index(of: Int32(id)), !streams[i].localEnded else { return true }
        guard streams[i].queued.isEmpty else {
            // Never the case for a head (the first frame of a response); kept in order all the same.
            guard let block = H2ResponseHead.block(head) else { return false }
            streams[i].queued.append(.headers(block, endStream: false))
            return true
        }
        let headerAt = out.writerIndex
        writeFrameHeader(length: 0, type: 1, flags: 0x4, stream: Int32(id))
        let blockAt = out.writerIndex
        guard encoder.encode(head, into: &out) else {
            out.moveWriterIndex(to: headerAt)
            return false
        }
        finishHeaders(headerAt: headerAt, blockAt: blockAt, endStream: false, stream: Int32(id))
        return true
    }

    private func writeHeaders(_ headers: HPACKHeaders, endStream: Bool, stream: Int32) {
        let headerAt = out.writerIndex
        writeFrameHeader(length: 0, type: 1, flags: 0x4 | (endStream ? 1 : 0), stream: stream)
        let blockAt = out.writerIndex
        encoder.encode(headers, into: &out)
        finishHeaders(headerAt: headerAt, blockAt: blockAt, endStream: endStream, stream: stream)
    }

    /// Sets the length of the HEADERS frame just written; a block larger than
    /// the peer takes in one frame becomes HEADERS and CONTINUATION frames.
    private func finishHeaders(headerAt: Int, blockAt: Int, endStream: Bool, stream: Int32) {
        let length = out.writerIndex - blockAt
        if length <= peerMaxFrameSize {
            out.setInteger(UInt8(truncatingIfNeeded: length >> 16), at: headerAt)
            out.setInteger(UInt16(truncatingIfNeeded: length), at: headerAt + 1)
            return
        }
        // A copy of the block with its own storage: `out` is rewritten below.
        var block = ByteBuffer(bytes: out.getSlice(at: blockAt, length: length)!.readableBytesView)
        out.moveWriterIndex(to: headerAt)
        var first = true
        while block.readableBytes > 0 {
            var piece = block.readSlice(length: min(peerMaxFrameSize, block.readableBytes))!
            let last = block.readableBytes == 0
            let flags: UInt8 = (last ? 0x4 : 0) | (first && endStream ? 1 : 0)
            writeFrameHeader(length: piece.readableBytes, type: first ? 1 : 9, flags: flags, stream: stream)
            out.writeBuffer(&piece)
            first = false
        }
    }

    /// DATA within the peer's windows, in frames of at most its
    /// SETTINGS_MAX_FRAME_SIZE. What the windows do not take yet is
    /// returned (nil when all went); the caller queues it.
    private func sendData(_ bytes: ByteBuffer, endStream: Bool, at i: Int, context: ChannelHandlerContext) -> ByteBuffer? {
        var bytes = bytes
        if bytes.readableBytes == 0 && !endStream { return nil }
        repeat {
            let allowed = max(0, min(bytes.readableBytes, streams[i].sendWindow, connectionSendWindow, peerMaxFrameSize))
            if allowed == 0 && bytes.readableBytes > 0 { return bytes }
            var piece = bytes.readSlice(length: allowed)!
            let last = bytes.readableBytes == 0
            writeFrameHeader(length: allowed, type: 0, flags: last && endStream ? 1 : 0, stream: streams[i].id)
            streams[i].sendWindow -= allowed
            connectionSendWindow -= allowed
            if allowed > 2048 {
                // Large pieces go as buffers of their own, not copied.
                writeOut(context, promise: nil)
                unflushed = true
                context.write(wrapOutboundOut(.byteBuffer(piece)), promise: nil)
            } else {
                out.writeBuffer(&piece)
            }
        } while bytes.readableBytes > 0
        return nil
    }

    /// Frames that waited for the peer's windows, now that they may have
    /// opened, stream by stream, each stream's in order.
    private func sendQueued(_ context: ChannelHandlerContext) {
        var i = 0
        while i < streams.count {
            var closed = false
            queue: while !closed, let next = streams[i].queued.first {
                switch next {
                case .headers(let headers, let endStream):
                    streams[i].queued.removeFirst()
                    writeHeaders(headers, endStream: endStream, stream: streams[i].id)
                    if endStream { closed = localEnd(i) }
                case .data(let bytes, let endStream):
                    if bytes.readableBytes > 0 && (streams[i].sendWindow <= 0 || connectionSendWindow <= 0) { break queue }
                    streams[i].queued.removeFirst()
                    if let rest = sendData(bytes, endStream: endStream, at: i, context: context) {
                        streams[i].queued.insert(.data(rest, endStream: endStream), at: 0)
                        break queue
                    }
                    if endStream { closed = localEnd(i) }
                }
            }
            if !closed { i += 1 }
        }
    }

    private func writeFrameHeader(length: Int, type: UInt8, flags: UInt8, stream: Int32) {
        out.writeInteger(UInt8(truncatingIfNeeded: length >> 16))
        out.writeInteger(UInt16(truncatingIfNeeded: length))
        out.writeInteger(type)
        out.writeInteger(flags)
        out.writeInteger(stream)
    }
}

/// Events counted in a window of time that restarts when it has passed.
private struct RateCounter {
    private var start = NIODeadline.uptimeNanoseconds(0)
    private var events = 0

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
