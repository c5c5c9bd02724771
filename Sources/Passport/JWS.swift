import Foundation

/// Why a passport (or any JWS this library reads) was refused. The cases name
/// the check that failed; `description` is safe to log (it never contains the token).
public enum PassportError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case tooLarge
    case unsupportedAlgorithm(String)
    case wrongType(String)
    case unknownKey(String)
    case badSignature
    case wrongAudience
    case expired
    case notYetValid
    case lifetimeTooLong

    public var description: String {
        switch self {
        case .malformed(let why): return "malformed token: \(why)"
        case .tooLarge: return "token too large"
        case .unsupportedAlgorithm(let alg): return "unsupported alg '\(alg)'"
        case .wrongType(let typ): return "unexpected typ '\(typ)'"
        case .unknownKey(let kid): return "unknown kid '\(kid)'"
        case .badSignature: return "bad signature"
        case .wrongAudience: return "wrong audience"
        case .expired: return "expired"
        case .notYetValid: return "issued in the future"
        case .lifetimeTooLong: return "lifetime longer than allowed"
        }
    }
}

/// A JWS in compact serialization (RFC 7515 7.1), split and decoded but not
/// verified.
public struct CompactJWS: Sendable {
    public struct Header: Decodable, Sendable, Equatable {
        public var alg: String
        public var kid: String?
        public var typ: String?
        public var crit: [String]?
    }

    public let header: Header
    /// The decoded payload bytes.
    public let payload: [UInt8]
    public let signature: [UInt8]
    /// `b64u(header) "." b64u(payload)`: the bytes the signature covers.
    public let signingInput: [UInt8]

    /// Splits and decodes `token`. Refuses tokens longer than `maxLength`,
    /// without exactly three parts, with invalid base64url, a header that is
    /// not a JSON object with a string `alg`, or any `crit` header (none is
    /// understood here, so RFC 7515 4.1.11 says refuse).
    public init(_ token: String, maxLength: Int = 8192) throws {
        guard token.utf8.count <= maxLength else { throw PassportError.tooLarge }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3 else { throw PassportError.malformed("not three parts") }
        guard let headerBytes = Base64URL.decode(parts[0]), let payload = Base64URL.decode(parts[1]),
              let signature = Base64URL.decode(parts[2])
        else { throw PassportError.malformed("invalid base64url") }
        let header: Header
        do { header = try JSONDecoder().decode(Header.self, from: Data(headerBytes)) } catch {
            throw PassportError.malformed("header is not a JSON object with a string alg")
        }
        if header.crit != nil { throw PassportError.malformed("crit header not supported") }
        self.header = header
        self.payload = payload
        self.signature = signature
        self.signingInput = Array(token.utf8.prefix(parts[0].utf8.count + 1 + parts[1].utf8.count))
    }
}
