import NIOHTTP1

/// The one error type of the gateway: a code that maps to a status and a JSON
/// body, per PROTOCOL.md section 4. The well-known codes are constants; a
/// filter that needs finer codes for one status (the `sanitize` filter's
/// distinct 400s) makes them with `rejection(_:status:)`.
public struct GatewayError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The machine-readable code that goes into the JSON body and metrics.
    public let errorCode: String
    private let statusCode: Int

    private init(_ code: String, _ status: Int) {
        self.errorCode = code
        self.statusCode = status
    }

    public static let noRoute = GatewayError("no_route", 404)
    public static let methodNotAllowed = GatewayError("method_not_allowed", 405)
    public static let headTooLarge = GatewayError("request_header_fields_too_large", 431)
    public static let bodyTooLarge = GatewayError("body_too_large", 413)
    /// Malformed or ambiguous HTTP; the connection is closed after the answer.
    public static let badRequest = GatewayError("bad_request", 400)
    /// A path that has no canonical form (encoded slash, `..` above the root, ...).
    public static let invalidPath = GatewayError("invalid_path", 400)
    /// A `Host` or `:authority` that is not `host[:port]`, or that disagrees with the other.
    public static let invalidHost = GatewayError("invalid_host", 400)
    public static let invalidToken = GatewayError("invalid_token", 401)
    public static let forbidden = GatewayError("forbidden", 403)
    public static let rateLimited = GatewayError("rate_limited", 429)
    public static let upstreamUnavailable = GatewayError("upstream_unavailable", 503)
    public static let upstreamTimeout = GatewayError("upstream_timeout", 504)
    public static let internalError = GatewayError("internal_error", 500)

    /// A rejection with its own code, e.g. `rejection("invalid_json")` for a
    /// 400. Codes are lowercase snake case: they go into metrics labels.
    public static func rejection(_ code: String, status: HTTPResponseStatus = .badRequest) -> GatewayError {
        precondition(!code.isEmpty && code.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || $0 == 95 || ($0 >= 48 && $0 <= 57) },
                     "error codes are lowercase snake case")
        return GatewayError(code, Int(status.code))
    }

    /// The HTTP status PROTOCOL.md assigns to this code.
    public var status: HTTPResponseStatus { HTTPResponseStatus(statusCode: statusCode) }

    public var description: String { "\(statusCode) \(errorCode)" }
}
