#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Filters
import NIOHTTP1

/// The route table of one listener. Routes are tried in declaration order
/// (files in file-name order, then order within a file); the first route
/// whose every predicate matches wins. When some route matched everything but
/// the method, and none matched fully, the answer is 405 with `Allow` listing
/// the methods of those routes.
struct Router: Sendable {
    let routes: [CompiledRoute]
    /// Route indexes by the first path segment their path predicate fixes.
    private let bySegment: [Substring: [Int]]
    /// Routes whose path predicate fixes no first segment (regex, `/`, templates
    /// starting with a variable): candidates for every request.
    private let unindexed: [Int]

    init(routes: [CompiledRoute]) {
        self.routes = routes
        var bySegment: [Substring: [Int]] = [:]
        var unindexed: [Int] = []
        for (i, route) in routes.enumerated() {
            if let segment = route.path.firstSegment {
                bySegment[Substring(segment), default: []].append(i)
            } else {
                unindexed.append(i)
            }
        }
        self.bySegment = bySegment
        self.unindexed = unindexed
    }

    enum Result {
        case matched(CompiledRoute)
        case noRoute
        case methodNotAllowed(allow: [String])
    }

    func match(method: String, host: Substring, target: Substring, headers: HeaderFields) -> Result {
        let (path, query) = Router.split(target)
        let indexed = bySegment[Router.firstSegment(path)] ?? []
        // Candidates in declaration order: merge the two ascending index lists.
        var allowed: Set<String>?
        var a = 0
        var b = 0
        while a < indexed.count || b < unindexed.count {
            let i: Int
            if b >= unindexed.count || (a < indexed.count && indexed[a] < unindexed[b]) {
                i = indexed[a]
                a += 1
            } else {
                i = unindexed[b]
                b += 1
            }
            let route = routes[i]
            guard route.matchesIgnoringMethod(host: host, path: path, query: query, headers: headers) else { continue }
            if route.allows(method: method) { return .matched(route) }
            allowed = (allowed ?? []).union(route.methods ?? [])
        }
        if let allowed { return .methodNotAllowed(allow: allowed.sorted()) }
        return .noRoute
    }

    /// `api` of `/api/v1`; empty for `/` or a path without a leading slash.
    static func firstSegment(_ path: Substring) -> Substring {
        guard path.utf8.first == UInt8(ascii: "/") else { return "" }
        let rest = path.dropFirst()
        if let slash = firstIndex(of: UInt8(ascii: "/"), in: rest) { return rest[..<slash] }
        return rest
    }

    /// `text.utf8.firstIndex(of: byte)` over the bytes themselves (`memchr`):
    /// the view's own search steps an index a byte at a time.
    static func firstIndex(of byte: UInt8, in text: Substring) -> String.Index? {
        let offset: Int?? = text.utf8.withContiguousStorageIfAvailable { b in
            guard let base = b.baseAddress, let hit = memchr(base, Int32(byte), b.count) else { return nil }
            return UnsafeRawPointer(base).distance(to: UnsafeRawPointer(hit))
        }
        guard let offset else { return text.utf8.firstIndex(of: byte) }
        return offset.map { text.utf8.index(text.startIndex, offsetBy: $0) }
    }

    /// Splits `/a/b?x=1` into path and query (without `?`).
    static func split(_ target: Substring) -> (Substring, Substring?) {
        // Over UTF-8 bytes: `firstIndex(of: Character)` walks grapheme clusters.
        guard let q = firstIndex(of: UInt8(ascii: "?"), in: target) else { return (target, nil) }
        return (target[..<q], target[target.utf8.index(after: q)...])
    }
}
