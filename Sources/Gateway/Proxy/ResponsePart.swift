import Filters
import NIOCore
import NIOHTTP1

/// A part of a response on its way to the client. The head is the filters'
/// `ResponseHead` itself, from the upstream's parser to the encoder: NIO's
/// `HTTPResponseHead` allocates a storage object for each response, and the
/// proxy made two per response (the parsed head, the head written), plus a
/// copy of the header list when the first edit found it shared.
enum ResponsePart {
    case head(ResponseHead)
    case body(ByteBuffer)
    case end
}

extension ResponseHead {
    /// A head the gateway writes on its own (100 Continue, its answers).
    static func local(_ status: HTTPResponseStatus, _ headers: HeaderFields = [:]) -> ResponseHead {
        ResponseHead(status: status, headers: headers, isLocal: true)
    }
}
