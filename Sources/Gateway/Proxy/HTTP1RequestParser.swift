import Filters
import NIOCore
import NIOHTTP1

/// Parses the requests of one downstream HTTP/1.1 connection, one event at
/// a time, from the bytes `ProxyHandler` accumulates. It replaces NIO's
/// llhttp-based decoder and its pipeline hop (a `ByteToMessageHandler`, a
/// callback per token, the parts boxed on their way to the next handler):
/// about a tenth of the gateway's user-space time on a plain request went
/// there (≈ 6 % of all its samples; this parser and its loop ≈ 2 %).
///
/// It is stricter than RFC 9112 requires, and refuses rather than guesses
/// wherever two parsers could read the same bytes as different requests
/// (PROTOCOL 4): CRLF only; no obs-fold; no whitespace before a colon; a
/// method of uppercase letters; a request-target of the characters RFC 3986
/// allows; `HTTP/1.0` or `HTTP/1.1`, nothing after it; at most one
/// `Content-Length`, of plain digits; `Transfer-Encoding` only as exactly
/// `chunked`, once, on HTTP/1.1, without `Content-Length`; no framing field
/// among the trailers. Empty lines before a request line are skipped
/// (RFC 9112 2.2).
struct HTTP1RequestParser {
    private enum State {
        case head
        case body(HTTP1BodyReader)
    }

    /// The largest head (request line and fields) read; a larger one is
    /// refused as too large before it is all buffered.
    let maxHeadBytes: Int
    private var state = State.head
    /// How far the current head was already searched for its end.
    private var scanned = 0

    init(maxHeadBytes: Int) {
        self.maxHeadBytes = maxHeadBytes
    }

    /// The next part from `buffer`, consuming its bytes; nil when more bytes are needed.
    mutating func next(_ buffer: inout ByteBuffer) throws -> InboundRequestPart? {
        switch state {
        case .head:
            guard let (head, body) = try parseHead(&buffer) else { return nil }
            state = .body(body)
            return .head(head)
        case .body(var reader):
            var fields: [(name: String, value: String)] = []
            let event = try reader.next(&buffer, trailerLimit: maxHeadBytes) { name, value in
                // A trailer cannot frame the body it ends (llhttp refuses it too).
                if ASCII.equalsLowercase(name, "content-length") || ASCII.equalsLowercase(name, "transfer-encoding") {
                    throw HTTP1ParseError(description: "framing field in the trailers")
                }
                fields.append((FieldStrings.make(name), FieldStrings.make(value)))
            }
            switch event {
            case .data(let bytes)?:
                state = .body(reader)
                return .body(bytes)
            case .end?:
                state = .head
                return .end(fields.isEmpty ? nil : HeaderFields(fields: fields))
            case nil:
                state = .body(reader)
                return nil
            }
        }
    }

    // MARK: - Head

    private mutating func parseHead(_ buffer: inout ByteBuffer) throws -> (RequestHead, HTTP1BodyReader)? {
        // Empty lines before the request line are skipped (a client's stray
        // CRLF after a body); a lone LF is not.
        while buffer.readableBytes >= 2, buffer.getInteger(at: buffer.readerIndex, as: UInt16.self) == 0x0D0A {
            buffer.moveReaderIndex(forwardBy: 2)
            scanned = max(0, scanned - 2)
        }
        guard buffer.readableBytes > 0 else { return nil }
        let readable = buffer.readableBytes
        let end = try buffer.withUnsafeReadableBytes { try HTTP1Parsing.headEnd($0, from: scanned, what: "request head") }
        guard let end else {
            if readable > maxHeadBytes { throw HTTP1ParseError(description: "request head too large", tooLarge: true) }
            // The search resumes here (an end is recognised at its last LF).
            scanned = readable
            return nil
        }
        scanned = 0
        if end > maxHeadBytes { throw HTTP1ParseError(description: "request head too large", tooLarge: true) }
        let parsed = try buffer.withUnsafeReadableBytes { p in
            try Self.parseHeadBytes(UnsafeRawBufferPointer(rebasing: p[0..<(end - 2)]))
        }
        buffer.moveReaderIndex(forwardBy: end)
        return parsed
    }

    /// Parses a request line and its field lines, each ending in CRLF (the
    /// final empty line already cut off).
    private static func parseHeadBytes(_ p: UnsafeRawBufferPointer) throws -> (RequestHead, HTTP1BodyReader) {
        func fail(_ what: String) -> HTTP1ParseError { HTTP1ParseError(description: what) }
        // method SP request-target SP HTTP-version CRLF
        var i = 0
        while i < p.count, p[i] &- UInt8(ascii: "A") < 26 || p[i] == UInt8(ascii: "-") { i += 1 }
        guard i > 0, i <= 24, i < p.count, p[i] == UInt8(ascii: " ") else { throw fail("malformed method") }
        let method = methodOf(UnsafeRawBufferPointer(rebasing: p[0..<i]))
        i += 1
        let targetStart = i
        while i < p.count, HTTPBytes.isTargetByte(p[i]) { i += 1 }
        guard i > targetStart, i < p.count, p[i] == UInt8(ascii: " ") else { throw fail("malformed request target") }
        let uri = String(decoding: UnsafeRawBufferPointer(rebasing: p[targetStart..<i]), as: UTF8.self)
        i += 1
        guard i + 10 <= p.count, p[i] == UInt8(ascii: "H"), p[i + 1] == UInt8(ascii: "T"), p[i + 2] == UInt8(ascii: "T"),
              p[i + 3] == UInt8(ascii: "P"), p[i + 4] == UInt8(ascii: "/"), p[i + 5] == UInt8(ascii: "1"),
              p[i + 6] == UInt8(ascii: "."), p[i + 7] == UInt8(ascii: "1") || p[i + 7] == UInt8(ascii: "0"),
              p[i + 8] == 0x0D, p[i + 9] == 0x0A
        else { throw fail("malformed HTTP version") }
        let version: HTTPVersion = p[i + 7] == UInt8(ascii: "1") ? .http1_1 : .http1_0
        i += 10

        var fields: [(name: String, value: String)] = []
        // Room for a usual head's fields and what the proxy and the filters
        // add to the list in place (X-Request-Id, X-Forwarded-*, X-Passport):
        // one allocation for the request's list, no growth.
        fields.reserveCapacity(20)
        var length: Int?
        var chunked = false
        try HTTP1Parsing.fieldLines(p, from: i) { name, value in
            if ASCII.equalsLowercase(name, "content-length") {
                guard length == nil else { throw fail("more than one Content-Length") }
                length = try HTTP1Parsing.contentLength(value)
            } else if ASCII.equalsLowercase(name, "transfer-encoding") {
                // Exactly `chunked`: not another case, and no whitespace after
                // it either (the untrimmed value ends where its CRLF starts).
                guard !chunked, value.elementsEqual("chunked".utf8), value.baseAddress!.load(fromByteOffset: value.count, as: UInt8.self) == 0x0D
                else { throw fail("Transfer-Encoding other than one chunked") }
                chunked = true
            }
            fields.append((FieldStrings.make(name), FieldStrings.make(value)))
        }
        let framing: HTTP1BodyReader
        if chunked {
            guard length == nil else { throw fail("both Content-Length and Transfer-Encoding") }
            guard version == .http1_1 else { throw fail("Transfer-Encoding on HTTP/1.0") }
            framing = .chunked
        } else {
            framing = HTTP1BodyReader(length: length ?? 0)
        }
        return (RequestHead(version: version, method: method, uri: uri, headers: HeaderFields(fields: fields)), framing)
    }

    /// The method: the common ones without making a string.
    @inline(__always)
    private static func methodOf(_ m: UnsafeRawBufferPointer) -> HTTPMethod {
        switch m.count {
        case 3 where m[0] == UInt8(ascii: "G") && m[1] == UInt8(ascii: "E") && m[2] == UInt8(ascii: "T"): return .GET
        case 4 where m[0] == UInt8(ascii: "P") && m[1] == UInt8(ascii: "O") && m[2] == UInt8(ascii: "S") && m[3] == UInt8(ascii: "T"):
            return .POST
        default: return HTTPMethod(rawValue: String(decoding: m, as: UTF8.self))
        }
    }
}
