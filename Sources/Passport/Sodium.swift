import CSodium
import Synchronization

/// The only place in `Passport` that touches libsodium directly.
///
/// `sodium_init` is idempotent and thread-safe; it is called once, lazily, by
/// every entry point here, so callers never have to remember it.
public enum Sodium {
    private static let initialized: Bool = sodium_init() >= 0

    /// Whether libsodium initialised (it only fails without an entropy source).
    public static var isReady: Bool { initialized }

    /// Fills `count` bytes from libsodium's CSPRNG.
    public static func randomBytes(_ count: Int) -> [UInt8] {
        precondition(initialized, "libsodium failed to initialise")
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, count) }
        return out
    }

    /// `count` bytes (at most 64) of libsodium's CSPRNG output for values that
    /// are sent in the clear (nonces, token ids), drawn from a 4 KiB block so
    /// that a request costs no system call: `randombytes_buf` is one
    /// `getrandom` call each time. Every byte is handed out once. Keys and
    /// seeds use `randomBytes`, which keeps nothing in memory.
    public static func publicRandomBytes(_ count: Int) -> [UInt8] {
        precondition(count >= 0 && count <= 64, "publicRandomBytes is for nonces and ids")
        return [UInt8](unsafeUninitializedCapacity: count) { out, written in
            publicRandomBytes(into: UnsafeMutableRawBufferPointer(out))
            written = count
        }
    }

    private struct Pool {
        var block = [UInt8](repeating: 0, count: 4096)
        var offset = 4096
    }
    private static let publicPool = Mutex(Pool())

    /// `publicRandomBytes` written into `out` (at most 64 bytes), allocation free.
    public static func publicRandomBytes(into out: UnsafeMutableRawBufferPointer) {
        precondition(initialized, "libsodium failed to initialise")
        let count = out.count
        precondition(count <= 64, "publicRandomBytes is for nonces and ids")
        guard count > 0 else { return }
        publicPool.withLock { pool in
            if pool.offset + count > pool.block.count {
                pool.block.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, $0.count) }
                pool.offset = 0
            }
            pool.block.withUnsafeBytes { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[pool.offset ..< pool.offset + count])) }
            pool.offset += count
        }
    }

    /// Fills the given buffer from libsodium's CSPRNG, allocation free.
    public static func fillRandom(_ buffer: UnsafeMutableRawBufferPointer) {
        precondition(initialized, "libsodium failed to initialise")
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        randombytes_buf(base, buffer.count)
    }

    /// Compares two byte strings in time independent of their contents.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in constantTimeEqual(pa, pb) } }
    }

    /// `constantTimeEqual` over bytes where they lie (the time depends on the length only).
    public static func constantTimeEqual(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        let pa = a.baseAddress!.assumingMemoryBound(to: UInt8.self), pb = b.baseAddress!.assumingMemoryBound(to: UInt8.self)
        // libsodium's fixed-size comparisons are also constant-time and a
        // tenth of `sodium_memcmp`'s cost (a MAC is compared every request).
        switch a.count {
        case 16: return crypto_verify_16(pa, pb) == 0
        case 32: return crypto_verify_32(pa, pb) == 0
        case 64: return crypto_verify_64(pa, pb) == 0
        default: return sodium_memcmp(pa, pb, a.count) == 0
        }
    }

    /// The libsodium version string, for `gateway version`.
    public static var version: String { String(cString: sodium_version_string()) }
}

/// Ed25519 (RFC 8032) through libsodium's `crypto_sign_*`.
public enum Ed25519 {
    public static let seedBytes = 32
    public static let publicKeyBytes = 32
    public static let signatureBytes = 64

    /// The key pair of a 32-byte seed: (public key, libsodium's 64-byte secret key).
    public static func keyPair(seed: [UInt8]) -> (publicKey: [UInt8], secretKey: [UInt8])? {
        guard Sodium.isReady, seed.count == seedBytes else { return nil }
        var pk = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        var sk = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        guard crypto_sign_seed_keypair(&pk, &sk, seed) == 0 else { return nil }
        return (pk, sk)
    }

    /// A detached signature of `message` with libsodium's 64-byte secret key.
    public static func sign(_ message: UnsafeRawBufferPointer, secretKey: [UInt8]) -> [UInt8] {
        precondition(secretKey.count == Int(crypto_sign_SECRETKEYBYTES), "an Ed25519 secret key is 64 bytes")
        var sig = [UInt8](repeating: 0, count: signatureBytes)
        let base = message.bindMemory(to: UInt8.self).baseAddress
        _ = crypto_sign_detached(&sig, nil, base, UInt64(message.count), secretKey)
        return sig
    }

    /// Whether `signature` is a valid Ed25519 signature of `message` by `publicKey`.
    public static func verify(_ signature: [UInt8], _ message: UnsafeRawBufferPointer, publicKey: [UInt8]) -> Bool {
        guard Sodium.isReady, signature.count == signatureBytes, publicKey.count == publicKeyBytes else { return false }
        let base = message.bindMemory(to: UInt8.self).baseAddress
        return crypto_sign_verify_detached(signature, base, UInt64(message.count), publicKey) == 0
    }
}

/// X25519 key agreement keys (libsodium `crypto_kx`, as the app channel uses them).
public enum X25519 {
    public static let keyBytes = 32

    /// A new random key pair: (public key, secret key), 32 bytes each.
    public static func generate() -> (publicKey: [UInt8], secretKey: [UInt8]) {
        precondition(Sodium.isReady, "libsodium failed to initialise")
        var pk = [UInt8](repeating: 0, count: Int(crypto_kx_PUBLICKEYBYTES))
        var sk = [UInt8](repeating: 0, count: Int(crypto_kx_SECRETKEYBYTES))
        _ = crypto_kx_keypair(&pk, &sk)
        return (pk, sk)
    }

    /// The public key of a secret key.
    public static func publicKey(secretKey: [UInt8]) -> [UInt8]? {
        guard Sodium.isReady, secretKey.count == keyBytes else { return nil }
        var pk = [UInt8](repeating: 0, count: keyBytes)
        guard crypto_scalarmult_base(&pk, secretKey) == 0 else { return nil }
        return pk
    }
}

extension X25519 {
    /// The key pair of a 32-byte seed (`crypto_kx_seed_keypair`).
    public static func keyPair(seed: [UInt8]) -> (publicKey: [UInt8], secretKey: [UInt8])? {
        guard Sodium.isReady, seed.count == Int(crypto_kx_SEEDBYTES) else { return nil }
        var pk = [UInt8](repeating: 0, count: keyBytes)
        var sk = [UInt8](repeating: 0, count: keyBytes)
        guard crypto_kx_seed_keypair(&pk, &sk, seed) == 0 else { return nil }
        return (pk, sk)
    }

    /// The server's session keys with a client (`crypto_kx_server_session_keys`):
    /// `rx` decrypts what the client sent, `tx` what goes back. Nil for an
    /// unacceptable client key.
    public static func serverSessionKeys(serverPublicKey: [UInt8], serverSecretKey: [UInt8], clientPublicKey: [UInt8])
        -> (rx: [UInt8], tx: [UInt8])? {
        guard Sodium.isReady, serverPublicKey.count == keyBytes, serverSecretKey.count == keyBytes, clientPublicKey.count == keyBytes
        else { return nil }
        var rx = [UInt8](repeating: 0, count: Int(crypto_kx_SESSIONKEYBYTES))
        var tx = [UInt8](repeating: 0, count: Int(crypto_kx_SESSIONKEYBYTES))
        guard crypto_kx_server_session_keys(&rx, &tx, serverPublicKey, serverSecretKey, clientPublicKey) == 0 else { return nil }
        return (rx, tx)
    }

    /// The client's session keys with a server (`crypto_kx_client_session_keys`).
    public static func clientSessionKeys(clientPublicKey: [UInt8], clientSecretKey: [UInt8], serverPublicKey: [UInt8])
        -> (rx: [UInt8], tx: [UInt8])? {
        guard Sodium.isReady, serverPublicKey.count == keyBytes, clientSecretKey.count == keyBytes, clientPublicKey.count == keyBytes
        else { return nil }
        var rx = [UInt8](repeating: 0, count: Int(crypto_kx_SESSIONKEYBYTES))
        var tx = [UInt8](repeating: 0, count: Int(crypto_kx_SESSIONKEYBYTES))
        guard crypto_kx_client_session_keys(&rx, &tx, clientPublicKey, clientSecretKey, serverPublicKey) == 0 else { return nil }
        return (rx, tx)
    }
}

/// XChaCha20-Poly1305-IETF (`crypto_aead_xchacha20poly1305_ietf_*`).
public enum XChaCha20Poly1305 {
    public static let keyBytes = 32
    public static let nonceBytes = 24
    public static let tagBytes = 16

    public static func seal(_ plaintext: [UInt8], key: [UInt8], nonce: [UInt8], aad: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: plaintext.count + tagBytes) { out, written in
            plaintext.withUnsafeBytes { p in
                nonce.withUnsafeBytes { seal(into: UnsafeMutableRawBufferPointer(out), p, key: key, nonce: $0, aad: aad) }
            }
            written = plaintext.count + tagBytes
        }
    }

    /// Seals `plaintext` into `out` (exactly `plaintext.count + tagBytes`
    /// bytes: the ciphertext, then the tag), with no allocation.
    public static func seal(into out: UnsafeMutableRawBufferPointer, _ plaintext: UnsafeRawBufferPointer, key: [UInt8],
                            nonce: UnsafeRawBufferPointer, aad: [UInt8]) {
        aad.withUnsafeBytes { seal(into: out, plaintext, key: key, nonce: nonce, aad: $0) }
    }

    /// `seal(into:...)` with the AAD where it lies (a stack buffer serves).
    /// Messages up to `runMessageBytes` take `sealInOneRun`; longer ones libsodium's own AEAD.
    public static func seal(into out: UnsafeMutableRawBufferPointer, _ plaintext: UnsafeRawBufferPointer, key: [UInt8],
                            nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer) {
        precondition(Sodium.isReady && key.count == keyBytes && nonce.count == nonceBytes && out.count == plaintext.count + tagBytes,
                     "XChaCha20-Poly1305: 32-byte key, 24-byte nonce, room for the tag")
        if plaintext.count <= runMessageBytes {
            sealInOneRun(into: out, plaintext, key: key, nonce: nonce, aad: aad)
        } else {
            libsodiumSeal(into: out, plaintext, key: key, nonce: nonce, aad: aad)
        }
    }

    /// The longest message `sealInOneRun` takes (its scratch is on the stack).
    static let runMessageBytes = 4096

    /// The same construction as libsodium's `crypto_aead_xchacha20poly1305_ietf_encrypt`
    /// (draft-irtf-cfrg-xchacha §2 over RFC 8439 §2.8): subkey `HChaCha20(key,
    /// N[0..<16])`, ChaCha20 nonce `0⁴ ‖ N[16..<24]`; the Poly1305 key is the
    /// first 32 bytes of keystream block 0, the message is encrypted from block
    /// 1; the tag is Poly1305 over `A ‖ pad16 ‖ C ‖ pad16 ‖ le64(|A|) ‖ le64(|C|)`.
    /// Only the keystream calls differ: libsodium 1.0.18's ChaCha20 runs 512
    /// and 256 bytes at a time fast and each leftover 64-byte block slowly
    /// (≈ 120 ns a block against ≈ 214 ns for a whole 512-byte run here), and
    /// its AEAD asks for block 0 alone and then the message, so a 200-byte
    /// response paid for five single blocks. Here block 0 and the message are
    /// one run over a stack scratch, its tail rounded up to 512 bytes unless
    /// it is one block. Tested byte for byte against libsodium's AEAD at every
    /// length up to past two runs. The scratch (keystream and plaintext) is wiped.
    static func sealInOneRun(into out: UnsafeMutableRawBufferPointer, _ plaintext: UnsafeRawBufferPointer, key: [UInt8],
                             nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer) {
        let n = plaintext.count
        let used = 64 + n
        let tail = used % 512
        let run = used - tail + (tail == 0 ? 0 : tail <= 64 ? 64 : 512)
        // run bytes of keystream, the subkey, the ChaCha20 nonce, the Poly1305
        // state (16-byte aligned, as libsodium's SSE2 code wants it).
        let stateBytes = MemoryLayout<crypto_onetimeauth_poly1305_state>.size
        withUnsafeTemporaryAllocation(byteCount: run + 32 + 16 + stateBytes, alignment: 64) { scratch in
            let base = scratch.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let subkey = base + run, chachaNonce = base + run + 32
            let state = UnsafeMutableRawPointer(base + run + 48).bindMemory(to: crypto_onetimeauth_poly1305_state.self, capacity: 1)
            _ = crypto_core_hchacha20(subkey, nonce.baseAddress!.assumingMemoryBound(to: UInt8.self), key, nil)
            (chachaNonce).initialize(repeating: 0, count: 4)
            UnsafeMutableRawPointer(chachaNonce + 4).copyMemory(from: nonce.baseAddress! + 16, byteCount: 8)
            base.initialize(repeating: 0, count: run)
            if n > 0 { UnsafeMutableRawPointer(base + 64).copyMemory(from: plaintext.baseAddress!, byteCount: n) }
            _ = crypto_stream_chacha20_ietf_xor_ic(base, base, UInt64(run), chachaNonce, 0, subkey)
            if n > 0 { out.baseAddress!.copyMemory(from: base + 64, byteCount: n) }
            _ = crypto_onetimeauth_poly1305_init(state, base)
            let zeros = (UInt64(0), UInt64(0))
            withUnsafeBytes(of: zeros) { pad in
                let pad = pad.baseAddress!.assumingMemoryBound(to: UInt8.self)
                if aad.count > 0 {
                    _ = crypto_onetimeauth_poly1305_update(state, aad.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(aad.count))
                    _ = crypto_onetimeauth_poly1305_update(state, pad, UInt64((16 - aad.count % 16) % 16))
                }
                if n > 0 {
                    _ = crypto_onetimeauth_poly1305_update(state, out.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(n))
                    _ = crypto_onetimeauth_poly1305_update(state, pad, UInt64((16 - n % 16) % 16))
                }
            }
            withUnsafeBytes(of: (UInt64(aad.count).littleEndian, UInt64(n).littleEndian)) { lengths in
                _ = crypto_onetimeauth_poly1305_update(state, lengths.baseAddress!.assumingMemoryBound(to: UInt8.self), 16)
            }
            _ = crypto_onetimeauth_poly1305_final(state, (out.baseAddress! + n).assumingMemoryBound(to: UInt8.self))
            sodium_memzero(scratch.baseAddress!, scratch.count)
        }
    }

    /// libsodium's `crypto_aead_xchacha20poly1305_ietf_encrypt` (messages past
    /// `runMessageBytes`, and the reference `sealInOneRun` is tested against).
    static func libsodiumSeal(into out: UnsafeMutableRawBufferPointer, _ plaintext: UnsafeRawBufferPointer, key: [UInt8],
                              nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer) {
        var outLength: UInt64 = 0
        let empty: UInt8 = 0
        withUnsafePointer(to: empty) { none in
            let m = plaintext.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? none
            _ = crypto_aead_xchacha20poly1305_ietf_encrypt(out.baseAddress!.assumingMemoryBound(to: UInt8.self), &outLength,
                                                            m, UInt64(plaintext.count), aad.baseAddress?.assumingMemoryBound(to: UInt8.self),
                                                            UInt64(aad.count), nil, nonce.baseAddress!.assumingMemoryBound(to: UInt8.self), key)
        }
    }

    /// Opens `ciphertext || tag` where it lies: when it is authentic the
    /// plaintext is its first `count - tagBytes` bytes and this returns true;
    /// otherwise false, and the bytes are not to be used.
    public static func openInPlace(_ buffer: UnsafeMutableRawBufferPointer, key: [UInt8], nonce: UnsafeRawBufferPointer,
                                   aad: [UInt8]) -> Bool {
        aad.withUnsafeBytes { openInPlace(buffer, key: key, nonce: nonce, aad: $0) }
    }

    /// `openInPlace` with the AAD where it lies (a stack buffer serves).
    public static func openInPlace(_ buffer: UnsafeMutableRawBufferPointer, key: [UInt8], nonce: UnsafeRawBufferPointer,
                                   aad: UnsafeRawBufferPointer) -> Bool {
        guard Sodium.isReady, key.count == keyBytes, nonce.count == nonceBytes, buffer.count >= tagBytes,
              let base = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
        var outLength: UInt64 = 0
        return crypto_aead_xchacha20poly1305_ietf_decrypt(base, &outLength, nil, base, UInt64(buffer.count),
                                                          aad.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(aad.count),
                                                          nonce.baseAddress!.assumingMemoryBound(to: UInt8.self), key) == 0
    }

    /// Opens `ciphertext || tag` into `out` (exactly `count - tagBytes`
    /// bytes): true when it is authentic; otherwise false, and `out` holds
    /// nothing to use (libsodium checks the tag before it decrypts).
    public static func open(into out: UnsafeMutableRawBufferPointer, _ sealed: UnsafeRawBufferPointer, key: [UInt8],
                            nonce: UnsafeRawBufferPointer, aad: UnsafeRawBufferPointer) -> Bool {
        guard Sodium.isReady, key.count == keyBytes, nonce.count == nonceBytes, sealed.count >= tagBytes,
              out.count == sealed.count - tagBytes, let c = sealed.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return false }
        var outLength: UInt64 = 0
        // An empty plaintext has no address: libsodium then checks the tag only.
        return crypto_aead_xchacha20poly1305_ietf_decrypt(out.baseAddress?.assumingMemoryBound(to: UInt8.self), &outLength, nil,
                                                          c, UInt64(sealed.count),
                                                          aad.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(aad.count),
                                                          nonce.baseAddress!.assumingMemoryBound(to: UInt8.self), key) == 0
    }

    /// The plaintext, or nil when the ciphertext or its tag is not authentic.
    public static func open(_ ciphertext: ArraySlice<UInt8>, key: [UInt8], nonce: [UInt8], aad: [UInt8]) -> [UInt8]? {
        guard nonce.count == nonceBytes, ciphertext.count >= tagBytes else { return nil }
        var out = Array(ciphertext)
        let ok = out.withUnsafeMutableBytes { b in nonce.withUnsafeBytes { openInPlace(b, key: key, nonce: $0, aad: aad) } }
        guard ok else { return nil }
        out.removeLast(tagBytes)
        return out
    }
}
