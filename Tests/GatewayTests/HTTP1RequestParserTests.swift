import NIOCore
import NIOHTTP1
import Testing

@testable import Gateway

/// What the parser made of some bytes: one line per part.
private func parse(_ bytes: String, step: Int = 0, maxHead: Int = 4096) throws -> [String] {
    var parser = HTTP1RequestParser(maxHeadBytes: maxHead)
    var out: [String] = []
    var buffer = ByteBuffer()
    let all = Array(bytes.utf8)
    let pieces = step == 0 ? [all[...]] : stride(from: 0, to: all.count, by: step).map { all[$0..<min($0 + step, all.count)] }
    var body = ""
    for piece in pieces {
        buffer.writeBytes(piece)
        while let part = try parser.next(&buffer) {
            switch part {
            case .head(let h):
                let fields = h.headers.map { "\($0.name)=\($0.value)" }.joined(separator: ",")
                out.append("head \(h.method.rawValue) \(h.uri) \(h.version) [\(fields)]")
            case .body(let b):
                body += String(buffer: b)
            case .end(let trailers):
                if !body.isEmpty { out.append("body \(body)") }
                body = ""
                out.append("end" + (trailers.map { " [" + $0.map { "\($0.name)=\($0.value)" }.joined(separator: ",") + "]" } ?? ""))
            }
        }
    }
    return out
}

@Suite("downstream HTTP/1.1 request parser")
struct HTTP1RequestParserTests {
    static let pipelined = "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-A:  spaced value \t\r\n\r\n"
        + "\r\n"  // a stray empty line between requests is skipped
        + "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        + "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer-A: x\r\n\r\n"
        + "DELETE /d HTTP/1.0\r\n\r\n"
        + "PURGE /e HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"

    @Test("requests parse the same however the bytes are split", arguments: [0, 1, 2, 3, 7, 64])
    func splitAnywhere(step: Int) throws {
        #expect(try parse(Self.pipelined, step: step) == [
            "head GET /a?x=1 HTTP/1.1 [Host=h,X-A=spaced value]", "end",
            "head POST /b HTTP/1.1 [Host=h,Content-Length=5]", "body hello", "end",
            "head PUT /c HTTP/1.1 [Host=h,Transfer-Encoding=chunked]", "body abc0123456789abcdef", "end [Trailer-A=x]",
            "head DELETE /d HTTP/1.0 []", "end",
            "head PURGE /e HTTP/1.1 [Host=h,Transfer-Encoding=chunked]", "end",
        ])
    }

    @Test("a body is handed on as it arrives, never waited for whole")
    func streamingBody() throws {
        var parser = HTTP1RequestParser(maxHeadBytes: 4096)
        var buffer = ByteBuffer(string: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
        guard case .head? = try parser.next(&buffer), case .body(let first)? = try parser.next(&buffer) else {
            Issue.record("no head and first body bytes")
            return
        }
        #expect(String(buffer: first) == "abc")
        #expect(try parser.next(&buffer) == nil)
        buffer.writeString("defghijGET")
        guard case .body(let rest)? = try parser.next(&buffer), case .end(nil)? = try parser.next(&buffer) else {
            Issue.record("no rest and end")
            return
        }
        #expect(String(buffer: rest) == "defghij")
        // The next request's first bytes stay in the buffer.
        #expect(try parser.next(&buffer) == nil)
        #expect(String(buffer: buffer) == "GET")
    }

    static let refused: [(String, String)] = [
        ("CL and TE", "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("TE and CL", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"),
        ("two CL", "POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\n"),
        ("CL list", "POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\n"),
        ("CL sign", "POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\n"),
        ("CL empty", "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"),
        ("CL overflow", "POST / HTTP/1.1\r\nContent-Length: 9999999999999999999\r\n\r\n"),
        ("TE uppercase", "POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n"),
        ("TE trailing space", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked \r\n\r\n"),
        ("TE list", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        ("TE twice", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("TE identity", "POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"),
        ("TE on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("obs-fold", "GET / HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n"),
        ("space before colon", "GET / HTTP/1.1\r\nX-A : b\r\n\r\n"),
        ("empty name", "GET / HTTP/1.1\r\n: b\r\n\r\n"),
        ("no colon", "GET / HTTP/1.1\r\nBad Header\r\n\r\n"),
        ("NUL in value", "GET / HTTP/1.1\r\nX-A: b\u{0}c\r\n\r\n"),
        ("bare CR", "GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n"),
        ("bare LF", "GET / HTTP/1.1\nHost: a\n\n"),
        ("bare LF in fields", "GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n"),
        ("lowercase method", "get / HTTP/1.1\r\n\r\n"),
        ("method with @", "G@T / HTTP/1.1\r\n\r\n"),
        ("space in target", "GET /a b HTTP/1.1\r\n\r\n"),
        ("control byte in target", "GET /a\u{1}b HTTP/1.1\r\n\r\n"),
        ("quote in target", "GET /a\"b HTTP/1.1\r\n\r\n"),
        ("HTTP/0.9", "GET /\r\n\r\n"),
        ("HTTP/1.2", "GET / HTTP/1.2\r\n\r\n"),
        ("HTTP/2.0", "GET / HTTP/2.0\r\n\r\n"),
        ("space after version", "GET / HTTP/1.1 \r\n\r\n"),
        ("two spaces", "GET  / HTTP/1.1\r\n\r\n"),
        ("chunk size overflow", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF1\r\n"),
        ("chunk size junk", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4x\r\nabcd\r\n"),
        ("chunk bare LF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\nabcd\n"),
        ("chunk overrun", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcdX0\r\n\r\n"),
        ("chunk extension NUL", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;\u{0}\r\nabcd\r\n"),
        ("CL in trailers", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 5\r\n\r\n"),
        ("TE in trailers", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("trailer obs-fold", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n c\r\n\r\n"),
    ]

    @Test("ambiguous or malformed requests are refused, whole or byte by byte", arguments: [0, 1])
    func refusals(step: Int) throws {
        for (name, wire) in Self.refused {
            #expect(throws: HTTP1ParseError.self, "\(name)") { _ = try parse(wire, step: step) }
            // Refused as malformed, not as too large.
            do { _ = try parse(wire, step: step) } catch let e as HTTP1ParseError { #expect(!e.tooLarge, "\(name)") }
        }
    }

    @Test("long values: HTAB and obs-text pass, a control byte at any offset is refused (the word-at-a-time scan)")
    func controlsAtEveryOffset() throws {
        let long = String(repeating: "abcdefgh", count: 4)
        #expect(try parse("GET / HTTP/1.1\r\nX-A: \(long)\t\(long)é\(long)\r\n\r\n") == [
            "head GET / HTTP/1.1 [X-A=\(long)\t\(long)é\(long)]", "end",
        ])
        for control in [0x00, 0x01, 0x0A, 0x0D, 0x1F, 0x7F] as [UInt8] {
            for offset in 0..<24 {
                var value = Array(long.utf8)
                value[offset] = control
                let wire = "GET / HTTP/1.1\r\nHost: h\r\nX-A: \(String(decoding: value, as: UTF8.self))\r\n\r\n"
                #expect(throws: HTTP1ParseError.self, "byte \(control) at \(offset)") { _ = try parse(wire) }
            }
        }
    }

    @Test("a head or trailer section over the limit is refused as too large, before it is all buffered")
    func tooLarge() throws {
        let big = "GET / HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 5000) + "\r\n\r\n"
        #expect(try parse(big, maxHead: 8192).count == 2)
        for step in [0, 100] {
            do {
                _ = try parse(big, step: step, maxHead: 4096)
                Issue.record("a 5 KB head passed a 4 KiB limit")
            } catch let e as HTTP1ParseError {
                #expect(e.tooLarge)
            }
        }
        // An endless head is refused once the limit is passed, not buffered on.
        var parser = HTTP1RequestParser(maxHeadBytes: 1024)
        var buffer = ByteBuffer(string: "GET / HTTP/1.1\r\nX-A: " + String(repeating: "a", count: 1000))
        #expect(try parser.next(&buffer) == nil)
        buffer.writeString(String(repeating: "a", count: 100))
        #expect(throws: HTTP1ParseError.self) { _ = try parser.next(&buffer) }
        let trailers = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: " + String(repeating: "t", count: 5000) + "\r\n\r\n"
        do {
            _ = try parse(trailers, maxHead: 4096)
            Issue.record("a 5 KB trailer section passed a 4 KiB limit")
        } catch let e as HTTP1ParseError {
            #expect(e.tooLarge)
        }
    }
}

@Suite("field strings: the common long names and values as literals")
struct FieldStringsTests {
    @Test("every length and every byte gives the string of exactly those bytes; a literal's near miss is not the literal")
    func sameBytes() throws {
        let literals = ["x-gw-content-type", "X-Gw-Content-Type", "application/json", "application/octet-stream",
                        "text/plain; charset=utf-8", "max-age=31536000; includeSubDomains", "Strict-Transport-Security"]
        var cases = literals.map { Array($0.utf8) }
        for literal in literals {
            var upper = Array(literal.utf8)
            upper[upper.count - 1] ^= 0x20  // same length, the last letter's case flipped
            cases.append(upper)
            cases.append(Array(literal.utf8.dropLast()))
            cases.append(Array(literal.utf8) + [UInt8(ascii: "x")])
        }
        for n in 0...48 { cases.append((0..<n).map { UInt8(0x21 + ($0 * 7 + n) % 94) }) }
        for bytes in cases {
            let made = bytes.withUnsafeBytes { FieldStrings.make($0) }
            #expect(Array(made.utf8) == bytes, "\(String(decoding: bytes, as: UTF8.self))")
        }
    }

    @Test("bytes above 0x7F (obs-text) give what String(decoding:) gives, valid UTF-8 or not, short and long")
    func nonASCII() throws {
        let cases: [[UInt8]] = [
            Array("é".utf8), Array("naïve-value".utf8), Array("ünïcödé-and-more-than-15".utf8),
            [0xFF], [0x61, 0xC3], [0xC3, 0x28, 0x61], Array(repeating: 0x80, count: 15), Array(repeating: 0x80, count: 16),
            [0x61, 0x62, 0xE2, 0x82], Array("abcdefghijklmn".utf8) + [0xF0],
        ]
        for bytes in cases {
            let made = bytes.withUnsafeBytes { FieldStrings.make($0) }
            #expect(made == String(decoding: bytes, as: UTF8.self), "\(bytes)")
            #expect(Array(made.utf8) == Array(String(decoding: bytes, as: UTF8.self).utf8), "\(bytes)")
        }
    }

    @Test("a parsed head keeps what was sent, common values included")
    func parsedHead() throws {
        let head = "POST /p HTTP/1.1\r\nHost: h\r\nX-Gw-Content-Type: application/json\r\nContent-Type: application/octet-stream\r\n"
            + "X-Gw-Content-Type: application/jsoN\r\nContent-Length: 0\r\n\r\n"
        #expect(try parse(head) == ["head POST /p HTTP/1.1 [Host=h,X-Gw-Content-Type=application/json,Content-Type=application/octet-stream,"
                                    + "X-Gw-Content-Type=application/jsoN,Content-Length=0]", "end"])
    }
}
