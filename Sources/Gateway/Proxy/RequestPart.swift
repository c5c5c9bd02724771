import Filters
import NIOCore
import NIOHTTP1

/// A part of a request as the proxy reads it from a client (HTTP/1.1 or
/// HTTP/2) and writes it upstream: NIO's `HTTPPart` with `RequestHead` and
/// `HeaderFields` (which NIO's fixes to `HTTPHeaders` for trailers).
enum RequestPart<Body> {
    case head(RequestHead)
    case body(Body)
    case end(HeaderFields?)
}

typealias InboundRequestPart = RequestPart<ByteBuffer>
typealias UpstreamRequestPart = RequestPart<IOData>

extension RequestPart where Body == IOData {
    /// The part in NIO's types, for NIO's codecs (HTTP/2 upstream streams).
    var nio: HTTPClientRequestPart {
        switch self {
        case .head(let h): .head(HTTPRequestHead(version: h.version, method: h.method, uri: h.uri, headers: h.headers.httpHeaders))
        case .body(let b): .body(b)
        case .end(let t): .end(t?.httpHeaders)
        }
    }
}
