import Filters
import NIOCore
import NIOHPACK
import NIOHTTP1
import NIOHTTP2

/// The request side of an HTTP/2 stream as HTTP/1 request parts for
/// `ProxyHandler`: the head from the first HEADERS frame, trailers from a
/// second (`H2Connection` reads the frames and hands each stream's to its
/// handler).
///
/// The header blocks are checked here, in the pass that reads them
/// (NIOHTTP2's own check is off: it walked every block a second time, the
/// response blocks too, which `H2ResponseHead` checks already). A block that
/// breaks RFC 9113 8.2 or 8.3 is malformed and its stream is reset with
/// PROTOCOL_ERROR before any request exists:
/// - names: one or more token characters, no uppercase; pseudo-header
///   names only `:method`, `:scheme`, `:authority` and `:path`, each once,
///   all before the first regular field (none in trailers);
/// - values: no control characters but HTAB (the HTTP/1.1 parser's rule; RFC
///   9113 requires no NUL, CR or LF); pseudo-header values no space either;
/// - no connection-specific field (`connection`, `keep-alive`,
///   `proxy-connection`, `transfer-encoding`, `upgrade`), and `te` only as
///   `trailers`;
/// - `:method`, `:scheme` and a non-empty `:path` present, except on
///   CONNECT, which has `:method` and `:authority` only.
///
/// Well-formed blocks without an HTTP/1 form are answered 400 instead: a
/// CONNECT (the gateway does not tunnel), a request without `:authority`.
///
/// The request head is NIO's translation: `host` from `:authority` when
/// absent; a body without `content-length` on a method that has one marked
/// `transfer-encoding: chunked` (or `content-length: 0` on a HEADERS frame
/// that ends the stream). When `:authority` and `host` disagree (RFC 9113
/// 8.3.1), `:authority` is added as a second `host`, which the proxy refuses
/// (400 `invalid_host`).
enum H2Request {
    struct Malformed: Error, CustomStringConvertible {
        /// Whether the block breaks HTTP/2 itself (the stream is reset),
        /// rather than only having no HTTP/1 form (400).
        let reset: Bool
        let description: String
    }

    /// A trailer section: the regular fields of a HEADERS frame after the body.
    static func trailers(_ block: HPACKHeaders) throws -> HeaderFields {
        var trailers = HeaderFields()
        for (name, value, _) in block {
            guard name.utf8.first != UInt8(ascii: ":") else { throw Malformed(reset: true, description: "a pseudo-header in trailers") }
            try checkField(name, value)
            trailers.add(name: name, value: value)
        }
        return trailers
    }

    static func head(_ block: HPACKHeaders, endStream: Bool) throws -> RequestHead {
        var method: String?, path: String?, scheme: String?, authority: String?
        var hosts: [String] = []
        var hasLength = false
        var headers: [(name: String, value: String)] = []
        headers.reserveCapacity(block.count + 1)
        for (name, value, _) in block {
            guard name.utf8.first == UInt8(ascii: ":") else {
                try checkField(name, value)
                switch name.utf8.count {
                case 4 where name == "host":
                    hosts.append(value)
                case 14 where name == "content-length":
                    hasLength = true
                default:
                    break
                }
                headers.append((name, value))
                continue
            }
            guard headers.isEmpty else { throw Malformed(reset: true, description: "a pseudo-header after a regular field") }
            guard ASCII.allBytes(value, { $0 > 0x20 && $0 != 0x7F }) else {
                throw Malformed(reset: true, description: "a pseudo-header value with a space or a control character")
            }
            func once(_ field: inout String?) throws {
                guard field == nil else { throw Malformed(reset: true, description: "a repeated pseudo-header") }
                field = value
            }
            switch name {
            case ":method": try once(&method)
            case ":path": try once(&path)
            case ":scheme": try once(&scheme)
            case ":authority": try once(&authority)
            default: throw Malformed(reset: true, description: "an unknown pseudo-header")
            }
        }
        guard let method else { throw Malformed(reset: true, description: "a request without :method") }
        if method == "CONNECT" {
            guard scheme == nil, path == nil, authority != nil else {
                throw Malformed(reset: true, description: "a CONNECT request with :scheme or :path, or without :authority")
            }
            throw Malformed(reset: false, description: "a CONNECT request")
        }
        guard let path, !path.isEmpty, scheme != nil else {
            throw Malformed(reset: true, description: "a request without :scheme or a non-empty :path")
        }
        guard let authority else { throw Malformed(reset: false, description: "a request without :authority") }
        var synthesized: [(name: String, value: String)] = []
        if hosts.isEmpty { synthesized.append(("host", authority)) }
        let httpMethod = HTTPMethod(rawValue: method)
        switch httpMethod {
        case .GET, .HEAD, .DELETE, .CONNECT, .TRACE:
            break
        default:
            if !hasLength { synthesized.append(endStream ? ("content-length", "0") : ("transfer-encoding", "chunked")) }
        }
        if !synthesized.isEmpty { headers.insert(contentsOf: synthesized, at: 0) }
        if !hosts.isEmpty {
            let lowerAuthority = authority.lowercased()
            if hosts.contains(where: { $0.lowercased() != lowerAuthority }) { headers.append(("host", authority)) }
        }
        return RequestHead(version: .http2, method: httpMethod, uri: path, headers: HeaderFields(fields: headers))
    }

    /// A regular field of a request or trailer block (RFC 9113 8.2.1, 8.2.2).
    private static func checkField(_ name: String, _ value: String) throws {
        // Over the name's bytes where they lie (`allSatisfy` over the
        // `UTF8View` costs about ten instructions a byte).
        guard !name.isEmpty, ASCII.allBytes(name, { HTTPToken.isTokenByte($0) && !($0 >= 0x41 && $0 <= 0x5A) }) else {
            throw Malformed(reset: true, description: "a field name with an uppercase letter or a character outside a token")
        }
        guard HTTPToken.isValidFieldValue(value) else {
            throw Malformed(reset: true, description: "a field value with a control character")
        }
        switch name.utf8.count {
        case 2 where name == "te":
            guard value == "trailers" else { throw Malformed(reset: true, description: "te other than trailers") }
        case 7 where name == "upgrade",
             10 where name == "connection" || name == "keep-alive",
             16 where name == "proxy-connection",
             17 where name == "transfer-encoding":
            throw Malformed(reset: true, description: "a connection-specific field")
        default:
            break
        }
    }
}

/// The response side: a response head as an HTTP/2 header block, names
/// lowercased (without a copy when they already are) and the
/// connection-specific fields HTTP/2 forbids left out. `x-request-id`,
/// different on every response, is not entered in the connection's HPACK
/// table (it would only push out entries worth keeping), and `set-cookie` is
/// never indexed (RFC 7541 7.1.3). Nil when a field could not be sent (a
/// name that is not a token, a value with a control character), as the
/// HTTP/1.1 encoder refuses it.
enum H2ResponseHead {
    /// A field HTTP/2 forbids (RFC 9113 8.2.2), left out of response blocks.
    @inline(__always)
    static func isConnectionSpecific(_ name: String) -> Bool {
        switch name.utf8.count {
        case 10: return ASCII.equalsLowercase(name, "connection") || ASCII.equalsLowercase(name, "keep-alive")
        case 16: return ASCII.equalsLowercase(name, "proxy-connection")
        case 17: return ASCII.equalsLowercase(name, "transfer-encoding")
        case 7: return ASCII.equalsLowercase(name, "upgrade")
        default: return false
        }
    }

    static func block(_ head: ResponseHead) -> HPACKHeaders? {
        var block = HPACKHeaders()
        block.reserveCapacity(head.headers.count + 1)
        block.add(name: ":status", value: String(head.status.code))
        for (name, value) in head.headers {
            if isConnectionSpecific(name) { continue }
            guard HTTPToken.isValidName(name), HTTPToken.isValidFieldValue(value) else { return nil }
            let indexing: HPACKIndexing
            switch name.utf8.count {
            case 12 where ASCII.equalsLowercase(name, "x-request-id"): indexing = .nonIndexable
            case 10 where ASCII.equalsLowercase(name, "set-cookie"): indexing = .neverIndexed
            default: indexing = .indexable
            }
            block.add(name: name.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) ? name.lowercased() : name, value: value,
                      indexing: indexing)
        }
        return block
    }
}
