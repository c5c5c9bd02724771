import NIOHTTP1

/// The one error type of the gateway: a code that maps to a status and a JSON
/// body, per PROTOCOL.md section 4. A struct around a private enum, so codes can
/// be added without breaking anybody who switches over them.
public struct GatewayError: Error, Hashable, Sendable, CustomStringConvertible {
    private enum Code: String, Hashable, Sendable {
        case noRoute = "no_route"
        case methodNotAllowed = "method_not_allowed"
        case headTooLarge = "request_header_fields_too_large"
        case bodyTooLarge = "body_too_large"
        case badRequest = "bad_request"
        case invalidToken = "invalid_token"
        case forbidden = "forbidden"
        case rateLimited = "rate_limited"
        case upstreamUnavailable = "upstream_unavailable"
        case upstreamTimeout = "upstream_timeout"
        case internalError = "internal_error"
    }

    private let code: Code

    public static let noRoute = GatewayError(code: .noRoute)
    public static let methodNotAllowed = GatewayError(code: .methodNotAllowed)
    public static let headTooLarge = GatewayError(code: .headTooLarge)
    public static let bodyTooLarge = GatewayError(code: .bodyTooLarge)
    public static let badRequest = GatewayError(code: .badRequest)
    public static let invalidToken = GatewayError(code: .invalidToken)
    public static let forbidden = GatewayError(code: .forbidden)
    public static let rateLimited = GatewayError(code: .rateLimited)
    public static let upstreamUnavailable = GatewayError(code: .upstreamUnavailable)
    public static let upstreamTimeout = GatewayError(code: .upstreamTimeout)
    public static let internalError = GatewayError(code: .internalError)

    /// The machine-readable code that goes into the JSON body and metrics.
    public var errorCode: String { code.rawValue }

    /// The HTTP status PROTOCOL.md assigns to this code.
    public var status: HTTPResponseStatus {
        switch code {
        case .noRoute: return .notFound
        case .methodNotAllowed: return .methodNotAllowed
        case .headTooLarge: return .requestHeaderFieldsTooLarge
        case .bodyTooLarge: return .payloadTooLarge
        case .badRequest: return .badRequest
        case .invalidToken: return .unauthorized
        case .forbidden: return .forbidden
        case .rateLimited: return .tooManyRequests
        case .upstreamUnavailable: return .serviceUnavailable
        case .upstreamTimeout: return .gatewayTimeout
        case .internalError: return .internalServerError
        }
    }

    public var description: String { "\(status.code) \(errorCode)" }
}
