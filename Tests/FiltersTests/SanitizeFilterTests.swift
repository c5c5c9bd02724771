import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@testable import Filters

func decodeSanitize(_ json: String) throws -> SanitizeFilter {
    let configuration = try JSONDecoder().decode(SanitizeFilter.Configuration.self, from: Data(json.utf8))
    return try SanitizeFilter(configuration: configuration)
}

func request(_ method: HTTPMethod = .GET, _ uri: String = "/x", _ headers: HeaderFields = [:]) -> Exchange {
    Exchange(request: RequestHead(version: .http1_1, method: method, uri: uri, headers: headers), requestID: "rid",
             listener: "public", clientAddress: nil, isTLS: true, eventLoop: EmbeddedEventLoop(), logger: Logger(label: "test"))
}

/// The error code of a rejection, or "next".
func verdict(_ action: FilterAction) -> String {
    switch action {
    case .next: return "next"
    case .respond(let r): return r.errorCode ?? "\(r.status.code)"
    case .suspend: return "suspend"
    }
}

@Suite("sanitize filter")
struct SanitizeFilterTests {
    static let config = """
    {"methods": ["GET", "POST"], "content_types": ["application/json"],
     "headers": {"deny": ["x-debug", "x-admin-*"]},
     "query": {"deny": ["debug"], "allow": ["page", "q"]},
     "params": {"limit": {"type": "int", "min": 1, "max": 100, "out_of_range": "clamp"},
                "page": {"type": "int", "min": 1, "max": 50},
                "sort": {"enum": ["asc", "desc"]},
                "id": {"type": "uuid"},
                "q": {"pattern": "[a-z]{1,8}", "max_length": 8}},
     "max_body": 64, "json": {"max_depth": 3}}
    """

    @Test("each rule's failure has its own code", arguments: [
        ("DELETE", "/x", [:], "method_rejected"),
        ("POST", "/x", ["content-length": "2", "content-type": "text/plain"], "content_type_rejected"),
        ("POST", "/x", ["content-length": "2"], "content_type_rejected"),
        ("POST", "/x", ["content-length": "100", "content-type": "application/json"], "body_too_large"),
        ("GET", "/x", ["X-Debug": "1"], "header_denied"),
        ("GET", "/x", ["x-admin-token": "1"], "header_denied"),
        ("GET", "/x?debug=1", [:], "query_param_denied"),
        ("GET", "/x?%64ebug=1", [:], "query_param_denied"),
        ("GET", "/x?other=1", [:], "query_param_not_allowed"),
        ("GET", "/x?page=0", [:], "param_out_of_range"),
        ("GET", "/x?page=51", [:], "param_out_of_range"),
        ("GET", "/x?page=1x", [:], "param_invalid"),
        ("GET", "/x?page=+1", [:], "param_invalid"),
        ("GET", "/x?page=1&page=2", [:], "param_invalid"),
        ("GET", "/x?sort=up", [:], "param_invalid"),
        ("GET", "/x?id=not-a-uuid", [:], "param_invalid"),
        ("GET", "/x?q=abc1", [:], "param_invalid"),
        ("GET", "/x?q=abcdefghi", [:], "param_invalid"),
        ("GET", "/x?q=%ff", [:], "param_invalid"),
        ("GET", "/x?q=%zz", [:], "param_invalid"),
        ("GET", "/x?page=2&sort=asc&id=123e4567-e89b-12d3-a456-426614174000&q=abc", [:], "next"),
        ("POST", "/x", ["content-length": "2", "content-type": "Application/JSON; charset=utf-8"], "next"),
        ("GET", "/x", [:], "next"),
    ] as [(String, String, HeaderFields, String)])
    func rules(method: String, uri: String, headers: HeaderFields, expected: String) throws {
        let filter = try decodeSanitize(Self.config)
        let exchange = request(HTTPMethod(rawValue: method), uri, headers)
        #expect(verdict(filter.onRequest(exchange)) == expected)
    }

    @Test("clamp rewrites the parameter and leaves the rest of the query as sent")
    func clamp() throws {
        let filter = try decodeSanitize(Self.config)
        let high = request(.GET, "/x?q=ab&limit=1000&page=2")
        #expect(verdict(filter.onRequest(high)) == "next")
        #expect(high.request.uri == "/x?q=ab&limit=100&page=2")
        let low = request(.GET, "/x?limit=-5")
        #expect(verdict(filter.onRequest(low)) == "next")
        #expect(low.request.uri == "/x?limit=1")
    }

    @Test("a required parameter: missing with no query, missing from a query, present")
    func requiredParam() throws {
        let filter = try decodeSanitize(#"{"params": {"page": {"type": "int", "min": 1, "max": 50, "required": true}}}"#)
        #expect(verdict(filter.onRequest(request(.GET, "/x"))) == "param_missing")
        #expect(verdict(filter.onRequest(request(.GET, "/x?"))) == "param_missing")
        #expect(verdict(filter.onRequest(request(.GET, "/x?q=a"))) == "param_missing")
        #expect(verdict(filter.onRequest(request(.GET, "/x?page=3"))) == "next")
        let optional = try decodeSanitize(#"{"params": {"page": {"type": "int", "min": 1, "max": 50}}}"#)
        #expect(verdict(optional.onRequest(request(.GET, "/x"))) == "next")
        #expect(verdict(optional.onRequest(request(.GET, "/x?page=0"))) == "param_out_of_range")
    }

    @Test("max_body lowers the route's limit for streamed bodies")
    func bodyLimit() throws {
        let filter = try decodeSanitize(Self.config)
        let e = request(.POST, "/x", ["transfer-encoding": "chunked", "content-type": "application/json"])
        #expect(verdict(filter.onRequest(e)) == "next")
        #expect(e.bodyLimit == 64)
    }

    @Test("headers.allow: other client headers refused; protocol and gateway headers always pass")
    func headerAllow() throws {
        let filter = try decodeSanitize(#"{"headers": {"allow": ["accept", "x-app-*"]}}"#)
        let ok = request(.GET, "/x", ["Host": "a", "Accept": "*/*", "X-App-Version": "1", "x-request-id": "r", "x-forwarded-for": "1"])
        #expect(verdict(filter.onRequest(ok)) == "next")
        #expect(verdict(filter.onRequest(request(.GET, "/x", ["Cookie": "a"]))) == "header_not_allowed")
    }

    @Test("JSON bodies: well-formed and not too deep", arguments: [
        (#"{"a": [1, 2.5e-3, -0, "x\u00e9\n", true, false, null]}"#, "next"),
        (#"[[1]]"#, "next"),
        (#"[[[1]]]"#, "next"),
        (#"[[[[1]]]]"#, "json_too_deep"),
        (#"{"a": {"b": {"c": {}}}}"#, "json_too_deep"),
        (#"{"a": 1,}"#, "invalid_json"),
        (#"{"a" 1}"#, "invalid_json"),
        (#"{"a": 01}"#, "invalid_json"),
        (#"{"a": 1} x"#, "invalid_json"),
        (#"{"a": NaN}"#, "invalid_json"),
        (#"{"a": "\ud800"}"#, "invalid_json"),
        (#"{"a": "\x"}"#, "invalid_json"),
        ("{\"a\": \"\u{1}\"}", "invalid_json"),
        (#"'a'"#, "invalid_json"),
        (#"tru"#, "invalid_json"),
        (#""\ud83d\ude00""#, "next"),
        ("\"caf\u{e9}\"", "next"),
    ])
    func json(body: String, expected: String) throws {
        let filter = try decodeSanitize(Self.config)
        var buffer = ByteBuffer(string: body)
        #expect(verdict(filter.onRequestBody(request(.POST), &buffer)) == expected, "\(body)")
    }

    @Test("invalid UTF-8 inside a JSON string is refused")
    func jsonUTF8() throws {
        let validator = JSONValidator(maxDepth: 4)
        for bytes: [UInt8] in [[0x22, 0xC3, 0x22], [0x22, 0xC0, 0xAF, 0x22], [0x22, 0xED, 0xA0, 0x80, 0x22], [0x22, 0xFF, 0x22]] {
            #expect(bytes.withUnsafeBytes { validator.validate($0) } != nil, "\(bytes)")
        }
        #expect(([0x22, 0xE2, 0x82, 0xAC, 0x22] as [UInt8]).withUnsafeBytes { validator.validate($0) } == nil)
    }

    @Test("configuration mistakes fail at load", arguments: [
        #"{"methods": []}"#, #"{"methods": ["G T"]}"#, #"{"content_types": ["json"]}"#,
        #"{"headers": {"deny": ["bad name"]}}"#, #"{"params": {"a": {"type": "date"}}}"#,
        #"{"params": {"a": {"min": 1}}}"#, #"{"params": {"a": {"type": "int", "min": 5, "max": 1}}}"#,
        #"{"params": {"a": {"type": "int", "out_of_range": "clamp"}}}"#, #"{"params": {"a": {"pattern": "("}}}"#,
        #"{"json": {"max_depth": 0}}"#, #"{"json": false}"#, #"{"unknown": 1}"#,
        #"{"query": {"deny": ["a"]}, "params": {"a": {}}}"#,
    ])
    func badConfig(json: String) {
        #expect(throws: (any Error).self, "\(json)") { try decodeSanitize(json) }
    }
}
