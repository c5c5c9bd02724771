import Filters
import NIOCore
import NIOHTTP1

/// The protocol-level sanitizing of one listener, compiled once per config
/// version: how paths are canonicalized, which headers the gateway removes in
/// each direction beyond the ones it always owns, and the security headers it
/// adds to responses.
///
/// A class of constants: every request reads it (admission, both header
/// passes), and a struct of arrays and strings read out of the listener was
/// copied per read, each reference retained and released (12 a request).
final class SanitizePolicy: Sendable {
    let paths: PathCanonicalizer
    /// Client headers removed before routing and filters (`strip_request_headers`).
    let stripRequest: HeaderNameSet
    /// Upstream response headers removed before the client sees them (`strip_response_headers`).
    let stripResponse: HeaderNameSet
    /// Whether a client's `X-Request-Id` (if well-formed) becomes the request's id.
    let trustRequestID: Bool
    /// From which peers `X-Forwarded-Client-Cert` is read as the caller's
    /// identity (nil: from none). It is never forwarded upstream either way:
    /// the identity travels in the passport's `cert`.
    let xfccTrust: XFCCTrust?
    /// `Strict-Transport-Security`, added to responses that do not carry their own.
    let hsts: String?
    /// `X-Content-Type-Options: nosniff` on every response.
    let contentTypeOptions: Bool

    init(paths: PathCanonicalizer = PathCanonicalizer(), stripRequest: HeaderNameSet = HeaderNameSet([]),
         stripResponse: HeaderNameSet = HeaderNameSet([]), trustRequestID: Bool = false, xfccTrust: XFCCTrust? = nil,
         hsts: String? = nil, contentTypeOptions: Bool = false) {
        self.paths = paths
        self.stripRequest = stripRequest
        self.stripResponse = stripResponse
        self.trustRequestID = trustRequestID
        self.xfccTrust = xfccTrust
        self.hsts = hsts
        self.contentTypeOptions = contentTypeOptions
    }

    /// Adds the listener's security headers to a response about to be sent.
    func addSecurityHeaders(_ headers: inout HeaderFields) {
        if let hsts, !headers.contains(name: "strict-transport-security") {
            headers.add(name: "strict-transport-security", value: hsts)
        }
        if contentTypeOptions { headers.replaceOrAdd(name: "x-content-type-options", value: "nosniff") }
    }

    /// A client's `X-Request-Id` is used only when the listener trusts it and
    /// it is 1 to 128 characters of `A-Z a-z 0-9 . _ -`, so that no client can
    /// put arbitrary bytes into logs and upstream headers through it.
    static func isAcceptableRequestID(_ value: String) -> Bool {
        let u = value.utf8
        guard !u.isEmpty, u.count <= 128 else { return false }
        return u.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: "-") || b == UInt8(ascii: "_") || b == UInt8(ascii: ".")
        }
    }
}

/// `Host` / `:authority` syntax (RFC 9110 7.2, RFC 3986 3.2.2): a reg-name,
/// an IPv4 address or a bracketed IPv6 literal, then an optional port of 1 to
/// 5 digits not above 65535. No userinfo, no whitespace, no path.
enum HostSyntax {
    static func isValid(_ host: String) -> Bool {
        // Over the string's own bytes: no copy for the usual (native) string.
        host.utf8.withContiguousStorageIfAvailable { isValid(bytes: $0) } ?? isValid(bytes: Array(host.utf8))
    }

    private static func isValid<Bytes: RandomAccessCollection>(bytes b: Bytes) -> Bool where Bytes.Element == UInt8, Bytes.Index == Int {
        guard !b.isEmpty, b.count <= 255 + 6 else { return false }
        var i = 0
        if b[b.startIndex] == UInt8(ascii: "[") {
            guard let close = b.firstIndex(of: UInt8(ascii: "]")), close > 1 else { return false }
            for c in b[1..<close] where !(isHex(c) || c == UInt8(ascii: ":") || c == UInt8(ascii: ".")) { return false }
            i = close + 1
        } else {
            while i < b.count && b[i] != UInt8(ascii: ":") {
                guard isRegNameByte(b[i]) else { return false }
                i += 1
            }
            guard i > 0 else { return false }
        }
        if i == b.count { return true }
        guard b[i] == UInt8(ascii: ":") else { return false }
        let port = b[(i + 1)...]
        guard !port.isEmpty, port.count <= 5, port.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
        return (Int(String(decoding: port, as: UTF8.self)) ?? .max) <= 65535
    }

    private static func isHex(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
    }

    /// unreserved / sub-delims, without `%` escapes (no client needs them in a host name).
    private static func isRegNameByte(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }
}


/// Which peers may vouch for a client certificate in `X-Forwarded-Client-Cert`.
struct XFCCTrust: Sendable {
    /// Empty: every peer of the listener.
    let ranges: [CIDR]

    func trusts(_ address: SocketAddress?) -> Bool {
        if ranges.isEmpty { return true }
        guard let bytes = address.flatMap(CIDR.bytes) else { return false }
        return ranges.contains { $0.contains(bytes) }
    }
}

/// An IPv4 or IPv6 address range, `a.b.c.d/n`, `x::/n`, or one address.
struct CIDR: Sendable, Equatable {
    let network: [UInt8]
    let prefix: Int

    init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        guard let first = parts.first, let address = try? SocketAddress(ipAddress: first, port: 0), let bytes = Self.bytes(address) else { return nil }
        let bits = bytes.count * 8
        let prefix: Int
        if parts.count == 2 {
            guard let n = Int(parts[1]), (0...bits).contains(n) else { return nil }
            prefix = n
        } else {
            prefix = bits
        }
        self.network = bytes
        self.prefix = prefix
    }

    static func bytes(_ address: SocketAddress) -> [UInt8]? {
        switch address {
        case .v4(let a): return withUnsafeBytes(of: a.address.sin_addr) { Array($0) }
        case .v6(let a): return withUnsafeBytes(of: a.address.sin6_addr) { Array($0) }
        default: return nil
        }
    }

    func contains(_ bytes: [UInt8]) -> Bool {
        guard bytes.count == network.count else { return false }
        var left = prefix
        for i in 0..<bytes.count where left > 0 {
            let mask: UInt8 = left >= 8 ? 0xFF : ~(0xFF >> UInt8(left))
            if bytes[i] & mask != network[i] & mask { return false }
            left -= 8
        }
        return true
    }
}
