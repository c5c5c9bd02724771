import NIOHTTP1
import Testing

@testable import Filters

/// `HeaderFields` keeps NIO's `HTTPHeaders` API for filters; these check it
/// answers as NIO's does, on random lists of names in mixed case.
@Suite("header fields")
struct HeaderFieldsTests {
    static let names = ["host", "Host", "CONNECTION", "connection", "content-type", "Content-Type", "x-a", "X-A", "x-b",
                        "x-gw-nonce", "X-GW-NONCE", "authorization", "t", "Set-Cookie"]
    // Not `^`/`~` and the like: NIO folds bit 5 of every byte, so it takes
    // `x-^` for `x-~`; ours folds letters only (see `caseFolding`).
    static let values = ["", "1", "close", "keep-alive", " Close ", "keep-alive, close", "upgrade, keep-alive", "a, ,b",
                         "application/json", String(repeating: "v", count: 40), ",,a,", "\ta ,\t"]

    /// xorshift64*: the same lists on every run.
    struct Random: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            return state &* 0x2545_F491_4F6C_DD1D
        }
    }

    static func randomList(_ rng: inout Random) -> [(String, String)] {
        (0..<Int.random(in: 0...8, using: &rng)).map { _ in (names.randomElement(using: &rng)!, values.randomElement(using: &rng)!) }
    }

    static func pairs(_ h: HeaderFields) -> [String] { h.map { "\($0.name)=\($0.value)" } }
    static func pairs(_ h: HTTPHeaders) -> [String] { h.map { "\($0.name)=\($0.value)" } }

    @Test("lookups, edits and keep-alive answer as NIO's HTTPHeaders for 2,000 random lists")
    func sameAsNIO() {
        var rng = Random(state: 7)
        for _ in 0..<2000 {
            let list = Self.randomList(&rng)
            let ours = HeaderFields(list)
            let nio = HTTPHeaders(list)
            #expect(Self.pairs(ours) == Self.pairs(nio))
            #expect(ours.count == nio.count)
            for name in Self.names + ["X-None", "hOsT"] {
                #expect(ours.first(name: name) == nio.first(name: name), "first(name: \(name)) of \(list)")
                #expect(ours.contains(name: name) == nio.contains(name: name))
                #expect(ours[name] == nio[name])
                #expect(ours[canonicalForm: name] == nio[canonicalForm: name], "canonicalForm \(name) of \(list)")
                var o = ours, n = nio
                o.remove(name: name)
                n.remove(name: name)
                #expect(Self.pairs(o) == Self.pairs(n), "remove(name: \(name)) of \(list)")
                o = ours
                n = nio
                o.replaceOrAdd(name: name, value: "new")
                n.replaceOrAdd(name: name, value: "new")
                #expect(Self.pairs(o) == Self.pairs(n), "replaceOrAdd(name: \(name)) of \(list)")
            }
            for version in [HTTPVersion.http1_0, .http1_1, .http2] {
                let ourHead = RequestHead(version: version, method: .GET, uri: "/", headers: ours)
                let nioHead = HTTPRequestHead(version: version, method: .GET, uri: "/", headers: nio)
                #expect(ourHead.isKeepAlive == nioHead.isKeepAlive, "isKeepAlive \(version) of \(list)")
            }
            let other = HeaderFields(Self.randomList(&rng))
            #expect((ours == other) == (nio == other.httpHeaders))
            #expect(HeaderFields(nio) == ours)
            #expect(Self.pairs(ours.httpHeaders) == Self.pairs(nio))
        }
    }

    @Test("names differ only in letters' case: '^' and '~' are different names, as are '@' and '`'")
    func caseFolding() {
        let h: HeaderFields = ["x-^": "caret", "X-@": "at"]
        #expect(h.first(name: "X-^") == "caret")
        #expect(h.first(name: "x-~") == nil)
        #expect(h.first(name: "x-`") == nil)
        #expect(ASCII.equalsIgnoringCase("Content-Type", "content-TYPE"))
        #expect(!ASCII.equalsIgnoringCase("content-type", "content-typ"))
        #expect(!ASCII.equalsIgnoringCase("[", "{"))
    }

    @Test("replace edits a list nobody else holds in place, and leaves a copy's original as it was")
    func replaceInPlace() {
        var h: HeaderFields = ["content-type": "a/b", "x-a": "1"]
        h.reserveCapacity(8)
        let capacity = h.capacity
        h.replace("content-type", with: ("content-type", "c/d"))
        #expect(Self.pairs(h) == ["x-a=1", "content-type=c/d"])
        #expect(h.capacity == capacity)
        let before = h
        h.replace("x-a", with: ("x-b", "2"))
        #expect(Self.pairs(before) == ["x-a=1", "content-type=c/d"])
        #expect(Self.pairs(h) == ["content-type=c/d", "x-b=2"])
    }
}

@Suite("header name sets")
struct HeaderNameSetTests {
    /// What `contains` must answer: a name equal to an exact pattern, or
    /// starting with a prefix pattern, ASCII letters compared case-insensitively.
    static func reference(_ patterns: [String], _ name: String) -> Bool {
        let n = Array(name.utf8).map(ASCII.foldCase)
        for p in patterns {
            var body = Array(p.lowercased().utf8)
            if body.last == UInt8(ascii: "*") {
                body.removeLast()
                if n.count >= body.count && Array(n[0..<body.count]) == body { return true }
            } else if n == body {
                return true
            }
        }
        return false
    }

    @Test("contains agrees with a byte-by-byte reference: 2,000 random pattern lists, 120,000 names (random, and a pattern with its case changed, cut or extended)")
    func againstReference() {
        // Letters of both cases, and tchars that differ from another only in
        // bit 5 ('^' and '~', '_' and '`' ... ), so that folding every byte
        // by bit 5 instead of only letters would be caught.
        let alphabet = Array("aAbBxX-_^~`|0123456789.!#$%&'*+".utf8).filter { $0 != UInt8(ascii: "*") }
        var rng = SystemRandomNumberGenerator()
        func word(_ max: Int) -> String {
            let n = Int.random(in: 0...max, using: &rng)
            return String(decoding: (0..<n).map { _ in alphabet.randomElement(using: &rng)! }, as: UTF8.self)
        }
        for _ in 0..<2_000 {
            var patterns: [String] = []
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                var p = word(12)
                if p.isEmpty { p = "x" }
                patterns.append(Bool.random(using: &rng) ? p + "*" : p)
            }
            let set = HeaderNameSet(patterns)
            for _ in 0..<10 {
                // Names near the patterns (a pattern with its case changed, cut, or extended) and random ones.
                let base = String(patterns.randomElement(using: &rng)!.filter { $0 != "*" })
                let candidates = [word(20), base, base.uppercased(), String(base.dropLast()), base + word(3), word(3) + base]
                for name in candidates {
                    #expect(set.contains(name) == Self.reference(patterns, name), "\(patterns) \(name)")
                }
            }
        }
    }

    @Test("exact names and prefixes, case-insensitive; '^' and '~', '_' and DEL are not folded together")
    func examples() {
        let set = HeaderNameSet(["x-debug", "X-Admin-*", "a^b", "long-header-name-here"])
        #expect(set.contains("x-debug") && set.contains("X-DEBUG") && !set.contains("x-debug2") && !set.contains("x-debu"))
        #expect(set.contains("x-admin-") && set.contains("X-ADMIN-token") && !set.contains("x-admin"))
        #expect(set.contains("A^B") && !set.contains("a~b"))
        #expect(set.contains("LONG-HEADER-NAME-HERE") && !set.contains("long-header-name-herE2") && !set.contains("long-header-name-hera"))
        #expect(!HeaderNameSet(["_x"]).contains("\u{7F}x") && HeaderNameSet([]).contains("x") == false)
        // Patterns a config refuses (`isValidPattern`) keep their plain meaning: `*` is every name, "" only the empty one.
        #expect(HeaderNameSet(["*"]).contains("anything") && HeaderNameSet(["a", "*"]).contains("") && !HeaderNameSet(["*"]).isEmpty)
        #expect(HeaderNameSet([""]).contains("") && !HeaderNameSet([""]).contains("a") && !HeaderNameSet(["x-debug"]).contains(""))
        // The bytes form answers as the string form.
        let bytes = Array("X-Admin-Key".utf8)
        #expect(bytes.withUnsafeBytes { set.contains(utf8: $0) } && !Array("y-admin-key".utf8).withUnsafeBytes { set.contains(utf8: $0) })
    }
}
