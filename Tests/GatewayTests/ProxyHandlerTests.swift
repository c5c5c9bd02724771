import Filters
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHPACK
import NIOHTTP2
import Testing

@testable import Gateway

@Suite("proxy handler on an embedded channel")
struct ProxyHandlerTests {
    func environment(loop: EmbeddedEventLoop) throws -> ProxyEnvironment {
        let config = try ConfigFolder(["00-base.yaml": baseYAML + """
        routes:
          - {name: r, listener: public, upstream: a, match: {path_prefix: /api}}
        """]).load()
        return ProxyEnvironment(listener: config.listeners[0], loops: LoopDirectory(group: loop, upstreams: config.upstreams),
                                accessLog: AccessLog(enabled: false), inFlight: InFlightCounter(), logger: Logger(label: "test"),
                                unrouted: RouteMetrics(route: ""))
    }

    @Test("answers 404 itself, and neither the handler nor its context outlives the channel", arguments: [false, true])
    func noLeak(isHTTP2: Bool) throws {
        weak var weakHandler: ProxyHandler?
        weak var weakConnection: H2Connection?
        let loop = EmbeddedEventLoop()
        let env = try environment(loop: loop)
        do {
            let channel = EmbeddedChannel(loop: loop)
            if isHTTP2 {
                // An HTTP/2 connection's streams are handlers its H2Connection drives from the frames.
                let connection = H2Connection(environment: env, eventLoop: loop, peer: Peer(nil))
                weakConnection = connection
                try channel.pipeline.syncOperations.addHandler(connection)
                try channel.writeInbound(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: Self.block("GET", "/nowhere"), endStream: true))))
                weakHandler = connection.stream(1)
                #expect(weakHandler != nil)
                let frames = try Self.frames(channel)
                guard case .headers(let response)? = frames.first?.payload else {
                    Issue.record("no response head: \(frames)")
                    return
                }
                #expect(frames.allSatisfy { $0.streamID == 1 })
                #expect(response.headers.first(name: ":status") == "404")
                #expect(response.headers.first(name: "content-type") == "application/json")
                guard case .data(let body)? = frames.last?.payload else {
                    Issue.record("no response body: \(frames)")
                    return
                }
                #expect(body.endStream)
            } else {
                let handler = ProxyHandler(environment: env, isTLS: true)
                weakHandler = handler
                try channel.pipeline.syncOperations.addHandler(handler)
                // An HTTP/1.1 connection's handler reads its bytes.
                try channel.writeInbound(ByteBuffer(string: "GET /nowhere HTTP/1.1\r\nhost: localhost\r\n\r\n"))
                // HTTP/1.1 responses leave the handler as bytes.
                var wire = ""
                while let b = try channel.readOutbound(as: ByteBuffer.self) { wire += String(buffer: b) }
                #expect(wire.hasPrefix("HTTP/1.1 404 Not Found\r\n"), "\(wire)")
                #expect(wire.contains("\r\ncontent-length: ") && wire.hasSuffix("\"}"), "\(wire)")
            }
            #expect(env.inFlight.value == 0)
            _ = try channel.finish(acceptAlreadyClosed: true)
        }
        #expect(weakHandler == nil, "the handler leaked (a retain cycle through its stored context)")
        #expect(weakConnection == nil, "the HTTP/2 connection handler leaked")
    }

    @Test("a request waiting for its body when the client leaves: ended and counted out, and neither it nor its handler (which it holds) outlives the channel",
          arguments: [false, true])
    func requestInFlightWhenClientLeaves(isHTTP2: Bool) throws {
        weak var weakHandler: ProxyHandler?
        weak var weakRequest: ProxyRequest?
        let loop = EmbeddedEventLoop()
        // A route whose filter needs the whole body: the request waits for it here, with no upstream involved.
        let config = try ConfigFolder(["00-base.yaml": baseYAML + """
        routes:
          - {name: r, listener: public, upstream: a, match: {path_prefix: /api}, filters: [{sanitize: {json: {max_depth: 8}}}]}
        """]).load()
        let env = ProxyEnvironment(listener: config.listeners[0], loops: LoopDirectory(group: loop, upstreams: config.upstreams),
                                   accessLog: AccessLog(enabled: false), inFlight: InFlightCounter(), logger: Logger(label: "test"),
                                   unrouted: RouteMetrics(route: ""))
        do {
            let channel = EmbeddedChannel(loop: loop)
            if isHTTP2 {
                let connection = H2Connection(environment: env, eventLoop: loop, peer: Peer(nil))
                try channel.pipeline.syncOperations.addHandler(connection)
                var block = Self.block("POST", "/api")
                block.add(name: "content-length", value: "10")
                try channel.writeInbound(HTTP2Frame(streamID: 1, payload: .headers(.init(headers: block, endStream: false))))
                weakHandler = connection.stream(1)
            } else {
                let handler = ProxyHandler(environment: env, isTLS: true)
                weakHandler = handler
                try channel.pipeline.syncOperations.addHandler(handler)
                try channel.writeInbound(ByteBuffer(string: "POST /api HTTP/1.1\r\nhost: localhost\r\ncontent-length: 10\r\n\r\n{\"a\""))
            }
            weakRequest = weakHandler?.request
            #expect(weakRequest != nil, "no request in flight")
            #expect(env.inFlight.value == 1)
            _ = try channel.finish(acceptAlreadyClosed: true)
        }
        #expect(env.inFlight.value == 0)
        #expect(weakRequest == nil, "the request outlived its connection")
        #expect(weakHandler == nil, "the handler leaked (held by its own request)")
    }

    static func block(_ method: String, _ path: String) -> HPACKHeaders {
        [":method": method, ":scheme": "https", ":authority": "localhost", ":path": path]
    }

    static func frames(_ channel: EmbeddedChannel) throws -> [HTTP2Frame] {
        var out: [HTTP2Frame] = []
        while let f = try channel.readOutbound(as: HTTP2Frame.self) { out.append(f) }
        return out
    }

    /// An `H2Connection` alone on an embedded channel, with stream 1 open.
    func streamOnChannel() throws -> (EmbeddedChannel, H2Connection, ProxyHandler) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let connection = H2Connection(environment: try environment(loop: loop), eventLoop: loop, peer: Peer(nil))
        try channel.pipeline.syncOperations.addHandler(connection)
        let context = try channel.pipeline.syncOperations.context(handlerType: H2Connection.self)
        return (channel, connection, connection.open(1, context: context))
    }

    /// A handler alone on an embedded channel; what it writes is read with `readOutbound`.
    func handlerOnChannel() throws -> (EmbeddedChannel, ProxyHandler) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let handler = ProxyHandler(environment: try environment(loop: loop), isTLS: true)
        try channel.pipeline.syncOperations.addHandler(handler)
        return (channel, handler)
    }

    @Test("HTTP/1.1: a small answer leaves as one buffer (one TLS record); a head waits for no more than its first body bytes, its end or a flush")
    func headJoinsBody() throws {
        let (channel, handler) = try handlerOnChannel()
        func outbound() throws -> [String] {
            var out: [String] = []
            while let b = try channel.readOutbound(as: ByteBuffer.self) { out.append(String(buffer: b)) }
            return out
        }
        func head(_ length: Int) -> ResponsePart {
            .head(.local(.ok, ["content-length": "\(length)"]))
        }

        // Head and a small body: one buffer, the head first.
        handler.write(head(5))
        #expect(try outbound().isEmpty, "the head left before its body")
        handler.write(.body(ByteBuffer(string: "hello")))
        handler.write(.end)
        handler.flush()
        let small = try outbound()
        #expect(small.count == 1)
        #expect(small.first?.hasPrefix("HTTP/1.1 200 OK\r\n") == true && small.first?.hasSuffix("\r\n\r\nhello") == true, "\(small)")

        // A flush sends a held head at once (a streamed answer is never held back).
        handler.write(head(3))
        handler.flush()
        #expect(try outbound().count == 1)
        handler.write(.body(ByteBuffer(string: "abc")))
        handler.flush()
        #expect(try outbound() == ["abc"])

        // A large body is not copied: the head goes first, then the body as it is.
        let big = String(repeating: "x", count: 20_000)
        handler.write(head(big.utf8.count))
        handler.write(.body(ByteBuffer(string: big)))
        handler.flush()
        let large = try outbound()
        #expect(large.count == 2)
        #expect(large.first?.hasPrefix("HTTP/1.1 200 OK\r\n") == true && large.last == big)

        // 100 Continue is never held.
        handler.write(.head(.local(.continue)))
        handler.write(head(2))
        handler.flush()
        let interim = try outbound()
        #expect(interim.count == 2 && interim.first == "HTTP/1.1 100 Continue\r\n\r\n", "\(interim)")
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("HTTP/2: the last DATA frame carries END_STREAM (no empty frame after it); a flush sends held data at once")
    func endStreamJoinsData() throws {
        let (channel, _, handler) = try streamOnChannel()
        func frames() throws -> [HTTP2Frame.FramePayload] { try Self.frames(channel).map(\.payload) }
        let head = ResponsePart.head(.local(.ok, ["content-length": "5"]))

        handler.write(head)
        handler.write(.body(ByteBuffer(string: "hello")))
        handler.sendEnd(context: try #require(handler.context), thenClose: false)
        let joined = try frames()
        #expect(joined.count == 2, "\(joined)")
        guard joined.count == 2, case .headers = joined[0], case .data(let data) = joined[1] else {
            Issue.record("expected HEADERS then DATA: \(joined)")
            return
        }
        #expect(data.endStream)
        if case .byteBuffer(let b) = data.data { #expect(String(buffer: b) == "hello") }

        // Streamed: a flush between the parts sends the data without END_STREAM.
        handler.write(head)
        handler.write(.body(ByteBuffer(string: "hel")))
        handler.flush()
        handler.write(.body(ByteBuffer(string: "lo")))
        handler.sendEnd(context: try #require(handler.context), thenClose: false)
        let streamed = try frames()
        #expect(streamed.count == 3, "\(streamed)")
        if streamed.count == 3, case .data(let first) = streamed[1], case .data(let last) = streamed[2] {
            #expect(!first.endStream && last.endStream)
        } else {
            Issue.record("expected HEADERS, DATA, DATA: \(streamed)")
        }
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("HTTP/2 send windows: a stream is unwritable once its DATA spends the peer's window (SETTINGS, WINDOW_UPDATE, the connection's own), writable again when it grows")
    func sendWindows() throws {
        let (channel, connection, first) = try streamOnChannel()
        let context = try channel.pipeline.syncOperations.context(handlerType: H2Connection.self)
        first.write(.head(.local(.ok, ["content-length": "30"])))
        first.write(.body(ByteBuffer(string: String(repeating: "a", count: 20))))
        first.flush()
        #expect(first.sendWindow == 65535 - 20 && first.downstreamWritable)
        // The peer's SETTINGS move every stream's window, open ones included
        // (RFC 9113 6.9.2): 20 bytes sent against a window now of 10.
        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .settings(.settings([HTTP2Setting(parameter: .initialWindowSize, value: 10)]))))
        #expect(first.sendWindow == -10)
        #expect(!first.downstreamWritable)
        let handler = connection.open(3, context: context)
        #expect(handler.sendWindow == 10 && handler.downstreamWritable)

        handler.write(.head(.local(.ok, ["content-length": "30"])))
        handler.write(.body(ByteBuffer(string: String(repeating: "a", count: 12))))
        handler.flush()
        #expect(handler.sendWindow == -2)
        #expect(!handler.downstreamWritable, "a spent window still reads as writable")
        try channel.writeInbound(HTTP2Frame(streamID: 3, payload: .windowUpdate(windowSizeIncrement: 2)))
        #expect(!handler.downstreamWritable, "a window of 0 reads as writable")
        try channel.writeInbound(HTTP2Frame(streamID: 3, payload: .windowUpdate(windowSizeIncrement: 100)))
        #expect(handler.sendWindow == 100 && handler.downstreamWritable)

        // The connection's window (65,535 to start; no setting changes it) binds every stream.
        #expect(connection.sendWindow == 65535 - 32)
        let big = String(repeating: "b", count: 65535 - 32)
        try channel.writeInbound(HTTP2Frame(streamID: 3, payload: .windowUpdate(windowSizeIncrement: 70_000)))
        handler.write(.body(ByteBuffer(string: big)))
        handler.flush()
        #expect(connection.sendWindow == 0)
        #expect(handler.sendWindow > 0 && !handler.downstreamWritable, "a spent connection window still reads as writable")
        try channel.writeInbound(HTTP2Frame(streamID: .rootStream, payload: .windowUpdate(windowSizeIncrement: 1)))
        #expect(handler.downstreamWritable)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("HTTP/2 receive windows: DATA is returned in WINDOW_UPDATE once half the window is read, on the stream and the connection (raised to 1 MiB at the first DATA)")
    func receiveWindows() throws {
        let (channel, _, _) = try streamOnChannel()
        // A POST nothing routes: answered 404 at once, its body read and discarded, its window returned all the same.
        try channel.writeInbound(HTTP2Frame(streamID: 5, payload: .headers(.init(headers: Self.block("POST", "/nowhere")))))
        func updates() throws -> [(HTTP2StreamID, Int)] {
            try Self.frames(channel).compactMap {
                if case .windowUpdate(let increment) = $0.payload { return ($0.streamID, increment) }
                return nil
            }
        }
        _ = try updates()
        let chunk = ByteBuffer(repeating: 0x61, count: 16_384)
        try channel.writeInbound(HTTP2Frame(streamID: 5, payload: .data(.init(data: .byteBuffer(chunk)))))
        let first = try updates()
        #expect(first.count == 1 && first.first?.0 == .rootStream && first.first?.1 == 16_384 + H2Connection.windowTarget - 65535, "\(first)")
        // 31 more frames: 512 KiB in all, half the window.
        for _ in 0..<30 { try channel.writeInbound(HTTP2Frame(streamID: 5, payload: .data(.init(data: .byteBuffer(chunk))))) }
        #expect(try updates().isEmpty, "a window returned before half of it was read")
        try channel.writeInbound(HTTP2Frame(streamID: 5, payload: .data(.init(data: .byteBuffer(chunk)))))
        let half = try updates()
        #expect(half.count == 1 && half.first?.0 == 5 && half.first?.1 == H2Connection.windowTarget / 2, "\(half)")
        // The connection's count started after the first frame's return: one more frame makes its half.
        try channel.writeInbound(HTTP2Frame(streamID: 5, payload: .data(.init(data: .byteBuffer(chunk)))))
        let connectionHalf = try updates()
        #expect(connectionHalf.count == 1 && connectionHalf.first?.0 == .rootStream && connectionHalf.first?.1 == H2Connection.windowTarget / 2,
                "\(connectionHalf)")
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("FlushCoalescer: small writes leave as one buffer at the tick's flush, large ones as they are and in order; a promise is kept; a close loses nothing")
    func coalescer() throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(FlushCoalescer())
        func out() throws -> [String] {
            var got: [String] = []
            while let b = try channel.readOutbound(as: ByteBuffer.self) { got.append(String(buffer: b)) }
            return got
        }
        channel.write(ByteBuffer(string: "a"), promise: nil)
        channel.write(ByteBuffer(string: "b"), promise: nil)
        channel.flush()
        channel.write(ByteBuffer(string: "c"), promise: nil)  // before the deferred flush runs: joins too
        #expect(try out().isEmpty)
        channel.embeddedEventLoop.run()
        #expect(try out() == ["abc"])

        let big = String(repeating: "x", count: FlushCoalescer.joinLimit + 1)
        channel.write(ByteBuffer(string: "d"), promise: nil)
        channel.write(ByteBuffer(string: big), promise: nil)
        channel.write(ByteBuffer(string: "e"), promise: nil)
        channel.flush()
        channel.embeddedEventLoop.run()
        #expect(try out() == ["d", big, "e"])

        let promise = channel.eventLoop.makePromise(of: Void.self)
        var written = false
        promise.futureResult.whenSuccess { written = true }
        channel.write(ByteBuffer(string: "f"), promise: promise)
        channel.flush()
        channel.embeddedEventLoop.run()
        #expect(try out() == ["f"])
        #expect(written)

        channel.write(ByteBuffer(string: "g"), promise: nil)
        channel.close(promise: nil)
        channel.embeddedEventLoop.run()
        #expect(try out() == ["g"])
    }

    @Test("makeLoopTask: one closure runs its owner's work as often as it is scheduled and holds the owner until it is dropped; a coalescer that flushed is freed with its channel")
    func loopTask() throws {
        final class Owner { var runs = 0 }
        let loop = EmbeddedEventLoop()
        weak var weakOwner: Owner?
        var task: (@Sendable () -> Void)?
        do {
            let owner = Owner()
            weakOwner = owner
            task = makeLoopTask(owner, eventLoop: loop) { $0.runs += 1 }
        }
        loop.execute(task!)
        loop.execute(task!)
        loop.run()
        #expect(weakOwner?.runs == 2)
        task = nil
        #expect(weakOwner == nil, "the owner outlived its task")

        weak var coalescer: FlushCoalescer?
        do {
            let channel = EmbeddedChannel()
            let handler = FlushCoalescer()
            coalescer = handler
            try channel.pipeline.syncOperations.addHandler(handler)
            channel.write(ByteBuffer(string: "a"), promise: nil)
            channel.flush()
            channel.embeddedEventLoop.run()
            #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "a"))
            _ = try channel.finish()
        }
        #expect(coalescer == nil)
    }
}
