#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Filters
import NIOCore

/// A message the gateway's HTTP/1.1 parsers refuse: the connection cannot
/// be read past it. `tooLarge` when a head or trailer section passed its
/// size limit (a client gets 431 for it, not 400).
struct HTTP1ParseError: Error, CustomStringConvertible {
    let description: String
    var tooLarge = false
}

/// The strict HTTP/1.1 grammar both parsers share (`HTTP1RequestParser`
/// downstream, `UpstreamResponseParser` upstream): CRLF line ends only
/// (a bare LF or CR is refused, never guessed at), field names of tchar
/// right up to the colon, no obs-fold, no control bytes in values.
enum HTTP1Parsing {
    /// Where the head in `p` ends (the index after its CRLF CRLF), searching
    /// from `scanned`; nil when it has not arrived yet. Line by line:
    /// `memchr` finds each LF (libc's vectorized search; a head is a dozen
    /// lines, some of them hundreds of bytes long).
    static func headEnd(_ p: UnsafeRawBufferPointer, from scanned: Int, what: String) throws -> Int? {
        guard let base = p.baseAddress else { return nil }
        var j = scanned
        while j < p.count {
            guard let lf = memchr(base + j, 0x0A, p.count - j) else { return nil }
            j = base.distance(to: UnsafeRawPointer(lf))
            guard j > 0, p[j - 1] == 0x0D else { throw HTTP1ParseError(description: "LF without CR in the \(what)") }
            if j >= 3, p[j - 2] == 0x0A { return j + 1 }
            j += 1
        }
        return nil
    }

    /// The field lines of a head from `start` to the end of `p` (each ended
    /// by CRLF; the final empty line already cut off), handed to `field`
    /// with the value's surrounding whitespace trimmed.
    @inline(__always)
    static func fieldLines(_ p: UnsafeRawBufferPointer, from start: Int,
                           _ field: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws {
        var i = start
        while i < p.count {
            // field-name ":" OWS field-value OWS CRLF
            let nameStart = i
            while i < p.count, HTTPToken.isTokenByte(p[i]) { i += 1 }
            guard i > nameStart, i < p.count, p[i] == UInt8(ascii: ":") else {
                throw HTTP1ParseError(description: "malformed header line")
            }
            let name = UnsafeRawBufferPointer(rebasing: p[nameStart..<i])
            i += 1
            while i < p.count, p[i] == 0x20 || p[i] == 0x09 { i += 1 }
            let valueStart = i
            // The value runs to the CR that ends the line; any other control
            // before it is refused.
            i = HTTPToken.firstNonValueByte(p, from: i)
            if i < p.count, p[i] != 0x0D { throw HTTP1ParseError(description: "control character in a header value") }
            guard i + 1 < p.count, p[i + 1] == 0x0A else { throw HTTP1ParseError(description: "header line not ended by CRLF") }
            var valueEnd = i
            while valueEnd > valueStart, p[valueEnd - 1] == 0x20 || p[valueEnd - 1] == 0x09 { valueEnd -= 1 }
            i += 2
            try field(name, UnsafeRawBufferPointer(rebasing: p[valueStart..<valueEnd]))
        }
    }

    /// A `Content-Length` value: 1 to 18 digits and nothing else (no sign,
    /// no spaces, no list), so that every parser reads the same number.
    static func contentLength(_ value: UnsafeRawBufferPointer) throws -> Int {
        guard value.count >= 1, value.count <= 18 else { throw HTTP1ParseError(description: "malformed Content-Length") }
        var n = 0
        for b in value {
            let d = b &- UInt8(ascii: "0")
            guard d <= 9 else { throw HTTP1ParseError(description: "malformed Content-Length") }
            n = n * 10 + Int(d)
        }
        return n
    }

    /// `chunk-size [; ext] CRLF`, consumed from `buffer`; nil until the whole line is there.
    static func readChunkSize(_ buffer: inout ByteBuffer) throws -> Int? {
        let line: (size: Int, length: Int)? = try buffer.withUnsafeReadableBytes { p in
            var i = 0
            var size = 0
            while i < p.count, let v = ASCII.hexValue(p[i]) {
                guard i < 15 else { throw HTTP1ParseError(description: "chunk size too large") }
                size = size << 4 | Int(v)
                i += 1
            }
            guard i < p.count else { return nil }
            guard i > 0 else { throw HTTP1ParseError(description: "malformed chunk size") }
            if p[i] == UInt8(ascii: ";") {
                // Extensions are ignored, but must be printable up to CRLF.
                i += 1
                while i < p.count, p[i] != 0x0D {
                    guard HTTPToken.isFieldValueByte(p[i]), i < 4096 else { throw HTTP1ParseError(description: "malformed chunk extension") }
                    i += 1
                }
            }
            guard i < p.count else { return nil }
            guard p[i] == 0x0D else { throw HTTP1ParseError(description: "malformed chunk size") }
            guard i + 1 < p.count else { return nil }
            guard p[i + 1] == 0x0A else { throw HTTP1ParseError(description: "chunk size not ended by CRLF") }
            return (size, i + 2)
        }
        guard let line else { return nil }
        buffer.moveReaderIndex(forwardBy: line.length)
        return line.size
    }

    /// The CRLF after a chunk's data; false until it is there.
    static func readChunkEnd(_ buffer: inout ByteBuffer) throws -> Bool {
        guard buffer.readableBytes >= 2 else { return false }
        guard buffer.readInteger(as: UInt16.self) == 0x0D0A else { throw HTTP1ParseError(description: "chunk not followed by CRLF") }
        return true
    }

    /// The trailer section up to its empty line, each field handed to
    /// `field` (trimmed), consumed from `buffer`; false (nothing consumed)
    /// until the empty line is there.
    static func readTrailers(_ buffer: inout ByteBuffer, limit: Int,
                             _ field: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        let consumed: Int? = try buffer.withUnsafeReadableBytes { p in
            // No trailers: the empty line at once.
            if p.count >= 2, p[0] == 0x0D, p[1] == 0x0A { return 2 }
            guard let end = try headEnd(p, from: 0, what: "trailer section") else {
                if p.count > limit { throw HTTP1ParseError(description: "trailer section too large", tooLarge: true) }
                return nil
            }
            if end > limit { throw HTTP1ParseError(description: "trailer section too large", tooLarge: true) }
            try fieldLines(UnsafeRawBufferPointer(rebasing: p[0..<(end - 2)]), from: 0, field)
            return end
        }
        guard let consumed else { return false }
        buffer.moveReaderIndex(forwardBy: consumed)
        return true
    }
}

/// A message body as both parsers frame it: a fixed length, or chunks up to
/// the trailer section. Data is handed on as it arrives, sliced from the
/// caller's buffer (never copied).
struct HTTP1BodyReader {
    enum Event {
        case data(ByteBuffer)
        case end
    }

    private enum State {
        case fixed(Int)
        case chunkSize
        case chunkData(Int)
        case chunkDataEnd
        case trailers
    }

    private var state: State

    /// A body of `length` bytes (0: none).
    init(length: Int) { state = .fixed(length) }

    /// A chunked body.
    static let chunked = HTTP1BodyReader(state: .chunkSize)

    private init(state: State) { self.state = state }

    /// The next piece of the body, or its end, from `buffer`; nil when more
    /// bytes are needed. Each trailer field is handed to `trailer` (trailer
    /// sections are limited to `trailerLimit` bytes).
    @inline(__always)
    mutating func next(_ buffer: inout ByteBuffer, trailerLimit: Int,
                       trailer: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Void) throws -> Event? {
        while true {
            switch state {
            case .fixed(let remaining):
                if remaining == 0 { return .end }
                guard buffer.readableBytes > 0 else { return nil }
                let n = min(remaining, buffer.readableBytes)
                state = .fixed(remaining - n)
                return .data(buffer.readSlice(length: n)!)
            case .chunkSize:
                guard let size = try HTTP1Parsing.readChunkSize(&buffer) else { return nil }
                state = size == 0 ? .trailers : .chunkData(size)
            case .chunkData(let remaining):
                guard buffer.readableBytes > 0 else { return nil }
                let n = min(remaining, buffer.readableBytes)
                state = n == remaining ? .chunkDataEnd : .chunkData(remaining - n)
                return .data(buffer.readSlice(length: n)!)
            case .chunkDataEnd:
                guard try HTTP1Parsing.readChunkEnd(&buffer) else { return nil }
                state = .chunkSize
            case .trailers:
                guard try HTTP1Parsing.readTrailers(&buffer, limit: trailerLimit, trailer) else { return nil }
                state = .fixed(0)
                return .end
            }
        }
    }
}
