import Logging
import NIOCore
import NIOEmbedded
import NIOHPACK
import NIOHTTP2
import Testing

@testable import Gateway

/// The gateway's HTTP/2 frame layer on an embedded channel: raw frames in,
/// raw frames out, and what it hands the layer above (frames and stream
/// closes, recorded in order). The end-to-end tests drive it with
/// python-h2 through TLS (`HTTP2EndToEndTests`, its floods among them).
@Suite("HTTP/2 frame layer (H2ServerCodec)")
struct H2ServerCodecTests {
    /// The layer above: records what arrives, writes what the test says.
    final class Above: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame
        typealias OutboundOut = HTTP2Frame
        enum Event {
            case frame(HTTP2Frame)
            case closed(Int, HTTP2ErrorCode?)
        }

        var events: [Event] = []
        var context: ChannelHandlerContext?

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { events.append(.frame(unwrapInboundIn(data))) }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let closed = event as? StreamClosedEvent { events.append(.closed(Int(closed.streamID), closed.reason)) }
        }

        func write(_ payload: HTTP2Frame.FramePayload, stream: Int, flush: Bool = true) {
            context!.write(wrapOutboundOut(HTTP2Frame(streamID: HTTP2StreamID(stream), payload: payload)), promise: nil)
            if flush { context!.flush() }
        }

        /// Streams whose request HEADERS arrived.
        var requests: [Int] {
            events.compactMap {
                guard case .frame(let f) = $0, case .headers = f.payload else { return nil }
                return Int(f.streamID)
            }
        }

        /// Body bytes delivered on `stream`.
        func body(_ stream: Int) -> Int {
            events.reduce(0) {
                guard case .frame(let f) = $1, Int(f.streamID) == stream, case .data(let d) = f.payload else { return $0 }
                return $0 + d.data.readableBytes
            }
        }

        func closes() -> [(Int, HTTP2ErrorCode?)] {
            events.compactMap { if case .closed(let id, let reason) = $0 { return (id, reason) } else { return nil } }
        }
    }

    struct Wire: CustomStringConvertible {
        var type: UInt8
        var flags: UInt8
        var stream: Int
        var payload: [UInt8]
        var code: UInt32 {
            let p = type == 7 ? Array(payload[4..<8]) : payload
            return p.prefix(4).reduce(0) { $0 << 8 | UInt32($1) }
        }
        var description: String { "(type \(type) flags \(flags) stream \(stream) \(payload.count) bytes)" }
    }

    static let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8)

    static func frame(_ type: UInt8, flags: UInt8 = 0, stream: Int = 0, _ payload: [UInt8] = []) -> [UInt8] {
        let n = payload.count
        return [UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF), type, flags] + be32(UInt32(stream)) + payload
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    static func setting(_ id: UInt16, _ value: UInt32) -> [UInt8] { [UInt8(id >> 8), UInt8(id & 0xFF)] + be32(value) }

    static let get: [(String, String)] = [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", "/")]
    static func post(length: Int) -> [(String, String)] {
        [(":method", "POST"), (":scheme", "https"), (":authority", "localhost"), (":path", "/"), ("content-length", String(length))]
    }

    /// A client of the layer: the channel, the layer above, an HPACK encoder.
    final class Client {
        let channel = EmbeddedChannel()
        let above = Above()
        var encoder = HPACKEncoder(allocator: ByteBufferAllocator())
        var sent: [Wire] = []

        init(_ configure: (inout H2ServerCodec.Configuration) -> Void = { _ in }, handshake: Bool = true,
             logger: Logger = Logger(label: "test")) throws {
            var config = H2ServerCodec.Configuration(maxConcurrentStreams: 100, maxHeaderListSize: 16 << 10,
                                                     initialWindow: 1 << 20, idleTimeout: .seconds(60))
            configure(&config)
            try channel.pipeline.syncOperations.addHandler(H2ServerCodec(configuration: config, logger: logger))
            try channel.pipeline.syncOperations.addHandler(above)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 443)).wait()
            if handshake { try send(preface + frame(4)) }
        }

        /// Bytes from the client; a closed channel takes none (not an error here).
        func send(_ bytes: [UInt8]) throws {
            guard channel.isActive else { return }
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        }

        func block(_ headers: [(String, String)]) -> [UInt8] {
            var buffer = ByteBuffer()
            try! encoder.encode(headers: HPACKHeaders(headers), to: &buffer)
            return Array(buffer.readableBytesView)
        }

        func headers(_ stream: Int, _ headers: [(String, String)], endStream: Bool = true) throws {
            try send(frame(1, flags: 0x4 | (endStream ? 1 : 0), stream: stream, block(headers)))
        }

        /// Every frame the layer wrote since the last call.
        func received() throws -> [Wire] {
            var bytes: [UInt8] = []
            while let data = try channel.readOutbound(as: IOData.self) {
                guard case .byteBuffer(let b) = data else { continue }
                bytes += b.readableBytesView
            }
            var frames: [Wire] = []
            var i = 0
            while i + 9 <= bytes.count {
                let n = Int(bytes[i]) << 16 | Int(bytes[i + 1]) << 8 | Int(bytes[i + 2])
                let stream = Int(bytes[(i + 5)..<(i + 9)].reduce(0) { $0 << 8 | UInt32($1) } & 0x7FFF_FFFF)
                frames.append(Wire(type: bytes[i + 3], flags: bytes[i + 4], stream: stream, payload: Array(bytes[(i + 9)..<(i + 9 + n)])))
                i += 9 + n
            }
            sent += frames
            return frames
        }

        /// The GOAWAY's error code, when the layer sent one.
        func goAway() throws -> UInt32? {
            _ = try received()
            return sent.last(where: { $0.type == 7 })?.code
        }

        /// The last RST_STREAM the layer sent, as "stream code", or "none".
        func lastReset() throws -> String {
            try resets().last.map { "\($0.0) \($0.1)" } ?? "none"
        }

        func resets() throws -> [(Int, UInt32)] {
            _ = try received()
            return sent.filter { $0.type == 3 }.map { ($0.stream, $0.code) }
        }
    }

    static let protocolError: UInt32 = 1, flowControlError: UInt32 = 3, streamClosed: UInt32 = 5, frameSizeError: UInt32 = 6
    static let refusedStream: UInt32 = 7, compressionError: UInt32 = 9, enhanceYourCalm: UInt32 = 11

    @Test("the handshake: this side's SETTINGS first (streams, window, header list), the client's acknowledged; a request up, its response down, the close told after the flush")
    func handshakeAndExchange() throws {
        let c = try Client({ $0.maxConcurrentStreams = 7 })
        let frames = try c.received()
        #expect(frames.first?.type == 4 && frames.first?.flags == 0, "\(frames)")
        #expect(frames.first?.payload == Self.setting(3, 7) + Self.setting(4, 1 << 20) + Self.setting(6, 16 << 10))
        #expect(frames.contains { $0.type == 4 && $0.flags == 1 }, "no SETTINGS ACK: \(frames)")
        try c.headers(1, Self.get)
        #expect(c.above.requests == [1])
        var response = HPACKHeaders()
        response.add(name: ":status", value: "200")
        c.above.write(.headers(.init(headers: response)), stream: 1, flush: false)
        c.above.write(.data(.init(data: .byteBuffer(ByteBuffer(string: "hello")), endStream: true)), stream: 1, flush: false)
        #expect(c.above.closes().isEmpty, "closed before its frames were flushed")
        c.channel.flush()
        let out = try c.received()
        #expect(out.map(\.type) == [1, 0], "\(out)")
        #expect(out.last?.flags == 1 && out.last?.payload == Array("hello".utf8))
        #expect(c.above.closes().map(\.0) == [1] && c.above.closes().first?.1 == nil)
    }

    @Test("connection errors: GOAWAY with RFC 9113's code, the close, and no request handed up but the valid one some cases open first", arguments: [
        ("no preface", [UInt8]("GET / HTTP/1.1\r\n\r\n".utf8) + [UInt8](repeating: 0, count: 8), protocolError, false),
        ("a frame before SETTINGS", preface + frame(6, [UInt8](repeating: 0, count: 8)), protocolError, false),
        ("a frame over 16,384 bytes", frame(0, stream: 1, [UInt8](repeating: 0, count: 16_385)), frameSizeError, true),
        ("DATA on stream 0", frame(0, [1]), protocolError, true),
        ("DATA on an idle stream", frame(0, stream: 5, [1]), protocolError, true),
        ("HEADERS on stream 0", frame(1, flags: 5, [0x82]), protocolError, true),
        ("a stream with an even id", frame(1, flags: 5, stream: 2, [0x82]), protocolError, true),
        ("padding longer than the frame", frame(1, flags: 0xD, stream: 1, [9, 0x82]), protocolError, true),
        ("an HPACK index that does not exist", frame(1, flags: 5, stream: 1, [0xFF, 0x7F]), compressionError, true),
        ("CONTINUATION without HEADERS", frame(9, flags: 4, stream: 1, [0x82]), protocolError, true),
        ("PUSH_PROMISE", frame(5, flags: 4, stream: 1, [0, 0, 0, 2, 0x82]), protocolError, true),
        ("SETTINGS on a stream", frame(4, stream: 1), protocolError, true),
        ("SETTINGS not a multiple of 6", frame(4, [0, 3, 0, 0, 0]), frameSizeError, true),
        ("SETTINGS ACK with a payload", frame(4, flags: 1, setting(3, 1)), frameSizeError, true),
        ("SETTINGS_ENABLE_PUSH 2", frame(4, setting(2, 2)), protocolError, true),
        ("SETTINGS_INITIAL_WINDOW_SIZE 2^31", frame(4, setting(4, 1 << 31)), flowControlError, true),
        ("SETTINGS_MAX_FRAME_SIZE 100", frame(4, setting(5, 100)), protocolError, true),
        ("PING of 7 bytes", frame(6, [UInt8](repeating: 0, count: 7)), frameSizeError, true),
        ("PING on a stream", frame(6, stream: 1, [UInt8](repeating: 0, count: 8)), protocolError, true),
        ("RST_STREAM on stream 0", frame(3, be32(0)), protocolError, true),
        ("RST_STREAM on an idle stream", frame(3, stream: 9, be32(8)), protocolError, true),
        ("RST_STREAM of 3 bytes", frame(3, stream: 1, [0, 0, 0]), frameSizeError, true),
        ("WINDOW_UPDATE of 0 on the connection", frame(8, be32(0)), protocolError, true),
        ("WINDOW_UPDATE pushing the connection's window past 2^31-1", frame(8, be32(0x7FFF_FFFF)), flowControlError, true),
        ("WINDOW_UPDATE on an idle stream", frame(8, stream: 11, be32(1)), protocolError, true),
        ("DATA on an even stream below an open one (no server push: it is idle)", frame(1, flags: 5, stream: 5, [0x82, 0x86, 0x84, 0x41, 1, 0x61])
            + frame(0, stream: 2, [1]), protocolError, true),
        ("HEADERS on an even stream below an open one", frame(1, flags: 5, stream: 5, [0x82, 0x86, 0x84, 0x41, 1, 0x61])
            + frame(1, flags: 5, stream: 4, [0x82]), protocolError, true),
        ("PRIORITY on stream 0", frame(2, [0, 0, 0, 1, 16]), protocolError, true),
        ("PRIORITY of 4 bytes on an idle stream (it cannot be reset)", frame(2, stream: 3, [0, 0, 0, 1]), frameSizeError, true),
    ] as [(String, [UInt8], UInt32, Bool)])
    func connectionErrors(name: String, bytes: [UInt8], code: UInt32, afterHandshake: Bool) throws {
        let c = try Client(handshake: afterHandshake)
        try c.send(bytes)
        #expect(try c.goAway() == code, "\(name): \(c.sent)")
        #expect(!c.channel.isActive, "\(name): still open")
        // (Cases that open stream 5 first hand its request up.)
        #expect(c.above.requests.allSatisfy { $0 == 5 }, "\(name)")
    }

    /// Every message and metadata value logged, at every level.
    final class LogCapture: LogHandler, @unchecked Sendable {
        var lines: [String] = []
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            lines.append("\(event.message) \(event.metadata ?? [:])")
        }
    }

    @Test("a header block HPACK refuses ends the connection, logged by its error's type alone (an error's fields may hold a header's bytes); one that fits is a request",
          arguments: [5000, 20])
    func noHeaderBytesInLogs(announced: Int) throws {
        // A literal with indexing, the name `authorization` (static 23): a
        // 5,000-byte value (larger than the 4,096-byte table), or one whose
        // announced length runs past the block.
        var field = ByteBuffer()
        HPACKResponseEncoder.integer(23, prefix: 6, flags: 0x40, into: &field)
        HPACKResponseEncoder.integer(announced, prefix: 7, flags: 0, into: &field)
        field.writeString("Bearer " + String(repeating: "S", count: 4993))
        if announced < 5000 { field.moveWriterIndex(to: field.writerIndex - 4990) }
        let capture = LogCapture()
        let c = try Client({ $0.maxHeaderListSize = 64 << 10 }, logger: Logger(label: "test", factory: { _ in capture }))
        try c.send(Self.frame(1, flags: 5, stream: 1, c.block(Self.get) + Array(field.readableBytesView)))
        if announced == 5000 {
            // Larger than the table: it empties the table and is not entered (RFC 7541 4.4), no error.
            #expect(try c.goAway() == nil && c.above.requests == [1])
        } else {
            #expect(try c.goAway() == Self.compressionError)
            #expect(capture.lines.count == 1 && capture.lines[0].contains("StringLengthBeyondPayloadSize")
                    && !capture.lines[0].contains("length:"), "\(capture.lines)")
        }
        #expect(capture.lines.allSatisfy { !$0.contains("Bearer") && !$0.contains("SSSS") }, "\(capture.lines)")
    }

    @Test("header blocks: HEADERS with CONTINUATION make one request; a frame between them, a sixth CONTINUATION or a block over the header list size end the connection")
    func continuation() throws {
        let c = try Client()
        let block = c.block(Self.get + [("x-long", String(repeating: "a", count: 300))])
        try c.send(Self.frame(1, stream: 1, Array(block[0..<100])) + Self.frame(9, stream: 1, Array(block[100..<200]))
                   + Self.frame(9, flags: 4, stream: 1, Array(block[200...])))
        #expect(c.above.requests == [1])
        guard case .frame(let f) = c.above.events.first, case .headers(let h) = f.payload else {
            Issue.record("no headers: \(c.above.events)")
            return
        }
        #expect(h.endStream == false && h.headers.first(name: "x-long")?.count == 300)

        let interrupted = try Client()
        try interrupted.send(Self.frame(1, stream: 1, [0x82]) + Self.frame(6, Array(repeating: 0, count: 8)))
        #expect(try interrupted.goAway() == Self.protocolError)

        let otherStream = try Client()
        try otherStream.send(Self.frame(1, stream: 1, [0x82]) + Self.frame(9, flags: 4, stream: 3, [0x84]))
        #expect(try otherStream.goAway() == Self.protocolError)

        let flood = try Client()
        try flood.send(Self.frame(1, flags: 1, stream: 1, [0x82]))
        for _ in 0..<6 { try flood.send(Self.frame(9, stream: 1, [])) }
        #expect(try flood.goAway() == Self.enhanceYourCalm)
        #expect(flood.above.requests.isEmpty)

        let large = try Client({ $0.maxHeaderListSize = 1000 })
        try large.send(Self.frame(1, stream: 1, Array(repeating: 0x82, count: 600)) + Self.frame(9, stream: 1, Array(repeating: 0x82, count: 600)))
        #expect(try large.goAway() == Self.enhanceYourCalm)

        let decoded = try Client({ $0.maxHeaderListSize = 1000 })
        try decoded.headers(1, Self.get + [("x-big", String(repeating: "b", count: 1200))])
        #expect(try decoded.goAway() == Self.compressionError)
        #expect(decoded.above.requests.isEmpty)
    }

    @Test("stream states: trailers without END_STREAM, frames after END_STREAM and on closed streams are errors; frames on a stream this side reset are dropped")
    func streamStates() throws {
        let c = try Client()
        try c.headers(1, Self.post(length: 3), endStream: false)
        try c.headers(1, [("x-trailer", "1")], endStream: false)
        #expect(try c.lastReset() == "1 \(Self.protocolError)")
        #expect(c.above.closes().first?.0 == 1 && c.above.closes().first?.1 == .protocolError, "\(c.above.events)")

        try c.headers(3, Self.get)
        try c.send(Self.frame(0, stream: 3, [1, 2]))
        #expect(try c.lastReset() == "3 \(Self.streamClosed)")
        #expect(c.above.body(3) == 2, "DATA is handed up for the connection's window: \(c.above.events)")

        // Stream 5: the layer above resets it; the client's DATA in flight is dropped quietly.
        try c.headers(5, Self.post(length: 10), endStream: false)
        c.above.write(.rstStream(.cancel), stream: 5)
        let before = try c.resets().count
        try c.send(Self.frame(0, stream: 5, Array(repeating: 1, count: 10)))
        #expect(try c.resets().count == before)
        #expect(c.channel.isActive)

        // A lower stream id than one already opened, never used: closed, a connection error.
        try c.headers(11, Self.get)
        #expect(c.channel.isActive)
        try c.headers(9, Self.get)
        #expect(try c.goAway() == Self.streamClosed)
    }

    @Test("content-length: DATA beyond it, short of it at END_STREAM, or a value that is not digits reset the stream before the DATA passes as a body")
    func contentLength() throws {
        let c = try Client()
        try c.headers(1, Self.post(length: 3), endStream: false)
        try c.send(Self.frame(0, stream: 1, Array("abcd".utf8)))
        #expect(try c.lastReset() == "1 \(Self.protocolError)")
        #expect(c.above.closes().first?.0 == 1 && c.above.closes().first?.1 == .protocolError, "\(c.above.events)")
        // The close comes before the frame: the stream above is gone when its DATA arrives.
        let closeAt = c.above.events.firstIndex { if case .closed = $0 { return true } else { return false } }
        let dataAt = c.above.events.firstIndex { if case .frame(let f) = $0, case .data = f.payload { return true } else { return false } }
        #expect(closeAt != nil && dataAt != nil && closeAt! < dataAt!, "\(c.above.events)")

        try c.headers(3, Self.post(length: 5), endStream: false)
        try c.send(Self.frame(0, flags: 1, stream: 3, Array("abc".utf8)))
        #expect(try c.lastReset() == "3 \(Self.protocolError)")

        try c.headers(5, [(":method", "POST"), (":scheme", "https"), (":authority", "l"), (":path", "/"), ("content-length", "3x")], endStream: false)
        #expect(try c.lastReset() == "5 \(Self.protocolError)")
        #expect(c.above.requests == [1, 3])

        try c.headers(7, Self.post(length: 2), endStream: true)
        #expect(try c.lastReset() == "7 \(Self.protocolError)", "content-length 2 on a HEADERS that ends the stream")

        try c.headers(9, Self.post(length: 3), endStream: false)
        try c.send(Self.frame(0, stream: 9, Array("ab".utf8)) + Self.frame(0, flags: 1, stream: 9, Array("c".utf8)))
        #expect(try c.lastReset().hasPrefix("7 "), "an exact body was reset")
        #expect(c.above.body(9) == 3)
    }

    @Test("receive windows: DATA beyond a stream's window resets it, beyond the connection's ends the connection; padding counts")
    func receiveWindows() throws {
        let c = try Client({ $0.initialWindow = 100 })
        try c.headers(1, Self.post(length: 200), endStream: false)
        try c.send(Self.frame(0, flags: 0x8, stream: 1, [50] + Array(repeating: 1, count: 20) + Array(repeating: 0, count: 50)))
        #expect(try c.resets().isEmpty, "71 of 100")
        try c.send(Self.frame(0, stream: 1, Array(repeating: 1, count: 30)))
        #expect(try c.lastReset() == "1 \(Self.flowControlError)")
        // The layer above's WINDOW_UPDATE opens a stream's window.
        try c.headers(3, Self.post(length: 150), endStream: false)
        try c.send(Self.frame(0, stream: 3, Array(repeating: 1, count: 100)))
        c.above.write(.windowUpdate(windowSizeIncrement: 50), stream: 3)
        try c.send(Self.frame(0, flags: 1, stream: 3, Array(repeating: 1, count: 50)))
        #expect(try c.resets().count == 1)
        #expect(c.above.body(3) == 150)

        let conn = try Client()
        try conn.headers(1, Self.post(length: 100_000), endStream: false)
        for _ in 0..<4 { try conn.send(Self.frame(0, stream: 1, Array(repeating: 1, count: 16_000))) }
        #expect(conn.channel.isActive, "64,000 of 65,535")
        try conn.send(Self.frame(0, stream: 1, Array(repeating: 1, count: 16_000)))
        #expect(try conn.goAway() == Self.flowControlError)
    }

    @Test("send windows: DATA waits for the client's windows, in order, trailers after it, split at its SETTINGS_MAX_FRAME_SIZE")
    func sendWindows() throws {
        let c = try Client(handshake: false)
        try c.send(Self.preface + Self.frame(4, Self.setting(4, 10)))
        try c.headers(1, Self.get)
        var status = HPACKHeaders()
        status.add(name: ":status", value: "200")
        c.above.write(.headers(.init(headers: status)), stream: 1)
        c.above.write(.data(.init(data: .byteBuffer(ByteBuffer(string: "0123456789abcdefghijklmno")))), stream: 1)
        var trailers = HPACKHeaders()
        trailers.add(name: "x-sum", value: "1")
        c.above.write(.headers(.init(headers: trailers, endStream: true)), stream: 1)
        var data = try c.received().filter { $0.type == 0 }
        #expect(data.map(\.payload) == [Array("0123456789".utf8)], "\(data)")
        try c.send(Self.frame(8, stream: 1, Self.be32(10)))
        data = try c.received()
        #expect(data.map(\.type) == [0] && data.first?.payload == Array("abcdefghij".utf8), "\(data)")
        #expect(c.above.closes().isEmpty)
        try c.send(Self.frame(8, stream: 1, Self.be32(100)))
        data = try c.received()
        #expect(data.map(\.type) == [0, 1], "the rest, then the trailers: \(data)")
        #expect(data.first?.payload == Array("klmno".utf8) && data.last?.flags == 5)
        #expect(c.above.closes().map(\.0) == [1])

        let big = try Client()
        try big.send(Self.frame(8, Self.be32(1 << 20)) + Self.frame(4, Self.setting(4, 1 << 20)))
        try big.headers(1, Self.get)
        big.above.write(.headers(.init(headers: status)), stream: 1)
        big.above.write(.data(.init(data: .byteBuffer(ByteBuffer(repeating: 7, count: 40_000)), endStream: true)), stream: 1)
        let frames = try big.received().filter { $0.type == 0 }
        #expect(frames.map(\.payload.count) == [16_384, 16_384, 7_232] && frames.last?.flags == 1, "\(frames)")
    }

    @Test("a write's promise: failed for a stream that is gone (never opened, or reset), kept for one that is open")
    func writePromises() throws {
        let c = try Client()
        try c.headers(1, Self.get)
        let context = c.above.context!
        func write(_ stream: Int) -> EventLoopFuture<Void> {
            let promise = c.channel.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(NIOAny(HTTP2Frame(streamID: HTTP2StreamID(stream), payload: .data(.init(data: .byteBuffer(ByteBuffer(string: "x")))))),
                                  promise: promise)
            return promise.futureResult
        }
        #expect(throws: ChannelError.self) { try write(7).wait() }
        try write(1).wait()
        c.above.write(.rstStream(.cancel), stream: 1)
        #expect(throws: ChannelError.self) { try write(1).wait() }
        let data = try c.received().filter { $0.type == 0 }
        #expect(data.count == 1 && data.first?.stream == 1, "\(data)")
    }

    @Test("WINDOW_UPDATE on a stream: 0 resets it, past 2^31-1 resets it (FLOW_CONTROL_ERROR); PRIORITY of the wrong length resets it (FRAME_SIZE_ERROR)")
    func streamWindowUpdates() throws {
        let c = try Client()
        try c.headers(1, Self.get)
        try c.send(Self.frame(8, stream: 1, Self.be32(0)))
        #expect(try c.lastReset() == "1 \(Self.protocolError)")
        try c.headers(3, Self.get)
        try c.send(Self.frame(8, stream: 3, Self.be32(0x7FFF_FFFF)))
        #expect(try c.lastReset() == "3 \(Self.flowControlError)")
        // PRIORITY of the wrong length on a stream that exists: a stream error.
        try c.headers(5, Self.get)
        try c.send(Self.frame(2, stream: 5, [0, 0, 0, 1]))
        #expect(try c.lastReset() == "5 \(Self.frameSizeError)")
        #expect(c.channel.isActive)
    }

    @Test("concurrency: streams beyond max_concurrent_streams are refused (REFUSED_STREAM) and never handed up")
    func concurrency() throws {
        let c = try Client({ $0.maxConcurrentStreams = 2 })
        try c.headers(1, Self.get)
        try c.headers(3, Self.get)
        try c.headers(5, Self.get)
        #expect(c.above.requests == [1, 3])
        #expect(try c.lastReset() == "5 \(Self.refusedStream)")
        // One finishes: the next is taken.
        var status = HPACKHeaders()
        status.add(name: ":status", value: "204")
        c.above.write(.headers(.init(headers: status, endStream: true)), stream: 1)
        try c.headers(7, Self.get)
        #expect(c.above.requests == [1, 3, 7])
    }

    @Test("floods: RST_STREAM, PING, SETTINGS beyond their rate, stream errors beyond the glitch limit, empty DATA frames in a row end the connection with ENHANCE_YOUR_CALM")
    func floods() throws {
        let resets = try Client({ $0.maxResets = 10 })
        for i in 0..<10 {
            try resets.headers(1 + 2 * i, Self.get, endStream: false)
            try resets.send(Self.frame(3, stream: 1 + 2 * i, Self.be32(8)))
        }
        #expect(resets.channel.isActive, "10 resets allowed")
        #expect(resets.above.closes().count == 10 && resets.above.closes().allSatisfy { $0.1 == .cancel })
        try resets.headers(21, Self.get, endStream: false)
        try resets.send(Self.frame(3, stream: 21, Self.be32(8)))
        #expect(try resets.goAway() == Self.enhanceYourCalm)

        let pings = try Client({ $0.maxControlFrames = 10 })
        for _ in 0..<9 { try pings.send(Self.frame(6, [1, 2, 3, 4, 5, 6, 7, 8])) }
        let acks = try pings.received().filter { $0.type == 6 }
        #expect(acks.count == 9 && acks.allSatisfy { $0.flags == 1 && $0.payload == [1, 2, 3, 4, 5, 6, 7, 8] })
        #expect(pings.channel.isActive)
        // The client's SETTINGS counted too: 1 + 9 + 1 > 10.
        try pings.send(Self.frame(6, Array(repeating: 0, count: 8)))
        #expect(try pings.goAway() == Self.enhanceYourCalm)

        // The window restarts: the same count later is allowed.
        let later = try Client({ $0.maxControlFrames = 10; $0.rateWindow = .seconds(1) })
        for _ in 0..<9 { try later.send(Self.frame(6, Array(repeating: 0, count: 8))) }
        (later.channel.eventLoop as! EmbeddedEventLoop).advanceTime(by: .seconds(2))
        for _ in 0..<9 { try later.send(Self.frame(6, Array(repeating: 0, count: 8))) }
        let laterGoAway = try later.goAway()
        #expect(later.channel.isActive && laterGoAway == nil)

        let glitches = try Client({ $0.maxGlitches = 5 })
        for i in 0..<6 { try glitches.headers(1 + 2 * i, Self.post(length: 1), endStream: true) }
        #expect(try glitches.resets().count == 6)
        #expect(try glitches.goAway() == Self.enhanceYourCalm)

        let empty = try Client()
        try empty.headers(1, Self.post(length: 1), endStream: false)
        try empty.send(Self.frame(0, stream: 1))
        #expect(empty.channel.isActive)
        try empty.send(Self.frame(0, stream: 1))
        #expect(try empty.goAway() == Self.enhanceYourCalm)
    }

    @Test("lifetime: idle_timeout without streams sends GOAWAY (NO_ERROR) and closes; shutdown sends GOAWAY, refuses new streams and closes when the open one ends")
    func lifetime() throws {
        let idle = try Client({ $0.idleTimeout = .seconds(5) })
        let loop = idle.channel.eventLoop as! EmbeddedEventLoop
        try idle.headers(1, Self.get)
        loop.advanceTime(by: .seconds(6))
        #expect(idle.channel.isActive, "closed with a stream open")
        var status = HPACKHeaders()
        status.add(name: ":status", value: "204")
        idle.above.write(.headers(.init(headers: status, endStream: true)), stream: 1)
        loop.advanceTime(by: .seconds(4))
        #expect(idle.channel.isActive, "closed before idle_timeout")
        loop.advanceTime(by: .seconds(2))
        #expect(try idle.goAway() == 0)
        #expect(!idle.channel.isActive)

        let shutdown = try Client()
        try shutdown.headers(1, Self.get)
        shutdown.channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        _ = try shutdown.received()
        let goAway = shutdown.sent.last { $0.type == 7 }
        #expect(goAway?.code == 0 && goAway.map { Array($0.payload[0..<4]) } == Self.be32(1), "\(shutdown.sent)")
        try shutdown.headers(3, Self.get)
        #expect(try shutdown.lastReset() == "3 \(Self.refusedStream)")
        #expect(shutdown.channel.isActive)
        shutdown.above.write(.headers(.init(headers: status, endStream: true)), stream: 1)
        #expect(!shutdown.channel.isActive)
        #expect(shutdown.above.requests == [1])
    }

    @Test("no crash on garbage: 10,000 connections of random frames (valid headers, random types, flags, streams, lengths and payloads), each ends open or with a GOAWAY (its own, or the client's); the layer above only ever sees odd streams it was told of")
    func randomFrames() throws {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<10_000 {
            let c = try Client({ $0.maxConcurrentStreams = 4; $0.initialWindow = 1000; $0.maxHeaderListSize = 2000 })
            var clientWentAway = false
            for _ in 0..<Int.random(in: 1...12, using: &rng) {
                let type = UInt8.random(in: 0...10, using: &rng)
                let flags = UInt8.random(in: 0...255, using: &rng)
                let stream = [0, 1, 2, 3, 5, 7, 9, 0x7FFF_FFFF].randomElement(using: &rng)!
                var payload: [UInt8]
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: payload = c.block(Self.get)
                case 1: payload = Self.be32(UInt32.random(in: 0...UInt32.max, using: &rng))
                case 2: payload = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                default: payload = Array(repeating: 0, count: Int.random(in: 0...2000, using: &rng))
                }
                try c.send(Self.frame(type, flags: flags, stream: stream, payload))
                // A well-formed GOAWAY from the client: the connection may close without one of its own.
                if type == 7 && stream == 0 && payload.count >= 8 { clientWentAway = true }
                guard c.channel.isActive else { break }
            }
            if !c.channel.isActive && !clientWentAway { #expect(try c.goAway() != nil, "closed without a GOAWAY: \(c.sent)") }
            for case .frame(let f) in c.above.events {
                let id = Int(f.streamID)
                #expect(id == 0 || id % 2 == 1, "\(f)")
            }
            _ = try? c.channel.finish()
        }
    }
}
