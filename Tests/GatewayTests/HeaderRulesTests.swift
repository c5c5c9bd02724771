import NIOHTTP1
import Testing

@testable import Gateway

@Suite("header rules of the proxy")
struct HeaderRulesTests {
    @Test("classification is ASCII case-insensitive", arguments: [
        ("TE", HeaderRules.Kind.hopByHop), ("Transfer-Encoding", .hopByHop), ("KEEP-ALIVE", .hopByHop),
        ("Proxy-Connection", .hopByHop), ("Proxy-Authorization", .hopByHop), ("Upgrade", .hopByHop), ("trailer", .hopByHop),
        ("Connection", .connection), ("Expect", .expect), ("X-Request-ID", .gatewaySet), ("x-forwarded-for", .gatewaySet),
        ("X-Forwarded-Proto", .gatewaySet), ("X-Forwarded-Host", .gatewaySet), ("Forwarded", .gatewaySet),
        ("X-Forwarded-Port", .other), ("Content-Type", .other), ("tee", .other), ("connections", .other),
    ])
    func kinds(name: String, kind: HeaderRules.Kind) {
        #expect(HeaderRules.kind(name) == kind)
    }

    @Test("upstream request headers: client's minus hop-by-hop, Connection-named, Expect and gateway-set; plus the gateway's")
    func upstreamHeaders() {
        let client: HTTPHeaders = [
            "Host": "api.example.com", "Connection": "keep-alive, X-Secret", "X-Secret": "s", "Keep-Alive": "5",
            "Expect": "100-Continue", "X-Request-Id": "forged", "X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6",
            "Accept": "a", "Transfer-Encoding": "chunked",
        ]
        let (out, expects) = HeaderRules.upstreamRequestHeaders(
            from: client, requestID: "rid", clientIP: "10.0.0.1", isTLS: true, originalHost: "api.example.com", chunked: true)
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

    @Test("response headers: hop-by-hop and Connection-named removed, one X-Request-Id")
    func responseHeaders() {
        var h: HTTPHeaders = ["Connection": "close, X-Internal", "X-Internal": "1", "Transfer-Encoding": "chunked",
                              "X-Request-Id": "upstream's", "Content-Type": "text/plain"]
        HeaderRules.prepareResponseHeaders(&h, requestID: "rid")
        #expect(h["x-request-id"] == ["rid"])
        #expect(h["x-internal"].isEmpty && h["connection"].isEmpty && h["transfer-encoding"].isEmpty)
        #expect(h["content-type"] == ["text/plain"])
        var plain: HTTPHeaders = ["Content-Type": "text/plain"]
        HeaderRules.prepareResponseHeaders(&plain, requestID: "rid")
        #expect(plain.count == 2)
    }
}
