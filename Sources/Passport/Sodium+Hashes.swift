import CSodium

// The libsodium wrapper's hashes and MACs (split from Sodium.swift by concern).

extension Sodium {
    /// SHA-256 of `bytes`.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        precondition(isReady, "libsodium failed to initialise")
        var out = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        bytes.withUnsafeBufferPointer { input in
            _ = crypto_hash_sha256(&out, input.baseAddress, UInt64(input.count))
        }
        return out
    }
}

/// Incremental SHA-256 (libsodium `crypto_hash_sha256_*`).
public struct SHA256Hasher {
    private var state = crypto_hash_sha256_state()

    public init() {
        precondition(Sodium.isReady, "libsodium failed to initialise")
        crypto_hash_sha256_init(&state)
    }

    public mutating func update(_ raw: UnsafeRawBufferPointer) {
        _ = crypto_hash_sha256_update(&state, raw.bindMemory(to: UInt8.self).baseAddress, UInt64(raw.count))
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public mutating func finalize() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        crypto_hash_sha256_final(&state, &out)
        return out
    }
}

extension Sodium {
    /// HMAC-SHA-256 (RFC 2104) with a key of any length.
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        precondition(isReady, "libsodium failed to initialise")
        var state = crypto_auth_hmacsha256_state()
        var out = [UInt8](repeating: 0, count: Int(crypto_auth_hmacsha256_BYTES))
        _ = crypto_auth_hmacsha256_init(&state, key, key.count)
        _ = crypto_auth_hmacsha256_update(&state, message, UInt64(message.count))
        _ = crypto_auth_hmacsha256_final(&state, &out)
        return out
    }
}

extension Sodium {
    /// Keyed BLAKE2b (`crypto_generichash`) with an `outputLength`-byte digest.
    public static func blake2b(_ message: [UInt8], key: [UInt8], outputLength: Int = 32) -> [UInt8] {
        precondition(isReady, "libsodium failed to initialise")
        var out = [UInt8](repeating: 0, count: outputLength)
        _ = crypto_generichash(&out, outputLength, message, UInt64(message.count), key, key.count)
        return out
    }
}

extension Sodium {
    /// SipHash-2-4 with a 128-bit output (libsodium's
    /// `crypto_shorthash_siphashx24`) of `a ‖ b` under the 16 bytes of `key`,
    /// as two little-endian words: a keyed hash whose values cannot be chosen
    /// or predicted without the key. The parts are joined on the stack.
    public static func sipHash128(key: (UInt64, UInt64), _ a: UnsafeRawBufferPointer,
                                  _ b: UnsafeRawBufferPointer) -> (UInt64, UInt64) {
        var key = (key.0.littleEndian, key.1.littleEndian)
        var out: (UInt64, UInt64) = (0, 0)
        withUnsafeTemporaryAllocation(byteCount: max(a.count + b.count, 1), alignment: 8) { joined in
            if let base = a.baseAddress, !a.isEmpty { joined.baseAddress!.copyMemory(from: base, byteCount: a.count) }
            if let base = b.baseAddress, !b.isEmpty { (joined.baseAddress! + a.count).copyMemory(from: base, byteCount: b.count) }
            withUnsafeMutableBytes(of: &out) { o in
                withUnsafeBytes(of: &key) { k in
                    _ = crypto_shorthash_siphashx24(o.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                                    joined.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                                    UInt64(a.count + b.count), k.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        return (UInt64(littleEndian: out.0), UInt64(littleEndian: out.1))
    }
}
