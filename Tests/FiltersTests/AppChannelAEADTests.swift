import NIOCore
import Passport
import Testing

@testable import Filters

/// The gateway's XChaCha20-Poly1305 (BoringSSL) against the app's
/// (libsodium): the same bytes both ways, at the sizes where either
/// implementation changes path (empty, under and over a block of 16 and of
/// 64, `sealInOneRun`'s limit and past it), and every failure refused.
@Suite("app channel AEAD: BoringSSL and libsodium agree")
struct AppChannelAEADTests {
    let key = (0..<32).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
    let nonce = (0..<24).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }

    func boringSeal(_ plaintext: [UInt8], key: [UInt8], nonce: [UInt8], aad: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: plaintext.count + AppChannelAEAD.tagBytes)
        out.withUnsafeMutableBytes { o in
            plaintext.withUnsafeBytes { p in
                nonce.withUnsafeBytes { n in aad.withUnsafeBytes { a in AppChannelAEAD.seal(into: o, p, key: key, nonce: n, aad: a) } }
            }
        }
        return out
    }

    func boringOpen(_ sealed: [UInt8], key: [UInt8], nonce: [UInt8], aad: [UInt8], outCount: Int? = nil) -> (Bool, [UInt8]) {
        var out = [UInt8](repeating: 0xAA, count: outCount ?? max(sealed.count - AppChannelAEAD.tagBytes, 0))
        let ok = out.withUnsafeMutableBytes { o in
            sealed.withUnsafeBytes { s in
                nonce.withUnsafeBytes { n in aad.withUnsafeBytes { a in AppChannelAEAD.open(into: o, s, key: key, nonce: n, aad: a) } }
            }
        }
        return (ok, out)
    }

    @Test("seal and open give libsodium's bytes, for every size that changes a path", arguments: [0, 1, 15, 16, 17, 63, 64, 65, 200, 1024, 4095, 70_000])
    func sameBytes(size: Int) {
        let plaintext = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 3) }
        for aad in [[UInt8](), Array("POST\n/full\n1764825600123\nbm9uY2U".utf8)] {
            let libsodium = XChaCha20Poly1305.seal(plaintext, key: key, nonce: nonce, aad: aad)
            let boring = boringSeal(plaintext, key: key, nonce: nonce, aad: aad)
            #expect(boring == libsodium, "size \(size), aad \(aad.count) bytes")
            let (ok, opened) = boringOpen(libsodium, key: key, nonce: nonce, aad: aad)
            #expect(ok && opened == plaintext)
            #expect(XChaCha20Poly1305.open(boring[...], key: key, nonce: nonce, aad: aad) == plaintext)
        }
    }

    @Test("the gateway's buffer forms with an empty plaintext: a body of nonce and tag only opens to nothing (a changed tag is refused); an empty answer is sealed to nonce and tag")
    func emptyPlaintextBuffers() {
        let keys = AppChannelCrypto.SessionKeys(appToGateway: key, gatewayToApp: key.reversed())
        let aad = Array("POST\n/full\n1764825600123\nbm9uY2U".utf8)
        let sealed = nonce + XChaCha20Poly1305.seal([], key: keys.request, nonce: nonce, aad: aad)
        var body = ByteBuffer(bytes: sealed)
        #expect(sealed.count == 40 && AppChannelCrypto.openRequest(&body, keys: keys, aad: aad) && body.readableBytes == 0)
        var tampered = sealed; tampered[39] ^= 1
        var bad = ByteBuffer(bytes: tampered)
        #expect(!AppChannelCrypto.openRequest(&bad, keys: keys, aad: aad) && bad.readableBytes == 40)
        let answer = AppChannelCrypto.sealResponse(ByteBuffer(), keys: keys, aad: aad, nonce: nonce)
        #expect(Array(answer.readableBytesView) == AppChannelCrypto.sealResponse([], keys: keys, nonce: nonce, aad: aad))
        #expect(answer.readableBytes == 40)
    }

    @Test("a changed tag, ciphertext, AAD, nonce or key is refused and leaves no plaintext; wrong sizes are refused")
    func refusals() {
        let plaintext = [UInt8](repeating: 0x61, count: 100)
        let aad = Array("200\nbm9uY2U".utf8)
        let sealed = boringSeal(plaintext, key: key, nonce: nonce, aad: aad)
        var badTag = sealed; badTag[badTag.count - 1] ^= 1
        var badText = sealed; badText[0] ^= 0x80
        var otherNonce = nonce; otherNonce[23] ^= 1
        var otherKey = key; otherKey[0] ^= 1
        for (name, s, k, n, a) in [("tag", badTag, key, nonce, aad), ("ciphertext", badText, key, nonce, aad),
                                   ("aad", sealed, key, nonce, aad + [0x20]), ("nonce", sealed, key, otherNonce, aad),
                                   ("key", sealed, otherKey, nonce, aad)] {
            let (ok, out) = boringOpen(s, key: k, nonce: n, aad: a)
            #expect(!ok, "changed \(name)")
            #expect(out.allSatisfy { $0 == 0 }, "nothing of the plaintext is left after a refused \(name)")
        }
        #expect(!boringOpen(Array(sealed.prefix(15)), key: key, nonce: nonce, aad: aad, outCount: 0).0, "shorter than a tag")
        #expect(!boringOpen(sealed, key: key, nonce: nonce, aad: aad, outCount: plaintext.count - 1).0, "no room for the plaintext")
        #expect(!boringOpen(sealed, key: Array(key.prefix(16)), nonce: nonce, aad: aad).0, "a 16-byte key")
        #expect(!boringOpen(sealed, key: key, nonce: Array(nonce.prefix(12)), aad: aad).0, "a 12-byte nonce")
        // The right inputs still open after the refusals (no state was left behind).
        #expect(boringOpen(sealed, key: key, nonce: nonce, aad: aad) == (true, plaintext))
    }
}
