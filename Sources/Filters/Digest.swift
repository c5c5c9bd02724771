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
        HMACSHA256Key(key).mac(message, result)
    }
}

/// HMAC-SHA-256 under one key, its two padded key blocks hashed once: a MAC
/// then starts from those states, two compressions (and the pads' set-up)
/// fewer than `Digest.hmacSHA256(key:)` a message. For a key that signs
/// many messages (an app session's `K_mac`).
///
/// Sendable by hand: `SHA256` is not marked so, but the two states here are
/// never mutated; each MAC works on its own copy, which copies the shared
/// state on its first update (copy on write: the shared one is only read).
public struct HMACSHA256Key: @unchecked Sendable {
    private let inner: SHA256
    private let outer: SHA256

    public init(_ key: [UInt8]) {
        let k = key.count > 64 ? Digest.sha256(key) : key
        var pad = [UInt8](repeating: 0x36, count: 64)
        for i in 0..<k.count { pad[i] ^= k[i] }
        var inner = SHA256()
        inner.update(data: pad)
        for i in 0..<64 { pad[i] ^= 0x36 ^ 0x5C }
        var outer = SHA256()
        outer.update(data: pad)
        self.inner = inner
        self.outer = outer
    }

    /// The MAC of the message `message` feeds to the hash (in as many
    /// pieces as it likes); `result` sees its 32 bytes where they lie.
    public func mac<R>(_ message: (inout SHA256) -> Void, _ result: (UnsafeRawBufferPointer) -> R) -> R {
        var inner = self.inner
        message(&inner)
        let innerDigest = inner.finalize()
        var outer = self.outer
        innerDigest.withUnsafeBytes { outer.update(bufferPointer: $0) }
        return outer.finalize().withUnsafeBytes(result)
    }

    public func mac(_ message: [UInt8]) -> [UInt8] {
        mac({ hash in message.withUnsafeBytes { hash.update(bufferPointer: $0) } }, { Array($0) })
    }
}

