import Filters
import NIOCore
import NIOHPACK
import NIOHTTP2

/// The frames a client sends, one handler per type: what is checked, what
/// goes up to `H2Connection`, what is answered (see `H2ServerCodec`).
extension H2ServerCodec {
    func receiveData(_ frame: Frame, context: ChannelHandlerContext) throws {
        guard frame.stream != 0 else { throw ConnectionError(code: .protocolError, reason: "DATA on stream 0") }
        guard !isIdle(frame.stream) else { throw ConnectionError(code: .protocolError, reason: "DATA on an idle stream") }
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

    func receiveHeaders(_ frame: Frame, context: ChannelHandlerContext) throws {
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

    func receiveContinuation(_ frame: Frame, context: ChannelHandlerContext) throws {
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
    func headerBlock(stream id: Int32, endStream: Bool, block: inout ByteBuffer, invalidPriority: Bool,
                             context: ChannelHandlerContext) throws {
        let headers: HPACKHeaders
        do {
            headers = try decoder.decodeHeaders(from: &block)
        } catch {
            // The error's type only: some of NIOHPACK's errors carry the
            // header's bytes, which may be credentials.
            throw ConnectionError(code: .compressionError, reason: "header block: \(type(of: error))")
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
        guard id & 1 == 1 else { throw ConnectionError(code: .protocolError, reason: "a client stream with an even id") }
        if id <= highestStream {
            if recentlyReset.contains(id) { return }
            throw ConnectionError(code: .streamClosed, reason: "HEADERS on a closed stream")
        }
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

    /// A stream the client has not opened: above the highest it did, or even
    /// (this side opens none: no server push).
    func isIdle(_ stream: Int32) -> Bool {
        stream > highestStream || stream & 1 == 0
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

    func receiveReset(_ frame: Frame, context: ChannelHandlerContext) throws {
        guard frame.stream != 0 else { throw ConnectionError(code: .protocolError, reason: "RST_STREAM on stream 0") }
        guard var payload = Optional(frame.payload), payload.readableBytes == 4, let code = payload.readInteger(as: UInt32.self) else {
            throw ConnectionError(code: .frameSizeError, reason: "RST_STREAM of a length other than 4")
        }
        guard !isIdle(frame.stream) else { throw ConnectionError(code: .protocolError, reason: "RST_STREAM on an idle stream") }
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

    func receiveSettings(_ frame: Frame, context: ChannelHandlerContext) throws {
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

    func receivePing(_ frame: Frame, context: ChannelHandlerContext) throws {
        guard frame.stream == 0 else { throw ConnectionError(code: .protocolError, reason: "PING on a stream") }
        guard frame.payload.readableBytes == 8 else { throw ConnectionError(code: .frameSizeError, reason: "PING of a length other than 8") }
        guard frame.flags & 1 == 0 else { return }
        try countControlFrame(context)
        try acknowledge()
        var payload = frame.payload
        writeFrameHeader(length: 8, type: 6, flags: 1, stream: 0)
        out.writeBuffer(&payload)
    }

    func receiveWindowUpdate(_ frame: Frame, context: ChannelHandlerContext) throws {
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
            guard !isIdle(frame.stream) else { throw ConnectionError(code: .protocolError, reason: "WINDOW_UPDATE on an idle stream") }
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

    func countControlFrame(_ context: ChannelHandlerContext) throws {
        guard controlFrames.count(now: context.eventLoop.now, within: config.rateWindow) <= config.maxControlFrames else {
            throw ConnectionError(code: .enhanceYourCalm, reason: "too many PING, SETTINGS or PRIORITY frames")
        }
    }

    /// An acknowledgement to write: past `maxPendingAcks` while the socket
    /// does not drain, the peer is not reading what it asks for.
    func acknowledge() throws {
        guard let context, !context.channel.isWritable else { return }
        pendingAcks += 1
        guard pendingAcks <= config.maxPendingAcks else {
            throw ConnectionError(code: .enhanceYourCalm, reason: "acknowledgements the peer does not read")
        }
    }
}
