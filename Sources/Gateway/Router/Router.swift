import Filters
import NIOHTTP1

/// The route table of one listener. Routes are tried in declaration order
/// (files in file-name order, then order within a file); the first route
/// whose every predicate matches wins. When some route matched everything but
/// the method, and none matched fully, the answer is 405 with `Allow` listing
/// the methods of those routes.
struct Router: Sendable {
    let routes: [CompiledRoute]

    enum Result {
        case matched(CompiledRoute)
        case noRoute
        case methodNotAllowed(allow: [String])
    }

    func match(method: String, host: Substring, target: Substring, headers: HTTPHeaders) -> Result {
        let (path, query) = Router.split(target)
        var allowed: Set<String>?
        for route in routes where route.matchesIgnoringMethod(host: host, path: path, query: query, headers: headers) {
            if route.allows(method: method) { return .matched(route) }
            allowed = (allowed ?? []).union(route.methods ?? [])
        }
        if let allowed { return .methodNotAllowed(allow: allowed.sorted()) }
        return .noRoute
    }

    /// Splits `/a/b?x=1` into path and query (without `?`).
    static func split(_ target: Substring) -> (Substring, Substring?) {
        guard let q = target.firstIndex(of: "?") else { return (target, nil) }
        return (target[..<q], target[target.index(after: q)...])
    }
}
