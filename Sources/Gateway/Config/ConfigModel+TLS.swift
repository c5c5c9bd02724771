import Filters

/// The TLS shapes of `filters.d/*.yaml`: a listener's certificates, client
/// authentication and SNI, trusted XFCC, and an upstream's TLS.

struct TLSConfig: Decodable {
    var cert: String
    var key: String
    /// `none` (default), `optional` (verified when presented) or `require`.
    var clientAuth = "none"
    /// CA certificate files (PEM) client certificates must chain to.
    var clientCA: [String] = []
    /// More certificates, chosen by the server name the client asks for (SNI).
    var sni: [SNICertificateConfig] = []

    enum CodingKeys: String, CodingKey, CaseIterable {
        case cert, key, sni
        case clientAuth = "client_auth", clientCA = "client_ca"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        cert = try c.decode(String.self, forKey: .cert)
        key = try c.decode(String.self, forKey: .key)
        clientAuth = try c.decodeIfPresent(String.self, forKey: .clientAuth) ?? clientAuth
        sni = try c.decodeIfPresent([SNICertificateConfig].self, forKey: .sni) ?? []
        if let one = try? c.decodeIfPresent(String.self, forKey: .clientCA) {
            clientCA = [one]
        } else {
            clientCA = try c.decodeIfPresent([String].self, forKey: .clientCA) ?? []
        }
    }
}

/// One SNI entry: `{server_names: [api.example.com, "*.example.net"], cert, key}`.
struct SNICertificateConfig: Decodable {
    var serverNames: [String]
    var cert: String
    var key: String

    enum CodingKeys: String, CodingKey, CaseIterable { case cert, key, serverNames = "server_names" }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        serverNames = try c.decode([String].self, forKey: .serverNames)
        cert = try c.decode(String.self, forKey: .cert)
        key = try c.decode(String.self, forKey: .key)
    }
}

/// `trust_xfcc: true`, or `trust_xfcc: {from: [10.0.0.0/8, ...]}` to trust
/// `X-Forwarded-Client-Cert` only from those peer addresses.
struct TrustXFCCConfig: Decodable {
    var enabled: Bool
    var from: [String]

    enum CodingKeys: String, CodingKey, CaseIterable { case from }

    init(from decoder: Decoder) throws {
        if let flag = try? decoder.singleValueContainer().decode(Bool.self) {
            enabled = flag
            from = []
            return
        }
        let c = try decoder.strictContainer(CodingKeys.self)
        enabled = true
        from = try c.decode([String].self, forKey: .from)
    }
}

/// `tls:` of an upstream: verify its chain against `ca`, present `cert`/`key`
/// (mTLS), check `server_name` against its DNS names, or its URI SANs
/// against `verify_san` (mesh certificates carry SPIFFE IDs and no DNS name).
struct UpstreamTLSConfig: Decodable {
    var ca: [String] = []
    var cert: String?
    var key: String?
    var serverName: String?
    var verifySAN: [String] = []

    enum CodingKeys: String, CodingKey, CaseIterable {
        case ca, cert, key
        case serverName = "server_name", verifySAN = "verify_san"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        if let one = try? c.decodeIfPresent(String.self, forKey: .ca) { ca = [one] } else {
            ca = try c.decodeIfPresent([String].self, forKey: .ca) ?? []
        }
        cert = try c.decodeIfPresent(String.self, forKey: .cert)
        key = try c.decodeIfPresent(String.self, forKey: .key)
        serverName = try c.decodeIfPresent(String.self, forKey: .serverName)
        verifySAN = try c.decodeIfPresent([String].self, forKey: .verifySAN) ?? []
    }
}
