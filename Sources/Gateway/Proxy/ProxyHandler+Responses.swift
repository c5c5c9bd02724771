import NIOCore
import NIOHTTP1
import NIOHTTP2

/// The response side of `ProxyHandler`: parts written as HTTP/1.1 bytes
/// (`DownstreamHTTP1Encoder`) or as the frames of an HTTP/2 stream.
extension ProxyHandler {
    func write(_ part: ResponsePart) {
        guard let context else { return }
        send(part, context: context)
    }

    /// Writes a response part: as bytes on HTTP/1.1, as a frame on an HTTP/2 stream.
    func send(_ part: ResponsePart, context: ChannelHandlerContext) {
        guard encoder != nil else { return sendH2(part, context: context) }
        switch part {
        case .head(let head):
            writeUnsent(context)
            var buffer = loop.writeBuffer(capacity: 1024, allocator: context.channel.allocator)
            do {
                if try encoder!.head(head, answeringHEAD: request?.method == .HEAD, toHTTP10: request?.isHTTP10 ?? false, into: &buffer) {
                    closeAfterResponse = true
                }
            } catch {
                // A filter put bytes in a header that could split the
                // response: nothing of it is sent, the connection ends.
                env.logger.error("response not sent", metadata: ["error": "\(error)", "listener": "\(env.listener.name)"])
                context.close(promise: nil)
                return
            }
            if head.status.code < 200 {
                context.write(NIOAny(buffer), promise: nil)  // 100 Continue goes at once
            } else {
                unsentHead = buffer
            }
        case .body(let body):
            encoder!.body(body, allocator: context.channel.allocator) { writeOrJoin($0, context: context) }
        case .end:
            if let last = encoder!.end() { writeOrJoin(last, context: context) }
        }
    }

    /// Bodies up to this size join the held head in one buffer.
    private static let joinLimit = 8 << 10

    private func writeOrJoin(_ bytes: ByteBuffer, context: ChannelHandlerContext) {
        if unsentHead != nil, bytes.readableBytes <= Self.joinLimit {
            var bytes = bytes
            unsentHead!.writeBuffer(&bytes)
        } else {
            writeUnsent(context)
            context.write(NIOAny(bytes), promise: nil)
        }
    }

    /// Writes what is held back for joining: the HTTP/1.1 head, or the last
    /// DATA payload of an HTTP/2 stream (sent without END_STREAM, as more
    /// is coming).
    func writeUnsent(_ context: ChannelHandlerContext) {
        if let head = unsentHead {
            unsentHead = nil
            context.write(NIOAny(head), promise: nil)
        }
        if let data = unsentData {
            unsentData = nil
            writeData(data, endStream: false, context: context)
        }
    }

    /// HTTP/2: a response part as frames of this stream, written on its
    /// connection (`H2Connection` reads the other direction).
    private func sendH2(_ part: ResponsePart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head):
            writeUnsent(context)
            if let codec = connection?.codec {
                // The gateway's frame layer encodes the head itself.
                if codec.writeResponseHead(head, stream: streamID) { return }
            } else if let block = H2ResponseHead.block(head) {
                writeFrame(.headers(.init(headers: block)), context: context)
                return
            }
            // As on HTTP/1.1: nothing of a head that could not be sent; the stream ends.
            env.logger.error("response not sent", metadata: ["error": "invalid response header field", "listener": "\(env.listener.name)"])
            resetStream(.internalError)
        case .body(let body):
            writeUnsent(context)
            // Held until the next part: when that is the end, the last DATA
            // frame carries END_STREAM instead of an empty frame after it.
            unsentData = body
        case .end:
            let last = unsentData ?? context.channel.allocator.buffer(capacity: 0)
            unsentData = nil
            writeData(last, endStream: true, context: context)
        }
    }

    /// Ends the response and flushes; then, with `thenClose`, closes the
    /// connection once every byte was written (HTTP/1.1), or tells the
    /// client to stop sending the request with RST_STREAM NO_ERROR (HTTP/2,
    /// RFC 9113 8.1), when it has not ended it.
    func sendEnd(context: ChannelHandlerContext, thenClose: Bool) {
        guard encoder != nil else {
            sendH2(.end, context: context)
            context.flush()
            if thenClose && h2Request != .ended { resetStream(.noError) }
            return
        }
        var last = encoder!.end()
        if var head = unsentHead {
            // The held head (and whatever body joined it) goes with the end.
            unsentHead = nil
            if var end = last { head.writeBuffer(&end) }
            last = head
        }
        if thenClose {
            context.writeAndFlush(NIOAny(last ?? ByteBuffer())).whenComplete { _ in context.close(promise: nil) }
        } else if let last {
            context.writeAndFlush(NIOAny(last), promise: nil)
            // Written by now (TLS has encrypted it, or the socket taken it)
            // unless the socket is full; `writeBuffer` copes with either.
            loop.recycle(last)
        } else {
            context.flush()
        }
    }
}
