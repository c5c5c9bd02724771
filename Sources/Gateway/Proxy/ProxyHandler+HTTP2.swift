import Filters
import NIOCore
import NIOHTTP1
import NIOHTTP2

/// Where an HTTP/2 stream's request is: its head is read from the first
/// HEADERS frame, its body from DATA frames, its end from END_STREAM.
enum H2RequestState {
    case awaitingHead, body, ended
}

/// An HTTP/2 stream's side of `ProxyHandler`: the entry points its
/// connection's `H2Connection` calls with the stream's frames and events,
/// the frames it writes, and its flow control.
extension ProxyHandler {
    /// The stream's first HEADERS frame arrived: the handler writes through
    /// its connection's context from now until the stream closes.
    func streamOpened(context: ChannelHandlerContext, loop: LoopLocal?, sendWindow: Int) {
        self.context = context
        self.loop = loop
        self.sendWindow = sendWindow
    }

    /// A HEADERS frame: the request head, or its trailers.
    func receivedHeaders(_ frame: HTTP2Frame.FramePayload.Headers) {
        switch h2Request {
        case .awaitingHead:
            let head: RequestHead
            do {
                head = try H2Request.head(frame.headers, endStream: frame.endStream)
            } catch {
                if frame.endStream { h2Request = .ended }
                refuse(error)
                return
            }
            h2Request = frame.endStream ? .ended : .body
            dispatch(.head(consume head))
            if frame.endStream { dispatch(.end(nil)) }
        case .body:
            h2Request = .ended
            do {
                dispatch(.end(try H2Request.trailers(frame.headers)))
            } catch {
                refuse(error)
            }
        case .ended:
            // NIOHTTP2's stream state machine lets no frame through after
            // END_STREAM; a stream that got here anyway is reset.
            resetStream(.protocolError)
        }
    }

    /// A header block the stream cannot take: a malformed one resets it
    /// (PROTOCOL_ERROR, RFC 9113 8.1.1; the request that was being received,
    /// if any, fails with the client gone), a well-formed one with no HTTP/1
    /// form is answered 400.
    private func refuse(_ error: Error) {
        env.logger.debug("HTTP/2 request refused", metadata: ["reason": "\(error)", "listener": "\(env.listener.name)"])
        guard let malformed = error as? H2Request.Malformed, malformed.reset else { return protocolError(.badRequest) }
        connection?.refusedMalformedBlock()
        resetStream(.protocolError)
    }

    /// A DATA frame: body bytes for the request (or discarded, once it was
    /// answered); its length is returned to the peer's window when the
    /// request can take more.
    func receivedData(_ frame: HTTP2Frame.FramePayload.Data, flowControlledLength: Int) {
        unreturned += flowControlledLength
        if h2Request == .body {
            if case .byteBuffer(let body) = frame.data, body.readableBytes > 0 { dispatch(.body(body)) }
            if frame.endStream {
                h2Request = .ended
                dispatch(.end(nil))
            }
        }
        returnStreamCredit()
    }

    /// Returns the DATA read on this stream to the peer once half the window
    /// is used, unless the request's upstream cannot take more yet: the
    /// client then stops at the end of its window, and gets the credit when
    /// the upstream drains (`resumeReadsIfNeeded`).
    func returnStreamCredit() {
        guard unreturned >= H2Connection.windowTarget / 2, h2Request == .body, let context,
              request?.shouldPauseDownstreamReads != true else { return }
        let increment = unreturned
        unreturned = 0
        writeFrame(.windowUpdate(windowSizeIncrement: increment), context: context)
        context.flush()
    }

    /// The end of a read in which this stream got frames: the upstream is
    /// flushed once for all of them.
    func streamReadComplete() {
        reading = false
        request?.flushUpstream()
    }

    /// The stream closed (both sides ended, or a reset either way) or its
    /// connection did: a request still in flight is the client's loss.
    func streamClosed() {
        guard context != nil else { return }
        dropRequest()
        clearDeadline()
        unsentData = nil
        context = nil
        connection = nil
    }

    /// Resets the stream; NIOHTTP2's `StreamClosedEvent` then closes it here.
    func resetStream(_ code: HTTP2ErrorCode) {
        guard let context else { return }
        unsentData = nil
        writeFrame(.rstStream(code), context: context)
        context.flush()
    }

    func writeFrame(_ payload: HTTP2Frame.FramePayload, context: ChannelHandlerContext) {
        context.write(NIOAny(HTTP2Frame(streamID: streamID, payload: payload)), promise: nil)
    }

    /// A DATA frame, counted against the stream's and the connection's send windows.
    func writeData(_ bytes: ByteBuffer, endStream: Bool, context: ChannelHandlerContext) {
        let length = bytes.readableBytes
        writeFrame(.data(.init(data: .byteBuffer(bytes), endStream: endStream)), context: context)
        guard length > 0 else { return }
        sendWindow -= length
        connection?.spentSendWindow(length)
        streamWritabilityMayHaveChanged()
    }

    /// The peer moved this stream's send window (WINDOW_UPDATE, or a new
    /// SETTINGS_INITIAL_WINDOW_SIZE).
    func sendWindowChanged(by delta: Int) {
        sendWindow += delta
        streamWritabilityMayHaveChanged()
    }

    /// Tells the request when the stream can take more of the response, or
    /// no more for now (a spent window, or a full connection).
    func streamWritabilityMayHaveChanged() {
        let writable = downstreamWritable
        guard writable != reportedWritable else { return }
        reportedWritable = writable
        request?.downstreamWritabilityChanged(writable)
    }
}
