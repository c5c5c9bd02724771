/// What the protocol-level sanitizing of a listener removes and how it
/// canonicalizes paths. The rest of it (framing, header syntax, owned
/// headers) is always on.
struct ListenerSanitizeConfig: Decodable {
    /// Client headers removed before routing and filters; `x-internal-*` is a prefix.
    var stripRequestHeaders: [String] = []
    /// Upstream response headers removed before the client sees them.
    var stripResponseHeaders: [String] = []
    var duplicateSlashes = "reject"
    var allowSemicolons = false

    enum CodingKeys: String, CodingKey, CaseIterable {
        case stripRequestHeaders = "strip_request_headers", stripResponseHeaders = "strip_response_headers"
        case duplicateSlashes = "duplicate_slashes", allowSemicolons = "allow_semicolons"
    }

    init() {}
    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        stripRequestHeaders = try c.decodeIfPresent([String].self, forKey: .stripRequestHeaders) ?? []
        stripResponseHeaders = try c.decodeIfPresent([String].self, forKey: .stripResponseHeaders) ?? []
        duplicateSlashes = try c.decodeIfPresent(String.self, forKey: .duplicateSlashes) ?? duplicateSlashes
        allowSemicolons = try c.decodeIfPresent(Bool.self, forKey: .allowSemicolons) ?? false
    }
}

/// `security_headers: false`, or a map of the headers added to every response.
struct SecurityHeadersConfig: Decodable {
    var enabled = true
    var hsts: String? = SecurityHeadersConfig.defaultHSTS
    var contentTypeOptions = true

    static let defaultHSTS = "max-age=31536000; includeSubDomains"

    enum CodingKeys: String, CodingKey, CaseIterable { case hsts, contentTypeOptions = "content_type_options" }

    init(enabled: Bool) { self.enabled = enabled }
    init(from decoder: Decoder) throws {
        if let flag = try? decoder.singleValueContainer().decode(Bool.self) {
            enabled = flag
            return
        }
        let c = try decoder.strictContainer(CodingKeys.self)
        // `hsts: false` turns HSTS off alone.
        if let flag = try? c.decodeIfPresent(Bool.self, forKey: .hsts) {
            hsts = flag ? Self.defaultHSTS : nil
        } else {
            hsts = try c.decodeIfPresent(String.self, forKey: .hsts) ?? hsts
        }
        contentTypeOptions = try c.decodeIfPresent(Bool.self, forKey: .contentTypeOptions) ?? true
    }
}
