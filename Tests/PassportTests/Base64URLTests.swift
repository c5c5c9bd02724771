import Testing

@testable import Passport

@Suite("base64url")
struct Base64URLTests {
    /// The bit-at-a-time decoder the four-at-a-time one replaced: the reference.
    static func reference(_ text: [UInt8]) -> [UInt8]? {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
        if text.count % 4 == 1 { return nil }
        var buffer: UInt32 = 0, bits = 0
        var out: [UInt8] = []
        for c in text {
            guard let v = alphabet.firstIndex(of: c) else { return nil }
            buffer = buffer << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: buffer >> UInt32(bits)))
            }
        }
        if bits > 0 && buffer & ((1 << UInt32(bits)) - 1) != 0 { return nil }
        return out
    }

    @Test("decode agrees with the reference: every length to 100, round trips, every byte in every position of short texts, unused bits")
    func decode() {
        var rng = SystemRandomNumberGenerator()
        for n in 0...100 {
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let text = Base64URL.encode(bytes)
            #expect(Base64URL.decode(text) == bytes, "length \(n)")
            #expect(Base64URL.decode(text) == Self.reference(Array(text.utf8)))
            // Any length, any characters of the alphabet: valid or not, the same answer.
            let chars = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
            let random = (0..<n).map { _ in chars.randomElement(using: &rng)! }
            #expect(random.withUnsafeBytes { Base64URL.decode($0) } == Self.reference(random), "\(String(decoding: random, as: UTF8.self))")
        }
        for n in [2, 3, 4, 6, 7, 8] {
            let base = Array(Base64URL.encode((0..<(n * 3 / 4)).map { UInt8($0 &* 37) }).utf8)
            for position in base.indices {
                for b in 0...255 {
                    var text = base
                    text[position] = UInt8(b)
                    #expect(text.withUnsafeBytes { Base64URL.decode($0) } == Self.reference(text))
                }
            }
        }
        #expect(Base64URL.decode("AB") == nil && Base64URL.decode("AQ") == [1] && Base64URL.decode("AAE") == [0, 1] && Base64URL.decode("AAF") == nil)
        #expect(Base64URL.decode("QQ==") == nil && Base64URL.decode("A") == nil && Base64URL.decode("") == [])
    }
}
