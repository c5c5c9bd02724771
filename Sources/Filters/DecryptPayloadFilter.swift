import NIOCore
import NIOHTTP1
import Passport

/// `decrypt_payload`: the app channel's end-to-end encrypted bodies
/// (PROTOCOL 2.4-2.5). Needs `request_signature` earlier in the chain: the
/// keys and the AAD come from the request it verified.
///
/// ```yaml
/// filters:
///   - request_signature: {}
///   - decrypt_payload:
///       required: true          # default true: a request without X-Gw-Encrypted: 1 gets 400 encryption_required
///       encrypt_response: true  # default true: the upstream's answer goes back sealed with K_resp
///       max_body: 1MiB          # the encrypted request body, default the route's limit
///       max_response_body: 10MiB  # the upstream body that can be sealed; larger: 502
/// ```
///
/// The upstream gets the plaintext with `Content-Type` from
/// `X-Gw-Content-Type` (default `application/json`) and its
/// `Content-Length`, and no `X-Gw-*` header. A sealed response carries
/// `X-Gw-Encrypted: 1`, `Content-Type: application/octet-stream` and the
/// upstream's type in `X-Gw-Content-Type`; the upstream is asked for an
/// uncompressed body (its `Accept-Encoding` is removed), so the app decrypts
/// exactly what the service wrote.
public struct DecryptPayloadFilter: Filter {
    public static let name = "decrypt_payload"

    public struct Configuration: Decodable, Sendable {
        var required = true
        var encryptResponse = true
        var maxBody: ConfigSize?
        var maxResponseBody = ConfigSize(bytes: 10 << 20)

        enum CodingKeys: String, CodingKey, CaseIterable {
            case required, encryptResponse = "encrypt_response", maxBody = "max_body", maxResponseBody = "max_response_body"
        }

        public init() {}

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            required = try c.decodeIfPresent(Bool.self, forKey: .required) ?? required
            encryptResponse = try c.decodeIfPresent(Bool.self, forKey: .encryptResponse) ?? encryptResponse
            maxBody = try c.decodeIfPresent(ConfigSize.self, forKey: .maxBody)
            maxResponseBody = try c.decodeIfPresent(ConfigSize.self, forKey: .maxResponseBody) ?? maxResponseBody
        }
    }

    public static let encryptionRequired = GatewayError.rejection("encryption_required", status: .badRequest)
    public static let undecryptable = GatewayError.rejection("undecryptable_payload", status: .badRequest)

    let required: Bool
    let encryptResponse: Bool
    let maxBody: Int?
    let maxResponseBody: Int

    public init(configuration c: Configuration) throws {
        guard c.maxBody.map({ $0.bytes > 0 }) ?? true else { throw FilterConfigurationError("max_body: must be positive") }
        guard c.maxResponseBody.bytes > 0 else { throw FilterConfigurationError("max_response_body: must be positive") }
        required = c.required
        encryptResponse = c.encryptResponse
        // The encrypted body is the plaintext plus 40 bytes.
        maxBody = c.maxBody.map { $0.bytes + XChaCha20Poly1305.nonceBytes + XChaCha20Poly1305.tagBytes }
        maxResponseBody = c.maxResponseBody.bytes
    }

    public var readsAppChannelHeaders: Bool { true }
    public var needsRequestBody: Bool { true }
    public var requiredEarlierFilters: [String] { ["request_signature"] }

    enum EncryptedKey: ExchangeKey { typealias Value = String }

    public func onRequest(_ exchange: Exchange) -> FilterAction {
        let h = Self.channelHeaders(exchange.request.headers)
        guard h.encrypted == 1 && h.marker == "1" else {
            // Absent is the plain channel; anything but one `1` is neither.
            if required || h.encrypted > 0 { return .reject(Self.encryptionRequired) }
            return .next
        }
        guard h.types <= 1 else { return .reject(Self.undecryptable) }
        let type = h.type ?? "application/json"
        guard Self.isMediaType(type) else { return .reject(Self.undecryptable) }
        exchange[EncryptedKey.self] = type
        if let maxBody { exchange.bodyLimit = min(exchange.bodyLimit ?? .max, maxBody) }
        // `remove` copies a shared list even when no field goes: look first.
        if encryptResponse && h.acceptEncoding {
            exchange.request.headers.remove(name: "accept-encoding")
        }
        return .next
    }

    /// `X-Gw-Encrypted` and `X-Gw-Content-Type` (each the last value seen,
    /// and how many fields carried it) and whether there is an
    /// `Accept-Encoding`, in one pass over the headers and without the array
    /// a lookup by name builds.
    struct ChannelHeaders {
        var marker: String?, encrypted = 0
        var type: String?, types = 0
        var acceptEncoding = false
    }

    static func channelHeaders(_ headers: HeaderFields) -> ChannelHeaders {
        // Indices while reading (a loop that keeps values copies every field).
        var found = ChannelHeaders()
        var markerAt = -1, typeAt = -1
        for i in headers.indices {
            let name = headers[i].name
            switch name.utf8.count {
            case 14 where ASCII.equalsLowercase(name, "x-gw-encrypted"):
                markerAt = i
                found.encrypted += 1
            case 17 where ASCII.equalsLowercase(name, "x-gw-content-type"):
                typeAt = i
                found.types += 1
            case 15 where ASCII.equalsLowercase(name, "accept-encoding"):
                found.acceptEncoding = true
            default:
                break
            }
        }
        if markerAt >= 0 { found.marker = headers[markerAt].value }
        if typeAt >= 0 { found.type = headers[typeAt].value }
        return found
    }

    public func onRequestBody(_ exchange: Exchange, _ body: inout ByteBuffer) -> FilterAction {
        guard let contentType = exchange[EncryptedKey.self] else { return .next }
        guard let request = exchange[AppChannelRequestKey.self] else { return .reject(.internalError) }
        if body.readableBytes > 0 {
            let opened = AppChannelCrypto.withRequestAAD(method: request.method, target: request.target, timestamp: request.timestamp,
                                                         nonce: request.nonce) { aad in
                AppChannelCrypto.openRequest(&body, keys: request.keys, aad: aad)
            }
            guard opened else { return .reject(Self.undecryptable) }
            // In place: the proxy's upstream head is this request's own list.
            exchange.request.headers.replace("content-type", with: ("content-type", contentType))
        } else {
            exchange.request.headers.remove(name: "content-type")
        }
        if encryptResponse {
            exchange.responseBodyLimit = maxResponseBody
            // Captures the one object (a closure that holds a single
            // reference needs no context of its own: an allocation less).
            exchange.responseBodyTransform = { [request] status, headers, upstreamBody in
                let sealed = AppChannelCrypto.withResponseAAD(status: Int(status.code), requestNonce: request.nonce) { aad in
                    AppChannelCrypto.sealResponse(upstreamBody, keys: request.keys, aad: aad)
                }
                let sealedType = ("content-type", "application/octet-stream")
                if let upstreamType = headers.first(name: "content-type") {
                    headers.replace("content-type", "x-gw-content-type", "x-gw-encrypted", "content-encoding",
                                    with: sealedType, ("x-gw-content-type", upstreamType), ("x-gw-encrypted", "1"))
                } else {
                    headers.replace("content-type", "x-gw-content-type", "x-gw-encrypted", "content-encoding",
                                    with: sealedType, ("x-gw-encrypted", "1"))
                }
                return sealed
            }
        }
        return .next
    }

    /// `type/subtype` with optional parameters, printable ASCII, at most 256 bytes.
    static func isMediaType(_ value: String) -> Bool {
        ASCII.withUTF8(value) { u in
            guard !u.isEmpty, u.count <= 256 else { return false }
            var slash = -1
            for (i, b) in u.enumerated() {
                guard b >= 0x20 && b < 0x7F else { return false }
                if slash < 0 {
                    if b == UInt8(ascii: "/") { slash = i } else if !HTTPToken.isTokenByte(b) { return false }
                }
            }
            return slash > 0
        }
    }
}
