import Filters
import Foundation
import NIOCore
import NIOSSL
import Passport

/// Validates a merged `RawConfig` across files and compiles it into a
/// `RuntimeConfig`. Every problem found is reported, each with file and key path.
struct ConfigCompiler {
    let raw: RawConfig
    let stateDirectory: String
    var problems: [ConfigProblem] = []

    init(raw: RawConfig, stateDirectory: String) {
        self.raw = raw
        self.stateDirectory = stateDirectory
    }

    /// TLS 1.2 suites allowed: ECDHE key exchange with AEAD only. TLS 1.3 suites are all AEAD.
    static let tls12CipherSuites = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    mutating func compile(passportKeys: PassportKeyRing? = nil, appChannelKeys: AppChannelKeyRing? = nil,
                          nonceStores: [MemoryNonceStore] = []) throws -> RuntimeConfig {
        var adminAddress: SocketAddress?
        do { adminAddress = try resolveAddress(raw.admin.address) } catch {
            problems.append(ConfigProblem(file: "admin", path: "admin.address", message: "\(error)"))
        }

        // Upstreams.
        var upstreams: [String: UpstreamDefinition] = [:]
        var upstreamSources: [String: Source] = [:]
        for (u, src) in raw.upstreams {
            if let first = upstreamSources[u.name] {
                fail(src, "name", "duplicate upstream name '\(u.name)' (first in \(first.file) \(first.path()))")
                continue
            }
            upstreamSources[u.name] = src
            if u.endpoints.isEmpty { fail(src, "endpoints", "at least one endpoint is required") }
            if u.maxConnections < 1 { fail(src, "max_connections", "must be at least 1") }
            var addresses: [SocketAddress] = []
            for (i, e) in u.endpoints.enumerated() {
                do { addresses.append(try resolveAddress(e)) } catch { fail(src, "endpoints[\(i)]", "\(error)") }
            }
            guard addresses.count == u.endpoints.count, !addresses.isEmpty else { continue }
            switch (u.protocolName, u.tls != nil) {
            case ("http1", _), ("h2", true), ("h2c", false): break
            case ("h2", false): fail(src, "protocol", "h2 needs tls (ALPN); use h2c for cleartext HTTP/2 with prior knowledge")
            case ("h2c", true): fail(src, "protocol", "h2c is cleartext; with tls use h2")
            default: fail(src, "protocol", "'\(u.protocolName)' is not http1, h2 or h2c")
            }
            var tls: UpstreamTLS?
            if let t = u.tls {
                guard let made = makeUpstreamTLS(t, src, upstream: u.name, alpn: u.protocolName == "h2" ? "h2" : "http/1.1") else { continue }
                tls = made
            }
            upstreams[u.name] = UpstreamDefinition(
                name: u.name, endpoints: addresses, endpointTexts: u.endpoints, host: u.host ?? u.endpoints[0],
                connectTimeout: u.connectTimeout.timeAmount, responseTimeout: u.responseTimeout.timeAmount,
                bodyTimeout: u.bodyTimeout.timeAmount, maxConnections: u.maxConnections,
                keepaliveTimeout: u.keepaliveTimeout.timeAmount, tls: tls, http2: u.protocolName != "http1")
        }

        // Listeners (before routes, which refer to them).
        var listenerConfigs: [String: (ListenerConfig, Source)] = [:]
        var listenerOrder: [String] = []
        var listenerParts: [String: (SocketAddress, ReloadingTLSContext?)] = [:]
        for (l, src) in raw.listeners {
            if let first = listenerConfigs[l.name] {
                fail(src, "name", "duplicate listener name '\(l.name)' (first in \(first.1.file) \(first.1.path()))")
                continue
            }
            listenerConfigs[l.name] = (l, src)
            listenerOrder.append(l.name)
            var address: SocketAddress?
            do { address = try resolveAddress(l.address) } catch { fail(src, "address", "\(error)") }
            var tls: ReloadingTLSContext?
            if let t = l.tls { tls = makeTLS(t, src, listener: l.name) }
            validateLimits(l.limits, src)
            validateSanitize(l, src)
            if HTTP2Engine(rawValue: l.http2Engine) == nil { fail(src, "http2_engine", "'\(l.http2Engine)' is not gateway or nio") }
            if let address, l.tls == nil || tls != nil { listenerParts[l.name] = (address, tls) }
        }
        if raw.listeners.isEmpty {
            problems.append(ConfigProblem(file: raw.nodes.keys.sorted().first ?? "config", path: "listeners", message: "at least one listener is required"))
        }

        // Routes.
        var routeSources: [String: Source] = [:]
        var routesByListener: [String: [CompiledRoute]] = [:]
        var allRoutes: [CompiledRoute] = []
        var tests: [(route: String, source: Source, index: Int, test: RouteTestConfig)] = []
        for (r, src) in raw.routes {
            if let first = routeSources[r.name] {
                fail(src, "name", "duplicate route name '\(r.name)' (first in \(first.file) \(first.path()))")
                continue
            }
            routeSources[r.name] = src
            guard let (listener, _) = listenerConfigs[r.listener] else {
                fail(src, "listener", "unknown listener '\(r.listener)' (known: \(listenerOrder.joined(separator: ", ")))")
                continue
            }
            if let route = compileRoute(r, src, listener: listener, upstreams: upstreams) {
                routesByListener[r.listener, default: []].append(route)
                allRoutes.append(route)
                for (i, t) in r.tests.enumerated() { tests.append((r.name, src, i, t)) }
            }
        }

        if !problems.isEmpty { throw ConfigError(problems: problems) }

        var listeners: [ListenerRuntime] = []
        for name in listenerOrder {
            guard let (l, _) = listenerConfigs[name], let (address, tls) = listenerParts[name] else { continue }
            let limits = ListenerLimitsRuntime(
                maxHeadSize: l.limits.maxHeadSize.bytes, maxHeaders: l.limits.maxHeaders, maxBody: l.limits.maxBody.bytes,
                headerTimeout: l.limits.headerTimeout.timeAmount, idleTimeout: l.limits.idleTimeout.timeAmount,
                sendTimeout: l.limits.sendTimeout.timeAmount, clientBodyTimeout: l.limits.clientBodyTimeout.timeAmount,
                maxConcurrentStreams: l.limits.maxConcurrentStreams)
            listeners.append(ListenerRuntime(name: name, address: address, addressText: l.address, tls: tls, limits: limits,
                                             router: Router(routes: routesByListener[name] ?? []),
                                             defaultFilters: l.filters.map(\.filter), sanitize: Self.sanitizePolicy(l),
                                             gatewayKeys: appChannelKeys, requestsClientCertificates: (l.tls?.clientAuth ?? "none") != "none",
                                             http2Engine: HTTP2Engine(rawValue: l.http2Engine) ?? .gateway))
        }
        return RuntimeConfig(digest: raw.digest, adminAddress: adminAddress!, adminAddressText: raw.admin.address,
                             listeners: listeners, upstreams: upstreams, routes: allRoutes, routeTests: tests,
                             passportKeys: passportKeys, nonceStores: nonceStores)
    }

    static func sanitizePolicy(_ l: ListenerConfig) -> SanitizePolicy {
        var paths = PathCanonicalizer()
        paths.duplicateSlashes = PathCanonicalizer.DuplicateSlashes(rawValue: l.sanitize.duplicateSlashes) ?? .reject
        paths.allowSemicolons = l.sanitize.allowSemicolons
        var xfccTrust: XFCCTrust?
        if let trust = l.trustXFCC, trust.enabled {
            xfccTrust = XFCCTrust(ranges: trust.from.compactMap(CIDR.init))
        }
        let security = l.securityHeaders ?? SecurityHeadersConfig(enabled: l.tls != nil)
        return SanitizePolicy(
            paths: paths, stripRequest: HeaderNameSet(l.sanitize.stripRequestHeaders),
            stripResponse: HeaderNameSet(l.sanitize.stripResponseHeaders), trustRequestID: l.trustRequestID, xfccTrust: xfccTrust,
            // HSTS means nothing over plain HTTP (RFC 6797 8.1).
            hsts: security.enabled && l.tls != nil ? security.hsts : nil,
            contentTypeOptions: security.enabled && security.contentTypeOptions)
    }

    private mutating func validateSanitize(_ l: ListenerConfig, _ src: Source) {
        for (i, range) in (l.trustXFCC?.from ?? []).enumerated() where CIDR(range) == nil {
            fail(src, "trust_xfcc.from[\(i)]", "'\(range)' is not an address range (e.g. 10.0.0.0/8, fd00::/8, 127.0.0.1)")
        }
        if PathCanonicalizer.DuplicateSlashes(rawValue: l.sanitize.duplicateSlashes) == nil {
            fail(src, "sanitize.duplicate_slashes", "'\(l.sanitize.duplicateSlashes)' is not one of reject, merge, keep")
        }
        for (key, list) in [("strip_request_headers", l.sanitize.stripRequestHeaders), ("strip_response_headers", l.sanitize.stripResponseHeaders)] {
            for (i, name) in list.enumerated() where !HeaderNameSet.isValidPattern(name) {
                fail(src, "sanitize.\(key)[\(i)]", "'\(name)' is not a header name (a trailing '*' makes it a prefix)")
            }
        }
        for (i, name) in l.sanitize.stripRequestHeaders.enumerated() where ["host", "content-length", "transfer-encoding"].contains(name.lowercased()) {
            fail(src, "sanitize.strip_request_headers[\(i)]", "'\(name)' frames or routes the request and cannot be stripped")
        }
        if let hsts = l.securityHeaders?.hsts, !hsts.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) || hsts.isEmpty {
            fail(src, "security_headers.hsts", "must be a non-empty printable header value, e.g. '\(SecurityHeadersConfig.defaultHSTS)'")
        }
    }

    /// Route predicates on headers the gateway removes or sets would match on
    /// what a client forged, or never match: refused at load.
    private mutating func validateOwnedHeaderMatch(_ name: String, _ src: Source, _ key: String, listener: ListenerConfig) {
        let owned: Bool
        switch HeaderRules.kind(name) {
        case .other, .expect: owned = HeaderNameSet(listener.sanitize.stripRequestHeaders).contains(name)
        case .requestID: owned = !listener.trustRequestID
        case .hopByHop, .connection, .gatewaySet, .passport, .appChannel, .clientCert: owned = true
        }
        if owned {
            fail(src, key, "'\(name)' is removed or set by the gateway before routing; a route cannot match on it")
        }
    }

    mutating func fail(_ source: Source, _ rest: String, _ message: String) {
        problems.append(raw.problem(source, rest, message))
    }

    func resolvePath(_ path: String) -> String {
        path.hasPrefix("/") ? path : (stateDirectory as NSString).appendingPathComponent(path)
    }

    private mutating func validateLimits(_ l: ListenerLimits, _ src: Source) {
        if l.maxHeadSize.bytes < 1024 || l.maxHeadSize.bytes > 64 << 10 { fail(src, "limits.max_head_size", "must be between 1KiB and 64KiB") }
        if l.maxHeaders < 1 { fail(src, "limits.max_headers", "must be at least 1") }
        if l.maxConcurrentStreams < 1 { fail(src, "limits.max_concurrent_streams", "must be at least 1") }
        if l.headerTimeout.nanoseconds <= 0 { fail(src, "limits.header_timeout", "must be positive") }
        if l.idleTimeout.nanoseconds <= 0 { fail(src, "limits.idle_timeout", "must be positive") }
        if l.sendTimeout.nanoseconds <= 0 { fail(src, "limits.send_timeout", "must be positive") }
        if l.clientBodyTimeout.nanoseconds <= 0 { fail(src, "limits.client_body_timeout", "must be positive") }
    }

    private mutating func compileRoute(_ r: RouteConfig, _ src: Source, listener: ListenerConfig,
                                       upstreams: [String: UpstreamDefinition]) -> CompiledRoute? {
        let before = problems.count
        let m = r.match
        var host: HostMatcher?
        if let h = m.host {
            do { host = try HostMatcher(h) } catch { fail(src, "match.host", "\(error)") }
        }
        let pathKinds = [m.path, m.pathPrefix, m.pathTemplate, m.pathRegex].compactMap { $0 }
        var path = PathMatcher.any
        if pathKinds.count > 1 {
            fail(src, "match", "use only one of path, path_prefix, path_template, path_regex")
        } else if let p = m.path {
            if !p.hasPrefix("/") { fail(src, "match.path", "must start with /") }
            path = .exact(p)
        } else if let p = m.pathPrefix {
            if !p.hasPrefix("/") { fail(src, "match.path_prefix", "must start with /") }
            path = .prefix(p)
        } else if let p = m.pathTemplate {
            do { path = try PathMatcher.template(p) } catch { fail(src, "match.path_template", "\(error)") }
        } else if let p = m.pathRegex {
            do { path = .regex(try compileRegex(p)) } catch { fail(src, "match.path_regex", "\(error)") }
        }
        var methods: Set<String>?
        if let ms = m.methods {
            for (i, method) in ms.enumerated() where method.isEmpty || !method.utf8.allSatisfy(HTTPToken.isTokenByte) {
                fail(src, "match.methods[\(i)]", "'\(method)' is not an HTTP method")
            }
            if ms.isEmpty { fail(src, "match.methods", "an empty list matches nothing; omit the key to allow every method") }
            methods = Set(ms.map { $0.uppercased() })
        }
        var headers: [ValueMatcher] = []
        for (i, h) in m.headers.enumerated() {
            validateOwnedHeaderMatch(h.name, src, "match.headers[\(i)].name", listener: listener)
            do { headers.append(try ValueMatcher(h, lowercaseName: true)) } catch { fail(src, "match.headers[\(i)]", "\(error)") }
        }
        var query: [ValueMatcher] = []
        for (i, q) in m.query.enumerated() {
            do { query.append(try ValueMatcher(q, lowercaseName: false)) } catch { fail(src, "match.query[\(i)]", "\(error)") }
        }

        var rewrite = PathRewrite.none
        var hostRewrite: String?
        if let rw = r.rewrite {
            let kinds = [rw.stripPrefix != nil, rw.replacePrefix != nil, rw.regex != nil].filter { $0 }.count
            if kinds > 1 { fail(src, "rewrite", "use only one of strip_prefix, replace_prefix, regex") }
            if let s = rw.stripPrefix {
                if !s.hasPrefix("/") { fail(src, "rewrite.strip_prefix", "must start with /") }
                rewrite = .stripPrefix(s)
            } else if let to = rw.replacePrefix {
                if let from = m.pathPrefix { rewrite = .replacePrefix(from: from, to: to) } else {
                    fail(src, "rewrite.replace_prefix", "needs match.path_prefix (the prefix it replaces)")
                }
            } else if let rx = rw.regex {
                do { rewrite = .regex(try compileRegex(rx.pattern), PathRewrite.parseSubstitution(rx.substitution)) } catch {
                    fail(src, "rewrite.regex.pattern", "\(error)")
                }
            }
            if let h = rw.host {
                if h.isEmpty || !HTTPToken.isValidFieldValue(h) || h.contains(" ") { fail(src, "rewrite.host", "'\(h)' is not a valid host") }
                hostRewrite = h
            }
        }

        var targets = UpstreamTargets(single: "")
        switch (r.upstream, r.upstreams) {
        case (let one?, nil):
            if upstreams[one] == nil { fail(src, "upstream", unknownUpstream(one)) }
            targets = UpstreamTargets(single: one)
        case (nil, let many?):
            if many.isEmpty { fail(src, "upstreams", "at least one upstream is required") }
            for (i, w) in many.enumerated() {
                if upstreams[w.name] == nil { fail(src, "upstreams[\(i)].name", unknownUpstream(w.name)) }
                if w.weight < 0 { fail(src, "upstreams[\(i)].weight", "must not be negative") }
            }
            if !many.isEmpty && many.allSatisfy({ $0.weight == 0 }) { fail(src, "upstreams", "at least one weight must be positive") }
            targets = UpstreamTargets(weights: many.map { ($0.name, $0.weight) }, forceHeader: r.forceUpstream?.header,
                                      forced: r.forceUpstream?.values ?? [:])
        case (nil, nil):
            fail(src, "upstream", "a route needs 'upstream' or 'upstreams'")
        case (_?, _?):
            fail(src, "upstream", "use either 'upstream' or 'upstreams', not both")
        }
        if let force = r.forceUpstream {
            if r.upstreams == nil { fail(src, "force_upstream", "needs 'upstreams' (weighted targets)") }
            if force.header.isEmpty || !force.header.utf8.allSatisfy(HTTPToken.isTokenByte) {
                fail(src, "force_upstream.header", "'\(force.header)' is not a header name")
            } else {
                validateOwnedHeaderMatch(force.header, src, "force_upstream.header", listener: listener)
            }
            for (value, name) in force.values.sorted(by: { $0.key < $1.key }) where upstreams[name] == nil {
                fail(src, "force_upstream.values.\(value)", unknownUpstream(name))
            }
        }

        // The chain: the listener's defaults (minus disabled ones), then the route's own.
        let defaultNames = Set(listener.filters.map(\.name))
        for (i, d) in r.disabledFilters.enumerated() where !defaultNames.contains(d) {
            fail(src, "disabled_filters[\(i)]", "'\(d)' is not in listener '\(listener.name)' default filters")
        }
        let disabled = Set(r.disabledFilters)
        let chain = listener.filters.filter { !disabled.contains($0.name) }.map { ($0.name, $0.filter) }
            + r.filters.map { ($0.name, $0.filter) }

        // Filters that read what an earlier one left (decrypt_payload the verified request).
        for (i, (name, filter)) in chain.enumerated() {
            for needed in filter.requiredEarlierFilters where !chain[..<i].contains(where: { $0.0 == needed }) {
                fail(src, "filters", "'\(name)' needs '\(needed)' before it in the chain (listener defaults, then the route's filters)")
            }
        }

        let maxBody = r.maxBody?.bytes ?? listener.limits.maxBody.bytes
        guard problems.count == before else { return nil }
        return CompiledRoute(name: r.name, listener: r.listener, host: host, path: path, methods: methods, headers: headers,
                             query: query, rewrite: rewrite, hostRewrite: hostRewrite, preserveHost: r.preserveHost,
                             targets: targets, filters: chain, maxBody: maxBody, allowTrailers: r.allowTrailers)
    }

    private func unknownUpstream(_ name: String) -> String {
        "unknown upstream '\(name)' (known: \(raw.upstreams.map(\.0.name).joined(separator: ", ")))"
    }
}
