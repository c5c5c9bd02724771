/// `mtls_authz`: lets a request through only when the caller's client
/// certificate (verified by the listener, or forwarded in a trusted
/// `X-Forwarded-Client-Cert`: the same identity either way) carries an
/// allowed SAN; 403 `forbidden` otherwise (PROTOCOL 3).
///
/// ```yaml
/// filters:
///   - mtls_authz:
///       allow:
///         - uri: spiffe://partners.example/acme          # exact URI SAN
///         - uri_prefix: spiffe://cluster.local/ns/payments/
///         - dns: partner.acme.example                    # exact DNS SAN
///         - dns_prefix: gw-                              # DNS SANs starting with it
/// ```
public struct MTLSAuthzFilter: Filter {
    public static let name = "mtls_authz"

    public struct Rule: Decodable, Sendable, Equatable {
        var uri: String?
        var uriPrefix: String?
        var dns: String?
        var dnsPrefix: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case uri, dns
            case uriPrefix = "uri_prefix", dnsPrefix = "dns_prefix"
        }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            uri = try c.decodeIfPresent(String.self, forKey: .uri)
            uriPrefix = try c.decodeIfPresent(String.self, forKey: .uriPrefix)
            dns = try c.decodeIfPresent(String.self, forKey: .dns)
            dnsPrefix = try c.decodeIfPresent(String.self, forKey: .dnsPrefix)
            // DNS names compare case-insensitively: lowercase the rule once, here.
            dns = dns?.lowercased()
            dnsPrefix = dnsPrefix?.lowercased()
        }

        func allows(_ identity: ClientIdentity) -> Bool {
            if let uri, identity.uris.contains(uri) { return true }
            if let uriPrefix, identity.uris.contains(where: { $0.hasPrefix(uriPrefix) }) { return true }
            if let dns, identity.dnsNames.contains(where: { $0.lowercased() == dns }) { return true }
            if let dnsPrefix, identity.dnsNames.contains(where: { $0.lowercased().hasPrefix(dnsPrefix) }) { return true }
            return false
        }
    }

    public struct Configuration: Decodable, Sendable {
        var allow: [Rule]
        enum CodingKeys: String, CodingKey, CaseIterable { case allow }
        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            allow = try decoder.container(keyedBy: CodingKeys.self).decode([Rule].self, forKey: .allow)
        }
    }

    let rules: [Rule]

    public init(configuration: Configuration) throws {
        guard !configuration.allow.isEmpty else { throw FilterConfigurationError("allow: at least one rule (uri, uri_prefix, dns, dns_prefix)") }
        for (i, rule) in configuration.allow.enumerated() {
            let set = [rule.uri, rule.uriPrefix, rule.dns, rule.dnsPrefix].compactMap { $0 }
            guard set.count == 1 else { throw FilterConfigurationError("allow[\(i)]: exactly one of uri, uri_prefix, dns, dns_prefix") }
            if rule.uriPrefix?.isEmpty == true || rule.dnsPrefix?.isEmpty == true {
                throw FilterConfigurationError("allow[\(i)]: an empty prefix would allow any certificate")
            }
        }
        rules = configuration.allow
    }

    public func onRequest(_ exchange: Exchange) -> FilterAction {
        guard let identity = exchange[ClientIdentityKey.self], rules.contains(where: { $0.allows(identity) }) else {
            return .reject(.forbidden)
        }
        return .next
    }
}
