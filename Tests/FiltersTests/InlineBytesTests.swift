import Testing

@testable import Filters
import Passport

@Suite("inline base64url bytes (a signed request's client key and nonce)")
struct InlineBytesTests {
    @Test("decodes every length 0-32 as Base64URL.decode does; a length outside the range, a longer text or a bad character is nil")
    func decodes() {
        for n in 0...32 {
            let bytes = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 200) }
            let text = Base64URL.encode(bytes)
            let inline = InlineBytes32(base64url: text, lengths: 0...32)
            #expect(inline?.count == n && inline?.array == bytes && inline?.array == Base64URL.decode(text), "length \(n)")
            inline?.withUnsafeBytes { #expect(Array($0) == bytes) }
            #expect(InlineBytes32(base64url: text, lengths: 16...32) == nil || n >= 16)
            #expect(InlineBytes32(base64url: text, lengths: 32...32) == nil || n == 32)
        }
        // 33 bytes are 44 characters: refused before decoding (the storage holds 32).
        #expect(InlineBytes32(base64url: Base64URL.encode([UInt8](repeating: 1, count: 33)), lengths: 0...32) == nil)
        #expect(InlineBytes32(base64url: String(repeating: "A", count: 44), lengths: 0...32) == nil)
        // Characters outside the alphabet, padding, and a length no encoding has.
        #expect(InlineBytes32(base64url: "AAAA+AAA", lengths: 0...32) == nil)
        #expect(InlineBytes32(base64url: "AAAA/AAA", lengths: 0...32) == nil)
        #expect(InlineBytes32(base64url: "AAE=", lengths: 0...32) == nil)
        #expect(InlineBytes32(base64url: "AAAAA", lengths: 0...32) == nil)
        // A range past the storage is a programming error answered with nil.
        #expect(InlineBytes32(base64url: "AAAA", lengths: 0...33) == nil)
    }
}
