import Filters
import NIOCore
import NIOHTTP1
import Testing

@testable import Gateway

/// The field writer both HTTP/1.1 encoders share (`HTTPBytes.writeFields`):
/// it makes room for every line once and then copies bytes in place.
@Suite("HTTP/1.1 field lines")
struct HTTP1FieldsTests {
    /// A deterministic generator (xorshift64*), so a failure can be rerun.
    struct Rand {
        var state: UInt64
        mutating func next(_ n: Int) -> Int {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            return Int((state &* 0x2545_F491_4F6C_DD1D) >> 33) % n
        }
    }

    /// Names and values of every size: empty values, small strings (held
    /// inline in the `String`) and long ones (on the heap), and non-ASCII.
    static func randomFields(_ r: inout Rand) -> [(String, String)] {
        let names = ["x-a", "Accept", "x-long-name-of-a-field-\(r.next(1000))", "Set-Cookie", "X-Request-Id"]
        let values = ["", "1", "short value", String(repeating: "v", count: 15), String(repeating: "w", count: 16),
                      String(repeating: "token.", count: 200), "caf\u{E9} \u{1F600}", "a\tb"]
        return (0..<r.next(40)).map { _ in (names[r.next(names.count)], values[r.next(values.count)]) }
    }

    @Test("heads larger than their buffer, fields of every length, are written byte for byte after what the buffer held")
    func byteForByte() throws {
        var r = Rand(state: 0x9E37_79B9_7F4A_7C15)
        for _ in 0..<500 {
            let fields = Self.randomFields(&r)
            var buffer = ByteBufferAllocator().buffer(capacity: 8)
            buffer.writeString("earlier")
            let ok = HTTPBytes.writeFields(HeaderFields(fields), replacement: nil, into: &buffer) { _, _ in .write }
            #expect(ok == true)
            #expect(String(buffer: buffer) == "earlier" + fields.map { "\($0.0): \($0.1)\r\n" }.joined())
        }
    }

    @Test("a field that could split the head, at any place in the list, refuses the whole head and leaves the buffer as it was")
    func refusedAnywhere() throws {
        var r = Rand(state: 42)
        let bad: [(String, String)] = [("x-a", "b\r\nx-injected: 1"), ("x a", "b"), ("", "b"), ("x-a", "b\u{0}"), ("x-\u{E9}", "b")]
        for _ in 0..<300 {
            var fields = [("host", "svc")] + Self.randomFields(&r)
            fields.insert(bad[r.next(bad.count)], at: 1 + r.next(fields.count))
            let head = RequestHead(version: .http1_1, method: .GET, uri: "/", headers: HeaderFields(fields))
            var buffer = ByteBufferAllocator().buffer(capacity: 8)
            buffer.writeString("earlier")
            #expect(throws: UpstreamRequestEncoder.InvalidRequest.self) { try UpstreamRequestEncoder.writeHead(head, into: &buffer) }
            #expect(String(buffer: buffer) == "earlier")
            var encoder = DownstreamHTTP1Encoder()
            let response = ResponseHead(status: .ok, headers: HeaderFields(fields), isLocal: false)
            #expect(throws: DownstreamHTTP1Encoder.InvalidResponse.self) {
                try encoder.head(response, answeringHEAD: false, into: &buffer)
            }
            #expect(String(buffer: buffer) == "earlier")
        }
    }

    @Test("a Host edit longer than every field goes where the first Host was; leaving fields out makes no gap")
    func replacementAndSkips() throws {
        let long = String(repeating: "upstream-", count: 40) + "internal:7001"
        let head = RequestHead(version: .http1_1, method: .GET, uri: "/p",
                               headers: HeaderFields([("x-gw-nonce", "n"), ("x-a", "1"), ("Host", "h"), ("x-gw-kid", "k"), ("HOST", "again"), ("x-b", "2")]))
        var buffer = ByteBufferAllocator().buffer(capacity: 4)
        _ = try UpstreamRequestEncoder.writeHead(head, edits: UpstreamHeadEdits(host: long), into: &buffer)
        #expect(String(buffer: buffer) == "GET /p HTTP/1.1\r\nx-a: 1\r\nHost: \(long)\r\nx-b: 2\r\n\r\n")
        // The edit is checked like the field it replaces.
        buffer.clear()
        #expect(throws: UpstreamRequestEncoder.InvalidRequest.self) {
            try UpstreamRequestEncoder.writeHead(head, edits: UpstreamHeadEdits(host: long + "\r\nx: y"), into: &buffer)
        }
        #expect(buffer.readableBytes == 0)
    }

    @Test("the room counts one replacement: a second is refused, never written past the room made")
    func oneReplacement() {
        let fields = HeaderFields([("host", "a"), ("host", "b"), ("x-a", "1")])
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        let long = String(repeating: "r", count: 300)
        let once = HTTPBytes.writeFields(fields, replacement: long, into: &buffer) { n, _ in n.count == 4 ? .skip : .writeReplacement }
        #expect(once == true)
        #expect(String(buffer: buffer) == "x-a: \(long)\r\n")
        buffer.clear()
        let twice = HTTPBytes.writeFields(fields, replacement: long, into: &buffer) { _, _ in .writeReplacement }
        #expect(twice == false)
    }

    @Test("contiguous: the same fields, in order")
    func contiguousCopy() {
        var r = Rand(state: 7)
        let fields = HeaderFields(Self.randomFields(&r) + [("x-z", String(repeating: "z", count: 100))])
        #expect(fields.contiguous == fields)
        #expect(fields.contiguous.allSatisfy { $0.name.isContiguousUTF8 && $0.value.isContiguousUTF8 })
    }

    @Test("the short copy: every length 0 to 70 at every alignment, exactly the bytes asked, nothing before or after touched")
    func shortCopy() {
        var r = Rand(state: 11)
        for n in 0...70 {
            for offset in 0..<8 {
                let source = (0..<n).map { _ in UInt8(r.next(256)) }
                var target = [UInt8](repeating: 0xEE, count: n + 24)
                source.withUnsafeBytes { from in
                    target.withUnsafeMutableBytes { to in
                        ShortCopy.copy(to.baseAddress! + 8 + offset, from: from.baseAddress ?? UnsafeRawPointer(to.baseAddress!), count: n)
                    }
                }
                #expect(Array(target[(8 + offset)..<(8 + offset + n)]) == source, "length \(n) at \(offset)")
                #expect(target[..<(8 + offset)].allSatisfy { $0 == 0xEE } && target[(8 + offset + n)...].allSatisfy { $0 == 0xEE },
                        "length \(n) at \(offset): a byte outside was written")
            }
        }
    }
}
