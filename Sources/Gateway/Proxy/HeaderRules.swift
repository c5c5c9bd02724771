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
        /// Headers the gateway sets itself on the way upstream:
        /// `X-Request-Id`, `X-Forwarded-For/-Proto/-Host`, `Forwarded`.
        case gatewaySet
    }

    /// Classifies `name` ASCII case-insensitively, without allocating.
    static func kind(_ name: String) -> Kind {
        name.utf8.withContiguousStorageIfAvailable { b -> Kind in
            func equals(_ lower: StaticString) -> Bool {
                let l = lower.utf8Start
                for i in 0..<b.count where b[i] | 0x20 != l[i] { return false }
                return true
            }
            switch b.count {
            case 2: return equals("te") ? .hopByHop : .other
            case 6: return equals("expect") ? .expect : .other
            case 7: return equals("trailer") || equals("upgrade") ? .hopByHop : .other
            case 9: return equals("forwarded") ? .gatewaySet : .other
            case 10:
                if equals("connection") { return .connection }
                return equals("keep-alive") ? .hopByHop : .other
            case 12: return equals("x-request-id") ? .gatewaySet : .other
            case 15: return equals("x-forwarded-for") ? .gatewaySet : .other
            case 16:
                if equals("proxy-connection") { return .hopByHop }
                return equals("x-forwarded-host") ? .gatewaySet : .other
            case 17:
                if equals("transfer-encoding") { return .hopByHop }
                return equals("x-forwarded-proto") ? .gatewaySet : .other
            case 18: return equals("proxy-authenticate") ? .hopByHop : .other
            case 19: return equals("proxy-authorization") ? .hopByHop : .other
            default: return .other
            }
        } ?? slowKind(name.lowercased())
    }

    private static func slowKind(_ lower: String) -> Kind {
        switch lower {
        case "connection": return .connection
        case "expect": return .expect
        case "x-request-id", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded": return .gatewaySet
        default: return hopByHop.contains(lower) ? .hopByHop : .other
        }
    }

    /// The header names listed in `Connection` values (other than `close`
    /// and `keep-alive`), lowercased.
    static func connectionTokens(_ values: [String]) -> [String] {
        var named: [String] = []
        for value in values {
            for token in value.split(separator: ",") {
                let t = token.trimmingSpaces().lowercased()
                if !t.isEmpty, t != "close", t != "keep-alive" { named.append(t) }
            }
        }
        return named
    }

    /// The headers to send upstream: the client's, minus hop-by-hop ones, the
    /// ones named in `Connection`, `Expect`, and those the gateway sets; plus
    /// the gateway's own. Returns whether the client sent `Expect: 100-continue`.
    static func upstreamRequestHeaders(
        from client: HTTPHeaders, requestID: String, clientIP: String?, isTLS: Bool, originalHost: String, chunked: Bool
    ) -> (HTTPHeaders, expectsContinue: Bool) {
        var out = HTTPHeaders()
        out.reserveCapacity(client.count + 5)
        var expectsContinue = false
        var connectionValues: [String] = []
        for (name, value) in client {
            switch kind(name) {
            case .other: out.add(name: name, value: value)
            case .hopByHop, .gatewaySet: break
            case .connection: connectionValues.append(value)
            case .expect: expectsContinue = value.lowercased() == "100-continue"
            }
        }
        for name in connectionTokens(connectionValues) { out.remove(name: name) }
        out.add(name: "x-request-id", value: requestID)
        if let clientIP { out.add(name: "x-forwarded-for", value: clientIP) }
        out.add(name: "x-forwarded-proto", value: isTLS ? "https" : "http")
        if !originalHost.isEmpty { out.add(name: "x-forwarded-host", value: originalHost) }
        if chunked { out.add(name: "transfer-encoding", value: "chunked") }
        return (out, expectsContinue)
    }

    /// Removes hop-by-hop headers (and those named in `Connection`) from an
    /// upstream response and sets `X-Request-Id`. Usually a single scan.
    static func prepareResponseHeaders(_ headers: inout HTTPHeaders, requestID: String) {
        var slow = false
        for (name, _) in headers {
            switch kind(name) {
            case .other, .expect: continue
            case .hopByHop, .connection, .gatewaySet: slow = true
            }
            if slow { break }
        }
        if slow {
            let named = connectionTokens(headers[canonicalForm: "connection"].map(String.init))
            for name in hopByHop { headers.remove(name: name) }
            for name in named { headers.remove(name: name) }
            headers.remove(name: "x-request-id")
        }
        headers.add(name: "x-request-id", value: requestID)
    }
}

extension StringProtocol {
    func trimmingSpaces() -> Substring {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}
