import Passport

/// Up to 32 bytes decoded from base64url, kept inline (four words): a signed
/// request's client key and nonce, which were two arrays (two allocations)
/// a request.
public struct InlineBytes32: Sendable {
    private var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    public let count: Int

    /// The bytes of `text` (base64url without padding) when it decodes to a
    /// length in `lengths` (within 0...32); nil when it does not decode or
    /// has another length.
    public init?(base64url text: String, lengths: ClosedRange<Int>) {
        // 43 characters decode to 32 bytes at most; a longer text is a longer value.
        guard lengths.upperBound <= 32, text.utf8.count <= 43 else { return nil }
        var words: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        let decoded = ASCII.withUTF8(text) { utf8 in
            withUnsafeMutableBytes(of: &words) { Base64URL.decode(utf8, into: $0) }
        }
        guard let decoded, lengths.contains(decoded) else { return nil }
        self.words = words
        self.count = decoded
    }

    /// The bytes where they lie, for the duration of `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: words) { try body(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
    }

    /// The bytes as an array (a cold path: a session's first request).
    public var array: [UInt8] { withUnsafeBytes { Array($0) } }
}
