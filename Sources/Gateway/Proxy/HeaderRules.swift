import Filters
import NIOCore
import NIOHTTP1

/// Header rules of the proxy that do not depend on configuration. Each
/// direction is one pass over the headers, classifying names without
/// allocating; the rare headers that need more work take a slow path.
enum HeaderRules {
    /// Hop-by-hop headers (RFC 9110 7.6.1) plus the old `proxy-connection`.
    static let hopByHop: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// What the proxy does with a header name.
    enum Kind: Equatable {
        case other
        /// Hop-by-hop: never forwarded in either direction.
        case hopByHop
        /// `Connection`: hop-by-hop, and names more hop-by-hop headers.
        case connection
        /// `Expect`: answered by the gateway, never forwarded.
        case expect
        /// Headers the gateway sets itself on the way upstream
        /// (`X-Forwarded-For/-Proto/-Host`), and the rest of `X-Forwarded-*`
        /// and `Forwarded`, which it does not set and no client may.
        case gatewaySet
        /// `X-Request-Id`: the gateway's, or the client's on a trusting listener.
        case requestID
        /// `X-Passport`: minted by the gateway only, never taken from a client
        /// or passed back from an upstream.
        case passport
        /// `X-Gw-*`: the app channel's headers (PROTOCOL 2.2).
        case appChannel
        /// `X-Forwarded-Client-Cert`: only from a trusted hop.
        case clientCert
    }

    /// Removes every `X-Gw-*` header in one pass (the app channel's seven
    /// would otherwise cost seven scans of the list).
    static func removeAppChannelHeaders(_ headers: inout HeaderFields) {
        var i = headers.count - 1
        while i >= 0 {
            if isAppChannel(headers[i].name) { headers.remove(at: i) }
            i -= 1
        }
    }

    /// Whether `name` is an app-channel header (`X-Gw-*`), ASCII case-insensitively.
    @inline(__always)
    static func isAppChannel(_ name: String) -> Bool {
        name.utf8.count >= 5 && (name.utf8.withContiguousStorageIfAvailable(isAppChannelPrefix) ?? name.lowercased().hasPrefix("x-gw-"))
    }

    @inline(__always)
    static func isAppChannelPrefix(_ b: UnsafeBufferPointer<UInt8>) -> Bool {
        b.count >= 5 && b[0] | 0x20 == UInt8(ascii: "x") && b[1] == UInt8(ascii: "-") && b[2] | 0x20 == UInt8(ascii: "g")
            && b[3] | 0x20 == UInt8(ascii: "w") && b[4] == UInt8(ascii: "-")
    }

    /// Classifies `name` ASCII case-insensitively, without allocating.
    /// Inlined, so that a loop over a list borrows each name instead of
    /// copying it for the call (the classification proper works on bytes).
    @inline(__always)
    static func kind(_ name: String) -> Kind {
        name.utf8.withContiguousStorageIfAvailable(kind(bytes:)) ?? slowKind(name.lowercased())
    }

    /// `kind` over a name's bytes.
    static func kind(bytes b: UnsafeBufferPointer<UInt8>) -> Kind {
        let bytes = UnsafeRawBufferPointer(b)
        @inline(__always) func equals(_ lower: StaticString) -> Bool { ASCII.equalsLowercase(bytes, lower) }
        if isAppChannelPrefix(b) { return .appChannel }
        if b.count > 12 && ASCII.equalsLowercase(UnsafeRawBufferPointer(rebasing: bytes.prefix(12)), "x-forwarded-") {
            return b.count == 23 && equals("x-forwarded-client-cert") ? .clientCert : .gatewaySet
        }
        switch b.count {
        case 2: return equals("te") ? .hopByHop : .other
        case 6: return equals("expect") ? .expect : .other
        case 7: return equals("trailer") || equals("upgrade") ? .hopByHop : .other
        case 9: return equals("forwarded") ? .gatewaySet : .other
        case 10:
            if equals("x-passport") { return .passport }
            if equals("connection") { return .connection }
            return equals("keep-alive") ? .hopByHop : .other
        case 12: return equals("x-request-id") ? .requestID : .other
        case 16: return equals("proxy-connection") ? .hopByHop : .other
        case 17: return equals("transfer-encoding") ? .hopByHop : .other
        case 18: return equals("proxy-authenticate") ? .hopByHop : .other
        case 19: return equals("proxy-authorization") ? .hopByHop : .other
        default: return .other
        }
    }

    private static func slowKind(_ lower: String) -> Kind {
        switch lower {
        case "connection": return .connection
        case "expect": return .expect
        case "forwarded": return .gatewaySet
        case "x-request-id": return .requestID
        case "x-passport": return .passport
        case "x-forwarded-client-cert": return .clientCert
        default:
            if lower.hasPrefix("x-gw-") { return .appChannel }
            if lower.hasPrefix("x-forwarded-") && lower.count > 12 { return .gatewaySet }
            return hopByHop.contains(lower) ? .hopByHop : .other
        }
    }

    /// The header names listed in `Connection` values (other than `close`
    /// and `keep-alive`), lowercased.
    static func connectionTokens(_ values: [String]) -> [String] {
        var named: [String] = []
        for value in values {
            // The usual values name no header: no splitting, no allocation.
            if ASCII.equalsLowercase(value, "keep-alive") || ASCII.equalsLowercase(value, "close") { continue }
            for token in value.split(separator: ",") {
                let t = token.trimmingSpaces().lowercased()
                if !t.isEmpty, t != "close", t != "keep-alive" { named.append(t) }
            }
        }
        return named
    }

    /// The headers to send upstream: the client's, minus hop-by-hop ones, the
    /// ones named in `Connection`, `Expect`, those the gateway sets or owns
    /// (`X-Passport`, `X-Gw-*` unless the route's filters read them,
    /// `X-Forwarded-Client-Cert` unless trusted) and the listener's
    /// `strip_request_headers`; plus the gateway's own. Returns whether the
    /// client sent `Expect: 100-continue`.
    static func upstreamRequestHeaders(
        from client: HeaderFields, requestID: String, clientIP: String?, isTLS: Bool, originalHost: String, chunked: Bool,
        policy: SanitizePolicy, keepAppChannel: Bool
    ) -> (HeaderFields, expectsContinue: Bool) {
        var headers = client
        let expectsContinue = prepareUpstreamRequestHeaders(
            &headers, requestID: requestID, clientIP: clientIP, isTLS: isTLS, originalHost: originalHost, chunked: chunked,
            policy: policy, keepAppChannel: keepAppChannel)
        return (headers, expectsContinue)
    }

    /// `upstreamRequestHeaders` in place: the fields that go are removed from
    /// the list, the others keep their order, the gateway's own come last.
    /// The proxy's list is the request's own (nobody else holds it), so no
    /// field is copied; room is made for the filters' edits as well.
    static func prepareUpstreamRequestHeaders(
        _ headers: inout HeaderFields, requestID: String, clientIP: String?, isTLS: Bool, originalHost: String, chunked: Bool,
        policy: SanitizePolicy, keepAppChannel: Bool
    ) -> Bool {
        var expectsContinue = false, expectSeen = false
        var connectionValues: [String] = []
        let strip = policy.stripRequest
        let checksStrip = !strip.isEmpty
        var i = headers.count - 1
        while i >= 0 {
            let keep: Bool
            switch kind(headers[i].name) {
            case .other: keep = !checksStrip || !strip.contains(headers[i].name)
            case .hopByHop, .gatewaySet, .requestID, .passport, .clientCert: keep = false  // a client cert is read (on a trusting listener) before routing; never forwarded
            case .appChannel: keep = keepAppChannel
            case .connection:
                connectionValues.append(headers[i].value)
                keep = false
            case .expect:
                // The last `Expect` decides (this loop runs backwards).
                if !expectSeen { expectsContinue = headers[i].value.lowercased() == "100-continue" }
                expectSeen = true
                keep = false
            }
            if !keep { headers.remove(at: i) }
            i -= 1
        }
        let named = connectionTokens(connectionValues)
        if !named.isEmpty { headers.removeAll { named.contains($0.name.lowercased()) } }
        headers.reserveCapacity(headers.count + 8)  // the gateway's five, and the filters' edits (passport, decrypt_payload)
        headers.append(("x-request-id", requestID))
        if let clientIP { headers.append(("x-forwarded-for", clientIP)) }
        headers.append(("x-forwarded-proto", isTLS ? "https" : "http"))
        if !originalHost.isEmpty { headers.append(("x-forwarded-host", originalHost)) }
        if chunked { headers.append(("transfer-encoding", "chunked")) }
        return expectsContinue
    }

    /// Request trailers a route may forward: none that frames, routes,
    /// authenticates or that the gateway owns (RFC 9110 6.5.1), so a trailer
    /// can never smuggle what the head was checked for.
    static func isForwardableTrailer(_ name: String) -> Bool {
        guard kind(name) == .other else { return false }
        switch name.lowercased() {
        case "content-length", "content-type", "content-encoding", "content-range", "host", "authorization", "cookie",
             "set-cookie", "expect", "max-forwards", "cache-control", "pragma", "range", "if-match", "if-none-match",
             "if-modified-since", "if-unmodified-since", "if-range", "www-authenticate", "age", "date", "location",
             "retry-after", "vary", "warning", "trailer":
            return false
        default:
            return true
        }
    }

    /// Removes hop-by-hop headers (and those named in `Connection`), the ones
    /// the gateway owns (`X-Passport`, `X-Gw-*`) and the listener's
    /// `strip_response_headers` from an upstream response; sets `X-Request-Id`
    /// and the listener's security headers. Usually a single scan.
    static func prepareResponseHeaders(_ headers: inout HeaderFields, requestID: String, policy: SanitizePolicy) {
        var slow = false
        var hasHSTS = false
        let strip = policy.stripResponse
        let checksStrip = !strip.isEmpty
        let checksHSTS = policy.hsts != nil
        for i in headers.indices {
            // Over the name's bytes where they lie: a loop over the fields
            // themselves copied each one (its two strings retained and released).
            ASCII.withUTF8(headers[i].name) { name in
                switch kind(bytes: name.assumingMemoryBound(to: UInt8.self)) {
                case .other, .expect:
                    if checksStrip && strip.contains(utf8: name) { slow = true }
                    switch name.count {
                    case 22 where policy.contentTypeOptions: if ASCII.equalsLowercase(name, "x-content-type-options") { slow = true }
                    case 25 where checksHSTS: if ASCII.equalsLowercase(name, "strict-transport-security") { hasHSTS = true }
                    default: break
                    }
                case .hopByHop, .connection, .gatewaySet, .requestID, .passport, .appChannel, .clientCert: slow = true
                }
            }
        }
        let hsts = hasHSTS ? nil : policy.hsts
        guard slow else {
            // The gateway's own names: no ASCII check (`append`).
            headers.append(("x-request-id", requestID))
            if let hsts { headers.append(("strict-transport-security", hsts)) }
            if policy.contentTypeOptions { headers.append(("x-content-type-options", "nosniff")) }
            return
        }
        var connectionValues: [String] = []
        for (name, value) in headers where kind(name) == .connection { connectionValues.append(value) }
        let named = connectionTokens(connectionValues)
        // A new list, wrapped once (no per-field ASCII check of `add`).
        var kept: [(name: String, value: String)] = []
        kept.reserveCapacity(headers.count + 3)
        for (name, value) in headers {
            switch kind(name) {
            case .hopByHop, .connection, .requestID, .passport, .appChannel: continue
            case .other, .expect, .gatewaySet, .clientCert:
                if strip.contains(name) || (!named.isEmpty && named.contains(name.lowercased())) { continue }
                if policy.contentTypeOptions && ASCII.equalsLowercase(name, "x-content-type-options") { continue }
                kept.append((name, value))
            }
        }
        kept.append(("x-request-id", requestID))
        if let hsts { kept.append(("strict-transport-security", hsts)) }
        if policy.contentTypeOptions { kept.append(("x-content-type-options", "nosniff")) }
        headers = HeaderFields(fields: kept)
    }
}
