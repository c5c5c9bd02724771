import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
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
        let loop = EmbeddedEventLoop()
        let env = try environment(loop: loop)
        do {
            let channel = EmbeddedChannel(loop: loop)
            let handler = ProxyHandler(environment: env, isHTTP2: isHTTP2, isTLS: true)
            weakHandler = handler
            try channel.pipeline.syncOperations.addHandler(handler)
            if isHTTP2 {
                let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/nowhere", headers: ["host": "localhost"])
                try channel.writeInbound(HTTPServerRequestPart.head(head))
                try channel.writeInbound(HTTPServerRequestPart.end(nil))
            } else {
                // An HTTP/1.1 connection's handler reads its bytes.
                try channel.writeInbound(ByteBuffer(string: "GET /nowhere HTTP/1.1\r\nhost: localhost\r\n\r\n"))
            }
            if isHTTP2 {
                // HTTP/2 responses leave the handler as frame payloads of its stream.
                guard case .headers(let response)? = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
                    Issue.record("no response head")
                    return
                }
                #expect(response.headers.first(name: ":status") == "404")
                #expect(response.headers.first(name: "content-type") == "application/json")
            } else {
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
    }

    /// A handler alone on an embedded channel; what it writes is read with `readOutbound`.
    func handlerOnChannel(isHTTP2: Bool) throws -> (EmbeddedChannel, ProxyHandler) {
        let loop = EmbeddedEventLoop()
        let channel = EmbeddedChannel(loop: loop)
        let handler = ProxyHandler(environment: try environment(loop: loop), isHTTP2: isHTTP2, isTLS: true)
        try channel.pipeline.syncOperations.addHandler(handler)
        return (channel, handler)
    }

    @Test("HTTP/1.1: a small answer leaves as one buffer (one TLS record); a head waits for no more than its first body bytes, its end or a flush")
    func headJoinsBody() throws {
        let (channel, handler) = try handlerOnChannel(isHTTP2: false)
        func outbound() throws -> [String] {
            var out: [String] = []
            while let b = try channel.readOutbound(as: ByteBuffer.self) { out.append(String(buffer: b)) }
            return out
        }
        func head(_ length: Int) -> HTTPServerResponsePart {
            .head(HTTPResponseHead(version: .http1_1, status: .ok, headers: ["content-length": "\(length)"]))
        }

        // Head and a small body: one buffer, the head first.
        handler.write(head(5))
        #expect(try outbound().isEmpty, "the head left before its body")
        handler.write(.body(.byteBuffer(ByteBuffer(string: "hello"))))
        handler.write(.end(nil))
        handler.flush()
        let small = try outbound()
        #expect(small.count == 1)
        #expect(small.first?.hasPrefix("HTTP/1.1 200 OK\r\n") == true && small.first?.hasSuffix("\r\n\r\nhello") == true, "\(small)")

        // A flush sends a held head at once (a streamed answer is never held back).
        handler.write(head(3))
        handler.flush()
        #expect(try outbound().count == 1)
        handler.write(.body(.byteBuffer(ByteBuffer(string: "abc"))))
        handler.flush()
        #expect(try outbound() == ["abc"])

        // A large body is not copied: the head goes first, then the body as it is.
        let big = String(repeating: "x", count: 20_000)
        handler.write(head(big.utf8.count))
        handler.write(.body(.byteBuffer(ByteBuffer(string: big))))
        handler.flush()
        let large = try outbound()
        #expect(large.count == 2)
        #expect(large.first?.hasPrefix("HTTP/1.1 200 OK\r\n") == true && large.last == big)

        // 100 Continue is never held.
        handler.write(.head(HTTPResponseHead(version: .http1_1, status: .continue)))
        handler.write(head(2))
        handler.flush()
        let interim = try outbound()
        #expect(interim.count == 2 && interim.first == "HTTP/1.1 100 Continue\r\n\r\n", "\(interim)")
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("HTTP/2: the last DATA frame carries END_STREAM (no empty frame after it); a flush sends held data at once")
    func endStreamJoinsData() throws {
        let (channel, handler) = try handlerOnChannel(isHTTP2: true)
        func frames() throws -> [HTTP2Frame.FramePayload] {
            var out: [HTTP2Frame.FramePayload] = []
            while let f = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) { out.append(f) }
            return out
        }
        let head = HTTPServerResponsePart.head(HTTPResponseHead(version: .http2, status: .ok, headers: ["content-length": "5"]))

        handler.write(head)
        handler.write(.body(.byteBuffer(ByteBuffer(string: "hello"))))
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
        handler.write(.body(.byteBuffer(ByteBuffer(string: "hel"))))
        handler.flush()
        handler.write(.body(.byteBuffer(ByteBuffer(string: "lo"))))
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
}
