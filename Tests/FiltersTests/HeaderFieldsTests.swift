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
