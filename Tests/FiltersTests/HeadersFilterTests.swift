import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import Filters

func makeExchange(_ headers: HeaderFields = [:]) -> Exchange {
    Exchange(request: RequestHead(version: .http1_1, method: .GET, uri: "/x", headers: headers), requestID: "rid",
             listener: "public", clientAddress: nil, isTLS: true, eventLoop: EmbeddedEventLoop(), logger: Logger(label: "test"))
}

func decodeHeadersFilter(_ json: String) throws -> HeadersFilter {
    let configuration = try JSONDecoder().decode(HeadersFilter.Configuration.self, from: Data(json.utf8))
    return try HeadersFilter(configuration: configuration)
}

@Suite("headers filter")
struct HeadersFilterTests {
    @Test("request side: remove, then set, then add")
    func requestSide() throws {
        let filter = try decodeHeadersFilter("""
        {"request": {"set": {"X-Env": "demo"}, "add": {"x-tag": "b"}, "remove": ["x-debug"]}}
        """)
        let exchange = makeExchange(["x-debug": "1", "x-env": "prod", "x-tag": "a"])
        guard case .next = filter.onRequest(exchange) else {
            Issue.record("headers filter must pass the request on")
            return
        }
        #expect(exchange.request.headers["x-debug"].isEmpty)
        #expect(exchange.request.headers["x-env"] == ["demo"])
        #expect(exchange.request.headers["x-tag"] == ["a", "b"])
    }

    @Test("response side applies to gateway errors too")
    func responseSide() throws {
        let filter = try decodeHeadersFilter("""
        {"response": {"set": {"cache-control": "no-store"}, "remove": ["server"]}}
        """)
        var head = ResponseHead(status: .notFound, headers: ["server": "x", "content-type": "application/json"], isLocal: true)
        filter.onResponse(makeExchange(), &head)
        #expect(head.headers["server"].isEmpty)
        #expect(head.headers["cache-control"] == ["no-store"])
        #expect(head.headers["content-type"] == ["application/json"])
    }

    @Test("bad names and values are refused at load", arguments: [
        #"{"request": {"set": {"bad name": "x"}}}"#,
        #"{"request": {"remove": [""]}}"#,
        #"{"response": {"add": {"x": "a\r\nx-injected: 1"}}}"#,
        #"{"response": {"set": {"x": "nul\u0000"}}}"#,
    ])
    func refusesBadHeaders(json: String) {
        #expect(throws: FilterConfigurationError.self) { _ = try decodeHeadersFilter(json) }
    }

    @Test("unknown keys are refused with their name")
    func unknownKeys() {
        do {
            _ = try decodeHeadersFilter(#"{"requests": {}}"#)
            Issue.record("an unknown key was accepted")
        } catch let DecodingError.dataCorrupted(ctx) {
            #expect(ctx.debugDescription.contains("unknown key 'requests'"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}

@Suite("filter registry")
struct FilterRegistryTests {
    struct Twin: Filter {
        static let name = "headers"
        struct Configuration: Decodable {}
        init(configuration: Configuration) {}
    }

    @Test func builtInNames() throws {
        let registry = try FilterRegistry()
        #expect(registry.names == ["authenticate", "decrypt_payload", "headers", "mtls_authz", "passport", "request_signature", "sanitize"])
        #expect(registry.type(named: "headers") == HeadersFilter.self)
        #expect(registry.type(named: "sanitize") == SanitizeFilter.self)
        #expect(registry.type(named: "nope") == nil)
    }

    @Test("a name registered twice fails at start")
    func duplicates() {
        #expect(throws: FilterRegistry.DuplicateFilterName.self) { try FilterRegistry([HeadersFilter.self, Twin.self]) }
    }

    @Test("gateway errors map to PROTOCOL.md statuses")
    func errorStatuses() {
        #expect(GatewayError.noRoute.status.code == 404)
        #expect(GatewayError.methodNotAllowed.status.code == 405)
        #expect(GatewayError.headTooLarge.status.code == 431)
        #expect(GatewayError.bodyTooLarge.status.code == 413)
        #expect(GatewayError.invalidToken.status.code == 401)
        #expect(GatewayError.forbidden.status.code == 403)
        #expect(GatewayError.rateLimited.status.code == 429)
        #expect(GatewayError.upstreamUnavailable.status.code == 503)
        #expect(GatewayError.upstreamTimeout.status.code == 504)
        #expect(GatewayError.bodyTooLarge.errorCode == "body_too_large")
    }

    @Test("replacing: every field of the named names goes (any case), the added ones come last, the rest keep their order")
    func replacing() {
        let h: HeaderFields = ["Content-Type": "a/b", "x-a": "1", "CONTENT-TYPE": "c/d", "Authorization": "t", "x-b": "2"]
        let r = h.replacing("content-type", "authorization", with: ("content-type", "e/f"), ("x-c", "3"))
        #expect(r.map { "\($0.name)=\($0.value)" } == ["x-a=1", "x-b=2", "content-type=e/f", "x-c=3"])
        #expect(h.replacing("x-none", with: ("x-a", "9")).map(\.value) == ["a/b", "1", "c/d", "t", "2", "9"])
    }
}
