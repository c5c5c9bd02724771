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
        // The fixed sizes (16, 32, 64 bytes) and others around them: equal, and any one byte different.
        for n in [15, 16, 17, 31, 32, 33, 63, 64, 65] {
            let a = Sodium.randomBytes(n)
            #expect(Sodium.constantTimeEqual(a, a), "length \(n)")
            for i in 0..<n {
                var b = a
                b[i] ^= 1 << UInt8(i % 8)
                #expect(!Sodium.constantTimeEqual(a, b), "length \(n), byte \(i)")
            }
        }
    }

    @Test("public random bytes: the asked length, never the same bytes twice, across many 4 KiB blocks")
    func publicRandomBytes() {
        var seen = Set<[UInt8]>()
        var total = 0
        for i in 0..<3000 {
            let n = [24, 12, 16, 1, 64][i % 5]
            let bytes = Sodium.publicRandomBytes(n)
            #expect(bytes.count == n)
            if n >= 12 { #expect(seen.insert(bytes).inserted, "draw \(i) repeated an earlier one") }
            total += n
        }
        #expect(total > 10 * 4096)
        #expect(Sodium.publicRandomBytes(0).isEmpty)
        // Not all zero: the block really came from the CSPRNG.
        #expect(Sodium.publicRandomBytes(64).contains { $0 != 0 })
    }

    @Test func randomBytes() {
        let a = Sodium.randomBytes(32), b = Sodium.randomBytes(32)
        #expect(a.count == 32)
        #expect(a != b)
    }

    @Test("XChaCha20-Poly1305 sealed in one keystream run gives libsodium's AEAD bytes at every length, and libsodium opens it")
    func sealInOneRun() {
        let key = Sodium.randomBytes(32)
        let lengths = Array(0...1200) + [1535, 1536, 1537, 2047, 2048, 2049, 4031, 4032, 4033, 4095, 4096, 4097]
        for n in lengths {
            let nonce = Sodium.randomBytes(24)
            let aad = Sodium.randomBytes([0, 1, 15, 16, 17, 40][n % 6])
            let plaintext = Sodium.randomBytes(n)
            var reference = [UInt8](repeating: 0, count: n + 16), fast = [UInt8](repeating: 0xAA, count: n + 16)
            plaintext.withUnsafeBytes { p in
                nonce.withUnsafeBytes { nb in
                    aad.withUnsafeBytes { a in
                        reference.withUnsafeMutableBytes { XChaCha20Poly1305.libsodiumSeal(into: $0, p, key: key, nonce: nb, aad: a) }
                        fast.withUnsafeMutableBytes { XChaCha20Poly1305.sealInOneRun(into: $0, p, key: key, nonce: nb, aad: a) }
                    }
                }
            }
            #expect(fast == reference, "length \(n), AAD \(aad.count) bytes")
            #expect(XChaCha20Poly1305.open(fast[...], key: key, nonce: nonce, aad: aad) == plaintext, "length \(n)")
        }
        // The public entry point takes the run up to its limit and libsodium past it.
        #expect(XChaCha20Poly1305.runMessageBytes == 4096)
    }

    @Test("XChaCha20-Poly1305 in buffers: seal(into:) and openInPlace give the bytes of seal and open; a flipped byte or other AAD is refused")
    func aeadInBuffers() {
        let key = Sodium.randomBytes(32), nonce = Sodium.randomBytes(24), aad = Array("200\nnonce".utf8)
        for n in [0, 1, 15, 16, 17, 1024, 5000] {
            let plaintext = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            let reference = XChaCha20Poly1305.seal(plaintext, key: key, nonce: nonce, aad: aad)
            var out = [UInt8](repeating: 0xAA, count: n + XChaCha20Poly1305.tagBytes)
            out.withUnsafeMutableBytes { o in
                plaintext.withUnsafeBytes { p in nonce.withUnsafeBytes { XChaCha20Poly1305.seal(into: o, p, key: key, nonce: $0, aad: aad) } }
            }
            #expect(out == reference, "length \(n)")
            var opened = out
            let ok = opened.withUnsafeMutableBytes { b in nonce.withUnsafeBytes { XChaCha20Poly1305.openInPlace(b, key: key, nonce: $0, aad: aad) } }
            #expect(ok && Array(opened.prefix(n)) == plaintext)
            // Opened into a separate buffer of the plaintext's size.
            var into = [UInt8](repeating: 0xAA, count: n)
            let okInto = into.withUnsafeMutableBytes { o in
                out.withUnsafeBytes { s in nonce.withUnsafeBytes { nb in aad.withUnsafeBytes { XChaCha20Poly1305.open(into: o, s, key: key, nonce: nb, aad: $0) } } }
            }
            #expect(okInto && into == plaintext, "length \(n)")
            var flipped = out
            flipped[n / 2] ^= 0x80
            #expect(!into.withUnsafeMutableBytes { o in
                flipped.withUnsafeBytes { s in nonce.withUnsafeBytes { nb in aad.withUnsafeBytes { XChaCha20Poly1305.open(into: o, s, key: key, nonce: nb, aad: $0) } } }
            }, "length \(n)")
            var tampered = out
            tampered[tampered.count - 1] ^= 1
            #expect(!tampered.withUnsafeMutableBytes { b in nonce.withUnsafeBytes { XChaCha20Poly1305.openInPlace(b, key: key, nonce: $0, aad: aad) } })
            var otherAAD = out
            #expect(!otherAAD.withUnsafeMutableBytes { b in nonce.withUnsafeBytes { XChaCha20Poly1305.openInPlace(b, key: key, nonce: $0, aad: [1]) } })
        }
        var short = [UInt8](repeating: 0, count: 15)
        #expect(!short.withUnsafeMutableBytes { b in nonce.withUnsafeBytes { XChaCha20Poly1305.openInPlace(b, key: key, nonce: $0, aad: aad) } })
        var drawn = [UInt8](repeating: 0, count: 24)
        drawn.withUnsafeMutableBytes { Sodium.publicRandomBytes(into: $0) }
        #expect(drawn.contains { $0 != 0 } && drawn != Sodium.publicRandomBytes(24))
    }
}
