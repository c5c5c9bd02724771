import Passport
import Testing

@testable import Filters

@Suite("SHA-256 and HMAC (the SHA extensions, or swift-crypto)")
struct DigestTests {
    @Test("the same bytes as libsodium for every length up to 2 KiB")
    func sameAsSodium() {
        var rng = SystemRandomNumberGenerator()
        for n in 0...2048 {
            let data = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(Digest.sha256(data) == Sodium.sha256(data), "length \(n)")
            let key = (0..<(n % 100)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(Digest.hmacSHA256(key: key, message: data) == Sodium.hmacSHA256(key: key, message: data), "length \(n)")
        }
    }

    @Test("SHA256Stream on both paths (the SHA extensions, swift-crypto) gives libsodium's bytes for every length up to 2,100, fed in random pieces; a copy goes on from where it was")
    func streamBothPaths() {
        var rng = SystemRandomNumberGenerator()
        let data = (0..<2_100).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var paths = [false]
        if SHA256Stream.nativeAvailable { paths.append(true) }
        for native in paths {
            for n in 0...2_100 {
                var hash = SHA256Stream(native: native)
                data.withUnsafeBytes { all in
                    var at = 0
                    while at < n {
                        let k = min(Int.random(in: 1...130, using: &rng), n - at)
                        hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: all[at..<at + k]))
                        at += k
                    }
                }
                #expect(hash.finalize { Array($0) } == Sodium.sha256(Array(data[..<n])), "native \(native), length \(n)")
            }
            // Empty pieces, from an empty array (no base address) among them.
            var empty = SHA256Stream(native: native)
            [UInt8]().withUnsafeBytes { empty.update(bufferPointer: $0) }
            data.withUnsafeBytes { empty.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<3])) }
            empty.update(bufferPointer: UnsafeRawBufferPointer(start: nil, count: 0))
            #expect(empty.finalize { Array($0) } == Sodium.sha256(Array(data[..<3])), "native \(native)")
            var first = SHA256Stream(native: native)
            data.withUnsafeBytes { first.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<100])) }
            var second = first
            data.withUnsafeBytes { second.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[100..<200])) }
            #expect(first.finalize { Array($0) } == Sodium.sha256(Array(data[..<100])), "native \(native)")
            #expect(second.finalize { Array($0) } == Sodium.sha256(Array(data[..<200])), "native \(native)")
        }
        // This machine's CI runs the native path: say so if it cannot.
        #expect(SHA256Stream.nativeAvailable == ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?.contains(" sha_ni") ?? false))
    }

    @Test("a key with its pads hashed once gives the same MACs as libsodium, message after message, and from threads at once")
    func precomputedKey() async {
        var rng = SystemRandomNumberGenerator()
        for keyLength in [0, 1, 32, 63, 64, 65, 130] {
            let key = (0..<keyLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
            for native in [true, false] where !native || SHA256Stream.nativeAvailable {
                let hmac = HMACSHA256Key(key, native: native)
                for n in [0, 1, 55, 56, 64, 150, 1000] {
                    let data = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
                    #expect(hmac.mac(data) == Sodium.hmacSHA256(key: key, message: data), "key \(keyLength), message \(n), native \(native)")
                    #expect(hmac.mac(data) == hmac.mac(data), "the key's states are not used up")
                }
            }
        }
        // One key shared by tasks on several threads: each MAC copies the
        // states it starts from, none sees another's message.
        let key = HMACSHA256Key(Array("K_mac".utf8))
        let results = await withTaskGroup(of: Bool.self) { group in
            for t in 0..<8 {
                group.addTask {
                    (0..<500).allSatisfy { i in
                        let message = Array("task \(t) message \(i)".utf8)
                        return key.mac(message) == Sodium.hmacSHA256(key: Array("K_mac".utf8), message: message)
                    }
                }
            }
            return await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results == Array(repeating: true, count: 8))
    }

    @Test("RFC 4231 test case 2 and the empty string's SHA-256")
    func knownAnswers() {
        let mac = Digest.hmacSHA256(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))
        #expect(Hex.encode(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(Hex.encode(Digest.sha256([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test("HTTPToken's byte classes agree with RFC 9110 for all 256 bytes")
    func tokenBytes() {
        let specials = Set("!#$%&'*+-.^_`|~".utf8)
        for b in 0...255 {
            let byte = UInt8(b)
            let tchar = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || specials.contains(byte)
            #expect(HTTPToken.isTokenByte(byte) == tchar, "byte \(b)")
            let fieldValue = byte == 0x09 || (byte >= 0x20 && byte <= 0x7E) || byte >= 0x80
            #expect(HTTPToken.isFieldValueByte(byte) == fieldValue, "byte \(b)")
        }
    }

    @Test("ASCII.withUTF8 reads a string's bytes in place: small, large, non-ASCII, and made from a substring")
    func withUTF8() {
        let long = String(repeating: "x-gw-nonce=\u{E9}", count: 40)
        for text in ["", "a", "POST", "/api/v1/transfers?x=1", "caf\u{E9}", long, String(long.dropFirst(3).prefix(30))] {
            #expect(ASCII.withUTF8(text) { Array($0) } == Array(text.utf8), "\(text.prefix(20))")
        }
    }

    @Test("equalsLowercase, eight bytes at a time, agrees with ASCII lowercasing for every token byte at every position, on strings and on bytes")
    func equalsLowercase() {
        let literals: [StaticString] = ["a", "te", "via", "host", "x-gw-kid", "x-gw-nonce1", "content-type", "x-gw-encrypted",
                                        "x-gw-content-type", "x-forwarded-for-0123", "accept-encoding", "proxy-connection"]
        let tokenBytes = (0...255).map { UInt8($0) }.filter { HTTPToken.isTokenByte($0) }
        func lowered(_ bytes: [UInt8]) -> [UInt8] { bytes.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 } }
        for literal in literals {
            let lower = Array(UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
            #expect(ASCII.equalsLowercase(String(decoding: lower, as: UTF8.self), literal))
            #expect(ASCII.equalsLowercase(String(decoding: lower, as: UTF8.self).uppercased(), literal))
            #expect(!ASCII.equalsLowercase(String(decoding: lower.dropLast(), as: UTF8.self), literal), "shorter")
            #expect(!ASCII.equalsLowercase(String(decoding: lower + [0x61], as: UTF8.self), literal), "longer")
            #expect(!lower.dropLast().withUnsafeBytes { ASCII.equalsLowercase($0, literal) }, "shorter bytes")
            #expect(!(lower + [0x61]).withUnsafeBytes { ASCII.equalsLowercase($0, literal) }, "longer bytes")
            for i in lower.indices {
                for b in tokenBytes {
                    var name = lower
                    name[i] = b
                    let text = String(decoding: name, as: UTF8.self)
                    let expected = lowered(name) == lower
                    #expect(ASCII.equalsLowercase(text, literal) == expected, "\(literal) with \(b) at \(i)")
                    #expect(ASCII.equalsLowercaseByBytes(text, literal) == expected, "\(literal) with \(b) at \(i), byte loop")
                    #expect(name.withUnsafeBytes { ASCII.equalsLowercase($0, literal) } == expected, "\(literal) with \(b) at \(i), bytes")
                }
            }
        }
    }

    @Test("the word-at-a-time control scan finds what a byte loop finds, for every byte at every offset")
    func controlScan() throws {
        func reference(_ bytes: [UInt8], from start: Int) -> Int {
            bytes[start...].firstIndex(where: { $0 < 0x20 || $0 == 0x7F }) ?? bytes.count
        }
        // 40 bytes: two vector steps, a word step and a tail over the last
        // word, from starts that put the hit in each of them.
        for b in 0...255 {
            for offset in 0..<40 {
                var bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 40)
                bytes[offset] = UInt8(b)
                for start in [0, 3, 9, 17, 35, offset] {
                    let found = bytes.withUnsafeBytes { HTTPToken.firstControl($0, from: start) }
                    // Required, not expected: `isValidFieldValue` below loops on
                    // the scan, and a scan that answers an index before its
                    // start would hang it instead of failing here.
                    try #require(found == reference(bytes, from: start), "byte \(b) at \(offset) from \(start)")
                }
                let valid = bytes.withUnsafeBytes { HTTPToken.isValidFieldValue($0) }
                #expect(valid == bytes.allSatisfy(HTTPToken.isFieldValueByte), "byte \(b) at \(offset)")
            }
        }
        // Mixed words: obs-text beside controls, several controls in one word.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let bytes = (0..<Int.random(in: 0...80, using: &generator)).map { _ in
                [UInt8.random(in: 0x20...0x7E, using: &generator), UInt8.random(in: 0x80...0xFF, using: &generator),
                 UInt8.random(in: 0...0x1F, using: &generator), 0x7F, 0x09][Int.random(in: 0..<5, using: &generator) < 3 ? 0 : Int.random(in: 1..<5, using: &generator)]
            }
            let start = Int.random(in: 0...bytes.count, using: &generator)
            let found = bytes.withUnsafeBytes { HTTPToken.firstControl($0, from: start) }
            try #require(found == reference(bytes, from: start), "\(bytes) from \(start)")
            #expect(bytes.withUnsafeBytes { HTTPToken.isValidFieldValue($0) } == bytes.allSatisfy(HTTPToken.isFieldValueByte), "\(bytes)")
        }
    }
}
