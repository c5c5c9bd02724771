import NIOCore
import NIOHTTP1

/// What a filter decides about a request.
///
/// A filter either passes the request on or answers it, and cannot do both.
/// `.suspend` is for filters that really do I/O: the chain resumes with the
/// future's action on the request's event loop. Filters that do no I/O return
/// `.next` or `.respond` synchronously, so a chain of them costs no Task, no
/// future and no thread hop.
public enum FilterAction {
    case next
    case respond(FilterResponse)
    case suspend(EventLoopFuture<FilterAction>)

    /// Answers with the gateway's JSON error for `error`.
    public static func reject(_ error: GatewayError, headers: HeaderFields = [:]) -> FilterAction {
        .respond(FilterResponse(error: error, headers: headers))
    }
}

/// A response produced by a filter (or by the gateway itself) instead of the
/// upstream's.
public struct FilterResponse {
    public var status: HTTPResponseStatus
    public var headers: HeaderFields
    public var body: ByteBuffer?
    /// The error code when this is one of the gateway's errors.
    public var errorCode: String?

    public init(status: HTTPResponseStatus, headers: HeaderFields = [:], body: ByteBuffer? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.errorCode = nil
    }

    /// The body is filled in with the request id when the response is sent:
    /// `{"error":"<code>","request_id":"<id>"}`.
    public init(error: GatewayError, headers: HeaderFields = [:]) {
        self.status = error.status
        self.headers = headers
        self.body = nil
        self.errorCode = error.errorCode
    }
}

/// The response head as it travels back through the response filters, in
/// reverse order of the request filters that passed the request on.
public struct ResponseHead {
    public var status: HTTPResponseStatus
    public var headers: HeaderFields
    /// True when the gateway (a filter or the proxy) produced this response
    /// rather than the upstream.
    public let isLocal: Bool

    public init(status: HTTPResponseStatus, headers: HeaderFields, isLocal: Bool) {
        self.status = status
        self.headers = headers
        self.isLocal = isLocal
    }
}

/// A filter: one Swift file, one YAML key.
///
/// The configuration is decoded from the YAML under `name` and validated in
/// `init(configuration:)` when the config loads, so a mistake fails at load
/// time with the file and key path, never at request time. One instance serves
/// every request of the routes that use it: precompute in `init`.
public protocol Filter: Sendable {
    associatedtype Configuration: Decodable
    /// The YAML key of the filter.
    static var name: String { get }
    init(configuration: Configuration) throws
    /// Filters that need the state folder or the passport keys implement this
    /// one; the default calls `init(configuration:)`.
    init(configuration: Configuration, context: FilterContext) throws
    /// Called for each request, in the route's declared order.
    func onRequest(_ exchange: Exchange) -> FilterAction
    /// Called for each response, gateway errors included, in reverse order,
    /// for every filter whose `onRequest` was reached.
    func onResponse(_ exchange: Exchange, _ response: inout ResponseHead)
    /// Whether this filter reads the app channel's `X-Gw-*` request headers
    /// (PROTOCOL 2.2). On routes where no filter does, the gateway removes
    /// them before any filter runs, so no client can send them to a service.
    var readsAppChannelHeaders: Bool { get }
    /// Whether this filter needs the whole request body (`onRequestBody`).
    /// On routes where one does, the body is buffered up to the route's limit
    /// after every `onRequest` passed, and the upstream gets it with a
    /// `Content-Length`.
    var needsRequestBody: Bool { get }
    /// Called with the whole body, in the route's order, for every filter of
    /// a route that buffers the body (one filter needs it), after all
    /// `onRequest` calls passed; the default does nothing. A filter may replace the
    /// body (decryption); the gateway sets `Content-Length` afterwards.
    func onRequestBody(_ exchange: Exchange, _ body: inout ByteBuffer) -> FilterAction
    /// Names of filters that must come earlier in the same chain (whose
    /// results this one reads); checked when the config loads.
    var requiredEarlierFilters: [String] { get }
}

extension Filter {
    public func onRequest(_ exchange: Exchange) -> FilterAction { .next }
    public func onResponse(_ exchange: Exchange, _ response: inout ResponseHead) {}
    public var readsAppChannelHeaders: Bool { false }
    public var needsRequestBody: Bool { false }
    public func onRequestBody(_ exchange: Exchange, _ body: inout ByteBuffer) -> FilterAction { .next }
    public var requiredEarlierFilters: [String] { [] }

    public init(configuration: Configuration, context: FilterContext) throws {
        try self.init(configuration: configuration)
    }

    /// Builds the filter from its YAML, decoding and validating the
    /// configuration; the context comes from the decoder's `userInfo`.
    public static func make(from decoder: Decoder) throws -> any Filter {
        let configuration = try Configuration(from: decoder)
        let context = decoder.userInfo[FilterContext.userInfoKey] as? FilterContext ?? FilterContext(stateDirectory: ".")
        return try Self(configuration: configuration, context: context)
    }
}

/// Thrown by `init(configuration:)` when a decoded configuration is invalid.
/// The loader adds the file and key path.
public struct FilterConfigurationError: Error, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
