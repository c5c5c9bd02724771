import Crypto

/// SHA-256 and HMAC-SHA-256 for the request path, from swift-crypto
/// (BoringSSL, which uses the CPU's SHA extensions where it has them):
/// about five times libsodium's portable SHA-256 on a 1 KiB body. The
/// results are the same bytes (the app-channel vectors check it).
public enum Digest {
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        Array(SHA256.hash(data: bytes))
    }

    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { sha256($0) }
    }

    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: key)))
    }
}
