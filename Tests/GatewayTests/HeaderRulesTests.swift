import Filters
import NIOHTTP1
import Testing

@testable import Gateway

@Suite("header rules of the proxy")
struct HeaderRulesTests {
    @Test("classification is ASCII case-insensitive", arguments: [
        ("TE", HeaderRules.Kind.hopByHop), ("Transfer-Encoding", .hopByHop), ("KEEP-ALIVE", .hopByHop),
        ("Proxy-Connection", .hopByHop), ("Proxy-Authorization", .hopByHop), ("Upgrade", .hopByHop), ("trailer", .hopByHop),
        ("Connection", .connection), ("Expect", .expect), ("X-Request-ID", .requestID), ("x-forwarded-for", .gatewaySet),
        ("X-Forwarded-Proto", .gatewaySet), ("X-Forwarded-Host", .gatewaySet), ("Forwarded", .gatewaySet),
        ("X-Forwarded-Port", .gatewaySet), ("x-forwarded-prefix", .gatewaySet), ("x-forwarded-", .other), ("Content-Type", .other), ("tee", .other), ("connections", .other),
        ("X-Passport", .passport), ("x-passport", .passport), ("X-Gw-Kid", .appChannel), ("x-gw-", .appChannel),
        ("X-GW-SIGNATURE", .appChannel), ("x-gwx", .other), ("X-Forwarded-Client-Cert", .clientCert),
    ])
    func kinds(name: String, kind: HeaderRules.Kind) {
        #expect(HeaderRules.kind(name) == kind)
    }

    @Test("upstream request headers: client's minus hop-by-hop, Connection-named, Expect and gateway-set; plus the gateway's")
    func upstreamHeaders() {
        let client: HeaderFields = [
            "Host": "api.example.com", "Connection": "keep-alive, X-Secret", "X-Secret": "s", "Keep-Alive": "5",
            "Expect": "100-Continue", "X-Request-Id": "forged", "X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6",
            "Accept": "a", "Transfer-Encoding": "chunked",
        ]
        let (out, expects) = HeaderRules.upstreamRequestHeaders(
            from: client, requestID: "rid", clientIP: "10.0.0.1", isTLS: true, originalHost: "api.example.com", chunked: true,
            policy: SanitizePolicy(), keepAppChannel: false)
        #expect(expects)
        #expect(out["host"] == ["api.example.com"])
        #expect(out["accept"] == ["a"])
        for gone in ["connection", "x-secret", "keep-alive", "expect", "forwarded"] { #expect(out[gone].isEmpty, "\(gone)") }
        #expect(out["x-request-id"] == ["rid"])
        #expect(out["x-forwarded-for"] == ["10.0.0.1"])
        #expect(out["x-forwarded-proto"] == ["https"])
        #expect(out["x-forwarded-host"] == ["api.example.com"])
        #expect(out["transfer-encoding"] == ["chunked"])
    }

    @Test("upstream request headers in place: kept fields in their order, the gateway's last, the last Expect decides")
    func upstreamHeadersInPlace() {
        var h: HeaderFields = ["A": "1", "Connection": "close", "B": "2", "Expect": "100-continue", "TE": "x", "C": "3",
                               "Expect": "nothing"]
        let original = h
        var expects = HeaderRules.prepareUpstreamRequestHeaders(
            &h, requestID: "rid", clientIP: nil, isTLS: false, originalHost: "", chunked: false, policy: SanitizePolicy(),
            keepAppChannel: false)
        #expect(!expects, "the last Expect is not 100-continue")
        #expect(h.map { "\($0.name)=\($0.value)" } == ["A=1", "B=2", "C=3", "x-request-id=rid", "x-forwarded-proto=http"])
        #expect(original.count == 7, "a copy of the list keeps its fields")
        #expect(h.capacity >= h.count + 3, "room for the filters' edits")
        var last: HeaderFields = ["Expect": "nothing", "Expect": "100-Continue"]
        expects = HeaderRules.prepareUpstreamRequestHeaders(
            &last, requestID: "rid", clientIP: nil, isTLS: false, originalHost: "", chunked: false, policy: SanitizePolicy(),
            keepAppChannel: false)
        #expect(expects)
    }

    @Test("response headers: hop-by-hop and Connection-named removed, one X-Request-Id")
    func responseHeaders() {
        var h: HeaderFields = ["Connection": "close, X-Internal", "X-Internal": "1", "Transfer-Encoding": "chunked",
                              "X-Request-Id": "upstream's", "Content-Type": "text/plain"]
        HeaderRules.prepareResponseHeaders(&h, requestID: "rid", policy: SanitizePolicy())
        #expect(h["x-request-id"] == ["rid"])
        #expect(h["x-internal"].isEmpty && h["connection"].isEmpty && h["transfer-encoding"].isEmpty)
        #expect(h["content-type"] == ["text/plain"])
        var plain: HeaderFields = ["Content-Type": "text/plain"]
        HeaderRules.prepareResponseHeaders(&plain, requestID: "rid", policy: SanitizePolicy())
        #expect(plain.count == 2)
    }

    @Test("owned request headers: X-Passport, X-Gw-* (unless the route reads them), XFCC (unless trusted), the configured list")
    func ownedRequestHeaders() {
        let client: HeaderFields = [
            "Host": "a", "X-Passport": "forged", "X-Gw-Kid": "k1", "X-Forwarded-Client-Cert": "Hash=1", "X-User-Id": "7",
            "X-Internal-Role": "admin", "X-Internals": "kept? no: prefix x-internal-", "Accept": "a",
        ]
        let policy = SanitizePolicy(stripRequest: HeaderNameSet(["x-user-id", "x-internal-*"]))
        let (out, _) = HeaderRules.upstreamRequestHeaders(
            from: client, requestID: "rid", clientIP: nil, isTLS: true, originalHost: "a", chunked: false, policy: policy,
            keepAppChannel: false)
        for gone in ["x-passport", "x-gw-kid", "x-forwarded-client-cert", "x-user-id", "x-internal-role"] {
            #expect(out[gone].isEmpty, "\(gone) reached the upstream")
        }
        #expect(out["x-internals"].count == 1)
        #expect(out["accept"] == ["a"])
        let trusting = SanitizePolicy(stripRequest: policy.stripRequest, xfccTrust: XFCCTrust(ranges: []))
        let (kept, _) = HeaderRules.upstreamRequestHeaders(
            from: client, requestID: "rid", clientIP: nil, isTLS: true, originalHost: "a", chunked: false, policy: trusting,
            keepAppChannel: true)
        #expect(kept["x-gw-kid"] == ["k1"])
        #expect(kept["x-forwarded-client-cert"].isEmpty, "read on a trusting listener, never forwarded")
        #expect(kept["x-passport"].isEmpty)
    }

    @Test("owned response headers and security headers")
    func ownedResponseHeaders() {
        let policy = SanitizePolicy(stripResponse: HeaderNameSet(["server", "x-powered-by"]), hsts: "max-age=1",
                                    contentTypeOptions: true)
        var h: HeaderFields = ["X-Passport": "leak", "X-Gw-Debug": "1", "Server": "tomcat", "X-Powered-By": "PHP",
                              "Content-Type": "text/plain", "X-Content-Type-Options": "other"]
        HeaderRules.prepareResponseHeaders(&h, requestID: "rid", policy: policy)
        for gone in ["x-passport", "x-gw-debug", "server", "x-powered-by"] { #expect(h[gone].isEmpty, "\(gone)") }
        #expect(h["content-type"] == ["text/plain"])
        #expect(h["strict-transport-security"] == ["max-age=1"])
        #expect(h["x-content-type-options"] == ["nosniff"])
        var own: HeaderFields = ["Strict-Transport-Security": "max-age=99; preload"]
        HeaderRules.prepareResponseHeaders(&own, requestID: "rid", policy: policy)
        #expect(own["strict-transport-security"] == ["max-age=99; preload"])
        #expect(own["x-content-type-options"] == ["nosniff"] && own["x-request-id"] == ["rid"])
        // An upstream's own X-Content-Type-Options alone (nothing else to drop) is still replaced, once.
        var typed: HeaderFields = ["Content-Type": "text/plain", "x-content-type-options": "other"]
        HeaderRules.prepareResponseHeaders(&typed, requestID: "rid", policy: policy)
        #expect(typed["x-content-type-options"] == ["nosniff"])
        #expect(typed.map { $0.name.lowercased() } == ["content-type", "x-request-id", "strict-transport-security", "x-content-type-options"])
    }

    @Test("trailers never carry framing, routing, credentials or owned headers")
    func trailers() {
        for bad in ["Content-Length", "transfer-encoding", "Host", "X-Passport", "x-gw-kid", "Authorization", "Cookie",
                    "X-Request-Id", "X-Forwarded-For", "Connection", "Trailer", "Content-Type"] {
            #expect(!HeaderRules.isForwardableTrailer(bad), "\(bad)")
        }
        #expect(HeaderRules.isForwardableTrailer("x-checksum"))
        #expect(HeaderRules.isForwardableTrailer("grpc-status"))
    }

    @Test("client request ids are accepted only when short and plain")
    func requestIDs() {
        #expect(SanitizePolicy.isAcceptableRequestID("abc-123_DEF.4"))
        #expect(!SanitizePolicy.isAcceptableRequestID(""))
        #expect(!SanitizePolicy.isAcceptableRequestID("a b"))
        #expect(!SanitizePolicy.isAcceptableRequestID("a\"b"))
        #expect(!SanitizePolicy.isAcceptableRequestID(String(repeating: "a", count: 129)))
    }
}
