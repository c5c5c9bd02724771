import Filters
import NIOCore
import NIOHPACK
import NIOHTTP1
import Testing

@testable import Gateway

/// The gateway's HPACK encoder against NIOHPACK's decoder (the end-to-end
/// tests decode it with python-h2's): every block of a connection decodes
/// to the head it was made from, through the dynamic table's insertions,
/// evictions and the client's limits.
@Suite("HPACK encoder for response heads")
struct HPACKResponseEncoderTests {
    static func head(_ status: Int, _ fields: [(String, String)]) -> ResponseHead {
        ResponseHead(status: HTTPResponseStatus(statusCode: status), headers: HeaderFields(fields), isLocal: false)
    }

    /// What a client must decode: `:status`, then the fields with lowercase
    /// names, without the connection-specific ones.
    static func expected(_ status: Int, _ fields: [(String, String)]) -> [String] {
        ["\(":status"): \(status)"] + fields.filter {
            !["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"].contains($0.0.lowercased())
        }.map { "\($0.0.lowercased()): \($0.1)" }
    }

    static func decoded(_ decoder: inout HPACKDecoder, _ block: ByteBuffer) throws -> [String] {
        var b = block
        return try decoder.decodeHeaders(from: &b).map { "\($0.name): \($0.value)" }
    }

    @Test("RFC 7541 C.1: integers with a prefix")
    func integers() {
        func bytes(_ v: Int, _ prefix: Int) -> [UInt8] {
            var b = ByteBuffer()
            HPACKResponseEncoder.integer(v, prefix: prefix, flags: 0, into: &b)
            return Array(b.readableBytesView)
        }
        #expect(bytes(10, 5) == [0x0A])
        #expect(bytes(1337, 5) == [0x1F, 0x9A, 0x0A])
        #expect(bytes(42, 8) == [0x2A])
        #expect(bytes(31, 5) == [0x1F, 0x00])
    }

    @Test("2,000 random response heads on one connection decode to what they were, with the table's insertions and evictions")
    func randomHeads() throws {
        var rng = SystemRandomNumberGenerator()
        let names = ["Content-Type", "content-length", "Date", "Server", "X-Request-Id", "Set-Cookie", "Cache-Control", "X-Frame-Options",
                     "strict-transport-security", "Vary", "ETag", "X-Custom-\(Int.random(in: 0..<9))", "Connection", "Transfer-Encoding",
                     "X-Long", "Location", "access-control-allow-origin", "X-Empty"]
        var encoder = HPACKResponseEncoder()
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator(), maxDynamicTableSize: 4096, maxHeaderListSize: 1 << 20)
        var total = 0
        for round in 0..<2000 {
            var fields: [(String, String)] = []
            for _ in 0..<Int.random(in: 0...10, using: &rng) {
                let name = names.randomElement(using: &rng)!
                let value: String
                switch name {
                case "X-Long": value = String(repeating: "v", count: Int.random(in: 100...5000, using: &rng))
                case "X-Empty": value = ""
                case "X-Request-Id": value = String(UInt64.random(in: 0...UInt64.max, using: &rng), radix: 16)
                default: value = ["a", "b", "text/plain", "nginx", "max-age=63072000; includeSubDomains", "\(round % 7)", "é ü"].randomElement(using: &rng)!
                }
                fields.append((name, value))
            }
            let status = [200, 204, 206, 304, 400, 404, 500, 201, 302, 418, 503].randomElement(using: &rng)!
            var out = ByteBuffer()
            #expect(encoder.encode(Self.head(status, fields), into: &out))
            total += out.readableBytes
            #expect(try Self.decoded(&decoder, out) == Self.expected(status, fields), "round \(round)")
        }
        #expect(total > 0)
    }

    @Test("a field already sent is an index the next time; x-request-id and set-cookie stay out of the table, set-cookie never indexed")
    func indexing() throws {
        var encoder = HPACKResponseEncoder()
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        let fields = [("Server", "nginx"), ("Content-Type", "text/plain"), ("X-Frame-Options", "DENY"), ("x-request-id", "0123456789abcdef"),
                      ("set-cookie", "s=1")]
        var first = ByteBuffer(), second = ByteBuffer()
        #expect(encoder.encode(Self.head(200, fields), into: &first))
        #expect(encoder.encode(Self.head(200, fields), into: &second))
        _ = try Self.decoded(&decoder, first)
        var b = second
        let again = try decoder.decodeHeaders(from: &b)
        #expect(again.map { "\($0.name): \($0.value)" } == Self.expected(200, fields))
        // :status 200, three table indexes, then the two literals.
        let bytes = Array(second.readableBytesView)
        #expect(bytes[4] == 0x00 && bytes[5] == 12, "x-request-id: a literal name, not indexed: \(bytes)")
        #expect(bytes.contains(0x10 | 0x0F), "set-cookie (static 55): never indexed: \(bytes)")
        #expect(Array(again).last?.indexable == .neverIndexed)
        // The three table entries, newest first from 62: x-frame-options 62, content-type 63, server 64.
        #expect(Array(bytes.prefix(4)) == [0x88, 0xC0, 0xBF, 0xBE], "\(bytes)")
        #expect(Array(bytes.dropFirst(4)) == Array(first.readableBytesView.suffix(bytes.count - 4)), "the literals as the first time")
    }

    @Test("the client's SETTINGS_HEADER_TABLE_SIZE: a smaller table is announced at the next block and kept to, 0 turns it off")
    func peerLimit() throws {
        var encoder = HPACKResponseEncoder()
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        let fields = [("Server", "nginx"), ("X-Big", String(repeating: "b", count: 200))]
        var out = ByteBuffer()
        #expect(encoder.encode(Self.head(200, fields), into: &out))
        _ = try Self.decoded(&decoder, out)
        for limit in [100, 0, 4096, 300, 10_000] {
            encoder.setPeerLimit(limit)
            decoder.maxDynamicTableLength = min(limit, 4096)
            out.clear()
            #expect(encoder.encode(Self.head(200, fields), into: &out))
            #expect(try Self.decoded(&decoder, out) == Self.expected(200, fields), "limit \(limit)")
            #expect(decoder.allowedDynamicTableLength == min(limit, 4096))
            if limit == 0 { #expect(out.readableBytes > 200, "nothing can be indexed in a table of 0") }
        }
    }

    @Test("a field that could split the response: false, nothing written, the table as it was")
    func invalidField() throws {
        var encoder = HPACKResponseEncoder()
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        var out = ByteBuffer(string: "before")
        #expect(!encoder.encode(Self.head(200, [("x-new", "1"), ("x-bad", "a\r\nx-evil: 1")]), into: &out))
        #expect(!encoder.encode(Self.head(200, [("x-new", "1"), ("bad name", "1")]), into: &out))
        #expect(String(buffer: out) == "before")
        out.clear()
        // Had x-new gone into the table, this block's index would not match the decoder's.
        #expect(encoder.encode(Self.head(200, [("x-other", "2"), ("x-new", "1")]), into: &out))
        #expect(try Self.decoded(&decoder, out) == Self.expected(200, [("x-other", "2"), ("x-new", "1")]))
    }

    @Test("blocks of HPACKHeaders (frames written above the layer) share the table with the heads")
    func mixedBlocks() throws {
        var encoder = HPACKResponseEncoder()
        var decoder = HPACKDecoder(allocator: ByteBufferAllocator())
        var out = ByteBuffer()
        #expect(encoder.encode(Self.head(404, [("Content-Type", "application/json")]), into: &out))
        _ = try Self.decoded(&decoder, out)
        var block = HPACKHeaders()
        block.add(name: ":status", value: "431")
        block.add(name: "content-type", value: "application/json")
        block.add(name: "x-request-id", value: "abc", indexing: .nonIndexable)
        out.clear()
        encoder.encode(block, into: &out)
        #expect(try Self.decoded(&decoder, out) == [":status: 431", "content-type: application/json", "x-request-id: abc"])
        // `:status` 431 as a literal (5 bytes), then content-type as the table's entry 62.
        #expect(Array(out.readableBytesView.prefix(6)) == [0x08, 3, 0x34, 0x33, 0x31, 0xBE], "\(Array(out.readableBytesView))")
    }
}
