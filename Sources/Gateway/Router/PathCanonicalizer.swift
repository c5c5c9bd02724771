import Filters

/// One canonical form of a request path, computed once per request before
/// routing, so that a route rule and the upstream read the same path and no
/// spelling of a path (`/./admin`, `/x/../admin`, `/%61dmin`) routes around a
/// rule written for another spelling.
///
/// - unreserved characters (`A-Z a-z 0-9 - . _ ~`) that arrive
///   percent-encoded are decoded; every other escape is kept, with uppercase
///   hex digits;
/// - `.` and `..` segments are resolved (RFC 3986 5.2.4); a `..` that would
///   climb above the root is refused rather than clamped;
/// - refused: encoded `/` (`%2F`) and `\` (`%5C`), a raw `\`, `%00` and other
///   encoded control bytes, invalid escapes, percent-encoded bytes that are
///   not UTF-8 (overlong forms, surrogates, truncated sequences), raw bytes
///   outside printable ASCII, `#`;
/// - empty segments (`//`) are refused, merged or kept, as configured;
/// - `;` (path parameters, which Tomcat and Spring strip before matching) is
///   refused unless allowed.
///
/// Matching stays case-sensitive, as RFC 3986 says paths are: `/ADMIN` is
/// not `/admin`.
struct PathCanonicalizer: Sendable, Equatable {
    enum DuplicateSlashes: String, Sendable, Equatable { case reject, merge, keep }

    var duplicateSlashes = DuplicateSlashes.reject
    var allowSemicolons = false

    enum Failure: Error, Equatable {
        /// Names the rule, for logs and tests; the client only sees `invalid_path`.
        case invalid(String)
    }

    /// The canonical form of `path` (the target before `?`).
    func canonicalize(_ path: Substring) -> Result<String, Failure> {
        guard path.utf8.first == UInt8(ascii: "/") else { return .failure(.invalid("not origin-form")) }
        if Self.isPlainlyCanonical(path) { return .success(String(path)) }
        return slowPath(Array(path.utf8))
    }

    /// The target as routing and the upstream see it: nil when the path is
    /// already canonical (the common case, no allocation), else the canonical
    /// path with the query as sent.
    func canonicalTarget(path: Substring, query: Substring?) -> Result<String?, Failure> {
        if Self.isPlainlyCanonical(path) { return .success(nil) }
        return canonicalize(path).map { p in p == path ? nil : query.map { p + "?" + $0 } ?? p }
    }

    /// The fast path of every request, without allocating: an origin-form path
    /// with nothing to decode, no dot segment, no empty segment and no
    /// suspicious byte is its own canonical form, whatever the options.
    static func isPlainlyCanonical(_ path: Substring) -> Bool {
        var previous: UInt8 = 0
        // Over the bytes where they lie (a `UTF8View` loop re-decides the
        // string's form at each step).
        let plain = ASCII.allBytes(path) { b in
            switch b {
            case UInt8(ascii: "%"), UInt8(ascii: "."): return false
            case UInt8(ascii: "/") where previous == UInt8(ascii: "/"): return false
            case UInt8(ascii: ";"), UInt8(ascii: "\\"), UInt8(ascii: "#"): return false
            case 0...0x20, 0x7F...0xFF: return false
            default: previous = b; return true
            }
        }
        return plain && path.utf8.first == UInt8(ascii: "/")
    }

    private static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
             UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    private func slowPath(_ bytes: [UInt8]) -> Result<String, Failure> {
        // 1. Split on raw `/`, decoding each segment's escapes of unreserved
        //    characters and checking the rest.
        var segments: [[UInt8]] = []
        var segment: [UInt8] = []
        var utf8 = UTF8Check()
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        var i = 1
        while i <= bytes.count {
            if i == bytes.count || bytes[i] == UInt8(ascii: "/") {
                guard utf8.isComplete else { return .failure(.invalid("truncated UTF-8")) }
                segments.append(segment)
                segment.removeAll(keepingCapacity: true)
                i += 1
                continue
            }
            let b = bytes[i]
            switch b {
            case UInt8(ascii: "%"):
                guard i + 2 < bytes.count, let hi = ASCII.hexValue(bytes[i + 1]), let lo = ASCII.hexValue(bytes[i + 2])
                else { return .failure(.invalid("invalid percent-encoding")) }
                let v = hi << 4 | lo
                if v >= 0x80 {
                    guard utf8.accept(v) else { return .failure(.invalid("invalid UTF-8")) }
                } else {
                    guard utf8.isComplete else { return .failure(.invalid("truncated UTF-8")) }
                    switch v {
                    case UInt8(ascii: "/"): return .failure(.invalid("encoded slash"))
                    case UInt8(ascii: "\\"): return .failure(.invalid("encoded backslash"))
                    case 0..<0x20, 0x7F: return .failure(.invalid("encoded control byte"))
                    default: break
                    }
                }
                if Self.isUnreserved(v) {
                    segment.append(v)
                } else {
                    segment.append(UInt8(ascii: "%"))
                    segment.append(hex[Int(v >> 4)])
                    segment.append(hex[Int(v & 0xF)])
                }
                i += 3
                continue
            case 0...0x20, 0x7F...0xFF:
                return .failure(.invalid("raw byte outside printable ASCII"))
            case UInt8(ascii: "\\"):
                return .failure(.invalid("backslash"))
            case UInt8(ascii: "#"):
                return .failure(.invalid("fragment"))
            case UInt8(ascii: ";") where !allowSemicolons:
                return .failure(.invalid("path parameter"))
            default:
                guard utf8.isComplete else { return .failure(.invalid("truncated UTF-8")) }
                segment.append(b)
            }
            i += 1
        }

        // 2. Dot segments and empty segments.
        var output: [[UInt8]] = []
        let dot: [UInt8] = [UInt8(ascii: ".")]
        let dotDot: [UInt8] = [UInt8(ascii: "."), UInt8(ascii: ".")]
        for (index, s) in segments.enumerated() {
            let isLast = index == segments.count - 1
            if s == dot || s == dotDot {
                if s == dotDot {
                    guard !output.isEmpty else { return .failure(.invalid("above the root")) }
                    output.removeLast()
                }
                // `/a/.` and `/a/b/..` end with a slash.
                if isLast { output.append([]) }
                continue
            }
            if s.isEmpty && !isLast {
                switch duplicateSlashes {
                case .reject: return .failure(.invalid("empty segment"))
                case .merge: continue
                case .keep: break
                }
            }
            output.append(s)
        }
        var result = "/"
        result.reserveCapacity(bytes.count)
        for (index, s) in output.enumerated() {
            if index > 0 { result.append("/") }
            result.append(String(decoding: s, as: UTF8.self))
        }
        return .success(result)
    }
}
