import Filters
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import Gateway

/// What the parser made of some bytes: the heads, the body, how many ends.
private struct Parsed: Equatable {
    var statuses: [UInt] = []
    var headers: [[String]] = []
    var body = ""
    var ends = 0
}

/// Feeds `bytes` to a fresh parser in pieces of `step` bytes (0: all at
/// once), with `methods` sent; then the end of input when `eof`.
private func parse(_ bytes: String, methods: [HTTPMethod] = [.GET], step: Int = 0, eof: Bool = false) throws -> (Parsed, UpstreamResponseParser) {
    var parser = UpstreamResponseParser()
    for m in methods { parser.requestSent(m) }
    var out = Parsed()
    var buffer = ByteBuffer()
    let all = Array(bytes.utf8)
    let pieces = step == 0 ? [all[...]] : stride(from: 0, to: all.count, by: step).map { all[$0..<min($0 + step, all.count)] }
    func drain() throws {
        while let e = try parser.next(&buffer) {
            switch e {
            case .head(let h):
                out.statuses.append(h.status.code)
                out.headers.append(h.headers.map { "\($0.name)=\($0.value)" })
            case .body(let b): out.body += String(buffer: b)
            case .end: out.ends += 1
            }
        }
    }
    for piece in pieces {
        buffer.writeBytes(piece)
        try drain()
    }
    if eof, case .end = parser.endOfInput() { out.ends += 1 }
    return (out, parser)
}

@Suite("upstream HTTP/1.1 codec")
struct UpstreamHTTP1CodecTests {
    @Test("a length is written in decimal digits, the same as String(n), from 0 to Int.max")
    func decimalLengths() {
        var values = [0, 1, 9, 10, 11, 99, 100, 1024, 65_535, 1_000_000, 999_999_999_999, Int.max]
        var x = 1
        while x < Int.max / 10 { values += [x - 1, x, x + 1]; x *= 10 }
        for n in values {
            var b = ByteBuffer(string: "x")
            HTTPBytes.writeContentLength(n, into: &b)
            #expect(String(buffer: b) == "xcontent-length: \(n)\r\n")
        }
    }

    @Test("the request line, written in one piece: methods and targets of every length, HTTP/1.0 and 1.1, after what the buffer held")
    func requestLine() {
        let methods = ["GET", "POST", "OPTIONS", "PROPPATCH", "X-VERY-LONG-EXTENSION-METHOD-NAME-OF-40-B"]
        for method in methods {
            for length in 1...80 {
                let target = "/" + String(repeating: "p", count: length - 1)
                for http10 in [false, true] {
                    var b = ByteBuffer(string: "earlier")
                    HTTPBytes.writeRequestLine(method: method, target: target, http10: http10, into: &b)
                    #expect(String(buffer: b) == "earlier\(method) \(target) HTTP/1.\(http10 ? 0 : 1)\r\n")
                }
            }
        }
    }

    @Test("responses parse the same however the bytes are split", arguments: [0, 1, 2, 3, 7])
    func splitAnywhere(step: Int) throws {
        let wire = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  spaced value \t\r\n\r\nhello"
            + "HTTP/1.1 201 Created\tand brand-new, é\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer-A: x\r\n\r\n"
            + "HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n"
            + "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok"
        let (p, parser) = try parse(wire, methods: [.GET, .POST, .DELETE, .PUT], step: step)
        #expect(p.statuses == [200, 201, 204, 200])
        #expect(p.headers[0] == ["Content-Length=5", "X-A=spaced value"])
        #expect(p.body == "helloabc0123456789abcdefok")
        #expect(p.ends == 4)
        #expect(parser.isIdle)
        #expect(!parser.mustClose)
    }

    @Test("HEAD and 304 have no body whatever the headers say; the next response follows")
    func bodiless() throws {
        let (p, _) = try parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
                               methods: [.HEAD, .GET])
        #expect(p.statuses == [200, 304])
        #expect(p.body.isEmpty)
        #expect(p.ends == 2)
    }

    @Test("a body without length runs to the close, and the connection is not reused")
    func closeDelimited() throws {
        let (p, parser) = try parse("HTTP/1.1 200 OK\r\n\r\nuntil the end", step: 4, eof: true)
        #expect(p.body == "until the end")
        #expect(p.ends == 1)
        #expect(parser.mustClose)
        // Any coding but chunked last also reads to the close.
        let (q, qp) = try parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nzz", eof: true)
        #expect(q.body == "zz" && q.ends == 1 && qp.mustClose)
    }

    @Test("Connection: close, and HTTP/1.0 without keep-alive, mark the connection for closing")
    func closing() throws {
        #expect(try parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").1.mustClose)
        #expect(try parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").1.mustClose)
        #expect(!(try parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").1.mustClose))
    }

    @Test("a response cut short ends nothing")
    func cutShort() throws {
        let (p, _) = try parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", eof: true)
        #expect(p.ends == 0)
        let (q, _) = try parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", eof: true)
        #expect(q.ends == 0)
    }

    @Test("malformed or ambiguous responses are refused", arguments: [
        ("bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
        ("LF in a header", "HTTP/1.1 200 OK\r\nA: b\nContent-Length: 2\r\n\r\nok"),
        ("obs-fold", "HTTP/1.1 200 OK\r\nA: b\r\n  c\r\nContent-Length: 2\r\n\r\nok"),
        ("space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok"),
        ("CL and TE", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("two CL", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok"),
        ("CL list", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok"),
        ("CL sign", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok"),
        ("CL empty", "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\nok"),
        ("CL overflow", "HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\nok"),
        ("NUL in a value", "HTTP/1.1 200 OK\r\nA: b\u{0}c\r\nContent-Length: 2\r\n\r\nok"),
        ("NUL in the reason phrase", "HTTP/1.1 200 O\u{0}K\r\nContent-Length: 2\r\n\r\nok"),
        ("DEL deep in the reason phrase", "HTTP/1.1 200 Perfectly fine in every way\u{7F}\r\nContent-Length: 2\r\n\r\nok"),
        ("bare CR in the reason phrase", "HTTP/1.1 200 Perfectly\rfine\r\nContent-Length: 2\r\n\r\nok"),
        ("HTTP/2 status line", "HTTP/2 200 OK\r\n\r\n"),
        ("HTTP/1.2", "HTTP/1.2 200 OK\r\n\r\n"),
        ("short status", "HTTP/1.1 20 OK\r\n\r\n"),
        ("status letters", "HTTP/1.1 2x0 OK\r\n\r\n"),
        ("leading CRLF", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ("101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"),
        ("chunk size not hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        ("chunk size huge", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n"),
        ("chunk without CRLF after data", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n"),
        ("chunk size with space", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n"),
        ("bad trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnot a field\r\n\r\n"),
    ])
    func refused(name: String, wire: String) {
        #expect(throws: UpstreamResponseParser.ParseError.self, "\(name)") { try parse(wire) }
        #expect(throws: UpstreamResponseParser.ParseError.self, "\(name), byte by byte") { try parse(wire, step: 1) }
    }

    @Test("bytes nobody asked for are refused; bytes after a response leave the parser not idle-clean")
    func unasked() throws {
        #expect(throws: UpstreamResponseParser.ParseError.self) { try parse("HTTP/1.1 200 OK\r\n\r\n", methods: []) }
        // A second response glued to the first: the first parses, the
        // second has no request to answer.
        #expect(throws: UpstreamResponseParser.ParseError.self) {
            try parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nPWNED")
        }
    }

    @Test("a head larger than the limit is refused before it is whole")
    func headLimit() {
        let big = "HTTP/1.1 200 OK\r\n" + String(repeating: "A: \(String(repeating: "b", count: 1000))\r\n", count: 70)
        #expect(throws: UpstreamResponseParser.ParseError.self) { try parse(big) }
    }

    private func encode(_ head: RequestHead, _ edits: UpstreamHeadEdits = UpstreamHeadEdits()) throws -> (String, Bool) {
        var b = ByteBuffer()
        let chunked = try UpstreamRequestEncoder.writeHead(head, edits: edits, into: &b)
        return (String(buffer: b), chunked)
    }

    @Test("wire edits: the upstream's Host in place of every Host, a collected body's length in place of its framing, no X-Gw-* ever; the head's own copy gets the same")
    func wireEdits() throws {
        let headers = HeaderFields([("X-Gw-Kid", "k1"), ("Host", "client.example"), ("x-a", "1"), ("host", "again"),
                                   ("Transfer-Encoding", "chunked"), ("x-gw-nonce", "n"), ("X-GW-", "e")])
        var h = RequestHead(version: .http1_1, method: .POST, uri: "/p", headers: headers)
        let edits = UpstreamHeadEdits(host: "svc.internal:7001", contentLength: 12)
        #expect(try encode(h, edits) == ("POST /p HTTP/1.1\r\nHost: svc.internal:7001\r\nx-a: 1\r\ncontent-length: 12\r\n\r\n", false))
        // No edits: only the X-Gw-* headers go, and the body's framing stays the client's.
        h.headers = HeaderFields([("Host", "c"), ("x-gw-signature", "s"), ("Content-Length", "3"), ("x-gwz", "kept")])
        #expect(try encode(h) == ("POST /p HTTP/1.1\r\nHost: c\r\nContent-Length: 3\r\nx-gwz: kept\r\n\r\n", false))
        // A head without Host gets it at the end; a TRACE never gets a length.
        h = RequestHead(version: .http1_1, method: .TRACE, uri: "/", headers: ["x-a": "1"])
        #expect(try encode(h, UpstreamHeadEdits(host: "u", contentLength: 0)) == ("TRACE / HTTP/1.1\r\nx-a: 1\r\nhost: u\r\n\r\n", false))
        // A Host the edits bring is checked like any field.
        #expect(throws: UpstreamRequestEncoder.InvalidRequest.self) { try encode(h, UpstreamHeadEdits(host: "a\r\nx: y")) }
        // The HTTP/2 upstream codec encodes the head itself: the same edits, on a copy.
        var copy = RequestHead(version: .http1_1, method: .POST, uri: "/p", headers: headers)
        edits.apply(to: &copy)
        #expect(copy.headers.map { "\($0.name.lowercased())=\($0.value)" }.sorted() == ["content-length=12", "host=svc.internal:7001", "x-a=1"])
    }

    @Test("request heads: the framing the proxy gives them, and NIO's for a body without length")
    func requestFraming() throws {
        var h = RequestHead(version: .http1_1, method: .POST, uri: "/a?b=c", headers: ["Host": "x", "Content-Length": "3"])
        #expect(try encode(h) == ("POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", false))
        h.headers = ["Host": "x"]
        #expect(try encode(h) == ("POST /a?b=c HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n", true))
        h.headers = ["Host": "x", "Transfer-Encoding": "chunked", "Content-Length": "3"]
        #expect(try encode(h) == ("POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n", false))
        h = RequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["Host": "x"])
        #expect(try encode(h) == ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", false))
        h.headers.add(name: "Transfer-Encoding", value: "chunked")
        #expect(try encode(h) == ("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", true))
        h.headers.add(name: "Content-Length", value: "3")
        #expect(throws: UpstreamRequestEncoder.InvalidRequest.self) { try encode(h) }
        h = RequestHead(version: .http1_1, method: .DELETE, uri: "/", headers: ["Transfer-Encoding": "gzip"])
        #expect(try encode(h) == ("DELETE / HTTP/1.1\r\n\r\n", false))
        h = RequestHead(version: .http1_1, method: .TRACE, uri: "/", headers: ["Content-Length": "3", "Transfer-Encoding": "chunked"])
        #expect(try encode(h) == ("TRACE / HTTP/1.1\r\n\r\n", false))
    }

    @Test("request heads that would split the request are refused", arguments: [
        ("CRLF in a value", "/", "x-a", "b\r\nX-Injected: 1"),
        ("LF in a value", "/", "x-a", "b\nc"),
        ("NUL in a value", "/", "x-a", "b\u{0}c"),
        ("space in a name", "/", "x a", "b"),
        ("colon in a name", "/", "x:a", "b"),
        ("empty name", "/", "", "b"),
        ("space in the target", "/a b", "x-a", "b"),
        ("CRLF in the target", "/a\r\nX: y", "x-a", "b"),
    ])
    func splitting(name: String, uri: String, header: String, value: String) {
        let head = RequestHead(version: .http1_1, method: .GET, uri: uri, headers: HeaderFields([("host", "x"), (header, value)]))
        var b = ByteBuffer(string: "earlier")
        #expect(throws: UpstreamRequestEncoder.InvalidRequest.self, "\(name)") { try UpstreamRequestEncoder.writeHead(head, into: &b) }
        #expect(String(buffer: b) == "earlier", "a refused head left bytes behind")
    }

    @Test("trailers: checked and written after the last chunk")
    func trailers() throws {
        var b = ByteBuffer()
        try UpstreamRequestEncoder.writeChunkedEnd(["X-Sum": "1"], into: &b)
        #expect(String(buffer: b) == "0\r\nX-Sum: 1\r\n\r\n")
        #expect(throws: UpstreamRequestEncoder.InvalidRequest.self) {
            var c = ByteBuffer()
            try UpstreamRequestEncoder.writeChunkedEnd(["X-Sum": "1\r\nX: 2"], into: &c)
        }
    }

    @Test("fields about the connection are consumed; a Connection naming other fields is kept for the header rules")
    func connectionFields() throws {
        let (p, _) = try parse("HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\nX-A: b\r\n\r\n")
        #expect(p.headers[0] == ["Content-Length=0", "X-A=b"])
        let (q, _) = try parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\n\r\n0\r\n\r\n")
        #expect(q.headers[0] == ["Connection=keep-alive, X-Secret", "X-Secret=s"])
    }

    /// Records what the connection reports to its request.
    private final class Probe: UpstreamDelegate {
        var heads = 0, ends = 0, failures = 0
        func upstreamResponseHead(_ head: consuming ResponseHead) { heads += 1 }
        func upstreamResponseBody(_ buffer: ByteBuffer) {}
        func upstreamResponseEnd() { ends += 1 }
        func upstreamReadComplete() {}
        func upstreamFailed(_ error: Error) { failures += 1 }
        func upstreamWritabilityChanged(_ writable: Bool) {}
    }

    @Test("the connection holds its request, its codec and its flush task strongly, and lets all go when the channel closes: nothing outlives it")
    func connectionLetsGo() throws {
        weak var weakProbe: Probe?
        weak var weakConnection: UpstreamConnection?
        var closedOnce = 0
        let channel = EmbeddedChannel()
        do {
            let connection = try UpstreamConnection.configure(channel: channel, id: 1, endpoint: "test") { _ in closedOnce += 1 }
            let probe = Probe()
            weakConnection = connection
            weakProbe = probe
            connection.delegate = probe
            // A whole exchange reaches the request through the strong reference.
            connection.write(.head(RequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["host": "a"])))
            connection.write(.end(nil))
            connection.flush()
            channel.embeddedEventLoop.run()
            #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) }?.hasPrefix("GET / HTTP/1.1\r\n") == true)
            try channel.writeInbound(ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
            #expect(probe.heads == 1 && probe.ends == 1)
            // A second exchange is in flight when the channel closes: its request hears of it.
            connection.write(.head(RequestHead(version: .http1_1, method: .GET, uri: "/2", headers: ["host": "a"])))
            _ = try channel.finish(acceptAlreadyClosed: true)
            #expect(probe.failures == 1)
            #expect(connection.delegate == nil)
        }
        #expect(closedOnce == 1)
        #expect(weakProbe == nil, "the request outlived its connection's close")
        #expect(weakConnection == nil, "the connection and its codec keep each other alive")
    }

    final class FlushCounter: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var flushes = 0
        func flush(context: ChannelHandlerContext) {
            flushes += 1
            context.flush()
        }
    }

    @Test("an upstream connection flushes once, at the end of the loop's tick, however often it was asked to in the tick")
    func flushAtEndOfTick() throws {
        let channel = EmbeddedChannel()
        let counter = FlushCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        let connection = try UpstreamConnection.configure(channel: channel, id: 1, endpoint: "test") { _ in }
        connection.write(.head(RequestHead(version: .http1_1, method: .POST, uri: "/a", headers: ["host": "a", "content-length": "2"])))
        connection.flush()
        connection.write(.body(.byteBuffer(ByteBuffer(string: "hi"))))
        connection.write(.end(nil))
        connection.flush()
        #expect(counter.flushes == 0, "a flush left before the tick ended")
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 1)
        var sent = ""
        while let part = try channel.readOutbound(as: ByteBuffer.self) { sent += String(buffer: part) }
        #expect(sent.hasPrefix("POST /a HTTP/1.1\r\n") && sent.hasSuffix("\r\n\r\nhi"))
        // The next tick's flush is scheduled anew.
        connection.flush()
        channel.embeddedEventLoop.run()
        #expect(counter.flushes == 2)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }
    final class WriteRecorder: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var writes: [String] = []
        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            writes.append(String(buffer: unwrapOutboundIn(data)))
            context.write(data, promise: promise)
        }
    }

    /// A connection with a recorder of what its codec writes to the channel.
    private func recorded() throws -> (EmbeddedChannel, UpstreamConnection, WriteRecorder) {
        let channel = EmbeddedChannel()
        let recorder = WriteRecorder()
        try channel.pipeline.syncOperations.addHandler(recorder)
        return (channel, try UpstreamConnection.configure(channel: channel, id: 1, endpoint: "test") { _ in }, recorder)
    }

    @Test("a head and a small body go to the channel as one write; a large body after the head, as it is; nothing of a request that fails to encode")
    func joinedWrites() throws {
        // Head and a small body: one buffer.
        var (channel, connection, recorder) = try recorded()
        connection.write(.head(RequestHead(version: .http1_1, method: .POST, uri: "/a", headers: ["host": "a", "content-length": "2"])))
        connection.write(.body(.byteBuffer(ByteBuffer(string: "hi"))))
        connection.write(.end(nil))
        connection.flush()
        channel.embeddedEventLoop.run()
        #expect(recorder.writes == ["POST /a HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi"])
        _ = try channel.finish(acceptAlreadyClosed: true)

        // A body past the join limit is not copied: the head, then the body.
        (channel, connection, recorder) = try recorded()
        let large = String(repeating: "x", count: 9 << 10)
        connection.write(.head(RequestHead(version: .http1_1, method: .POST, uri: "/b", headers: ["host": "a", "content-length": "\(large.utf8.count)"])))
        connection.write(.body(.byteBuffer(ByteBuffer(string: large))))
        connection.write(.end(nil))
        connection.flush()
        channel.embeddedEventLoop.run()
        #expect(recorder.writes == ["POST /b HTTP/1.1\r\nhost: a\r\ncontent-length: \(large.utf8.count)\r\n\r\n", large])
        _ = try channel.finish(acceptAlreadyClosed: true)

        // Chunks join the head, the last chunk and trailers too; a second request's head follows in the same buffer.
        (channel, connection, recorder) = try recorded()
        connection.write(.head(RequestHead(version: .http1_1, method: .POST, uri: "/c", headers: ["host": "a"])))
        connection.write(.body(.byteBuffer(ByteBuffer(string: "abc"))))
        connection.write(.end(["x-sum": "1"]))
        connection.write(.head(RequestHead(version: .http1_1, method: .GET, uri: "/d", headers: ["host": "a"])))
        connection.flush()
        channel.embeddedEventLoop.run()
        #expect(recorder.writes == ["POST /c HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nx-sum: 1\r\n\r\n"
            + "GET /d HTTP/1.1\r\nhost: a\r\n\r\n"])
        _ = try channel.finish(acceptAlreadyClosed: true)

        // Trailers that could split the request: the held head and body are dropped, not sent.
        (channel, connection, recorder) = try recorded()
        connection.write(.head(RequestHead(version: .http1_1, method: .POST, uri: "/e", headers: ["host": "a"])))
        connection.write(.body(.byteBuffer(ByteBuffer(string: "abc"))))
        connection.write(.end(["x-sum": "1\r\nx-injected: 1"]))
        connection.flush()
        channel.embeddedEventLoop.run()
        #expect(recorder.writes.isEmpty)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("a request's buffer is filled again by the next request once the channel let it go, never while a write still holds it")
    func reusedBuffer() throws {
        let (channel, connection, _) = try recorded()
        func send(_ uri: String, _ headers: HeaderFields = ["host": "a"]) {
            connection.write(.head(RequestHead(version: .http1_1, method: .GET, uri: uri, headers: headers)))
            connection.write(.end(nil))
            connection.flush()
            channel.embeddedEventLoop.run()
        }
        // The embedded channel keeps what was written until it is read out,
        // as a socket that has not taken a write yet: the second request
        // must not write into the first one's bytes.
        send("/one")
        send("/two", ["host": "a", "x-big": String(repeating: "b", count: 5000)])
        let first = try channel.readOutbound(as: ByteBuffer.self)
        var second = try channel.readOutbound(as: ByteBuffer.self)
        #expect(first.map { String(buffer: $0) } == "GET /one HTTP/1.1\r\nhost: a\r\n\r\n")
        #expect(second.map { String(buffer: $0).hasPrefix("GET /two HTTP/1.1\r\nhost: a\r\nx-big: bbb") } == true)
        // The second head grew its buffer past 1 KiB (a fresh one has 1 KiB).
        let grown = second?.capacity ?? 0
        #expect(grown > 5000)
        _ = consume first
        second = nil
        // Nothing holds that buffer now: the next request fills its storage.
        send("/three")
        let third = try channel.readOutbound(as: ByteBuffer.self)
        #expect(third.map { String(buffer: $0) } == "GET /three HTTP/1.1\r\nhost: a\r\n\r\n")
        #expect(third?.capacity == grown)
        _ = try channel.finish(acceptAlreadyClosed: true)
    }

    @Test("the loop's spare response buffers: one written out is cleared and reused; one still shared is left alone; a few at most, none large")
    func loopSpareBuffers() {
        let loop = LoopLocal(pools: [:])
        let allocator = ByteBufferAllocator()
        // A fresh buffer has the capacity asked for; a reused one keeps its own (4 KiB here).
        var a = loop.writeBuffer(capacity: 4096, allocator: allocator)
        a.writeString("first response")
        loop.recycle(consume a)
        var b = loop.writeBuffer(capacity: 64, allocator: allocator)
        #expect(b.readableBytes == 0 && b.capacity == 4096)
        // Still held elsewhere (a write the socket has not taken): fresh storage, the held bytes untouched.
        b.writeString("held by a pending write")
        let pending = b
        loop.recycle(b)
        var c = loop.writeBuffer(capacity: 64, allocator: allocator)
        c.writeString("other")
        #expect(String(buffer: pending) == "held by a pending write" && String(buffer: c) == "other")
        // At most eight kept, and none above 16 KiB.
        for _ in 0..<20 { loop.recycle(allocator.buffer(capacity: 512)) }
        loop.recycle(allocator.buffer(capacity: 64 << 10))
        var kept = 0
        for _ in 0..<20 where loop.writeBuffer(capacity: 0, allocator: allocator).capacity == 512 { kept += 1 }
        #expect(kept == 8)
    }
}
