import CSHA256
import Crypto

/// SHA-256 and HMAC-SHA-256 for the request path. `SHA256Stream` runs on the
/// CPU's SHA extensions with its state on the stack where the CPU has them
/// (x86-64 since Ice Lake and Zen), else on swift-crypto (BoringSSL's
/// assembly, which allocates its state and copies it on write). Both give
/// libsodium's bytes (tested, both paths; the app-channel vectors check it).
public enum Digest {
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var hash = SHA256Stream()
        hash.update(bufferPointer: bytes)
        return hash.finalize { Array($0) }
    }

    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { sha256($0) }
    }

    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        hmacSHA256(key: key, { hash in message.withUnsafeBytes { hash.update(bufferPointer: $0) } }, { Array($0) })
    }

    /// RFC 2104 over `SHA256Stream` directly: swift-crypto's `HMAC` type
    /// costs more in key and state set-up than the hashing of a short message.
    /// `message` feeds the message to the inner hash in as many pieces as it
    /// likes (no joined copy); `result` sees the 32-byte MAC where it lies.
    public static func hmacSHA256<R>(key: [UInt8], _ message: (inout SHA256Stream) -> Void,
                                     _ result: (UnsafeRawBufferPointer) -> R) -> R {
        HMACSHA256Key(key).mac(message, result)
    }
}

/// A SHA-256 computation in progress, a value: a copy goes on from where the
/// original was (what `HMACSHA256Key` keeps of its pads).
public struct SHA256Stream: @unchecked Sendable {
    private var native: gw_sha256_ctx
    /// swift-crypto's, on a CPU without the SHA extensions.
    private var fallback: SHA256?

    /// Whether this CPU has the SHA extensions (asked once).
    public static let nativeAvailable = gw_sha256_available() != 0

    public init() { self.init(native: Self.nativeAvailable) }

    /// `native: false` takes swift-crypto's path on any CPU (the tests run both).
    init(native: Bool) {
        self.native = gw_sha256_ctx()
        if native {
            fallback = nil
            gw_sha256_init(&self.native)
        } else {
            fallback = SHA256()
        }
    }

    public mutating func update(bufferPointer bytes: UnsafeRawBufferPointer) {
        if fallback == nil {
            gw_sha256_update(&native, bytes.baseAddress, bytes.count)
        } else {
            fallback!.update(bufferPointer: bytes)
        }
    }

    /// The digest, which `body` sees where it lies (32 bytes). Once: the
    /// native state is wiped by it.
    public mutating func finalize<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let fallback { return fallback.finalize().withUnsafeBytes(body) }
        var digest: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &digest) { out in
            gw_sha256_final(&native, out.baseAddress!.assumingMemoryBound(to: UInt8.self))
            return body(UnsafeRawBufferPointer(out))
        }
    }
}

/// HMAC-SHA-256 under one key, its two padded key blocks hashed once: a MAC
/// then starts from those states, two compressions (and the pads' set-up)
/// fewer than `Digest.hmacSHA256(key:)` a message. For a key that signs
/// many messages (an app session's `K_mac`).
///
/// The two states here are never mutated; each MAC works on its own copy
/// (a value on the stack; on swift-crypto's path, copied on its first update).
public struct HMACSHA256Key: Sendable {
    private let inner: SHA256Stream
    private let outer: SHA256Stream

    public init(_ key: [UInt8]) { self.init(key, native: SHA256Stream.nativeAvailable) }

    /// `native: false` takes swift-crypto's path on any CPU (the tests run both).
    init(_ key: [UInt8], native: Bool) {
        let k = key.count > 64 ? Digest.sha256(key) : key
        var pad = [UInt8](repeating: 0x36, count: 64)
        for i in 0..<k.count { pad[i] ^= k[i] }
        var inner = SHA256Stream(native: native)
        pad.withUnsafeBytes { inner.update(bufferPointer: $0) }
        for i in 0..<64 { pad[i] ^= 0x36 ^ 0x5C }
        var outer = SHA256Stream(native: native)
        pad.withUnsafeBytes { outer.update(bufferPointer: $0) }
        self.inner = inner
        self.outer = outer
    }

    /// The MAC of the message `message` feeds to the hash (in as many
    /// pieces as it likes); `result` sees its 32 bytes where they lie.
    public func mac<R>(_ message: (inout SHA256Stream) -> Void, _ result: (UnsafeRawBufferPointer) -> R) -> R {
        var inner = self.inner
        message(&inner)
        var outer = self.outer
        inner.finalize { outer.update(bufferPointer: $0) }
        return outer.finalize(result)
    }

    public func mac(_ message: [UInt8]) -> [UInt8] {
        mac({ hash in message.withUnsafeBytes { hash.update(bufferPointer: $0) } }, { Array($0) })
    }
}

