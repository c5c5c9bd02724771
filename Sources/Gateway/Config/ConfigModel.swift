import Filters

/// The YAML shapes of `filters.d/*.yaml`. Every struct refuses unknown keys.
/// Each file decodes to a `ConfigFile`; the loader merges them in file-name order.
struct ConfigFile: Decodable {
    var admin: AdminConfig?
    var listeners: [ListenerConfig] = []
    var upstreams: [UpstreamConfig] = []
    var routes: [RouteConfig] = []

    enum CodingKeys: String, CodingKey, CaseIterable { case admin, listeners, upstreams, routes }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        admin = try c.decodeIfPresent(AdminConfig.self, forKey: .admin)
        listeners = try c.decodeIfPresent([ListenerConfig].self, forKey: .listeners) ?? []
        upstreams = try c.decodeIfPresent([UpstreamConfig].self, forKey: .upstreams) ?? []
        routes = try c.decodeIfPresent([RouteConfig].self, forKey: .routes) ?? []
    }
}

struct AdminConfig: Decodable {
    var address: String = "127.0.0.1:9901"

    enum CodingKeys: String, CodingKey, CaseIterable { case address }

    init() {}
    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        address = try c.decodeIfPresent(String.self, forKey: .address) ?? address
    }
}

struct ListenerLimits: Decodable {
    var maxHeadSize = ConfigSize(bytes: 32 << 10)
    var maxHeaders = 100
    var maxBody = ConfigSize(bytes: 10 << 20)
    var headerTimeout = ConfigDuration.seconds(10)
    var idleTimeout = ConfigDuration.seconds(60)
    var sendTimeout = ConfigDuration.seconds(60)
    var clientBodyTimeout = ConfigDuration.seconds(60)
    var maxConcurrentStreams = 100

    enum CodingKeys: String, CodingKey, CaseIterable {
        case maxHeadSize = "max_head_size", maxHeaders = "max_headers", maxBody = "max_body"
        case headerTimeout = "header_timeout", idleTimeout = "idle_timeout", sendTimeout = "send_timeout"
        case clientBodyTimeout = "client_body_timeout"
        case maxConcurrentStreams = "max_concurrent_streams"
    }

    init() {}
    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        maxHeadSize = try c.decodeIfPresent(ConfigSize.self, forKey: .maxHeadSize) ?? maxHeadSize
        maxHeaders = try c.decodeIfPresent(Int.self, forKey: .maxHeaders) ?? maxHeaders
        maxBody = try c.decodeIfPresent(ConfigSize.self, forKey: .maxBody) ?? maxBody
        headerTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .headerTimeout) ?? headerTimeout
        idleTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .idleTimeout) ?? idleTimeout
        sendTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .sendTimeout) ?? sendTimeout
        clientBodyTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .clientBodyTimeout) ?? clientBodyTimeout
        maxConcurrentStreams = try c.decodeIfPresent(Int.self, forKey: .maxConcurrentStreams) ?? maxConcurrentStreams
    }
}

/// A filter entry in a chain: `- name: {configuration}`. Decoding looks the
/// name up in the registry passed in `userInfo` and builds the filter, so a bad
/// filter configuration fails here, with its key path.
struct FilterEntry: Decodable {
    let name: String
    let filter: any Filter

    static let registryKey = CodingUserInfoKey(rawValue: "gateway.filterRegistry")!

    init(from decoder: Decoder) throws {
        guard let registry = decoder.userInfo[Self.registryKey] as? FilterRegistry else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "no filter registry"))
        }
        let c = try decoder.container(keyedBy: AnyCodingKey.self)
        guard c.allKeys.count == 1, let key = c.allKeys.first else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath,
                debugDescription: "a filter entry is a map with exactly one key, the filter's name (e.g. '- headers: {...}')"))
        }
        guard let type = registry.type(named: key.stringValue) else {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath + [key],
                debugDescription: "unknown filter '\(key.stringValue)' (known: \(registry.names.joined(separator: ", ")))"))
        }
        name = key.stringValue
        let sub = try c.superDecoder(forKey: key)
        do {
            filter = try type.make(from: sub)
        } catch let error as FilterConfigurationError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + [key], debugDescription: error.message))
        }
    }
}

struct ListenerConfig: Decodable {
    var name: String
    var address: String
    var tls: TLSConfig?
    var limits = ListenerLimits()
    var filters: [FilterEntry] = []
    var sanitize = ListenerSanitizeConfig()
    /// nil: the default (on for TLS listeners); `false`: off.
    var securityHeaders: SecurityHeadersConfig?
    var trustRequestID = false
    var trustXFCC: TrustXFCCConfig?
    /// `gateway` (default): HTTP/2 by the gateway's own frame layer;
    /// `nio`: by NIOHTTP2's, as before it.
    var http2Engine = "gateway"

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, address, tls, limits, filters, sanitize
        case securityHeaders = "security_headers", trustRequestID = "trust_request_id", trustXFCC = "trust_xfcc"
        case http2Engine = "http2_engine"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        address = try c.decode(String.self, forKey: .address)
        tls = try c.decodeIfPresent(TLSConfig.self, forKey: .tls)
        limits = try c.decodeIfPresent(ListenerLimits.self, forKey: .limits) ?? limits
        filters = try c.decodeIfPresent([FilterEntry].self, forKey: .filters) ?? []
        sanitize = try c.decodeIfPresent(ListenerSanitizeConfig.self, forKey: .sanitize) ?? sanitize
        securityHeaders = try c.decodeIfPresent(SecurityHeadersConfig.self, forKey: .securityHeaders)
        trustRequestID = try c.decodeIfPresent(Bool.self, forKey: .trustRequestID) ?? false
        trustXFCC = try c.decodeIfPresent(TrustXFCCConfig.self, forKey: .trustXFCC)
        http2Engine = try c.decodeIfPresent(String.self, forKey: .http2Engine) ?? http2Engine
    }
}

struct UpstreamConfig: Decodable {
    var name: String
    var endpoints: [String]
    var host: String?
    var tls: UpstreamTLSConfig?
    /// `http1` (default), `h2` (over TLS, ALPN) or `h2c` (cleartext, prior knowledge).
    var protocolName = "http1"
    var connectTimeout = ConfigDuration.seconds(2)
    var responseTimeout = ConfigDuration.seconds(30)
    var bodyTimeout = ConfigDuration.seconds(30)
    var maxConnections = 128
    var keepaliveTimeout = ConfigDuration.seconds(30)

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, endpoints, host, tls
        case protocolName = "protocol"
        case connectTimeout = "connect_timeout", responseTimeout = "response_timeout", bodyTimeout = "body_timeout"
        case maxConnections = "max_connections", keepaliveTimeout = "keepalive_timeout"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        endpoints = try c.decode([String].self, forKey: .endpoints)
        host = try c.decodeIfPresent(String.self, forKey: .host)
        connectTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .connectTimeout) ?? connectTimeout
        responseTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .responseTimeout) ?? responseTimeout
        bodyTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .bodyTimeout) ?? bodyTimeout
        maxConnections = try c.decodeIfPresent(Int.self, forKey: .maxConnections) ?? maxConnections
        keepaliveTimeout = try c.decodeIfPresent(ConfigDuration.self, forKey: .keepaliveTimeout) ?? keepaliveTimeout
        tls = try c.decodeIfPresent(UpstreamTLSConfig.self, forKey: .tls)
        protocolName = try c.decodeIfPresent(String.self, forKey: .protocolName) ?? protocolName
    }
}

/// `name: {exact|regex|present}` for header and query predicates.
struct ValueMatchConfig: Decodable {
    var name: String
    var exact: String?
    var regex: String?
    var present: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable { case name, exact, regex, present }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        exact = try c.decodeIfPresent(String.self, forKey: .exact)
        regex = try c.decodeIfPresent(String.self, forKey: .regex)
        present = try c.decodeIfPresent(Bool.self, forKey: .present)
    }
}

struct MatchConfig: Decodable {
    var host: [String]?
    var path: String?
    var pathPrefix: String?
    var pathTemplate: String?
    var pathRegex: String?
    var methods: [String]?
    var headers: [ValueMatchConfig] = []
    var query: [ValueMatchConfig] = []

    enum CodingKeys: String, CodingKey, CaseIterable {
        case host, path, methods, headers, query
        case pathPrefix = "path_prefix", pathTemplate = "path_template", pathRegex = "path_regex"
    }

    init() {}
    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        if let one = try? c.decodeIfPresent(String.self, forKey: .host) {
            host = [one]
        } else {
            host = try c.decodeIfPresent([String].self, forKey: .host)
        }
        path = try c.decodeIfPresent(String.self, forKey: .path)
        pathPrefix = try c.decodeIfPresent(String.self, forKey: .pathPrefix)
        pathTemplate = try c.decodeIfPresent(String.self, forKey: .pathTemplate)
        pathRegex = try c.decodeIfPresent(String.self, forKey: .pathRegex)
        methods = try c.decodeIfPresent([String].self, forKey: .methods)
        headers = try c.decodeIfPresent([ValueMatchConfig].self, forKey: .headers) ?? []
        query = try c.decodeIfPresent([ValueMatchConfig].self, forKey: .query) ?? []
    }
}

struct RegexRewriteConfig: Decodable {
    var pattern: String
    var substitution: String

    enum CodingKeys: String, CodingKey, CaseIterable { case pattern, substitution }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        pattern = try c.decode(String.self, forKey: .pattern)
        substitution = try c.decode(String.self, forKey: .substitution)
    }
}

struct RewriteConfig: Decodable {
    var stripPrefix: String?
    var replacePrefix: String?
    var regex: RegexRewriteConfig?
    var host: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case stripPrefix = "strip_prefix", replacePrefix = "replace_prefix", regex, host
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        stripPrefix = try c.decodeIfPresent(String.self, forKey: .stripPrefix)
        replacePrefix = try c.decodeIfPresent(String.self, forKey: .replacePrefix)
        regex = try c.decodeIfPresent(RegexRewriteConfig.self, forKey: .regex)
        host = try c.decodeIfPresent(String.self, forKey: .host)
    }
}

struct WeightedUpstreamConfig: Decodable {
    var name: String
    var weight: Int

    enum CodingKeys: String, CodingKey, CaseIterable { case name, weight }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        weight = try c.decode(Int.self, forKey: .weight)
    }
}

struct ForceUpstreamConfig: Decodable {
    var header: String
    var values: [String: String]

    enum CodingKeys: String, CodingKey, CaseIterable { case header, values }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        header = try c.decode(String.self, forKey: .header)
        values = try c.decode([String: String].self, forKey: .values)
    }
}

struct RouteTestRequest: Decodable {
    var method = "GET"
    var host: String?
    var path: String
    var headers: [String: String] = [:]

    enum CodingKeys: String, CodingKey, CaseIterable { case method, host, path, headers }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        method = try c.decodeIfPresent(String.self, forKey: .method) ?? method
        host = try c.decodeIfPresent(String.self, forKey: .host)
        path = try c.decode(String.self, forKey: .path)
        headers = try c.decodeIfPresent([String: String].self, forKey: .headers) ?? [:]
    }
}

struct RouteTestExpect: Decodable {
    var route: String?
    var path: String?
    var upstream: String?
    var host: String?
    var status: Int?

    enum CodingKeys: String, CodingKey, CaseIterable { case route, path, upstream, host, status }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        route = try c.decodeIfPresent(String.self, forKey: .route)
        path = try c.decodeIfPresent(String.self, forKey: .path)
        upstream = try c.decodeIfPresent(String.self, forKey: .upstream)
        host = try c.decodeIfPresent(String.self, forKey: .host)
        status = try c.decodeIfPresent(Int.self, forKey: .status)
    }
}

struct RouteTestConfig: Decodable {
    var request: RouteTestRequest
    var expect: RouteTestExpect

    enum CodingKeys: String, CodingKey, CaseIterable { case request, expect }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        request = try c.decode(RouteTestRequest.self, forKey: .request)
        expect = try c.decode(RouteTestExpect.self, forKey: .expect)
    }
}

struct RouteConfig: Decodable {
    var name: String
    var listener: String
    var match = MatchConfig()
    var rewrite: RewriteConfig?
    var upstream: String?
    var upstreams: [WeightedUpstreamConfig]?
    var forceUpstream: ForceUpstreamConfig?
    var filters: [FilterEntry] = []
    var disabledFilters: [String] = []
    var maxBody: ConfigSize?
    var preserveHost = false
    var allowTrailers = false
    var tests: [RouteTestConfig] = []

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, listener, match, rewrite, upstream, upstreams, filters, tests
        case forceUpstream = "force_upstream", disabledFilters = "disabled_filters"
        case maxBody = "max_body", preserveHost = "preserve_host", allowTrailers = "allow_trailers"
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.strictContainer(CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        listener = try c.decode(String.self, forKey: .listener)
        match = try c.decodeIfPresent(MatchConfig.self, forKey: .match) ?? match
        rewrite = try c.decodeIfPresent(RewriteConfig.self, forKey: .rewrite)
        upstream = try c.decodeIfPresent(String.self, forKey: .upstream)
        upstreams = try c.decodeIfPresent([WeightedUpstreamConfig].self, forKey: .upstreams)
        forceUpstream = try c.decodeIfPresent(ForceUpstreamConfig.self, forKey: .forceUpstream)
        filters = try c.decodeIfPresent([FilterEntry].self, forKey: .filters) ?? []
        disabledFilters = try c.decodeIfPresent([String].self, forKey: .disabledFilters) ?? []
        maxBody = try c.decodeIfPresent(ConfigSize.self, forKey: .maxBody)
        preserveHost = try c.decodeIfPresent(Bool.self, forKey: .preserveHost) ?? false
        allowTrailers = try c.decodeIfPresent(Bool.self, forKey: .allowTrailers) ?? false
        tests = try c.decodeIfPresent([RouteTestConfig].self, forKey: .tests) ?? []
    }
}
