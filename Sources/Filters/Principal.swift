/// Who is calling, as the `authenticate` filter verified it; later filters
/// (`passport`) read it from `exchange[PrincipalKey.self]`.
import Foundation
import Passport

public struct Principal: Sendable, Equatable {
    /// `sub`.
    public var subject: String?
    /// `sid`, if the credential has one.
    public var session: String?
    /// From `scope` (space-separated) or `scp` (array).
    public var scopes: [String]
    /// `jwt` or `introspection` (the passport's `amr`).
    public var method: String
    /// The credential's own expiry, seconds since the epoch.
    public var expiresAt: Int64?
    /// The claims as the credential carried them (JSON), for filters that need more.
    public var rawClaims: [UInt8]
    /// `cnf` (RFC 7800), as JSON, when present: what the token is bound to.
    public var confirmation: [UInt8]?
    /// b64u(SHA-256(credential)): a cache key that is not the credential,
    /// computed once when the credential is verified.
    public var credentialID: String
    /// `cnf.gwk`: the app-channel client key (`X-Gw-Client-Key`) the token is
    /// bound to (PROTOCOL 2.3), read once when the credential is verified.
    /// "" when `cnf.gwk` is present but not a string (it then matches no key).
    public var gatewayKeyBinding: String?

    public init(subject: String?, session: String?, scopes: [String], method: String, expiresAt: Int64?, rawClaims: [UInt8],
                confirmation: [UInt8]?, credentialID: String) {
        self.subject = subject
        self.session = session
        self.scopes = scopes
        self.method = method
        self.expiresAt = expiresAt
        self.rawClaims = rawClaims
        self.confirmation = confirmation
        self.credentialID = credentialID
        self.gatewayKeyBinding = confirmation.flatMap { bytes -> String? in
            guard let cnf = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any], let gwk = cnf["gwk"] else { return nil }
            return gwk as? String ?? ""
        }
    }
}

public enum PrincipalKey: ExchangeKey {
    public typealias Value = Principal
}

extension Principal {
    /// The `credentialID` of a credential.
    public static func credentialID(_ credential: String) -> String {
        Base64URL.encode(Sodium.sha256(Array(credential.utf8)))
    }
}
