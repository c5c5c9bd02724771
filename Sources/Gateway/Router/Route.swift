import Filters
import Foundation
import NIOCore
import NIOHTTP1

/// A route compiled once per config version: predicates, rewrite, upstream
/// choice, the filter chain and the route's metric handles. Shared read-only
/// by every event loop.
final class CompiledRoute: @unchecked Sendable {
    let name: String
    let listener: String
    let host: HostMatcher?
    let path: PathMatcher
    let methods: Set<String>?
    let headers: [ValueMatcher]
    let query: [ValueMatcher]
    let rewrite: PathRewrite
    let hostRewrite: String?
    let preserveHost: Bool
    let targets: UpstreamTargets
    let filters: [FilterSlot]
    /// `filters` again, each without a reference count: what the request
    /// path calls (through `_withUnsafeGuaranteedRef`). The route keeps them
    /// alive, and a request holds its route while it calls them.
    let chain: [Unmanaged<FilterSlot>]
    let filterNames: [String]
    let maxBody: Int
    let metrics: RouteMetrics
    /// Whether a filter of the chain reads `X-Gw-*`; otherwise they are removed.
    let keepsAppChannelHeaders: Bool
    /// Whether a filter of the chain needs the whole request body.
    let buffersBody: Bool
    /// Whether request trailers (minus framing, routing and owned fields) go upstream.
    let allowTrailers: Bool

    init(name: String, listener: String, host: HostMatcher?, path: PathMatcher, methods: Set<String>?,
         headers: [ValueMatcher], query: [ValueMatcher], rewrite: PathRewrite, hostRewrite: String?,
         preserveHost: Bool, targets: UpstreamTargets, filters: [(String, any Filter)], maxBody: Int,
         allowTrailers: Bool = false) {
        self.name = name
        self.listener = listener
        self.host = host
        self.path = path
        self.methods = methods
        self.headers = headers
        self.query = query
        self.rewrite = rewrite
        self.hostRewrite = hostRewrite
        self.preserveHost = preserveHost
        self.targets = targets
        self.filters = filters.map { FilterSlot($0.1) }
        self.chain = self.filters.map { Unmanaged.passUnretained($0) }
        self.filterNames = filters.map(\.0)
        self.maxBody = maxBody
        self.metrics = RouteMetrics(route: name)
        self.keepsAppChannelHeaders = filters.contains { $0.1.readsAppChannelHeaders }
        self.buffersBody = filters.contains { $0.1.needsRequestBody }
        self.allowTrailers = allowTrailers
    }

    /// Everything but the method.
    func matchesIgnoringMethod(host hostValue: Substring, path pathValue: Substring, query queryValue: Substring?, headers requestHeaders: HeaderFields) -> Bool {
        if let host, !host.matches(hostValue) { return false }
        if !path.matches(pathValue) { return false }
        for h in headers where !h.matches(requestHeaders[h.name]) { return false }
        if !query.isEmpty {
            let params = QueryParameters(queryValue ?? "")
            for q in query where !q.matches(params.values(named: q.name)) { return false }
        }
        return true
    }

    func allows(method: String) -> Bool { methods?.contains(method) ?? true }

    /// The `Host` the upstream receives: the route's rewrite, else the
    /// client's when the route preserves it, else the upstream's own.
    func upstreamHost(clientHost: String, upstream: UpstreamDefinition?) -> String {
        hostRewrite ?? (preserveHost ? clientHost : upstream?.host ?? "")
    }
}

/// One filter of a route's chain, behind a class reference. Calling a
/// filter out of an `[any Filter]` copied the existential first (its
/// struct's references retained and released, each filter, each of its
/// calls, every request); a class's `let` is borrowed where it is, and the
/// request path calls the slots unretained (`CompiledRoute.chain`): calling
/// a filter changes no reference count.
final class FilterSlot: Sendable {
    let filter: any Filter

    init(_ filter: any Filter) { self.filter = filter }

    @inline(__always)
    func onRequest(_ exchange: Exchange) -> FilterAction { filter.onRequest(exchange) }

    @inline(__always)
    func onRequestBody(_ exchange: Exchange, _ body: inout ByteBuffer) -> FilterAction { filter.onRequestBody(exchange, &body) }

    @inline(__always)
    func onResponse(_ exchange: Exchange, _ response: inout ResponseHead) { filter.onResponse(exchange, &response) }
}

/// Parsed `a=1&b=2`, only built for routes that match on the query.
struct QueryParameters {
    private var pairs: [(String, String)] = []

    init(_ query: Substring) {
        for item in query.split(separator: "&", omittingEmptySubsequences: true) {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = Self.decode(kv[0])
            let value = kv.count > 1 ? Self.decode(kv[1]) : ""
            pairs.append((name, value))
        }
    }

    func values(named name: String) -> [String] { pairs.filter { $0.0 == name }.map(\.1) }

    static func decode(_ s: Substring) -> String {
        let plusless = s.replacingOccurrences(of: "+", with: " ")
        return plusless.removingPercentEncoding ?? plusless
    }
}

/// How the path is rewritten before the request goes upstream.
enum PathRewrite: @unchecked Sendable {
    case none
    /// Removes the prefix (on a segment boundary); an empty result becomes `/`.
    case stripPrefix(String)
    /// Replaces the route's `path_prefix` with another prefix.
    case replacePrefix(from: String, to: String)
    /// Replaces the first match of the pattern; `\1`..`\9` insert groups.
    case regex(Regex<AnyRegexOutput>, [SubstitutionPiece])

    enum SubstitutionPiece: Equatable { case literal(String), group(Int) }

    static func parseSubstitution(_ text: String) -> [SubstitutionPiece] {
        var pieces: [SubstitutionPiece] = []
        var literal = ""
        var chars = text[...]
        while let c = chars.popFirst() {
            if c == "\\", let next = chars.first, let digit = next.wholeNumberValue {
                chars.removeFirst()
                if !literal.isEmpty { pieces.append(.literal(literal)); literal = "" }
                pieces.append(.group(digit))
            } else {
                literal.append(c)
            }
        }
        if !literal.isEmpty { pieces.append(.literal(literal)) }
        return pieces
    }

    func apply(_ path: Substring) -> String {
        switch self {
        case .none:
            return String(path)
        case .stripPrefix(let prefix):
            guard PathMatcher.prefix(prefix).matches(path) else { return String(path) }
            let rest = path.dropFirst(prefix.count)
            if rest.isEmpty { return "/" }
            return rest.hasPrefix("/") ? String(rest) : "/" + rest
        case .replacePrefix(let from, let to):
            guard path.hasPrefix(from) else { return String(path) }
            let rest = path.dropFirst(from.count)
            if to.hasSuffix("/") && rest.hasPrefix("/") { return to + rest.dropFirst() }
            let joined = to + rest
            return joined.isEmpty ? "/" : joined
        case .regex(let regex, let pieces):
            guard let match = try? regex.firstMatch(in: path) else { return String(path) }
            var replacement = ""
            for piece in pieces {
                switch piece {
                case .literal(let l): replacement += l
                case .group(let i):
                    if i < match.output.count, let sub = match.output[i].substring { replacement += sub }
                }
            }
            let result = String(path[..<match.range.lowerBound]) + replacement + String(path[match.range.upperBound...])
            return result.hasPrefix("/") ? result : "/" + result
        }
    }
}

/// One upstream, or several with weights (canary), plus an optional header
/// that forces one of them (e.g. `x-canary: always`).
struct UpstreamTargets: Sendable {
    /// (name, cumulative weight)
    let weighted: [(String, Int)]
    let total: Int
    let forceHeader: String?
    let forced: [String: String]

    init(single: String) {
        weighted = [(single, 1)]
        total = 1
        forceHeader = nil
        forced = [:]
    }

    init(weights: [(String, Int)], forceHeader: String?, forced: [String: String]) {
        var sum = 0
        var cumulative: [(String, Int)] = []
        for (name, w) in weights where w > 0 {
            sum += w
            cumulative.append((name, sum))
        }
        weighted = cumulative
        total = sum
        self.forceHeader = forceHeader?.lowercased()
        self.forced = forced
    }

    /// The forced upstream if the request carries the header with a known value.
    func forcedUpstream(_ headers: HeaderFields) -> String? {
        guard let forceHeader, let value = headers.first(name: forceHeader) else { return nil }
        return forced[value]
    }

    func pick<R: RandomNumberGenerator>(_ headers: HeaderFields, using rng: inout R) -> String {
        if let f = forcedUpstream(headers) { return f }
        if weighted.count == 1 { return weighted[0].0 }
        let roll = Int.random(in: 0..<total, using: &rng)
        for (name, upTo) in weighted where roll < upTo { return name }
        return weighted[weighted.count - 1].0
    }
}
