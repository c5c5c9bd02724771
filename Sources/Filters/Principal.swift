/// Who is calling, as the `authenticate` filter verified it; later filters
/// (`passport`) read it from `exchange[PrincipalKey.self]`.
import Foundation
import Passport

public struct Principal: Sendable, Equatable {
    /// The fields live in one immutable object, so that handing a principal
    /// on (out of the exchange, out of the verification cache, into a
    /// filter) retains one reference instead of each of its strings and
    /// arrays: a request on the app route read it about eight times.
    private final class Storage: Sendable {
        let subject: String?
        let session: String?
        let scopes: [String]
        let method: String
        let expiresAt: Int64?
        let rawClaims: [UInt8]
        let confirmation: [UInt8]?
        let credentialID: String
        let gatewayKeyBinding: String?

        init(subject: String?, session: String?, scopes: [String], method: String, expiresAt: Int64?, rawClaims: [UInt8],
             confirmation: [UInt8]?, credentialID: String, gatewayKeyBinding: String?) {
            self.subject = subject
            self.session = session
            self.scopes = scopes
            self.method = method
            self.expiresAt = expiresAt
            self.rawClaims = rawClaims
            self.confirmation = confirmation
            self.credentialID = credentialID
            self.gatewayKeyBinding = gatewayKeyBinding
        }
    }

    private let storage: Storage

    /// The one object the exchange keeps a principal as (no `Slot` box),
    /// and the principal rebuilt around it; only with an object
    /// `exchangeReference` gave (anything else traps).
    var exchangeReference: AnyObject { storage }
    init(exchangeReference: AnyObject) { storage = exchangeReference as! Storage }

    /// `sub`.
    public var subject: String? { storage.subject }
    /// `sid`, if the credential has one.
    public var session: String? { storage.session }
    /// From `scope` (space-separated) or `scp` (array).
    public var scopes: [String] { storage.scopes }
    /// `jwt` or `introspection` (the passport's `amr`).
    public var method: String { storage.method }
    /// The credential's own expiry, seconds since the epoch.
    public var expiresAt: Int64? { storage.expiresAt }
    /// The claims as the credential carried them (JSON), for filters that need more.
    public var rawClaims: [UInt8] { storage.rawClaims }
    /// `cnf` (RFC 7800), as JSON, when present: what the token is bound to.
    public var confirmation: [UInt8]? { storage.confirmation }
    /// b64u(SHA-256(credential)): a cache key that is not the credential,
    /// computed once when the credential is verified.
    public var credentialID: String { storage.credentialID }
    /// `cnf.gwk`: the app-channel client key (`X-Gw-Client-Key`) the token is
    /// bound to (PROTOCOL 2.3), read once when the credential is verified.
    /// "" when `cnf.gwk` is present but not a string (it then matches no key).
    public var gatewayKeyBinding: String? { storage.gatewayKeyBinding }

    public init(subject: String?, session: String?, scopes: [String], method: String, expiresAt: Int64?, rawClaims: [UInt8],
                confirmation: [UInt8]?, credentialID: String) {
        let binding = confirmation.flatMap { bytes -> String? in
            guard let cnf = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any], let gwk = cnf["gwk"] else { return nil }
            return gwk as? String ?? ""
        }
        storage = Storage(subject: subject, session: session, scopes: scopes, method: method, expiresAt: expiresAt,
                          rawClaims: rawClaims, confirmation: confirmation, credentialID: credentialID, gatewayKeyBinding: binding)
    }

    public static func == (a: Principal, b: Principal) -> Bool {
        a.storage === b.storage
            || (a.subject == b.subject && a.session == b.session && a.scopes == b.scopes && a.method == b.method
                && a.expiresAt == b.expiresAt && a.rawClaims == b.rawClaims && a.confirmation == b.confirmation
                && a.credentialID == b.credentialID && a.gatewayKeyBinding == b.gatewayKeyBinding)
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
