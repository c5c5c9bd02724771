import Crypto

/// SHA-256 and HMAC-SHA-256 for the request path, from swift-crypto
/// (BoringSSL, which uses the CPU's SHA extensions where it has them):
/// about five times libsodium's portable SHA-256 on a 1 KiB body. The
/// results are the same bytes (the app-channel vectors check it).
public enum Digest {
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        // From the digest's bytes in one copy: `Array(digest)` grows an
        // array element by element (four allocations for 32 bytes).
        SHA256.hash(data: bytes).withUnsafeBytes { Array($0) }
    }

    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { sha256($0) }
    }

    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        hmacSHA256(key: key, { hash in message.withUnsafeBytes { hash.update(bufferPointer: $0) } }, { Array($0) })
    }

    /// RFC 2104 over `SHA256` directly: swift-crypto's `HMAC` type costs
    /// more in key and state set-up than the hashing of a short message.
    /// `message` feeds the message to the inner hash in as many pieces as it
    /// likes (no joined copy); `result` sees the 32-byte MAC where it lies.
    public static func hmacSHA256<R>(key: [UInt8], _ message: (inout SHA256) -> Void,
                                     _ result: (UnsafeRawBufferPointer) -> R) -> R {
        let k = key.count > 64 ? sha256(key) : key
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { pad in
            for i in 0..<64 { pad[i] = (i < k.count ? k[i] : 0) ^ 0x36 }
            var inner = SHA256()
            inner.update(bufferPointer: UnsafeRawBufferPointer(pad))
            message(&inner)
            let innerDigest = inner.finalize()
            for i in 0..<64 { pad[i] ^= 0x36 ^ 0x5C }
            var outer = SHA256()
            outer.update(bufferPointer: UnsafeRawBufferPointer(pad))
            innerDigest.withUnsafeBytes { outer.update(bufferPointer: $0) }
            return outer.finalize().withUnsafeBytes(result)
        }
    }
}
