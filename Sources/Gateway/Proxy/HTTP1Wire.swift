import Filters
import NIOCore
import NIOHTTP1

/// The byte-level pieces both HTTP/1.1 encoders share (token and field-value
/// bytes are `HTTPToken`'s).
enum HTTPBytes {
    /// A request-target byte: the characters RFC 3986 allows unescaped
    /// (what NIO's request validator allows).
    @inline(__always)
    static func isTargetByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: ":"), UInt8(ascii: "/"),
            UInt8(ascii: "?"), UInt8(ascii: "#"), UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "@"), UInt8(ascii: "!"),
            UInt8(ascii: "$"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "*"),
            UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: "="), UInt8(ascii: "%"):
            return true
        default:
            return false
        }
    }

    /// `content-length: n` CRLF (`n` not negative), in one reservation of
    /// the buffer: the digits written in place (no `String` made of them).
    static func writeContentLength(_ n: Int, into buffer: inout ByteBuffer) {
        precondition(n >= 0, "a negative length")
        let label: StaticString = "content-length: "
        var digits = 1
        var v = n
        while v >= 10 { v /= 10; digits &+= 1 }
        let total = label.utf8CodeUnitCount &+ digits &+ 2
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
            let o = out.baseAddress!
            ShortCopy.copy(o, from: label.utf8Start, count: label.utf8CodeUnitCount)
            var at = total &- 2
            v = n
            repeat {
                at &-= 1
                o.storeBytes(of: UInt8(truncatingIfNeeded: v % 10) &+ UInt8(ascii: "0"), toByteOffset: at, as: UInt8.self)
                v /= 10
            } while v > 0
            o.storeBytes(of: UInt16(0x0D0A).bigEndian, toByteOffset: total &- 2, as: UInt16.self)  // CRLF
            return total
        }
    }

    /// A literal (a status line, the CRLF that ends a head), in one
    /// reservation of the buffer and a copy that is no `memmove` call when
    /// short; NIO's `writeStaticString` costs about three times as much.
    @inline(__always)
    static func writeLiteral(_ literal: StaticString, into buffer: inout ByteBuffer) {
        let n = literal.utf8CodeUnitCount
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { out in
            ShortCopy.copy(out.baseAddress!, from: literal.utf8Start, count: n)
            return n
        }
    }

    /// `method SP target SP HTTP/1.x CRLF` (both already checked), in one
    /// reservation of the buffer; strings without contiguous UTF-8
    /// (bridged) the slow way.
    static func writeRequestLine(method: String, target: String, http10: Bool, into buffer: inout ByteBuffer) {
        let version: StaticString = http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n"
        let written = method.utf8.withContiguousStorageIfAvailable { m -> Int? in
            target.utf8.withContiguousStorageIfAvailable { t -> Int in
                let total = m.count &+ 1 &+ t.count &+ version.utf8CodeUnitCount
                return buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
                    let o = out.baseAddress!
                    if let from = m.baseAddress { ShortCopy.copy(o, from: from, count: m.count) }
                    o.storeBytes(of: UInt8(ascii: " "), toByteOffset: m.count, as: UInt8.self)
                    if let from = t.baseAddress { ShortCopy.copy(o + m.count + 1, from: from, count: t.count) }
                    ShortCopy.copy(o + m.count + 1 + t.count, from: version.utf8Start, count: version.utf8CodeUnitCount)
                    return total
                }
            }
        }
        if let written, written != nil { return }
        buffer.writeString(method)
        buffer.writeInteger(UInt8(ascii: " "))
        buffer.writeString(target)
        buffer.writeStaticString(version)
    }

    /// The fields that frame an HTTP/1.1 message or route it, as the
    /// encoders and the request's first pass tell them apart.
    enum FramingField { case host, contentLength, transferEncoding, connection }

    /// Which framing field `name` is (ASCII case-insensitive), or nil.
    @inline(__always)
    static func framingField(_ name: String) -> FramingField? {
        switch name.utf8.count {
        case 4 where ASCII.equalsLowercase(name, "host"): return .host
        case 10 where ASCII.equalsLowercase(name, "connection"): return .connection
        case 14 where ASCII.equalsLowercase(name, "content-length"): return .contentLength
        case 17 where ASCII.equalsLowercase(name, "transfer-encoding"): return .transferEncoding
        default: return nil
        }
    }

    /// Writes `name: value` and CRLF when the name is a token and the value
    /// has no control character (HTAB allowed); false otherwise, with part
    /// of the field possibly written (the caller resets the buffer).
    @inline(__always)
    static func writeField(_ name: String, _ value: String, into buffer: inout ByteBuffer) -> Bool {
        let written = name.utf8.withContiguousStorageIfAvailable { n -> Bool? in
            value.utf8.withContiguousStorageIfAvailable { v -> Bool in
                guard !n.isEmpty else { return false }
                for b in n where !HTTPToken.isTokenByte(b) { return false }
                // The field writer's own line, in one reservation of the
                // buffer; nothing is written when the value is refused.
                var ok = false
                buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: n.count + v.count + 4) { out in
                    let written = line(n, v, at: out.baseAddress!, room: out.count)
                    ok = written >= 0
                    return max(written, 0)
                }
                return ok
            }
        }
        if let written, let written { return written }
        // Strings without contiguous UTF-8 (bridged): the slow way.
        guard HTTPToken.isValidName(name), HTTPToken.isValidFieldValue(value) else { return false }
        buffer.writeString(name)
        buffer.writeStaticString(": ")
        buffer.writeString(value)
        buffer.writeStaticString("\r\n")
        return true
    }

    /// One chunk of a chunked body (`size CRLF data CRLF`), written through
    /// `write`: copied into one buffer when small, else as three writes so
    /// a large body is not copied.
    static func writeChunk(_ body: ByteBuffer, allocator: ByteBufferAllocator, write: (ByteBuffer) -> Void) {
        let n = body.readableBytes
        guard n > 0 else { return }
        var framed = allocator.buffer(capacity: n <= 4096 ? n + 24 : 24)
        framed.writeString(String(n, radix: 16))
        framed.writeStaticString("\r\n")
        if n <= 4096 {
            var b = body
            framed.writeBuffer(&b)
            framed.writeStaticString("\r\n")
            write(framed)
        } else {
            write(framed)
            write(body)
            write(ByteBuffer(staticString: "\r\n"))
        }
    }
}

/// What the gateway changes in a request head only as it goes onto the wire,
/// once every filter has seen the head as the client sent it: the upstream's
/// `Host`, and the `Content-Length` of a body the filters collected (and may
/// have replaced). On the wire, too, every `X-Gw-*` header is left out, so no
/// service ever sees one (PROTOCOL 2.5), whichever filter set it. Edits made
/// while encoding cost no copy of the header list.
struct UpstreamHeadEdits {
    /// Replaces every `Host` (one is written where the first was, or at the end).
    var host: String?
    /// Replaces `Content-Length` and `Transfer-Encoding`.
    var contentLength: Int?

    /// The same edits on a head (for the HTTP/2 upstream codec, which encodes it itself).
    func apply(to head: inout RequestHead) {
        if let host { head.headers.replaceOrAdd(name: "host", value: host) }
        if let contentLength {
            head.headers.remove(name: "transfer-encoding")
            head.headers.replaceOrAdd(name: "content-length", value: String(contentLength))
        }
        HeaderRules.removeAppChannelHeaders(&head.headers)
    }
}

/// Request heads and chunk ends for `UpstreamHTTP1Handler`.
enum UpstreamRequestEncoder {
    struct InvalidRequest: Error, CustomStringConvertible {
        let description: String
    }

    /// Writes `head` as HTTP/1.1, with `edits`, into `buffer`; returns
    /// whether its body is sent chunked. A POST, PUT or PATCH without
    /// `Content-Length` is sent chunked (as NIO's encoder does);
    /// `Transfer-Encoding` other than the proxy's own `chunked` is dropped; a
    /// TRACE carries no framing; a head with both framings (which the proxy
    /// never builds) is refused. One pass; on a refusal `buffer` is left as
    /// it was.
    static func writeHead(_ head: RequestHead, edits: UpstreamHeadEdits = UpstreamHeadEdits(),
                          into buffer: inout ByteBuffer) throws -> Bool {
        let start = buffer.writerIndex
        func refuse(_ what: String) -> InvalidRequest {
            buffer.moveWriterIndex(to: start)
            return InvalidRequest(description: what)
        }
        let method = head.method.rawValue
        guard !method.isEmpty, ASCII.allBytes(method, HTTPToken.isTokenByte) else { throw refuse("invalid method") }
        guard !head.uri.isEmpty, ASCII.allBytes(head.uri, HTTPBytes.isTargetByte) else { throw refuse("invalid request target") }
        let bodyExpected: Bool
        switch head.method {
        case .POST, .PUT, .PATCH: bodyExpected = true
        default: bodyExpected = false
        }
        let isTrace = head.method == .TRACE
        let lengthSet = edits.contentLength != nil
        buffer.reserveCapacity(minimumWritableBytes: 512)
        HTTPBytes.writeRequestLine(method: method, target: head.uri, http10: head.version.minor == 0, into: &buffer)
        var hasLength = false
        var chunked = false
        let host = edits.host
        var hostWritten = false
        let written = HTTPBytes.writeFields(head.headers, replacement: host, into: &buffer) { n, v in
            switch HTTPBytes.framingField(n) {
            case .host:
                // The edit's value where the first `Host` was; no other.
                if host != nil {
                    if hostWritten { return .skip }
                    hostWritten = true
                    return .writeReplacement
                }
            case .contentLength:
                if isTrace || lengthSet { return .skip }
                hasLength = true
            case .transferEncoding:
                // Only the proxy's own `chunked` on a method without a body of
                // course; the others get theirs below when they need it.
                guard !isTrace, !lengthSet, !bodyExpected, HTTPBytes.equals(v, "chunked") else { return .skip }
                chunked = true
            case .connection:
                break
            case nil:
                if n.count >= 5 && HeaderRules.isAppChannelPrefix(n) { return .skip }
            }
            return .write
        }
        guard let written else {
            buffer.moveWriterIndex(to: start)
            var native = head
            native.headers = head.headers.contiguous
            var edits = edits
            edits.host?.makeContiguousUTF8()
            return try writeHead(native, edits: edits, into: &buffer)
        }
        guard written else { throw refuse("invalid header field") }
        if let host, !hostWritten, !HTTPBytes.writeField("host", host, into: &buffer) { throw refuse("invalid header field") }
        if let length = edits.contentLength, !isTrace {
            HTTPBytes.writeContentLength(length, into: &buffer)
            hasLength = true
        }
        if hasLength && chunked { throw refuse("both Content-Length and Transfer-Encoding") }
        if bodyExpected && !hasLength {
            HTTPBytes.writeLiteral("transfer-encoding: chunked\r\n\r\n", into: &buffer)
            return true
        }
        HTTPBytes.writeLiteral("\r\n", into: &buffer)
        return chunked
    }

    /// The last chunk and the trailers of a chunked body.
    static func writeChunkedEnd(_ trailers: HeaderFields?, into buffer: inout ByteBuffer) throws {
        let start = buffer.writerIndex
        buffer.writeStaticString("0\r\n")
        for (name, value) in trailers ?? [:] where !HTTPBytes.writeField(name, value, into: &buffer) {
            buffer.moveWriterIndex(to: start)
            throw InvalidRequest(description: "invalid trailer field")
        }
        buffer.writeStaticString("\r\n")
    }
}
