import Filters
import Testing

@testable import Gateway

@Suite("path canonicalization")
struct PathCanonicalizerTests {
    /// nil: refused with 400 `invalid_path`.
    static let table: [(String, String?)] = [
        // Already canonical: returned as is.
        ("/", "/"),
        ("/api/v1/accounts/42", "/api/v1/accounts/42"),
        ("/a/b/", "/a/b/"),
        ("/a-b_c~d.e", "/a-b_c~d.e"),
        // Unreserved characters decoded, others kept with uppercase hex.
        ("/%61dmin", "/admin"),
        ("/%41%5a%30%2D%2e%5F%7e", "/AZ0-._~"),
        ("/a%20b", "/a%20b"),
        ("/a%3bb", "/a%3Bb"),
        ("/a%3fb", "/a%3Fb"),
        ("/caf%C3%A9", "/caf%C3%A9"),
        ("/%F0%9F%98%80", "/%F0%9F%98%80"),
        ("/a%25b", "/a%25b"),
        // Dot segments, plain and encoded.
        ("/./admin", "/admin"),
        ("/x/../admin", "/admin"),
        ("/a/b/../../admin", "/admin"),
        ("/a/./b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/%2e/admin", "/admin"),
        ("/x/%2e%2E/admin", "/admin"),
        ("/x/.%2e/admin", "/admin"),
        ("/a/..b/c", "/a/..b/c"),
        ("/a/b.", "/a/b."),
        // Refused.
        ("/..", nil),
        ("/../admin", nil),
        ("/a/../../admin", nil),
        ("/%2e%2e/admin", nil),
        ("/admin%2F", nil),
        ("/admin%2fx", nil),
        ("/a%5Cb", nil),
        ("/a\\b", nil),
        ("/admin%00", nil),
        ("/a%0d%0ab", nil),
        ("/a%7Fb", nil),
        ("/a%", nil),
        ("/a%4", nil),
        ("/a%zz", nil),
        ("/%C0%AF", nil),  // overlong '/'
        ("/%E0%80%AF", nil),  // overlong '/'
        ("/%ED%A0%80", nil),  // surrogate
        ("/%F4%90%80%80", nil),  // above U+10FFFF
        ("/%C3", nil),  // truncated
        ("/%C3/x", nil),  // truncated before a slash
        ("/%C3a", nil),  // lead byte then ASCII
        ("/%80", nil),  // lone continuation
        ("//admin", nil),
        ("/a//b", nil),
        ("/admin;x", nil),
        ("/admin;jsessionid=1", nil),
        ("/a#b", nil),
        ("/a b", nil),
        ("admin", nil),
        ("", nil),
    ]

    @Test("the table: canonical form or refusal", arguments: table)
    func table(input: String, expected: String?) {
        let result = PathCanonicalizer().canonicalize(Substring(input))
        switch result {
        case .success(let path):
            #expect(path == expected, "\(input) became \(path)")
        case .failure(let failure):
            #expect(expected == nil, "\(input) was refused (\(failure)), expected \(expected ?? "")")
        }
    }

    @Test("duplicate slashes merge or stay when configured")
    func duplicateSlashes() {
        var merge = PathCanonicalizer()
        merge.duplicateSlashes = .merge
        #expect(merge.canonicalize("//admin") == .success("/admin"))
        #expect(merge.canonicalize("/a///b//") == .success("/a/b/"))
        var keep = PathCanonicalizer()
        keep.duplicateSlashes = .keep
        #expect(keep.canonicalize("/a//b") == .success("/a//b"))
        #expect(PathCanonicalizer().canonicalize("/a//b") == .failure(.invalid("empty segment")))
    }

    @Test("semicolons pass when allowed, and stay data")
    func semicolons() {
        var allow = PathCanonicalizer()
        allow.allowSemicolons = true
        #expect(allow.canonicalize("/admin;x") == .success("/admin;x"))
    }

    @Test("UTF-8 validation follows Unicode table 3-7")
    func utf8() {
        func valid(_ bytes: [UInt8]) -> Bool {
            var check = UTF8Check()
            return bytes.allSatisfy { check.accept($0) } && check.isComplete
        }
        #expect(valid([0xC2, 0x80]))
        #expect(valid([0xEF, 0xBF, 0xBF]))
        #expect(valid([0xF4, 0x8F, 0xBF, 0xBF]))
        #expect(!valid([0xC1, 0xBF]))
        #expect(!valid([0xE0, 0x9F, 0x80]))
        #expect(!valid([0xED, 0xA0, 0x80]))
        #expect(!valid([0xF0, 0x8F, 0x80, 0x80]))
        #expect(!valid([0xF5, 0x80, 0x80, 0x80]))
        #expect(!valid([0xE2, 0x82]))
    }

    @Test("host syntax")
    func hosts() {
        for ok in ["a", "api.example.com", "api.example.com:443", "127.0.0.1:8443", "[::1]:8443", "[2001:db8::1]", "LOCALHOST"] {
            #expect(HostSyntax.isValid(ok), "\(ok)")
        }
        for bad in ["", "user@a", "a:", "a:99999", "a:12a", "a b", "a/b", "[::1", "[]", ":80", "a:80:80", "a\u{0}b", "ex%41mple.com"] {
            #expect(!HostSyntax.isValid(bad), "\(bad)")
        }
    }
}
