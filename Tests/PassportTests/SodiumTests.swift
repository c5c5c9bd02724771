import Testing

@testable import Passport

@Suite("libsodium wrapper")
struct SodiumTests {
    func hex(_ b: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        return String(b.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] })
    }

    @Test("SHA-256 matches FIPS 180-2 vectors, one-shot and incremental")
    func sha256() {
        #expect(hex(Sodium.sha256(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(Sodium.sha256([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        var h = SHA256Hasher()
        h.update(Array("ab".utf8))
        h.update(Array("c".utf8))
        #expect(hex(h.finalize()) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    @Test func constantTimeEqual() {
        #expect(Sodium.constantTimeEqual([1, 2, 3], [1, 2, 3]))
        #expect(!Sodium.constantTimeEqual([1, 2, 3], [1, 2, 4]))
        #expect(!Sodium.constantTimeEqual([1, 2], [1, 2, 3]))
        #expect(Sodium.constantTimeEqual([], []))
    }

    @Test func randomBytes() {
        let a = Sodium.randomBytes(32), b = Sodium.randomBytes(32)
        #expect(a.count == 32)
        #expect(a != b)
    }
}
