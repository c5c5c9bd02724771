import Filters
import NIOCore
import NIOHPACK
import NIOHTTP2

/// The frames written above the layer (and the response heads it encodes
/// itself), within the client's windows and frame size.
extension H2ServerCodec {
    // MARK: - Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        guard take(frame, context: context) else {
            // A frame of a stream that is gone (reset, or ended): not sent.
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        if let promise {
            // Completes when its bytes are written.
            writeOut(context, promise: promise)
        }
    }

    /// A frame from above into `out` or its stream's queue; false when dropped.
    private func take(_ frame: HTTP2Frame, context: ChannelHandlerContext) -> Bool {
        let id = Int32(frame.streamID)
        switch frame.payload {
        case .headers(let h):
            guard let i = index(of: id), !streams[i].localEnded else { return false }
            if streams[i].queued.isEmpty {
                writeHeaders(h.headers, endStream: h.endStream, stream: id)
                if h.endStream { localEnd(i) }
            } else {
                streams[i].queued.append(.headers(h.headers, endStream: h.endStream))
            }
        case .data(let d):
            guard case .byteBuffer(let bytes) = d.data, let i = index(of: id), !streams[i].localEnded else { return false }
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
                return false
            }
            writeFrameHeader(length: 4, type: 8, flags: 0, stream: id)
            out.writeInteger(UInt32(increment))
        case .rstStream(let code):
            guard let i = index(of: id) else { return false }
            writeFrameHeader(length: 4, type: 3, flags: 0, stream: id)
            out.writeInteger(UInt32(code.networkCode))
            rememberReset(id)
            streams.remove(at: i)
            closedByWrite.append((id, code))
        default:
            // SETTINGS, PING, GOAWAY and the rest are this layer's own.
            return false
        }
        return true
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

    func writeOut(_ context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        guard out.readableBytes > 0 else {
            promise?.succeed(())
            return
        }
        let bytes = out
        out = Self.noBytes
        unflushed = true
        context.write(wrapOutboundOut(.byteBuffer(bytes)), promise: promise)
    }

    /// This side ended stream `i`: it closes now if the peer had ended too
    /// (upstream hears of it at the flush). Whether it closed.
    @discardableResult
    func localEnd(_ i: Int) -> Bool {
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

    func writeHeaders(_ headers: HPACKHeaders, endStream: Bool, stream: Int32) {
        let headerAt = out.writerIndex
        writeFrameHeader(length: 0, type: 1, flags: 0x4 | (endStream ? 1 : 0), stream: stream)
        let blockAt = out.writerIndex
        encoder.encode(headers, into: &out)
        finishHeaders(headerAt: headerAt, blockAt: blockAt, endStream: endStream, stream: stream)
    }

    /// Sets the length of the HEADERS frame just written; a block larger than
    /// the peer takes in one frame becomes HEADERS and CONTINUATION frames.
    func finishHeaders(headerAt: Int, blockAt: Int, endStream: Bool, stream: Int32) {
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
    func sendData(_ bytes: ByteBuffer, endStream: Bool, at i: Int, context: ChannelHandlerContext) -> ByteBuffer? {
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
    func sendQueued(_ context: ChannelHandlerContext) {
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

    func writeFrameHeader(length: Int, type: UInt8, flags: UInt8, stream: Int32) {
        // Every write to `out` starts with a frame header: its storage is
        // made here, not kept by idle connections.
        if out.capacity == 0 { out = ByteBufferAllocator().buffer(capacity: 1024) }
        out.writeInteger(UInt8(truncatingIfNeeded: length >> 16))
        out.writeInteger(UInt16(truncatingIfNeeded: length))
        out.writeInteger(type)
        out.writeInteger(flags)
        out.writeInteger(stream)
    }
}
