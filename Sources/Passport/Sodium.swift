import CSodium

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

    /// Fills the given buffer from libsodium's CSPRNG, allocation free.
    public static func fillRandom(_ buffer: UnsafeMutableRawBufferPointer) {
        precondition(initialized, "libsodium failed to initialise")
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        randombytes_buf(base, buffer.count)
    }

    /// Compares two byte strings in time independent of their contents.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        if a.isEmpty { return true }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in sodium_memcmp(pa.baseAddress!, pb.baseAddress!, a.count) == 0 }
        }
    }

    /// The libsodium version string, for `gateway version`.
    public static var version: String { String(cString: sodium_version_string()) }
}

extension Sodium {
    /// SHA-256 of `bytes`.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        precondition(initialized, "libsodium failed to initialise")
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
