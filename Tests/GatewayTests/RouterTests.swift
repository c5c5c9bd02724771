import Filters
import NIOHTTP1
import Testing

@testable import Gateway

@Suite("router: predicates, rewrites, precedence, 404/405")
struct RouterTests {
    func router(_ routes: String) throws -> (RuntimeConfig, Router) {
        let config = try ConfigFolder(["00-base.yaml": baseYAML, "10-routes.yaml": routes]).load()
        return (config, config.listeners[0].router)
    }

    func match(_ r: Router, _ target: String, method: String = "GET", host: String = "localhost", headers: [(String, String)] = []) -> String {
        var h = HeaderFields(headers)
        h.add(name: "host", value: host)
        switch r.match(method: method, host: Substring(host), target: Substring(target), headers: h) {
        case .matched(let route): return route.name
        case .noRoute: return "404"
        case .methodNotAllowed(let allow): return "405 " + allow.joined(separator: ",")
        }
    }

    @Test("the byte-level path helpers answer as the Substring methods they replace, on substrings that do not start at 0")
    func byteLevelPathHelpers() {
        let targets = ["/", "/a", "/api/v1?x=1", "/api?", "?q", "", "a/b", "/é/x?y=é", "//x", "/a/b/c?d=/e?f", "/\u{301}a", "/é", "x/\u{301}"]
        for t in targets {
            for prefix in ["", "zz"] {
                let whole = prefix + t
                let text = whole[whole.index(whole.startIndex, offsetBy: prefix.count)...]
                #expect(ProxyRequest.startsWithSlash(text) == text.hasPrefix("/"), "\(t)")
                for byte in [UInt8(ascii: "/"), UInt8(ascii: "?")] {
                    #expect(Router.firstIndex(of: byte, in: text) == text.utf8.firstIndex(of: byte), "\(t) \(byte)")
                }
                let (path, query) = Router.split(text)
                #expect(path + (query.map { "?" + $0 } ?? "") == text)
                let first = Router.firstSegment(path)
                // The function as it was before its search became `memchr`.
                var expected: Substring = ""
                if path.utf8.first == UInt8(ascii: "/") {
                    let rest = path.dropFirst()
                    expected = rest.utf8.firstIndex(of: UInt8(ascii: "/")).map { rest[..<$0] } ?? rest
                }
                #expect(first == expected, "\(t)")
            }
        }
    }

    @Test func hostExactAndWildcard() throws {
        let (_, r) = try router("""
        routes:
          - {name: exact, listener: public, upstream: a, match: {host: api.example.com}}
          - {name: wild, listener: public, upstream: a, match: {host: ["*.example.com"]}}
        """)
        #expect(match(r, "/", host: "api.example.com") == "exact")
        #expect(match(r, "/", host: "API.Example.com:8443") == "exact")
        #expect(match(r, "/", host: "m.example.com") == "wild")
        #expect(match(r, "/", host: "a.b.example.com") == "wild")
        #expect(match(r, "/", host: "example.com") == "404")
        #expect(match(r, "/", host: "evil-example.com") == "404")
    }

    @Test func pathKinds() throws {
        let (_, r) = try router("""
        routes:
          - {name: exact, listener: public, upstream: a, match: {path: /health}}
          - {name: prefix, listener: public, upstream: a, match: {path_prefix: /api/v1}}
          - {name: template, listener: public, upstream: a, match: {path_template: "/users/{id}/cards/{card}"}}
          - {name: rest, listener: public, upstream: a, match: {path_template: "/files/{path...}"}}
          - {name: regex, listener: public, upstream: a, match: {path_regex: "/orders/[0-9]+"}}
        """)
        #expect(match(r, "/health") == "exact")
        #expect(match(r, "/health/x") == "404")
        #expect(match(r, "/api/v1") == "prefix")
        #expect(match(r, "/api/v1/x?y=1") == "prefix")
        #expect(match(r, "/api/v10") == "404", "a prefix matches on segment boundaries only")
        #expect(match(r, "/users/7/cards/9") == "template")
        #expect(match(r, "/users/7/cards") == "404")
        #expect(match(r, "/users//cards/9") == "404")
        #expect(match(r, "/users/7/cards/9/x") == "404")
        #expect(match(r, "/files/a/b/c") == "rest")
        #expect(match(r, "/files/") == "404")
        #expect(match(r, "/orders/123") == "regex")
        #expect(match(r, "/orders/123x") == "404", "a regex must match the whole path")
    }

    @Test func methodsHeadersQuery() throws {
        let (_, r) = try router("""
        routes:
          - name: beta
            listener: public
            upstream: b
            match: {path_prefix: /p, headers: [{name: X-Beta, exact: "1"}], query: [{name: v, regex: "[0-9]+"}]}
          - name: present
            listener: public
            upstream: a
            match: {path_prefix: /p, headers: [{name: x-debug, present: true}]}
          - name: absent
            listener: public
            upstream: a
            match: {path_prefix: /p, methods: [GET, POST], headers: [{name: x-debug, present: false}]}
        """)
        #expect(match(r, "/p?v=12", headers: [("x-beta", "1")]) == "beta")
        #expect(match(r, "/p?v=1x", headers: [("x-beta", "1")]) == "absent")
        #expect(match(r, "/p?a=b&v=3", headers: [("x-beta", "1")]) == "beta")
        #expect(match(r, "/p", headers: [("x-debug", "")]) == "present")
        #expect(match(r, "/p", method: "POST") == "absent")
        #expect(match(r, "/p", method: "PUT") == "405 GET,POST")
    }

    @Test("declaration order decides, across files in file-name order")
    func precedence() throws {
        let config = try ConfigFolder([
            "00-base.yaml": baseYAML,
            "10-first.yaml": "routes:\n  - {name: broad, listener: public, upstream: a, match: {path_prefix: /api}}\n",
            "20-second.yaml": "routes:\n  - {name: narrow, listener: public, upstream: b, match: {path_prefix: /api/v1}}\n",
        ]).load()
        let r = config.listeners[0].router
        #expect(match(r, "/api/v1/x") == "broad")
        #expect(r.routes.map(\.name) == ["broad", "narrow"])
    }

    @Test("the first-segment index keeps declaration order across indexed and unindexed routes")
    func indexKeepsOrder() throws {
        let (_, r) = try router("""
        routes:
          - {name: regex-first, listener: public, upstream: a, match: {path_regex: "/api/special/.*"}}
          - {name: api, listener: public, upstream: a, match: {path_prefix: /api}}
          - {name: root, listener: public, upstream: a, match: {path_prefix: /}}
          - {name: api-late, listener: public, upstream: a, match: {path: /api/late}}
          - {name: tmpl, listener: public, upstream: a, match: {path_template: "/{tenant}/items"}}
          - {name: slash-prefix, listener: public, upstream: a, match: {path_prefix: /static/}}
        """)
        #expect(match(r, "/api/special/x") == "regex-first")
        #expect(match(r, "/api/late") == "api")
        #expect(match(r, "/api") == "api")
        #expect(match(r, "/apix") == "root")
        #expect(match(r, "/acme/items") == "root")
        #expect(match(r, "/static/app.js") == "root")
        #expect(match(r, "") == "404")
    }

    @Test("405 lists the methods of every route that matched all but the method")
    func methodNotAllowed() throws {
        let (_, r) = try router("""
        routes:
          - {name: read, listener: public, upstream: a, match: {path_prefix: /x, methods: [GET]}}
          - {name: write, listener: public, upstream: a, match: {path_prefix: /x, methods: [POST, PUT]}}
        """)
        #expect(match(r, "/x/1", method: "DELETE") == "405 GET,POST,PUT")
        #expect(match(r, "/y", method: "DELETE") == "404")
        #expect(match(r, "/x", method: "PUT") == "write")
    }

    @Test func rewrites() throws {
        let (config, r) = try router("""
        routes:
          - {name: strip, listener: public, upstream: a, match: {path_prefix: /api}, rewrite: {strip_prefix: /api}}
          - {name: replace, listener: public, upstream: a, match: {path_prefix: /old}, rewrite: {replace_prefix: /new/v2}}
          - name: regex
            listener: public
            upstream: a
            match: {path_regex: "/u/([0-9]+)/p/([a-z]+)"}
            rewrite: {regex: {pattern: "^/u/([0-9]+)/p/([a-z]+)$", substitution: "/profiles/\\\\2/\\\\1"}, host: profiles.internal}
        """)
        func rewritten(_ route: String, _ path: String) -> String {
            config.routes.first { $0.name == route }!.rewrite.apply(Substring(path))
        }
        #expect(rewritten("strip", "/api/v1/x") == "/v1/x")
        #expect(rewritten("strip", "/api") == "/")
        #expect(rewritten("replace", "/old/a") == "/new/v2/a")
        #expect(rewritten("replace", "/old") == "/new/v2")
        #expect(rewritten("regex", "/u/42/p/cards") == "/profiles/cards/42")
        #expect(config.routes.first { $0.name == "regex" }?.hostRewrite == "profiles.internal")
        #expect(match(r, "/u/42/p/cards") == "regex")
    }

    @Test("weighted upstreams follow their weights; the force header overrides")
    func canary() throws {
        let (config, _) = try router("""
        routes:
          - name: c
            listener: public
            upstreams: [{name: a, weight: 90}, {name: b, weight: 10}]
            force_upstream: {header: x-canary, values: {always: b}}
        """)
        let targets = config.routes[0].targets
        var rng = SplitMix(seed: 42)
        var counts = ["a": 0, "b": 0]
        for _ in 0..<10_000 { counts[targets.pick([:], using: &rng), default: 0] += 1 }
        #expect((8_700...9_300).contains(counts["a"]!), "\(counts)")
        let forced = targets.pick(["x-canary": "always"], using: &rng)
        #expect(forced == "b")
        let unknownValue = targets.pick(["x-canary": "never"], using: &rng)
        #expect(["a", "b"].contains(unknownValue))
    }
}

/// A deterministic generator for tests.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
