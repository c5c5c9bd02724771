import Filters
import NIOCore
import NIOHTTP1

/// Parses the responses of one upstream HTTP/1.1 connection, one event at
/// a time, from a buffer the caller accumulates reads into. The fields that
/// only concern this connection are consumed, not passed on:
/// `Transfer-Encoding`, `Keep-Alive`, and `Connection` when it says no more
/// than `close` or `keep-alive` (the proxy's header rules remove the rest of
/// the hop-by-hop fields, as they do for HTTP/2 upstreams).
struct UpstreamResponseParser {
    enum Event {
        case head(ResponseHead)
        case body(ByteBuffer)
        case end
    }

    typealias ParseError = HTTP1ParseError

    static let maxHeadBytes = 64 << 10
    static let maxHeaders = 256

    private enum State {
        case head
        case body(HTTP1BodyReader)
        case untilClose
    }

    private var state = State.head
    /// How far the current head was already searched for its end.
    private var scanned = 0
    /// The methods of requests sent whose responses have not started yet.
    private var methods = CircularBuffer<HTTPMethod>(initialCapacity: 2)
    /// Set when the current response's body ends only when the upstream
    /// closes the connection, or it said `Connection: close`.
    private(set) var mustClose = false

    /// A request went out: its response is expected next.
    mutating func requestSent(_ method: HTTPMethod) {
        methods.append(method)
    }

    /// Whether no response is in progress and none is awaited.
    var isIdle: Bool {
        if case .head = state, methods.isEmpty { return true }
        return false
    }

    /// The next event from `buffer`, consuming its bytes; nil when more bytes are needed.
    mutating func next(_ buffer: inout ByteBuffer) throws -> Event? {
        while true {
            switch state {
            case .head:
                guard buffer.readableBytes > 0 else { return nil }
                guard let method = methods.first else {
                    throw ParseError(description: "bytes from the upstream with no request outstanding")
                }
                guard let (head, framing) = try parseHead(&buffer, method: method) else { return nil }
                if head.status.code < 200 {
                    // 1xx: not forwarded; the final response follows.
                    if head.status.code == 101 { throw ParseError(description: "unexpected 101 Switching Protocols") }
                    continue
                }
                methods.removeFirst()
                state = framing
                return .head(head)
            case .body(var reader):
                // Trailers are checked and dropped: the proxy does not forward response trailers.
                let event = try reader.next(&buffer, trailerLimit: Self.maxHeadBytes) { _, _ in }
                switch event {
                case .data(let bytes)?:
                    state = .body(reader)
                    return .body(bytes)
                case .end?:
                    state = .head
                    return .end
                case nil:
                    state = .body(reader)
                    return nil
                }
            case .untilClose:
                guard buffer.readableBytes > 0 else { return nil }
                return .body(buffer.readSlice(length: buffer.readableBytes)!)
            }
        }
    }

    /// The upstream closed the connection: the end of a body that runs until
    /// then, or nil when a response was cut short (or none was in progress).
    mutating func endOfInput() -> Event? {
        if case .untilClose = state {
            state = .head
            return .end
        }
        return nil
    }

    // MARK: - Head

    private mutating func parseHead(_ buffer: inout ByteBuffer, method: HTTPMethod) throws -> (ResponseHead, State)? {
        let readable = buffer.readableBytes
        // The head ends at the first CRLF CRLF; a LF without its CR is refused
        // at once (never waited on until a timeout).
        let end = try buffer.withUnsafeReadableBytes { try HTTP1Parsing.headEnd($0, from: scanned, what: "response head") }
        guard let end else {
            if readable > Self.maxHeadBytes { throw ParseError(description: "response head larger than \(Self.maxHeadBytes) bytes") }
            scanned = readable
            return nil
        }
        scanned = 0
        if end > Self.maxHeadBytes { throw ParseError(description: "response head larger than \(Self.maxHeadBytes) bytes") }
        let parsed = try buffer.withUnsafeReadableBytes { p in
            try Self.parseHeadBytes(UnsafeRawBufferPointer(rebasing: p[0..<(end - 2)]))
        }
        buffer.moveReaderIndex(forwardBy: end)
        let status = HTTPResponseStatus(statusCode: parsed.status)
        let head = ResponseHead(status: status, headers: HeaderFields(fields: parsed.headers), isLocal: false)
        // RFC 9112 6.3: how the body ends.
        var framing: State
        if method == .HEAD || parsed.status < 200 || parsed.status == 204 || parsed.status == 304 {
            framing = .body(HTTP1BodyReader(length: 0))
        } else if let coding = parsed.finalCoding {
            if parsed.length != nil { throw ParseError(description: "both Content-Length and Transfer-Encoding") }
            framing = coding == .chunked ? .body(.chunked) : .untilClose
        } else if let length = parsed.length {
            framing = .body(HTTP1BodyReader(length: length))
        } else {
            framing = .untilClose
        }
        if parsed.status >= 200 {
            if case .untilClose = framing { mustClose = true }
            if !parsed.persists { mustClose = true }
        }
        return (head, framing)
    }

    private enum Coding { case chunked, other }

    private struct ParsedHead {
        var version: HTTPVersion
        var status: Int
        var headers: [(name: String, value: String)]
        var length: Int?
        var finalCoding: Coding?
        /// `close` / `keep-alive` among the `Connection` tokens.
        var close = false
        var keepAlive = false

        /// RFC 9112 9.3: HTTP/1.1 persists unless told to close; 1.0 only when told to stay.
        var persists: Bool { version.minor >= 1 ? !close : keepAlive && !close }
    }

    /// Parses a status line and header lines, each ending in CRLF (the
    /// final empty line already cut off).
    private static func parseHeadBytes(_ p: UnsafeRawBufferPointer) throws -> ParsedHead {
        func fail(_ what: String) -> ParseError { ParseError(description: what) }
        // Status line: HTTP/1.x SP 3DIGIT [SP reason] CRLF
        guard p.count >= 14, p[0] == UInt8(ascii: "H"), p[1] == UInt8(ascii: "T"), p[2] == UInt8(ascii: "T"),
              p[3] == UInt8(ascii: "P"), p[4] == UInt8(ascii: "/"), p[5] == UInt8(ascii: "1"), p[6] == UInt8(ascii: "."),
              p[7] == UInt8(ascii: "0") || p[7] == UInt8(ascii: "1"), p[8] == UInt8(ascii: " ")
        else { throw fail("malformed status line") }
        var status = 0
        for i in 9..<12 {
            let d = p[i] &- UInt8(ascii: "0")
            guard d <= 9 else { throw fail("malformed status code") }
            status = status * 10 + Int(d)
        }
        guard status >= 100 else { throw fail("malformed status code") }
        var i = 12
        if p[i] == UInt8(ascii: " ") {
            i = HTTPToken.firstNonValueByte(p, from: i + 1)
            if i < p.count, p[i] != 0x0D { throw fail("control character in the reason phrase") }
        }
        guard i + 1 < p.count, p[i] == 0x0D, p[i + 1] == 0x0A else { throw fail("malformed status line") }
        i += 2
        var head = ParsedHead(version: HTTPVersion(major: 1, minor: p[7] == UInt8(ascii: "1") ? 1 : 0), status: status, headers: [])
        head.headers.reserveCapacity(12)
        try HTTP1Parsing.fieldLines(p, from: i) { name, value in
            guard head.headers.count < maxHeaders else { throw fail("more than \(maxHeaders) header fields") }
            if ASCII.equalsLowercase(name, "content-length") {
                guard head.length == nil else { throw fail("more than one Content-Length") }
                head.length = try HTTP1Parsing.contentLength(value)
            } else if ASCII.equalsLowercase(name, "transfer-encoding") {
                // The last coding of the last field decides (RFC 9112 6.3).
                var last = value[...]
                if let comma = last.lastIndex(of: UInt8(ascii: ",")) { last = last[(comma + 1)...] }
                while let f = last.first, f == 0x20 || f == 0x09 { last = last.dropFirst() }
                head.finalCoding = ASCII.equalsLowercase(UnsafeRawBufferPointer(rebasing: last), "chunked") ? .chunked : .other
                // The framing is this codec's business: never passed on.
                return
            } else if ASCII.equalsLowercase(name, "keep-alive") {
                // Hop-by-hop, about this connection only.
                return
            } else if ASCII.equalsLowercase(name, "connection") {
                var namesOthers = false
                var s = 0
                while s <= value.count {
                    var e = s
                    while e < value.count, value[e] != UInt8(ascii: ",") { e += 1 }
                    var a = s, b = e
                    while a < b, value[a] == 0x20 || value[a] == 0x09 { a += 1 }
                    while b > a, value[b - 1] == 0x20 || value[b - 1] == 0x09 { b -= 1 }
                    let token = UnsafeRawBufferPointer(rebasing: value[a..<b])
                    if ASCII.equalsLowercase(token, "close") {
                        head.close = true
                    } else if ASCII.equalsLowercase(token, "keep-alive") {
                        head.keepAlive = true
                    } else if !token.isEmpty {
                        namesOthers = true
                    }
                    s = e + 1
                }
                // `close` and `keep-alive` are consumed here; a Connection
                // that names other fields stays, for the proxy's header rules
                // to remove those too.
                if !namesOthers { return }
            }
            head.headers.append((FieldStrings.make(name), FieldStrings.make(value)))
        }
        return head
    }
}
