import Filters
import NIOCore
import NIOHTTP1

/// Writes the responses of one downstream HTTP/1.1 connection as bytes,
/// from `ProxyHandler` itself: NIO's response encoder and response-header
/// validator were two pipeline hops per response part. The framing is NIO's
/// (`Content-Length` wins and `Transfer-Encoding` goes; without it the body
/// is chunked; 1xx, 204 and 304 carry neither; a HEAD answer keeps its
/// framing headers and sends no body), except that a `Transfer-Encoding`
/// is only ever the encoder's own `chunked`; every header is validated as
/// it is written: one that could split the response fails the write before
/// a byte of the head leaves.
struct DownstreamHTTP1Encoder {
    struct InvalidResponse: Error, CustomStringConvertible {
        let description: String
    }

    private var chunked = false
    private var suppressBody = false

    /// The head of a response; `answeringHEAD` when the request was a HEAD,
    /// `toHTTP10` when it came from an HTTP/1.0 client, which cannot read a
    /// chunked body (RFC 9112 7.1): a body without length then runs until the
    /// connection closes, and the head says `connection: close`. Returns
    /// whether the connection must close after this response. One pass; on
    /// a refusal `buffer` is left as it was.
    @discardableResult
    mutating func head(_ head: ResponseHead, answeringHEAD: Bool, toHTTP10: Bool = false, into buffer: inout ByteBuffer) throws -> Bool {
        let start = buffer.writerIndex
        let code = head.status.code
        let interim = code < 200 && code != 101
        let bodiless = code < 200 || code == 204 || code == 304
        if let line = Self.statusLine(head.status) {
            buffer.reserveCapacity(minimumWritableBytes: 512)
            HTTPBytes.writeLiteral(line, into: &buffer)
        } else {
            let reason = head.status.reasonPhrase
            guard ASCII.allBytes(reason, HTTPToken.isFieldValueByte) else { throw InvalidResponse(description: "invalid reason phrase") }
            buffer.reserveCapacity(minimumWritableBytes: 512)
            buffer.writeStaticString("HTTP/1.1 ")
            buffer.writeString(String(code))
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeString(reason)
            buffer.writeStaticString("\r\n")
        }
        var hasLength = false
        var saysClose = false
        let written = HTTPBytes.writeFields(head.headers, replacement: nil, into: &buffer) { n, v in
            switch HTTPBytes.framingField(n) {
            case .contentLength:
                if bodiless { return .skip }
                hasLength = true
            case .transferEncoding:
                // Framing is the encoder's: chunked is added below when needed.
                return .skip
            case .connection:
                saysClose = saysClose || ASCII.equalsLowercase(UnsafeRawBufferPointer(v), "close")
            default:
                break
            }
            return .write
        }
        guard let written else {
            buffer.moveWriterIndex(to: start)
            var native = head
            native.headers = head.headers.contiguous
            return try self.head(native, answeringHEAD: answeringHEAD, toHTTP10: toHTTP10, into: &buffer)
        }
        guard written else {
            buffer.moveWriterIndex(to: start)
            throw InvalidResponse(description: "invalid response header field")
        }
        let untilClose = !bodiless && !hasLength && !answeringHEAD && toHTTP10
        let addChunked = !bodiless && !hasLength && !toHTTP10
        // The framing this encoder adds and the empty line, as one literal
        // (the two framings never go together: one is HTTP/1.1's, the
        // other HTTP/1.0's).
        if addChunked {
            HTTPBytes.writeLiteral("transfer-encoding: chunked\r\n\r\n", into: &buffer)
        } else if untilClose && !saysClose {
            HTTPBytes.writeLiteral("connection: close\r\n\r\n", into: &buffer)
        } else {
            HTTPBytes.writeLiteral("\r\n", into: &buffer)
        }
        if !interim {
            chunked = addChunked && !answeringHEAD
            suppressBody = answeringHEAD
        }
        return untilClose
    }

    /// The status line of the statuses most answers have, as one literal
    /// (NIO's reason phrase: a test compares each with it); nil for others,
    /// which are written from the code and phrase.
    static func statusLine(_ status: HTTPResponseStatus) -> StaticString? {
        switch status {
        case .ok: return "HTTP/1.1 200 OK\r\n"
        case .created: return "HTTP/1.1 201 Created\r\n"
        case .noContent: return "HTTP/1.1 204 No Content\r\n"
        case .notModified: return "HTTP/1.1 304 Not Modified\r\n"
        case .badRequest: return "HTTP/1.1 400 Bad Request\r\n"
        case .unauthorized: return "HTTP/1.1 401 Unauthorized\r\n"
        case .forbidden: return "HTTP/1.1 403 Forbidden\r\n"
        case .notFound: return "HTTP/1.1 404 Not Found\r\n"
        case .tooManyRequests: return "HTTP/1.1 429 Too Many Requests\r\n"
        case .internalServerError: return "HTTP/1.1 500 Internal Server Error\r\n"
        case .badGateway: return "HTTP/1.1 502 Bad Gateway\r\n"
        case .serviceUnavailable: return "HTTP/1.1 503 Service Unavailable\r\n"
        case .gatewayTimeout: return "HTTP/1.1 504 Gateway Timeout\r\n"
        default: return nil
        }
    }

    /// A piece of the body, framed; nothing for a HEAD answer.
    func body(_ body: ByteBuffer, allocator: ByteBufferAllocator, write: (ByteBuffer) -> Void) {
        let n = body.readableBytes
        guard n > 0, !suppressBody else { return }
        guard chunked else { return write(body) }
        HTTPBytes.writeChunk(body, allocator: allocator, write: write)
    }

    /// The end of the body: the last chunk when chunked, else nothing.
    mutating func end() -> ByteBuffer? {
        defer {
            chunked = false
            suppressBody = false
        }
        return chunked ? ByteBuffer(staticString: "0\r\n\r\n") : nil
    }
}
