import Foundation
import Testing

@testable import Gateway

@Suite("JSON text of the logs")
struct JSONTextTests {
    @Test func quoting() throws {
        #expect(JSONText.quote("/api/v1/x") == "\"/api/v1/x\"")
        #expect(JSONText.quote("a\"b\\c") == "\"a\\\"b\\\\c\"")
        #expect(JSONText.quote("line\nbreak\t\u{01}") == "\"line\\nbreak\\t\\u0001\"")
        #expect(JSONText.quote("é") == "\"é\"")
        for s in ["plain", "a\"b", "x\ny", "ü\u{7F}"] {
            let decoded = try JSONSerialization.jsonObject(with: Data(JSONText.quote(s).utf8), options: .fragmentsAllowed) as? String
            #expect(decoded == s)
        }
    }

    @Test("timestamps are RFC 3339 UTC with milliseconds, and now")
    func timestamp() throws {
        let t = JSONText.timestamp()
        #expect(t.count == 24)
        let shape = try Regex(#"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z"#)
        #expect(try shape.wholeMatch(in: t) != nil, "\(t)")
        let parser = ISO8601DateFormatter()
        parser.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let date = try #require(parser.date(from: t))
        #expect(abs(date.timeIntervalSinceNow) < 5)
    }
}
