import NIOCore
import NIOHTTP1

/// Header rules of the proxy that do not depend on configuration.
enum HeaderRules {
    /// Hop-by-hop headers (RFC 9110 7.6.1) plus the old `proxy-connection`.
    static let hopByHop: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// Removes hop-by-hop headers and every header named in `Connection`.
    /// One pass finds whether there is anything to remove: usually nothing.
    static func removeHopByHop(_ headers: inout HTTPHeaders) {
        var found = false
        for (name, _) in headers where isHopByHop(name) {
            found = true
            break
        }
        guard found else { return }
        var named: [String] = []
        for value in headers[canonicalForm: "connection"] {
            let token = value.trimmingSpaces().lowercased()
            if !token.isEmpty, token != "close", token != "keep-alive" { named.append(token) }
        }
        for name in hopByHop { headers.remove(name: name) }
        for name in named { headers.remove(name: name) }
    }

    /// Whether `name` is one of `hopByHop`, ASCII case-insensitively, without allocating.
    static func isHopByHop(_ name: String) -> Bool {
        name.utf8.withContiguousStorageIfAvailable { b -> Bool in
            func equals(_ lower: StaticString) -> Bool {
                guard lower.utf8CodeUnitCount == b.count else { return false }
                let l = lower.utf8Start
                for i in 0..<b.count where b[i] | 0x20 != l[i] | 0x20 { return false }
                return true
            }
            switch b.count {
            case 2: return equals("te")
            case 7: return equals("trailer") || equals("upgrade")
            case 10: return equals("connection") || equals("keep-alive")
            case 16: return equals("proxy-connection")
            case 17: return equals("transfer-encoding")
            case 18: return equals("proxy-authenticate")
            case 19: return equals("proxy-authorization")
            default: return false
            }
        } ?? hopByHop.contains(name.lowercased())
    }

    /// The `for=` address of a client: IP without port.
    static func clientIP(_ address: SocketAddress?) -> String? {
        address?.ipAddress
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
