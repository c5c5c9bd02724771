import NIOCore
import NIOHTTP1
import Passport

/// Header rules of the proxy that do not depend on configuration.
enum HeaderRules {
    /// Hop-by-hop headers (RFC 9110 7.6.1) plus the old `proxy-connection`.
    static let hopByHop: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// Removes hop-by-hop headers and every header named in `Connection`.
    static func removeHopByHop(_ headers: inout HTTPHeaders) {
        var named: [String] = []
        for value in headers[canonicalForm: "connection"] {
            let token = value.trimmingSpaces().lowercased()
            if !token.isEmpty, token != "close", token != "keep-alive" { named.append(token) }
        }
        for name in hopByHop { headers.remove(name: name) }
        for name in named { headers.remove(name: name) }
    }

    /// The `for=` address of a client: IP without port.
    static func clientIP(_ address: SocketAddress?) -> String? {
        address?.ipAddress
    }

    /// 32 lowercase hex characters from libsodium's CSPRNG.
    static func newRequestID() -> String {
        var bytes: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &bytes) { Sodium.fillRandom($0) }
        return withUnsafeBytes(of: &bytes) { raw in
            var out = [UInt8](repeating: 0, count: 32)
            let hex: [UInt8] = Array("0123456789abcdef".utf8)
            for i in 0..<16 {
                out[2 * i] = hex[Int(raw[i] >> 4)]
                out[2 * i + 1] = hex[Int(raw[i] & 0x0F)]
            }
            return String(decoding: out, as: UTF8.self)
        }
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
