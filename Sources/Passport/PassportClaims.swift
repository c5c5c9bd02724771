import Foundation

/// The claims of a Passport (PROTOCOL.md section 1).
public struct PassportClaims: Sendable, Equatable, Codable {
    /// `iss`: the gateway's configured issuer.
    public var issuer: String
    /// `aud`: the upstream the request is routed to.
    public var audience: String
    /// `iat`, `exp`: seconds since the epoch.
    public var issuedAt: Int64
    public var expiresAt: Int64
    /// `jti`: unique per passport.
    public var id: String
    /// `sub`: the user, when one is authenticated.
    public var subject: String?
    /// `sid`: the credential's session, if it has one.
    public var session: String?
    /// `scope`: space-separated scopes or roles.
    public var scope: String?
    /// `amr`: `jwt`, `introspection`, `mtls`, `app_channel`.
    public var methods: [String]
    /// `lvl`: 1 anonymous or unverified transport, 2 verified credential over
    /// TLS, 3 verified credential plus app-channel signature or client certificate.
    public var level: Int
    /// `dev`: from the sanitized device headers.
    public var device: Device?
    /// `cert`: the verified client certificate.
    public var certificate: Certificate?

    public struct Device: Sendable, Equatable, Codable {
        public var id: String?
        public var platform: String?
        public var appVersion: String?

        public init(id: String? = nil, platform: String? = nil, appVersion: String? = nil) {
            self.id = id
            self.platform = platform
            self.appVersion = appVersion
        }

        enum CodingKeys: String, CodingKey { case id, platform, appVersion = "app_version" }
    }

    public struct Certificate: Sendable, Equatable, Codable {
        public var sans: [String]
        public var sha256: String

        public init(sans: [String], sha256: String) {
            self.sans = sans
            self.sha256 = sha256
        }

        enum CodingKeys: String, CodingKey { case sans = "san", sha256 }
    }

    enum CodingKeys: String, CodingKey {
        case issuer = "iss", audience = "aud", issuedAt = "iat", expiresAt = "exp", id = "jti", subject = "sub"
        case session = "sid", scope, methods = "amr", level = "lvl", device = "dev", certificate = "cert"
    }

    public init(issuer: String, audience: String, issuedAt: Int64, expiresAt: Int64, id: String, subject: String? = nil,
                session: String? = nil, scope: String? = nil, methods: [String], level: Int, device: Device? = nil,
                certificate: Certificate? = nil) {
        self.issuer = issuer
        self.audience = audience
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
        self.id = id
        self.subject = subject
        self.session = session
        self.scope = scope
        self.methods = methods
        self.level = level
        self.device = device
        self.certificate = certificate
    }

    /// The claims as minted: compact JSON, members in the order of PROTOCOL 1.
    public func json() -> [UInt8] {
        var w = JSONWriter()
        w.string("iss", issuer)
        w.string("aud", audience)
        w.int("iat", issuedAt)
        w.int("exp", expiresAt)
        w.string("jti", id)
        if let subject { w.string("sub", subject) }
        if let session { w.string("sid", session) }
        if let scope { w.string("scope", scope) }
        w.strings("amr", methods)
        w.int("lvl", Int64(level))
        if let device {
            w.object("dev") { d in
                if let id = device.id { d.string("id", id) }
                if let p = device.platform { d.string("platform", p) }
                if let v = device.appVersion { d.string("app_version", v) }
            }
        }
        if let certificate {
            w.object("cert") { c in
                c.strings("san", certificate.sans)
                c.string("sha256", certificate.sha256)
            }
        }
        return w.finish()
    }
}
