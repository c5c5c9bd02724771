import NIOCore
import NIOHTTP2

/// Stream and connection ends: resets, closes, GOAWAY, the idle timer (see
/// `H2ServerCodec`).
extension H2ServerCodec {
    /// A stream error: RST_STREAM, and the stream closes (told upstream if it was open).
    func resetStream(_ id: Int32, _ code: HTTP2ErrorCode, context: ChannelHandlerContext, glitch: Bool) {
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

    func rememberReset(_ id: Int32) {
        if recentlyReset.count >= 32 { recentlyReset.removeFirst() }
        recentlyReset.append(id)
    }

    /// The peer ended its side: the stream closes if this side ended too.
    func closeIfEnded(_ id: Int32, context: ChannelHandlerContext) {
        guard let i = index(of: id), streams[i].localEnded, streams[i].remoteEnded else { return }
        streams.remove(at: i)
        streamsChanged(context)
        context.fireUserInboundEventTriggered(StreamClosedEvent(streamID: HTTP2StreamID(id), reason: nil))
        closeIfDone(context)
    }

    func streamsChanged(_ context: ChannelHandlerContext) {
        if streams.isEmpty && idleSince == nil {
            idleSince = context.eventLoop.now
            armIdleTimer()
        }
    }

    /// After GOAWAY either way, the connection closes once its streams are done.
    func closeIfDone(_ context: ChannelHandlerContext) {
        guard (goAwaySent || peerGoingAway), streams.isEmpty, phase != .closed else { return }
        phase = .closed
        flush(context: context)
        context.close(promise: nil)
    }

    func goAway(_ code: HTTP2ErrorCode, context: ChannelHandlerContext) {
        guard !goAwaySent else { return }
        goAwaySent = true
        writeFrameHeader(length: 8, type: 7, flags: 0, stream: 0)
        out.writeInteger(UInt32(bitPattern: highestStream))
        out.writeInteger(UInt32(code.networkCode))
        flush(context: context)
    }

    func connectionError(_ error: ConnectionError, context: ChannelHandlerContext) {
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
    func armIdleTimer() {
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
}
