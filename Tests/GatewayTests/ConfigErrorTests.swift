import Foundation
import Testing

@testable import Gateway

/// One test per class of config error: each names the file and the key path.
@Suite("config errors name the file and key path")
struct ConfigErrorTests {
    func expectError(_ routesYAML: String, contains fragments: [String], file: String = "20-routes.yaml") throws {
        let folder = try ConfigFolder(["00-base.yaml": baseYAML, "20-routes.yaml": routesYAML])
        let text = try #require(folder.error(), "config loaded but should have failed")
        #expect(text.contains(folder.path(file)), "error does not name the file: \(text)")
        for f in fragments { #expect(text.contains(f), "error lacks '\(f)': \(text)") }
    }

    @Test func unknownKey() throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            match: {path_prefx: /x}
            upstream: a
        """, contains: ["routes[0].match.path_prefx", "unknown key 'path_prefx'", ":4:"])
    }

    @Test func unknownFilterName() throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            upstream: a
            filters:
              - hedaers: {}
        """, contains: ["routes[0].filters[0].hedaers", "unknown filter 'hedaers'", "known: authenticate, decrypt_payload, headers, mtls_authz, passport, request_signature, sanitize"])
    }

    @Test func badFilterConfiguration() throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            upstream: a
            filters:
              - headers: {request: {set: {"bad name": x}}}
        """, contains: ["routes[0].filters[0].headers", "not a valid header name"])
    }

    @Test func unknownUpstream() throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            upstream: nope
        """, contains: ["routes[0].upstream", "unknown upstream 'nope'"])
    }

    @Test func unknownListener() throws {
        try expectError("""
        routes:
          - name: r
            listener: private
            upstream: a
        """, contains: ["routes[0].listener", "unknown listener 'private'"])
    }

    @Test func duplicateRouteNamesAcrossFiles() throws {
        let folder = try ConfigFolder([
            "00-base.yaml": baseYAML,
            "10-a.yaml": "routes:\n  - {name: r, listener: public, upstream: a}\n",
            "20-b.yaml": "routes:\n  - {name: other, listener: public, upstream: a}\n  - {name: r, listener: public, upstream: b}\n",
        ])
        let text = try #require(folder.error())
        #expect(text.contains(folder.path("20-b.yaml")))
        #expect(text.contains("routes[1].name"))
        #expect(text.contains("duplicate route name 'r'"))
        #expect(text.contains("10-a.yaml"))
    }

    @Test func disabledFilterNotInDefaults() throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            upstream: a
            disabled_filters: [headers]
        """, contains: ["routes[0].disabled_filters[0]", "'headers' is not in listener 'public' default filters"])
    }

    @Test func badRegex() throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            match: {path_regex: "/x/(unclosed"}
            upstream: a
        """, contains: ["routes[0].match.path_regex", "invalid regex"])
    }

    @Test func missingCertificateFile() throws {
        let folder = try ConfigFolder(["00-base.yaml": """
        listeners:
          - name: public
            address: 127.0.0.1:0
            tls: {cert: dev/missing.pem, key: dev/missing-key.pem}
        """])
        let text = try #require(folder.error())
        #expect(text.contains(folder.path("00-base.yaml")))
        #expect(text.contains("listeners[0].tls.cert"))
        #expect(text.contains("file not found"))
        #expect(text.contains("listeners[0].tls.key"))
    }

    @Test func missingRequiredKey() throws {
        try expectError("""
        routes:
          - listener: public
            upstream: a
        """, contains: ["routes[0].name", "missing required key"])
    }

    @Test func wrongType() throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            upstream: a
            match: {methods: GET}
        """, contains: ["routes[0].match.methods", "expected a list"])
    }

    @Test func badDuration() throws {
        let folder = try ConfigFolder(["00-base.yaml": baseYAML + """
        routes: []
        """, "10-up.yaml": """
        upstreams:
          - name: c
            endpoints: ["127.0.0.1:1"]
            connect_timeout: 5 seconds
        """])
        let text = try #require(folder.error())
        #expect(text.contains(folder.path("10-up.yaml")))
        #expect(text.contains("upstreams[0].connect_timeout"))
        #expect(text.contains("not a duration"))
    }

    @Test func invalidYAML() throws {
        try expectError("routes: [\n  - name: r\n", contains: ["invalid YAML"])
    }

    @Test func missingConfigFolder() throws {
        #expect(throws: ConfigError.self) {
            try RuntimeConfig.load(directory: "/nonexistent/filters.d", stateDirectory: "/tmp", registry: try .init())
        }
    }

    @Test func everyProblemIsReported() throws {
        let folder = try ConfigFolder(["00-base.yaml": baseYAML, "20-routes.yaml": """
        routes:
          - {name: r1, listener: public, upstream: nope1}
          - {name: r2, listener: public, upstream: nope2}
        """])
        let text = try #require(folder.error())
        #expect(text.contains("nope1") && text.contains("nope2"))
    }

    @Test("the minimal config of DESIGN.md loads as written")
    func designMinimalConfig() async throws {
        let folder = try ConfigFolder(["gateway.yaml": """
        admin:
          address: 127.0.0.1:9901
        listeners:
          - name: public
            address: 127.0.0.1:8443
            tls: {cert: dev/localhost.pem, key: dev/localhost-key.pem}
        upstreams:
          - name: accounts
            endpoints: ["127.0.0.1:7001"]
        routes:
          - name: accounts-read
            listener: public
            match: {path_prefix: /api/v1/accounts, methods: [GET]}
            rewrite: {strip_prefix: /api}
            upstream: accounts
            filters:
              - headers: {request: {set: {x-env: demo}}}
            tests:
              - request: {method: GET, path: /api/v1/accounts/42}
                expect: {route: accounts-read, path: /v1/accounts/42}
        """])
        try FileManager.default.createDirectory(atPath: folder.state + "/dev", withIntermediateDirectories: true)
        try await TestSupport.makeCertificates(in: folder.state + "/dev")
        let config = try folder.load()
        #expect(config.listeners.map(\.name) == ["public"])
        #expect(config.listeners[0].tls != nil)
        let (passed, failures) = RouteTestRunner(config: config).run()
        #expect(passed == 1)
        #expect(failures.isEmpty)
    }

    @Test("a route cannot match on a header the gateway removes or sets", arguments: ["x-passport", "X-Forwarded-For", "x-gw-kid", "connection", "x-request-id"])
    func ownedHeaderMatch(name: String) throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            upstream: a
            match: {headers: [{name: \(name), present: true}]}
        """, contains: ["routes[0].match.headers[0].name", "removed or set by the gateway"])
    }

    @Test func canaryHeaderMustNotBeOwned() throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            upstreams: [{name: a, weight: 1}, {name: b, weight: 1}]
            force_upstream: {header: x-passport, values: {always: b}}
        """, contains: ["routes[0].force_upstream.header", "removed or set by the gateway"])
    }

    @Test func listenerSanitizeMistakes() throws {
        let folder = try ConfigFolder(["00-base.yaml": """
        listeners:
          - name: public
            address: 127.0.0.1:0
            sanitize:
              duplicate_slashes: squash
              strip_request_headers: ["bad name", host]
              strip_response_headers: ["*"]
            security_headers: {hsts: ""}
        upstreams:
          - name: a
            endpoints: ["127.0.0.1:7001"]
        """])
        let text = try #require(folder.error())
        for fragment in ["listeners[0].sanitize.duplicate_slashes", "'squash' is not one of reject, merge, keep",
                         "listeners[0].sanitize.strip_request_headers[0]", "listeners[0].sanitize.strip_request_headers[1]",
                         "cannot be stripped", "listeners[0].sanitize.strip_response_headers[0]", "listeners[0].security_headers.hsts"] {
            #expect(text.contains(fragment), "lacks \(fragment): \(text)")
        }
    }

    @Test("http2_engine: gateway (the default) or nio; anything else names the key")
    func http2Engine() throws {
        func config(_ engine: String?) throws -> ConfigFolder {
            try ConfigFolder(["00-base.yaml": """
            listeners:
              - name: public
                address: 127.0.0.1:0
            \(engine.map { "    http2_engine: \($0)" } ?? "")
            upstreams:
              - name: a
                endpoints: ["127.0.0.1:7001"]
            """])
        }
        #expect(try config(nil).load().listeners[0].http2Engine == .gateway)
        #expect(try config("nio").load().listeners[0].http2Engine == .nio)
        let folder = try config("h2o")
        let text = try #require(folder.error())
        #expect(text.contains(folder.path("00-base.yaml")) && text.contains("listeners[0].http2_engine")
                && text.contains("'h2o' is not gateway or nio"), "\(text)")
    }

    @Test func sanitizeFilterMistakeNamesTheKey() throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            upstream: a
            filters:
              - sanitize: {params: {limit: {type: int, min: 10, max: 1}}}
        """, contains: ["routes[0].filters[0].sanitize", "params.limit: min is above max"])
    }

    @Test("a passport filter without a passport key names the folder and how to make a key")
    func passportWithoutKeys() throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            upstream: a
            filters:
              - passport: {}
        """, contains: ["routes[0].filters[0].passport", "passport", "gateway keys generate --type ed25519"])
    }

    @Test("authenticate: a JWK Set that cannot be read names the key path")
    func authenticateMissingJWKS() throws {
        try expectError("""
        routes:
          - name: r
            listener: public
            upstream: a
            filters:
              - authenticate: {jwt: {jwks: missing.json, issuer: i}}
        """, contains: ["routes[0].filters[0].authenticate", "jwt.jwks", "missing.json"])
    }
}
