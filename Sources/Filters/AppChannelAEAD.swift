// swift-crypto's vendored BoringSSL: not a product of that package, but a
// module every target that depends on `Crypto` already builds and links
// (the JWT filters' ES256 and RS256 run on it).
import CCryptoBoringSSL
import Passport

/// XChaCha20-Poly1305 (IETF), the construction of libsodium's
/// `crypto_aead_xchacha20poly1305_ietf` and of PROTOCOL 2.4-2.5, on
/// BoringSSL's `EVP_aead_xchacha20_poly1305`: the gateway's side of the app
/// channel (one request body opened and one response sealed per signed
/// request). Its x86-64 code runs ChaCha20 and Poly1305 in one pass over
/// the bytes; libsodium 1.0.18 (Debian's) makes two, and pays more before
/// the first byte: a 1 KiB open 0.77 µs against 1.20, a 200-byte seal 0.38
/// against 0.86 (measured side by side on the bench machine). The bytes
/// are the same: the vector tests check these against PyNaCl's, and the
/// app's side (`AppChannelClient`, `Passport.XChaCha20Poly1305`) stays on
/// libsodium, so each end checks the other.
///
/// The context holds only the key; it is set up on the stack for each call
/// (as cheap as copying the key) and wiped after it, so a cached session
/// keeps no BoringSSL state and nothing is shared between threads.
enum AppChannelAEAD {
    static let keyBytes = XChaCha20Poly1305.keyBytes
    static let nonceBytes = XChaCha20Poly1305.nonceBytes
    static let tagBytes = XChaCha20Poly1305.tagBytes

    /// Opens `sealed` (ciphertext, then the 16-byte tag) into `out`
    /// (`sealed.count - tagBytes` bytes). False when the tag does not
    /// verify (then `out` is all zeros) or the sizes are wrong.
    static func open(into out: UnsafeMutableRawBufferPointer, _ sealed: UnsafeRawBufferPointer, key: [UInt8],
                     nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer) -> Bool {
        guard key.count == keyBytes, nonce.count == nonceBytes, sealed.count >= tagBytes,
              out.count == sealed.count - tagBytes else { return false }
        return withContext(key: key) { ctx in
            var written = 0
            let ok = CCryptoBoringSSL_EVP_AEAD_CTX_open(ctx, bytes(out), &written, out.count, bytes(nonce), nonceBytes,
                                                        bytes(sealed), sealed.count, bytes(aad), aad.count)
            return ok == 1 && written == out.count
        }
    }

    /// Seals `plaintext` into `out` (exactly `plaintext.count + tagBytes`
    /// bytes: the ciphertext, then the tag).
    static func seal(into out: UnsafeMutableRawBufferPointer, _ plaintext: UnsafeRawBufferPointer, key: [UInt8],
                     nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer) {
        precondition(key.count == keyBytes && nonce.count == nonceBytes && out.count == plaintext.count + tagBytes,
                     "XChaCha20-Poly1305: 32-byte key, 24-byte nonce, room for the tag")
        let sealed = withContext(key: key) { ctx in
            var written = 0
            let ok = CCryptoBoringSSL_EVP_AEAD_CTX_seal(ctx, bytes(out), &written, out.count, bytes(nonce), nonceBytes,
                                                        bytes(plaintext), plaintext.count, bytes(aad), aad.count)
            return ok == 1 && written == out.count
        }
        // Sealing fails only on sizes, which the precondition checked.
        precondition(sealed, "XChaCha20-Poly1305 seal failed")
    }

    /// `body` with a context for `key`, on the stack, wiped afterwards.
    private static func withContext(key: [UInt8], _ body: (UnsafeMutablePointer<EVP_AEAD_CTX>) -> Bool) -> Bool {
        var ctx = EVP_AEAD_CTX()
        let ready = key.withUnsafeBufferPointer {
            CCryptoBoringSSL_EVP_AEAD_CTX_init(&ctx, CCryptoBoringSSL_EVP_aead_xchacha20_poly1305(), $0.baseAddress, $0.count,
                                               tagBytes, nil)
        }
        defer {
            CCryptoBoringSSL_EVP_AEAD_CTX_cleanup(&ctx)
            // The context holds a copy of the key.
            withUnsafeMutableBytes(of: &ctx) { CCryptoBoringSSL_OPENSSL_cleanse($0.baseAddress, $0.count) }
        }
        let result = ready == 1 && body(&ctx)
        // A failure leaves an entry on this thread's BoringSSL error queue
        // (this copy's own: NIOSSL's TLS has its own); nothing reads it.
        if !result { CCryptoBoringSSL_ERR_clear_error() }
        return result
    }

    private static func bytes(_ p: UnsafeRawBufferPointer) -> UnsafePointer<UInt8>? {
        p.baseAddress?.assumingMemoryBound(to: UInt8.self)
    }

    private static func bytes(_ p: UnsafeMutableRawBufferPointer) -> UnsafeMutablePointer<UInt8>? {
        p.baseAddress?.assumingMemoryBound(to: UInt8.self)
    }
}
