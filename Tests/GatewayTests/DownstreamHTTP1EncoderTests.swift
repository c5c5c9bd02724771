import Filters
import NIOCore
import NIOHTTP1
import Testing

@testable import Gateway

@Suite("downstream HTTP/1.1 response encoder")
struct DownstreamHTTP1EncoderTests {
    /// Encodes a whole response (head, `bodies`, end) and returns the wire bytes.
    func wire(_ status: HTTPResponseStatus, _ headers: HeaderFields, bodies: [String] = [], head: Bool = false,
              encoder: inout DownstreamHTTP1Encoder) throws -> String {
        var out = ByteBuffer()
        try encoder.head(ResponseHead.local(status, headers), answeringHEAD: head, into: &out)
        for b in bodies {
            encoder.body(ByteBuffer(string: b), allocator: ByteBufferAllocator()) { var x = $0; out.writeBuffer(&x) }
        }
        if var last = encoder.end() { out.writeBuffer(&last) }
        return String(buffer: out)
    }

    func wire(_ status: HTTPResponseStatus, _ headers: HeaderFields, bodies: [String] = [], head: Bool = false) throws -> String {
        var e = DownstreamHTTP1Encoder()
        return try wire(status, headers, bodies: bodies, head: head, encoder: &e)
    }

    @Test("Content-Length wins and Transfer-Encoding goes; without it the body is chunked")
    func framing() throws {
        #expect(try wire(.ok, ["content-length": "5", "transfer-encoding": "chunked", "x-a": "b"], bodies: ["hel", "lo"])
            == "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-a: b\r\n\r\nhello")
        #expect(try wire(.created, ["x-a": "b"], bodies: ["hel", "", "lo"])
            == "HTTP/1.1 201 Created\r\nx-a: b\r\ntransfer-encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n")
        let big = String(repeating: "z", count: 5000)
        #expect(try wire(.ok, [:], bodies: [big]) == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1388\r\n\(big)\r\n0\r\n\r\n")
    }

    @Test("the status lines written as literals are NIO's code and reason phrase, byte for byte; other statuses are built")
    func statusLines() throws {
        var literal = 0
        for code in 100...599 {
            let status = HTTPResponseStatus(statusCode: code)
            if let line = DownstreamHTTP1Encoder.statusLine(status) {
                literal += 1
                #expect(line.description == "HTTP/1.1 \(code) \(status.reasonPhrase)\r\n", "status \(code)")
            }
            var out = ByteBuffer()
            var e = DownstreamHTTP1Encoder()
            try e.head(ResponseHead.local(status, ["content-length": "0"]), answeringHEAD: false, into: &out)
            let bodiless = code < 200 || code == 204 || code == 304
            #expect(String(buffer: out) == "HTTP/1.1 \(code) \(status.reasonPhrase)\r\n" + (bodiless ? "" : "content-length: 0\r\n") + "\r\n")
        }
        #expect(literal == 13)
        var out = ByteBuffer()
        var e = DownstreamHTTP1Encoder()
        try e.head(ResponseHead.local(.custom(code: 200, reasonPhrase: "Fine"), ["content-length": "0"]), answeringHEAD: false, into: &out)
        #expect(String(buffer: out) == "HTTP/1.1 200 Fine\r\ncontent-length: 0\r\n\r\n")
    }

    @Test("204 and 304 carry no framing headers; a HEAD answer keeps them and sends no body")
    func bodiless() throws {
        #expect(try wire(.noContent, ["content-length": "0", "transfer-encoding": "chunked"]) == "HTTP/1.1 204 No Content\r\n\r\n")
        #expect(try wire(.notModified, ["etag": "\"x\"", "content-length": "10"]) == "HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n")
        #expect(try wire(.ok, ["content-length": "10"], bodies: ["ignored"], head: true) == "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n")
        #expect(try wire(.ok, [:], bodies: ["ignored"], head: true) == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    }

    @Test("100 Continue leaves the final response's framing alone, and each response starts afresh")
    func interim() throws {
        var e = DownstreamHTTP1Encoder()
        var out = ByteBuffer()
        try e.head(.local(.continue), answeringHEAD: false, into: &out)
        #expect(String(buffer: out) == "HTTP/1.1 100 Continue\r\n\r\n")
        #expect(try wire(.ok, [:], bodies: ["a"], encoder: &e) == "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n")
        #expect(try wire(.ok, ["content-length": "1"], bodies: ["a"], encoder: &e) == "HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\na")
    }

    @Test("a header that could split the response is refused before a byte is written", arguments: [
        ("x-a", "b\r\nset-cookie: evil"), ("x-a", "b\nc"), ("x-a", "b\u{0}"), ("x a", "b"), ("x-a\r\nx-b", "c"), ("", "b"),
    ])
    func splitting(name: String, value: String) {
        var e = DownstreamHTTP1Encoder()
        var out = ByteBuffer()
        #expect(throws: DownstreamHTTP1Encoder.InvalidResponse.self) {
            try e.head(ResponseHead.local(.ok, HeaderFields([(name, value)])), answeringHEAD: false, into: &out)
        }
        #expect(out.readableBytes == 0)
    }

    @Test("an HTTP/1.0 client never gets chunks: a body without length runs to the close, and the head says so")
    func http10() throws {
        var e = DownstreamHTTP1Encoder()
        var out = ByteBuffer()
        let closes = try e.head(ResponseHead.local(.ok, ["x-a": "b"]), answeringHEAD: false, toHTTP10: true, into: &out)
        e.body(ByteBuffer(string: "abc"), allocator: ByteBufferAllocator()) { var x = $0; out.writeBuffer(&x) }
        #expect(e.end() == nil)
        #expect(closes)
        #expect(String(buffer: out) == "HTTP/1.1 200 OK\r\nx-a: b\r\nconnection: close\r\n\r\nabc")
        // With a length, nothing changes; a HEAD answer has no body to delimit.
        var f = DownstreamHTTP1Encoder()
        var out2 = ByteBuffer()
        #expect(!(try f.head(ResponseHead.local(.ok, ["content-length": "3"]), answeringHEAD: false, toHTTP10: true, into: &out2)))
        #expect(!(try f.head(.local(.ok), answeringHEAD: true, toHTTP10: true, into: &out2)))
    }
}

@Suite("HTTP/2 response head block")
struct H2ResponseHeadTests {
    @Test("status first, names lowercased, connection fields dropped, x-request-id not indexed, set-cookie never")
    func block() throws {
        let head = ResponseHead.local(.created, [
            "Content-Type": "text/plain", "Connection": "keep-alive", "Transfer-Encoding": "chunked", "keep-alive": "timeout=5",
            "X-Request-Id": "abc", "Set-Cookie": "s=1", "x-a": "b",
        ])
        let block = try #require(H2ResponseHead.block(head))
        let fields = block.map { field -> String in
            let how = field.indexable == .indexable ? "indexed" : field.indexable == .nonIndexable ? "not indexed" : "never indexed"
            return "\(field.name)=\(field.value) \(how)"
        }
        #expect(fields == [":status=201 indexed", "content-type=text/plain indexed", "x-request-id=abc not indexed",
                           "set-cookie=s=1 never indexed", "x-a=b indexed"])
    }

    @Test("a field that could not be sent makes no block", arguments: [("x-a", "b\r\nc"), ("x a", "b"), ("", "b")])
    func refused(name: String, value: String) {
        #expect(H2ResponseHead.block(ResponseHead.local(.ok, HeaderFields([(name, value)]))) == nil)
    }
}
