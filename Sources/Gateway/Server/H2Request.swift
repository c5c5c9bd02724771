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
/// The request head is NIO's translation: `:method`, `:path`, `:scheme` and
/// `:authority` required; `host` from `:authority` when absent; a body
/// without `content-length` on a method that has one marked
/// `transfer-encoding: chunked` (or `content-length: 0` on a HEADERS frame
/// that ends the stream). When `:authority` and `host` disagree (RFC 9113
/// 8.3.1), `:authority` is added as a second `host`, which the proxy refuses
/// (400 `invalid_host`).
enum H2Request {
    struct Malformed: Error, CustomStringConvertible {
        let description: String
    }

    /// A trailer section: the regular fields of a HEADERS frame after the body.
    static func trailers(_ block: HPACKHeaders) -> HTTPHeaders {
        var trailers = HTTPHeaders()
        for (name, value, _) in block where name.utf8.first != UInt8(ascii: ":") {
            trailers.add(name: name, value: value)
        }
        return trailers
    }

    static func head(_ block: HPACKHeaders, endStream: Bool) throws -> HTTPRequestHead {
        var method: String?, path: String?, scheme: String?, authority: String?
        var hasHost = false, hasLength = false
        var hostDisagrees = false
        var regular = 0
        for (name, value, _) in block {
            guard name.utf8.first == UInt8(ascii: ":") else {
                regular += 1
                switch name.utf8.count {
                case 4 where name == "host":
                    hasHost = true
                case 14 where name == "content-length":
                    hasLength = true
                default:
                    break
                }
                continue
            }
            switch name {
            case ":method": method = value
            case ":path": path = value
            case ":scheme": scheme = value
            case ":authority": authority = value
            default: break
            }
        }
        guard let method, let path, scheme != nil, let authority else {
            throw Malformed(description: "a request without :method, :path, :scheme or :authority")
        }
        if hasHost {
            let lowerAuthority = authority.lowercased()
            for value in block["host"] where value.lowercased() != lowerAuthority { hostDisagrees = true }
        }
        var headers: [(String, String)] = []
        headers.reserveCapacity(regular + 2)
        if !hasHost { headers.append(("host", authority)) }
        let httpMethod = HTTPMethod(rawValue: method)
        switch httpMethod {
        case .GET, .HEAD, .DELETE, .CONNECT, .TRACE:
            break
        default:
            if !hasLength { headers.append(endStream ? ("content-length", "0") : ("transfer-encoding", "chunked")) }
        }
        for (name, value, _) in block where name.utf8.first != UInt8(ascii: ":") { headers.append((name, value)) }
        if hostDisagrees { headers.append(("host", authority)) }
        return HTTPRequestHead(version: .http2, method: httpMethod, uri: path, headers: HTTPHeaders(headers))
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
    static func block(_ head: HTTPResponseHead) -> HPACKHeaders? {
        var block = HPACKHeaders()
        block.reserveCapacity(head.headers.count + 1)
        block.add(name: ":status", value: String(head.status.code))
        for (name, value) in head.headers {
            switch name.utf8.count {
            case 10 where ASCII.equalsLowercase(name, "connection") || ASCII.equalsLowercase(name, "keep-alive"),
                 16 where ASCII.equalsLowercase(name, "proxy-connection"),
                 17 where ASCII.equalsLowercase(name, "transfer-encoding"),
                 7 where ASCII.equalsLowercase(name, "upgrade"):
                continue
            default:
                break
            }
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
