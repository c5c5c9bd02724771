/// Predicates of a route, compiled once per config version.

/// `host: [api.example.com, "*.example.com"]`: exact names and one-label-or-more
/// wildcards, compared without the port and case-insensitively.
struct HostMatcher: Sendable {
    private let exact: Set<String>
    private let suffixes: [String]  // ".example.com"

    init(_ patterns: [String]) throws {
        var exact = Set<String>()
        var suffixes: [String] = []
        for p in patterns {
            let lower = p.lowercased()
            if lower.hasPrefix("*.") {
                let suffix = String(lower.dropFirst(1))
                guard suffix.count > 1, !suffix.dropFirst().contains("*") else { throw RouteCompileError("host '\(p)': a wildcard is only allowed as the first label") }
                suffixes.append(suffix)
            } else {
                guard !lower.isEmpty, !lower.contains("*") else { throw RouteCompileError("host '\(p)': a wildcard is only allowed as the first label, as in *.example.com") }
                exact.insert(lower)
            }
        }
        self.exact = exact
        self.suffixes = suffixes
    }

    /// `host` is the Host header value, possibly with a port.
    func matches(_ host: Substring) -> Bool {
        let name = HostMatcher.stripPort(host).lowercased()
        if exact.contains(name) { return true }
        for s in suffixes where name.count > s.count && name.hasSuffix(s) { return true }
        return false
    }

    static func stripPort(_ host: Substring) -> Substring {
        if host.hasPrefix("[") {  // [v6]:port
            if let close = host.firstIndex(of: "]") { return host[...close] }
            return host
        }
        if let colon = host.lastIndex(of: ":") { return host[..<colon] }
        return host
    }
}

/// One path predicate.
enum PathMatcher: @unchecked Sendable {
    case any
    case exact(String)
    /// Matches the prefix itself and anything below it on a segment boundary:
    /// `/api/v1` matches `/api/v1` and `/api/v1/x`, not `/api/v10`. A prefix
    /// that ends in `/` matches any path that starts with it.
    case prefix(String)
    /// `/users/{id}/cards/{card}`: each `{name}` is one non-empty segment;
    /// a last segment `{name...}` matches the rest of the path.
    case template([TemplateSegment], rest: Bool)
    case regex(Regex<AnyRegexOutput>)

    enum TemplateSegment: Sendable, Equatable { case literal(String), variable(String) }

    static func template(_ text: String) throws -> PathMatcher {
        guard text.hasPrefix("/") else { throw RouteCompileError("path_template must start with /") }
        var segments: [TemplateSegment] = []
        var rest = false
        let parts = text.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        var names = Set<String>()
        for (i, part) in parts.enumerated() {
            if part.hasPrefix("{") && part.hasSuffix("}") {
                var name = String(part.dropFirst().dropLast())
                if name.hasSuffix("...") {
                    guard i == parts.count - 1 else { throw RouteCompileError("path_template '\(text)': {\(name)} must be the last segment") }
                    name = String(name.dropLast(3))
                    rest = true
                }
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                    throw RouteCompileError("path_template '\(text)': bad variable name '{\(name)}'")
                }
                guard names.insert(name).inserted else { throw RouteCompileError("path_template '\(text)': variable {\(name)} appears twice") }
                segments.append(.variable(name))
            } else {
                guard !part.contains("{"), !part.contains("}") else { throw RouteCompileError("path_template '\(text)': braces must enclose a whole segment") }
                segments.append(.literal(String(part)))
            }
        }
        return .template(segments, rest: rest)
    }

    /// The first path segment every matching path must have, when the
    /// predicate fixes one; the router indexes routes by it.
    var firstSegment: String? {
        func first(_ p: String, boundaryAfter: Bool) -> String? {
            guard p.hasPrefix("/") else { return nil }
            let rest = p.dropFirst()
            if let slash = rest.firstIndex(of: "/") { return rest[..<slash].isEmpty ? nil : String(rest[..<slash]) }
            // "/api" as a prefix ends on a segment boundary, so "api" is the whole first segment.
            return boundaryAfter && !rest.isEmpty ? String(rest) : nil
        }
        switch self {
        case .any, .regex: return nil
        case .exact(let p): return first(p, boundaryAfter: true)
        case .prefix(let p): return first(p, boundaryAfter: true)
        case .template(let segments, _):
            if case .literal(let l)? = segments.first, !l.isEmpty { return l }
            return nil
        }
    }

    func matches(_ path: Substring) -> Bool {
        switch self {
        case .any:
            return true
        case .exact(let p):
            // Paths compare as bytes: no Unicode equivalence in routing.
            return path.utf8.elementsEqual(p.utf8)
        case .prefix(let p):
            let pu = p.utf8
            let u = path.utf8
            guard u.starts(with: pu) else { return false }
            if pu.last == UInt8(ascii: "/") || u.count == pu.count { return true }
            return u[u.index(u.startIndex, offsetBy: pu.count)] == UInt8(ascii: "/")
        case .template(let segments, let rest):
            guard path.hasPrefix("/") else { return false }
            var parts = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)[...]
            for (i, segment) in segments.enumerated() {
                if rest && i == segments.count - 1 {
                    return !parts.isEmpty && !(parts.count == 1 && parts.first!.isEmpty)
                }
                guard let part = parts.popFirst() else { return false }
                switch segment {
                case .literal(let l): if part != l { return false }
                case .variable: if part.isEmpty { return false }
                }
            }
            return parts.isEmpty
        case .regex(let r):
            return (try? r.wholeMatch(in: path)) != nil
        }
    }
}

/// `{name, exact | regex | present}` against a header or a query parameter.
struct ValueMatcher: @unchecked Sendable {
    enum Kind { case present(Bool), exact(String), regex(Regex<AnyRegexOutput>) }
    let name: String
    let kind: Kind

    init(_ config: ValueMatchConfig, lowercaseName: Bool) throws {
        name = lowercaseName ? config.name.lowercased() : config.name
        let count = [config.exact != nil, config.regex != nil, config.present != nil].filter { $0 }.count
        guard count <= 1 else { throw RouteCompileError("'\(config.name)': use one of exact, regex, present") }
        if let e = config.exact {
            kind = .exact(e)
        } else if let r = config.regex {
            kind = .regex(try compileRegex(r))
        } else {
            kind = .present(config.present ?? true)
        }
    }

    /// `values` are all the values the request has under `name`.
    func matches<S: Sequence>(_ values: S) -> Bool where S.Element: StringProtocol {
        switch kind {
        case .present(let wanted):
            var any = false
            for _ in values { any = true; break }
            return any == wanted
        case .exact(let e):
            return values.contains { $0 == e }
        case .regex(let r):
            return values.contains { (try? r.wholeMatch(in: String($0))) != nil }
        }
    }
}

struct RouteCompileError: Error, CustomStringConvertible {
    let message: String
    init(_ m: String) { message = m }
    var description: String { message }
}

func compileRegex(_ pattern: String) throws -> Regex<AnyRegexOutput> {
    do {
        return try Regex(pattern)
    } catch {
        throw RouteCompileError("invalid regex '\(pattern)': \(error)")
    }
}
