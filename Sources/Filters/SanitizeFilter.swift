import NIOCore
import NIOHTTP1

/// `sanitize`: the per-route rules of request sanitizing, on top of the
/// protocol-level checks every listener always makes.
///
/// ```yaml
/// filters:
///   - sanitize:
///       methods: [GET, POST]               # others: 400 method_rejected
///       content_types: [application/json]  # a body of another media type (or none): 400 content_type_rejected
///       headers:
///         deny: [x-debug, "x-admin-*"]     # present: 400 header_denied
///         allow: [accept, content-type]    # set: any other client header is 400 header_not_allowed
///       query:
///         deny: [debug]                    # present: 400 query_param_denied
///         allow: [page, limit, sort]       # set: any other parameter is 400 query_param_not_allowed
///       params:                            # rules per query parameter
///         limit: {type: int, min: 1, max: 100, out_of_range: clamp}  # or reject (default): 400 param_out_of_range
///         sort: {enum: [asc, desc]}
///         q: {pattern: "^[a-z ]{1,64}$", required: true}  # missing: 400 param_missing
///       max_body: 64KiB                    # bigger: 413 body_too_large (declared or streamed)
///       json: {max_depth: 32}              # non-empty bodies must be JSON: 400 invalid_json, json_too_deep
/// ```
///
/// Names compare ASCII case-insensitively for headers and exactly for query
/// parameters, after percent-decoding (`%64ebug` is `debug`). A parameter
/// with a rule may appear once (`limit=1&limit=1000` is 400
/// `param_invalid`): two parsers must not pick different values. `type` is
/// `int`, `number`, `bool`, `uuid` or `string` (default); `min`/`max` bound
/// numbers; `max_length` bounds strings (default 256); `pattern` must match
/// the whole decoded value. With `headers.allow`, `host`, `content-length`,
/// `transfer-encoding` and the headers the gateway sets itself are always
/// allowed. Every failure is its own code, counted by route in
/// `gateway_rejections_total`.
public struct SanitizeFilter: Filter {
    public static let name = "sanitize"

    public struct Configuration: Decodable, Sendable {
        var methods: [String]?
        var contentTypes: [String]?
        var headers: NameLists?
        var query: NameLists?
        var params: [String: ParamRule] = [:]
        var maxBody: ConfigSize?
        var json: JSONRule?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case methods, headers, query, params, json
            case contentTypes = "content_types", maxBody = "max_body"
        }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            methods = try c.decodeIfPresent([String].self, forKey: .methods)
            contentTypes = try c.decodeIfPresent([String].self, forKey: .contentTypes)
            headers = try c.decodeIfPresent(NameLists.self, forKey: .headers)
            query = try c.decodeIfPresent(NameLists.self, forKey: .query)
            params = try c.decodeIfPresent([String: ParamRule].self, forKey: .params) ?? [:]
            maxBody = try c.decodeIfPresent(ConfigSize.self, forKey: .maxBody)
            json = try c.decodeIfPresent(JSONRule.self, forKey: .json)
        }
    }

    struct NameLists: Decodable, Sendable {
        var allow: [String]?
        var deny: [String] = []

        enum CodingKeys: String, CodingKey, CaseIterable { case allow, deny }

        init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            allow = try c.decodeIfPresent([String].self, forKey: .allow)
            deny = try c.decodeIfPresent([String].self, forKey: .deny) ?? []
        }
    }

    struct ParamRule: Decodable, Sendable {
        var type = "string"
        var min: Double?
        var max: Double?
        var outOfRange = "reject"
        var pattern: String?
        var enumValues: [String]?
        var maxLength = 256
        var required = false

        enum CodingKeys: String, CodingKey, CaseIterable {
            case type, min, max, pattern, required
            case outOfRange = "out_of_range", enumValues = "enum", maxLength = "max_length"
        }

        init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            type = try c.decodeIfPresent(String.self, forKey: .type) ?? type
            min = try c.decodeIfPresent(Double.self, forKey: .min)
            max = try c.decodeIfPresent(Double.self, forKey: .max)
            outOfRange = try c.decodeIfPresent(String.self, forKey: .outOfRange) ?? outOfRange
            pattern = try c.decodeIfPresent(String.self, forKey: .pattern)
            enumValues = try c.decodeIfPresent([String].self, forKey: .enumValues)
            maxLength = try c.decodeIfPresent(Int.self, forKey: .maxLength) ?? maxLength
            required = try c.decodeIfPresent(Bool.self, forKey: .required) ?? false
        }
    }

    struct JSONRule: Decodable, Sendable {
        var maxDepth = 32

        enum CodingKeys: String, CodingKey, CaseIterable { case maxDepth = "max_depth" }

        init(from decoder: Decoder) throws {
            if let on = try? decoder.singleValueContainer().decode(Bool.self) {
                guard on else { throw FilterConfigurationError("json: false is the default; omit the key") }
                return
            }
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            maxDepth = try c.decodeIfPresent(Int.self, forKey: .maxDepth) ?? maxDepth
        }
    }

    // MARK: - Compiled rules

    enum ValueType: String, Sendable { case string, int, number, bool, uuid }

    struct CompiledParam: @unchecked Sendable {
        let name: String
        let type: ValueType
        let min: Double?
        let max: Double?
        let clamp: Bool
        let pattern: Regex<AnyRegexOutput>?
        let enumValues: Set<String>?
        let maxLength: Int
        let required: Bool
    }

    static let rejectedMethod = GatewayError.rejection("method_rejected")
    static let rejectedContentType = GatewayError.rejection("content_type_rejected")
    static let deniedHeader = GatewayError.rejection("header_denied")
    static let headerNotAllowed = GatewayError.rejection("header_not_allowed")
    static let deniedParam = GatewayError.rejection("query_param_denied")
    static let paramNotAllowed = GatewayError.rejection("query_param_not_allowed")
    static let paramMissing = GatewayError.rejection("param_missing")
    static let paramInvalid = GatewayError.rejection("param_invalid")
    static let paramOutOfRange = GatewayError.rejection("param_out_of_range")
    static let invalidJSON = GatewayError.rejection("invalid_json")
    static let jsonTooDeep = GatewayError.rejection("json_too_deep")

    /// The allowed methods, uppercase, each once: a list (a handful),
    /// compared in turn (cheaper than hashing the method for a set).
    let methods: [String]?
    let contentTypes: Set<String>?
    let headerDeny: HeaderNameSet
    let headerAllow: HeaderNameSet?
    let queryDeny: Set<String>
    let queryAllow: Set<String>?
    let params: [CompiledParam]
    let maxBody: Int?
    let json: JSONValidator?
    /// Whether the query needs looking at, decided once.
    let checksQuery: Bool
    /// Whether header names are checked (a deny or an allow list), decided once.
    let checksHeaderNames: Bool
    /// Whether some parameter is required (then a request without a query is refused), decided once.
    let requiresParam: Bool

    /// Headers a client may always send past `headers.allow`, and those the
    /// gateway itself adds before filters run.
    static let alwaysAllowed = ["host", "content-length", "transfer-encoding", "x-request-id", "x-forwarded-for",
                                "x-forwarded-proto", "x-forwarded-host"]

    public init(configuration c: Configuration) throws {
        if let ms = c.methods {
            guard !ms.isEmpty else { throw FilterConfigurationError("methods: an empty list refuses every request; omit the key to allow all") }
            for m in ms where m.isEmpty || !m.utf8.allSatisfy(HTTPToken.isTokenByte) {
                throw FilterConfigurationError("methods: '\(m)' is not an HTTP method")
            }
            var unique: [String] = []
            for m in ms.map({ $0.uppercased() }) where !unique.contains(m) { unique.append(m) }
            methods = unique
        } else {
            methods = nil
        }
        if let types = c.contentTypes {
            guard !types.isEmpty else { throw FilterConfigurationError("content_types: an empty list refuses every body; omit the key to allow all") }
            for t in types where t.split(separator: "/").count != 2 || t.contains(";") {
                throw FilterConfigurationError("content_types: '\(t)' is not a media type like application/json (no parameters)")
            }
            contentTypes = Set(types.map { $0.lowercased() })
        } else {
            contentTypes = nil
        }
        for name in (c.headers?.deny ?? []) + (c.headers?.allow ?? []) where !HeaderNameSet.isValidPattern(name) {
            throw FilterConfigurationError("headers: '\(name)' is not a header name (a trailing '*' makes it a prefix)")
        }
        headerDeny = HeaderNameSet(c.headers?.deny ?? [])
        headerAllow = c.headers?.allow.map { HeaderNameSet($0 + Self.alwaysAllowed) }
        queryDeny = Set(c.query?.deny ?? [])
        queryAllow = c.query?.allow.map { Set($0).union(c.params.keys) }
        var params: [CompiledParam] = []
        for (name, r) in c.params.sorted(by: { $0.key < $1.key }) {
            guard let type = ValueType(rawValue: r.type) else {
                throw FilterConfigurationError("params.\(name).type: '\(r.type)' is not one of string, int, number, bool, uuid")
            }
            guard r.outOfRange == "reject" || r.outOfRange == "clamp" else {
                throw FilterConfigurationError("params.\(name).out_of_range: '\(r.outOfRange)' is not reject or clamp")
            }
            if (r.min != nil || r.max != nil) && type != .int && type != .number {
                throw FilterConfigurationError("params.\(name): min and max need type int or number")
            }
            if let lo = r.min, let hi = r.max, lo > hi { throw FilterConfigurationError("params.\(name): min is above max") }
            if r.outOfRange == "clamp" && r.min == nil && r.max == nil {
                throw FilterConfigurationError("params.\(name).out_of_range: clamp needs min or max")
            }
            guard r.maxLength > 0 else { throw FilterConfigurationError("params.\(name).max_length: must be positive") }
            var regex: Regex<AnyRegexOutput>?
            if let p = r.pattern {
                do { regex = try Regex(p) } catch { throw FilterConfigurationError("params.\(name).pattern: invalid regex '\(p)': \(error)") }
            }
            if c.query?.deny.contains(name) == true {
                throw FilterConfigurationError("params.\(name): the parameter is also in query.deny")
            }
            params.append(CompiledParam(name: name, type: type, min: r.min, max: r.max, clamp: r.outOfRange == "clamp",
                                        pattern: regex, enumValues: r.enumValues.map(Set.init), maxLength: r.maxLength,
                                        required: r.required))
        }
        self.params = params
        if let size = c.maxBody, size.bytes < 0 { throw FilterConfigurationError("max_body: must not be negative") }
        maxBody = c.maxBody?.bytes
        if let j = c.json {
            guard j.maxDepth >= 1 && j.maxDepth <= 512 else { throw FilterConfigurationError("json.max_depth: must be between 1 and 512") }
            json = JSONValidator(maxDepth: j.maxDepth)
        } else {
            json = nil
        }
        checksQuery = !queryDeny.isEmpty || queryAllow != nil || !params.isEmpty
        checksHeaderNames = !headerDeny.isEmpty || headerAllow != nil
        requiresParam = params.contains(where: \.required)
    }

    public var needsRequestBody: Bool { json != nil }

    public func onRequest(_ exchange: Exchange) -> FilterAction {
        if let methods, !methods.contains(exchange.request.method.rawValue) { return .reject(Self.rejectedMethod) }
        let h = scan(exchange.request.headers)
        let length = h.length.flatMap { Int($0) }
        let hasBody = (length ?? 0) > 0 || h.transferEncoding
        if let maxBody {
            if let length, length > maxBody { return .reject(.bodyTooLarge) }
            exchange.bodyLimit = min(exchange.bodyLimit ?? .max, maxBody)
        }
        if let contentTypes, hasBody {
            guard let type = h.contentType, contentTypes.contains(Self.mediaType(type)) else {
                return .reject(Self.rejectedContentType)
            }
        }
        if let refused = h.refusedName { return .reject(refused) }
        if checksQuery { return checkQuery(exchange) }
        return .next
    }

    /// What `onRequest` needs of the headers, in one pass: the first
    /// `Content-Length` and `Content-Type`, whether there is a
    /// `Transfer-Encoding`, and the refusal of the first field whose name is
    /// denied or not allowed.
    struct HeaderScan {
        var length: String?, contentType: String?, transferEncoding = false
        var refusedName: GatewayError?
    }

    func scan(_ headers: HeaderFields) -> HeaderScan {
        // Indices, not values, while the fields are read: a loop that only
        // reads them borrows them, one that keeps a value copies every field.
        var found = HeaderScan()
        var lengthAt = -1, typeAt = -1
        // The sets once, not a copy of each (a retain of its table) for
        // each field.
        let deny = headerDeny, allow = headerAllow, checksNames = checksHeaderNames
        for i in headers.indices {
            // Over the name's bytes where they lie (a name bound to a
            // constant is a copy of the string: retained, then released).
            ASCII.withUTF8(headers[i].name) { name in
                switch name.count {
                case 14 where lengthAt < 0 && ASCII.equalsLowercase(name, "content-length"): lengthAt = i
                case 12 where typeAt < 0 && ASCII.equalsLowercase(name, "content-type"): typeAt = i
                case 17 where ASCII.equalsLowercase(name, "transfer-encoding"): found.transferEncoding = true
                default: break
                }
                if checksNames && found.refusedName == nil {
                    if deny.contains(utf8: name) {
                        found.refusedName = Self.deniedHeader
                    } else if let allow, !allow.contains(utf8: name) {
                        found.refusedName = Self.headerNotAllowed
                    }
                }
            }
        }
        if lengthAt >= 0 { found.length = headers[lengthAt].value }
        if typeAt >= 0 { found.contentType = headers[typeAt].value }
        return found
    }

    public func onRequestBody(_ exchange: Exchange, _ body: inout ByteBuffer) -> FilterAction {
        guard let json, body.readableBytes > 0 else { return .next }
        switch body.withUnsafeReadableBytes({ json.validate($0) }) {
        case nil: return .next
        case .tooDeep: return .reject(Self.jsonTooDeep)
        case .invalid: return .reject(Self.invalidJSON)
        }
    }

    /// `application/JSON; charset=utf-8` → `application/json`.
    static func mediaType(_ value: String) -> String {
        let type = value.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        return type.trimmingSpaces().lowercased()
    }
}
