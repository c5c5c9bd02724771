import NIOHTTP1

/// `headers`: adds, sets and removes request and response headers.
///
/// ```yaml
/// filters:
///   - headers:
///       request:                      # applied before the request goes upstream
///         set: {x-env: demo}          # map, default {}: replaces any existing value
///         add: {x-tag: a}             # map, default {}: appends a value
///         remove: [x-debug]           # list, default []: removes every value
///       response:                     # applied to every response, gateway errors too
///         set: {cache-control: no-store}
///         remove: [server]
/// ```
/// Order within a side: remove, then set, then add. Names are
/// case-insensitive. Rejects at load time: empty names, names or values with
/// characters that are not allowed in HTTP headers (CR, LF, NUL, ...), and
/// keys other than those above.
///
/// Example: request `GET /` with `x-debug: 1` → upstream sees no `x-debug`
/// and `x-env: demo`.
public struct HeadersFilter: Filter {
    public static let name = "headers"

    public struct Configuration: Decodable, Sendable {
        public var request: Operations?
        public var response: Operations?

        enum CodingKeys: String, CodingKey, CaseIterable { case request, response }

        public init(request: Operations? = nil, response: Operations? = nil) {
            self.request = request
            self.response = response
        }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            request = try c.decodeIfPresent(Operations.self, forKey: .request)
            response = try c.decodeIfPresent(Operations.self, forKey: .response)
        }
    }

    public struct Operations: Decodable, Sendable {
        public var set: [String: String]
        public var add: [String: String]
        public var remove: [String]

        enum CodingKeys: String, CodingKey, CaseIterable { case set, add, remove }

        public init(set: [String: String] = [:], add: [String: String] = [:], remove: [String] = []) {
            self.set = set
            self.add = add
            self.remove = remove
        }

        public init(from decoder: Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            set = try c.decodeIfPresent([String: String].self, forKey: .set) ?? [:]
            add = try c.decodeIfPresent([String: String].self, forKey: .add) ?? [:]
            remove = try c.decodeIfPresent([String].self, forKey: .remove) ?? []
        }
    }

    /// Precomputed, sorted so the result does not depend on YAML map order.
    struct Compiled: Sendable {
        let remove: [String]
        let set: [(String, String)]
        let add: [(String, String)]

        init(_ ops: Operations?, side: String) throws {
            guard let ops else {
                remove = []; set = []; add = []
                return
            }
            for name in ops.remove { try HeadersFilter.validate(name: name, side: side, op: "remove") }
            for (name, value) in ops.set.merging(ops.add, uniquingKeysWith: { a, _ in a }) {
                try HeadersFilter.validate(name: name, side: side, op: "set/add")
                try HeadersFilter.validate(value: value, name: name, side: side)
            }
            remove = ops.remove.map { $0.lowercased() }
            set = ops.set.map { ($0.key.lowercased(), $0.value) }.sorted { $0.0 < $1.0 }
            add = ops.add.map { ($0.key.lowercased(), $0.value) }.sorted { $0.0 < $1.0 }
        }

        var isEmpty: Bool { remove.isEmpty && set.isEmpty && add.isEmpty }

        func apply(to headers: inout HeaderFields) {
            for name in remove { headers.remove(name: name) }
            for (name, value) in set { headers.replaceOrAdd(name: name, value: value) }
            for (name, value) in add { headers.add(name: name, value: value) }
        }
    }

    let request: Compiled
    let response: Compiled

    public init(configuration: Configuration) throws {
        request = try Compiled(configuration.request, side: "request")
        response = try Compiled(configuration.response, side: "response")
    }

    public func onRequest(_ exchange: Exchange) -> FilterAction {
        if !request.isEmpty { request.apply(to: &exchange.request.headers) }
        return .next
    }

    public func onResponse(_ exchange: Exchange, _ response: inout ResponseHead) {
        if !self.response.isEmpty { self.response.apply(to: &response.headers) }
    }

    static func validate(name: String, side: String, op: String) throws {
        guard !name.isEmpty, name.utf8.allSatisfy(HTTPToken.isTokenByte) else {
            throw FilterConfigurationError("\(side).\(op): '\(name)' is not a valid header name")
        }
    }

    static func validate(value: String, name: String, side: String) throws {
        guard HTTPToken.isValidFieldValue(value) else {
            throw FilterConfigurationError("\(side): value of '\(name)' contains characters not allowed in a header")
        }
    }
}
