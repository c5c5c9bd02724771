import Foundation

/// The strings the HTTP/1.1 parsers make of field names and values. A value
/// of 15 bytes or fewer lives inside the `String` itself; a longer one is a
/// heap object, allocated once, then retained and released by every pass
/// over the head (a dozen on the app route: each filter's, the upstream
/// head's, the wire encoder's). The longer names and values that recur on
/// nearly every request come from the literals below instead: a `String`
/// made from a literal is immortal, never allocated, and its retains and
/// releases touch no counter. The bytes must match exactly (case included),
/// so what is forwarded is what was received.
enum FieldStrings {
    /// The string of `bytes`: a literal's when one matches, else a new one.
    /// A switch on the length, then `memcmp` with the few literals of that
    /// length (no table to reach through, nothing retained).
    static func make(_ b: UnsafeRawBufferPointer) -> String {
        switch b.count {
        case 16:
            if equal(b, "content-encoding") { return "content-encoding" }
            if equal(b, "Content-Encoding") { return "Content-Encoding" }
            if equal(b, "x-forwarded-host") { return "x-forwarded-host" }
            if equal(b, "X-Forwarded-Host") { return "X-Forwarded-Host" }
            if equal(b, "www-authenticate") { return "www-authenticate" }
            if equal(b, "WWW-Authenticate") { return "WWW-Authenticate" }
            if equal(b, "application/json") { return "application/json" }
        case 17:
            if equal(b, "x-gw-content-type") { return "x-gw-content-type" }
            if equal(b, "X-Gw-Content-Type") { return "X-Gw-Content-Type" }
            if equal(b, "transfer-encoding") { return "transfer-encoding" }
            if equal(b, "Transfer-Encoding") { return "Transfer-Encoding" }
            if equal(b, "x-forwarded-proto") { return "x-forwarded-proto" }
            if equal(b, "X-Forwarded-Proto") { return "X-Forwarded-Proto" }
            if equal(b, "if-modified-since") { return "if-modified-since" }
            if equal(b, "If-Modified-Since") { return "If-Modified-Since" }
            if equal(b, "gzip, deflate, br") { return "gzip, deflate, br" }
        case 18:
            if equal(b, "no-cache, no-store") { return "no-cache, no-store" }
            if equal(b, "no-store, no-cache") { return "no-store, no-cache" }
        case 22:
            if equal(b, "x-content-type-options") { return "x-content-type-options" }
            if equal(b, "X-Content-Type-Options") { return "X-Content-Type-Options" }
        case 23:
            if equal(b, "content-security-policy") { return "content-security-policy" }
            if equal(b, "Content-Security-Policy") { return "Content-Security-Policy" }
            if equal(b, "gzip, deflate, br, zstd") { return "gzip, deflate, br, zstd" }
        case 24:
            if equal(b, "application/octet-stream") { return "application/octet-stream" }
            if equal(b, "text/html; charset=utf-8") { return "text/html; charset=utf-8" }
        case 25:
            if equal(b, "upgrade-insecure-requests") { return "upgrade-insecure-requests" }
            if equal(b, "Upgrade-Insecure-Requests") { return "Upgrade-Insecure-Requests" }
            if equal(b, "strict-transport-security") { return "strict-transport-security" }
            if equal(b, "Strict-Transport-Security") { return "Strict-Transport-Security" }
            if equal(b, "text/plain; charset=utf-8") { return "text/plain; charset=utf-8" }
        case 27:
            if equal(b, "access-control-allow-origin") { return "access-control-allow-origin" }
            if equal(b, "Access-Control-Allow-Origin") { return "Access-Control-Allow-Origin" }
        case 31:
            if equal(b, "application/json; charset=utf-8") { return "application/json; charset=utf-8" }
            if equal(b, "application/json; charset=UTF-8") { return "application/json; charset=UTF-8" }
        case 33:
            if equal(b, "application/x-www-form-urlencoded") { return "application/x-www-form-urlencoded" }
        case 35:
            if equal(b, "max-age=31536000; includeSubDomains") { return "max-age=31536000; includeSubDomains" }
        default:
            break
        }
        if b.count <= 15 { return small(b) }
        return String(decoding: b, as: UTF8.self)
    }

    /// A string of at most 15 bytes, built in place inside the `String`:
    /// the standard library checks such a string's two words for ASCII at
    /// once (`String(decoding:)` goes through its general validation and
    /// repair path first). Non-ASCII bytes are validated (and repaired)
    /// the same way `String(decoding:)` does.
    @inline(__always)
    static func small(_ b: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: b.count) { out in
            guard let from = b.baseAddress, let to = out.baseAddress else { return 0 }
            let n = b.count
            ShortCopy.copy(UnsafeMutableRawPointer(to), from: from, count: n)
            return n
        }
    }

    @inline(__always)
    private static func equal(_ b: UnsafeRawBufferPointer, _ literal: StaticString) -> Bool {
        // Each literal sits under its own length's case (the tests compare
        // with every one: they try every length).
        assert(literal.utf8CodeUnitCount == b.count, "a literal under the wrong length")
        return memcmp(b.baseAddress!, literal.utf8Start, b.count) == 0
    }
}
