import Filters
import NIOCore
import NIOHPACK
import NIOHTTP1

/// HPACK (RFC 7541) for the header blocks `H2ServerCodec` sends: response
/// heads, encoded straight from the gateway's `ResponseHead` (no
/// `HPACKHeaders` in between, names lowercased as they are written), and
/// the blocks of `HTTP2Frame`s written above it.
///
/// Its choices: names from the static table by index; a dynamic table of up
/// to 4,096 bytes (or the client's smaller SETTINGS_HEADER_TABLE_SIZE,
/// announced with a size update at the start of the next block), into which
/// every field goes but `x-request-id` (different on every response: it
/// would only push out entries worth keeping) and `set-cookie` (never
/// indexed, RFC 7541 7.1.3); a field already in the table is sent as its
/// index; string literals are not Huffman-coded (turning it off in
/// NIOHPACK's encoder changed an h2 request's CPU time by nothing measurable,
/// and after a connection's first response most fields are indexes).
/// NIOHPACK's encoder spent most of its time finding names in its tables (a
/// hash of every byte of every name).
struct HPACKResponseEncoder {
    static let maxTableSize = 4096

    private struct Entry {
        /// Lowercase.
        var name: String
        var value: String
        var size: Int
    }

    /// Oldest first: entry `i` has index `62 + entries.count - 1 - i`.
    private var entries: [Entry] = []
    private var tableSize = 0
    private(set) var limit = maxTableSize
    /// The smallest limit since the last block, when it changed (RFC 7541 4.2).
    private var smallestLimit: Int?

    enum Indexing { case indexed, notIndexed, neverIndexed }

    /// The client's SETTINGS_HEADER_TABLE_SIZE: the table stays within it.
    mutating func setPeerLimit(_ value: Int) {
        let new = min(value, Self.maxTableSize)
        guard new != limit else { return }
        limit = new
        smallestLimit = min(smallestLimit ?? new, new)
        evict(toFit: 0)
    }

    /// A response head as a header block, appended to `out`. False when a
    /// field could not be sent (a name that is not a token, a value with a
    /// control character, as the HTTP/1.1 encoder refuses them): nothing is
    /// then written and the table is as it was.
    mutating func encode(_ head: ResponseHead, into out: inout ByteBuffer) -> Bool {
        let start = out.writerIndex
        let saved = (entries, tableSize, smallestLimit)
        beginBlock(&out)
        status(Int(head.status.code), into: &out)
        for (name, value) in head.headers {
            if H2ResponseHead.isConnectionSpecific(name) { continue }
            guard HTTPToken.isValidName(name), HTTPToken.isValidFieldValue(value) else {
                out.moveWriterIndex(to: start)
                (entries, tableSize, smallestLimit) = saved
                return false
            }
            let indexing: Indexing
            switch name.utf8.count {
            case 12 where ASCII.equalsLowercase(name, "x-request-id"): indexing = .notIndexed
            case 10 where ASCII.equalsLowercase(name, "set-cookie"): indexing = .neverIndexed
            default: indexing = .indexed
            }
            field(name, value, indexing, into: &out)
        }
        return true
    }

    /// A block of fields as given (lowercase names, checked by whoever made
    /// them; `:status` among them), with their indexing hints.
    mutating func encode(_ headers: HPACKHeaders, into out: inout ByteBuffer) {
        beginBlock(&out)
        for (name, value, hint) in headers {
            if name == ":status", let code = Int(value), value.utf8.count == 3 {
                status(code, into: &out)
                continue
            }
            let indexing: Indexing
            switch hint {
            case .indexable: indexing = .indexed
            case .nonIndexable: indexing = .notIndexed
            case .neverIndexed: indexing = .neverIndexed
            }
            field(name, value, indexing, into: &out)
        }
    }

    // MARK: - Representations

    private mutating func beginBlock(_ out: inout ByteBuffer) {
        guard let smallest = smallestLimit else { return }
        smallestLimit = nil
        if smallest < limit { Self.integer(smallest, prefix: 5, flags: 0x20, into: &out) }
        Self.integer(limit, prefix: 5, flags: 0x20, into: &out)
    }

    private func status(_ code: Int, into out: inout ByteBuffer) {
        let index: Int
        switch code {
        case 200: index = 8
        case 204: index = 9
        case 206: index = 10
        case 304: index = 11
        case 400: index = 12
        case 404: index = 13
        case 500: index = 14
        default:
            // Literal without indexing, the name `:status` (index 8).
            Self.integer(8, prefix: 4, flags: 0x00, into: &out)
            out.writeInteger(UInt8(3))
            out.writeInteger(UInt8(0x30 + code / 100 % 10))
            out.writeInteger(UInt8(0x30 + code / 10 % 10))
            out.writeInteger(UInt8(0x30 + code % 10))
            return
        }
        Self.integer(index, prefix: 7, flags: 0x80, into: &out)
    }

    private mutating func field(_ name: String, _ value: String, _ indexing: Indexing, into out: inout ByteBuffer) {
        let nameCount = name.utf8.count, valueCount = value.utf8.count
        if indexing == .indexed, let i = find(name, nameCount, value, valueCount) {
            Self.integer(62 + entries.count - 1 - i, prefix: 7, flags: 0x80, into: &out)
            return
        }
        var nameIndex = Self.staticIndex(name)
        if nameIndex == 0, let i = find(name, nameCount, nil, 0) { nameIndex = 62 + entries.count - 1 - i }
        let size = nameCount + valueCount + 32
        if indexing == .indexed && size <= limit {
            Self.integer(nameIndex, prefix: 6, flags: 0x40, into: &out)
            if nameIndex == 0 { Self.lowercaseLiteral(name, into: &out) }
            Self.literal(value, into: &out)
            // The name as the table keeps it: lowercase (a copy only when it is not).
            let lower = name.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) ? name.lowercased() : name
            evict(toFit: size)
            entries.append(Entry(name: lower, value: value, size: size))
            tableSize += size
            return
        }
        Self.integer(nameIndex, prefix: 4, flags: indexing == .neverIndexed ? 0x10 : 0x00, into: &out)
        if nameIndex == 0 { Self.lowercaseLiteral(name, into: &out) }
        Self.literal(value, into: &out)
    }

    /// The newest entry with this name (any case) and, when given, this value.
    private func find(_ name: String, _ nameCount: Int, _ value: String?, _ valueCount: Int) -> Int? {
        var i = entries.count - 1
        while i >= 0 {
            let e = entries[i]
            if e.name.utf8.count == nameCount && (value == nil || (e.value.utf8.count == valueCount && e.value == value!))
                // Over both names' bytes in place (stepping `UTF8View`
                // iterators cost about ten instructions a byte).
                && ASCII.equalsIgnoringCase(name, e.name) {
                return i
            }
            i -= 1
        }
        return nil
    }

    private mutating func evict(toFit size: Int) {
        var drop = 0
        while drop < entries.count && tableSize + size > limit {
            tableSize -= entries[drop].size
            drop += 1
        }
        if drop > 0 { entries.removeFirst(drop) }
    }

    // MARK: - Wire forms

    /// RFC 7541 5.1: an integer with an N-bit prefix.
    static func integer(_ value: Int, prefix: Int, flags: UInt8, into out: inout ByteBuffer) {
        let max = (1 << prefix) - 1
        guard value >= max else {
            out.writeInteger(flags | UInt8(value))
            return
        }
        out.writeInteger(flags | UInt8(max))
        var rest = value - max
        while rest >= 128 {
            out.writeInteger(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        out.writeInteger(UInt8(rest))
    }

    /// RFC 7541 5.2: a string literal, not Huffman-coded.
    static func literal(_ s: String, into out: inout ByteBuffer) {
        integer(s.utf8.count, prefix: 7, flags: 0, into: &out)
        out.writeString(s)
    }

    private static func lowercaseLiteral(_ s: String, into out: inout ByteBuffer) {
        ASCII.withUTF8(s) { bytes in
            integer(bytes.count, prefix: 7, flags: 0, into: &out)
            out.writeWithUnsafeMutableBytes(minimumWritableBytes: bytes.count) { to in
                for i in 0..<bytes.count { to[i] = ASCII.foldCase(bytes[i]) }
                return bytes.count
            }
        }
    }

    /// The static table's index of a response field name (RFC 7541
    /// appendix A), any case; 0 when it has none.
    static func staticIndex(_ name: String) -> Int {
        func eq(_ lower: StaticString) -> Bool { ASCII.equalsLowercase(name, lower) }
        switch name.utf8.count {
        case 3: return eq("age") ? 21 : eq("via") ? 60 : 0
        case 4: return eq("date") ? 33 : eq("etag") ? 34 : eq("link") ? 45 : eq("vary") ? 59 : eq("host") ? 38 : eq("from") ? 37 : 0
        case 5: return eq("allow") ? 22 : eq("range") ? 50 : 0
        case 6: return eq("server") ? 54 : eq("cookie") ? 32 : eq("accept") ? 19 : eq("expect") ? 35 : 0
        case 7: return eq("expires") ? 36 : eq("refresh") ? 52 : eq("referer") ? 51 : 0
        case 8: return eq("location") ? 46 : eq("if-match") ? 39 : eq("if-range") ? 42 : 0
        case 10: return eq("set-cookie") ? 55 : eq("user-agent") ? 58 : 0
        case 11: return eq("retry-after") ? 53 : 0
        case 12: return eq("content-type") ? 31 : eq("max-forwards") ? 47 : 0
        case 13:
            return eq("cache-control") ? 24 : eq("last-modified") ? 44 : eq("accept-ranges") ? 18 : eq("content-range") ? 30
                : eq("authorization") ? 23 : eq("if-none-match") ? 41 : 0
        case 14: return eq("content-length") ? 28 : eq("accept-charset") ? 15 : 0
        case 15: return eq("accept-language") ? 17 : eq("accept-encoding") ? 16 : 0
        case 16:
            return eq("content-encoding") ? 26 : eq("content-language") ? 27 : eq("content-location") ? 29
                : eq("www-authenticate") ? 61 : 0
        case 17: return eq("transfer-encoding") ? 57 : eq("if-modified-since") ? 40 : 0
        case 18: return eq("proxy-authenticate") ? 48 : 0
        case 19: return eq("content-disposition") ? 25 : eq("if-unmodified-since") ? 43 : eq("proxy-authorization") ? 49 : 0
        case 25: return eq("strict-transport-security") ? 56 : 0
        case 27: return eq("access-control-allow-origin") ? 20 : 0
        default: return 0
        }
    }
}
