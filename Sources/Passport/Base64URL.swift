/// base64url without padding (RFC 4648 §5), as JWS uses it.
public enum Base64URL {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }()

    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        if let text = bytes.withContiguousStorageIfAvailable({ encode(UnsafeRawBufferPointer($0)) }) { return text }
        return Array(bytes).withUnsafeBytes { encode($0) }
    }

    /// The one encoder every `encode` reaches: a loop over raw bytes, so no
    /// caller pays for a generic collection's iteration.
    public static func encode(_ input: UnsafeRawBufferPointer) -> String {
        String(unsafeUninitializedCapacity: encodedCount(input.count)) { encode(input, into: UnsafeMutableRawBufferPointer($0)) }
    }

    /// The length of the encoding of `count` bytes.
    public static func encodedCount(_ count: Int) -> Int { (count * 4 + 2) / 3 }

    /// Writes the encoding of `input` into `out` (at least
    /// `encodedCount(input.count)` bytes; a stack buffer serves) and returns
    /// its length.
    public static func encode(_ input: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int {
        let count = input.count
        precondition(out.count >= encodedCount(count), "Base64URL.encode: output too small")
        return alphabet.withUnsafeBufferPointer { alphabet in
            var i = 0, o = 0
            while i + 3 <= count {
                let n = UInt32(input[i]) << 16 | UInt32(input[i + 1]) << 8 | UInt32(input[i + 2])
                out[o] = alphabet[Int(n >> 18 & 63)]; out[o + 1] = alphabet[Int(n >> 12 & 63)]
                out[o + 2] = alphabet[Int(n >> 6 & 63)]; out[o + 3] = alphabet[Int(n & 63)]
                i += 3; o += 4
            }
            let rest = count - i
            if rest > 0 {
                let n = UInt32(input[i]) << 16 | (rest == 2 ? UInt32(input[i + 1]) << 8 : 0)
                out[o] = alphabet[Int(n >> 18 & 63)]; out[o + 1] = alphabet[Int(n >> 12 & 63)]
                o += 2
                if rest == 2 { out[o] = alphabet[Int(n >> 6 & 63)]; o += 1 }
            }
            return o
        }
    }

    /// The bytes, or nil for characters outside the alphabet, padding, or a
    /// length no encoder produces (4n+1), or non-zero unused bits (so that one
    /// value has one encoding).
    public static func decode<S: StringProtocol>(_ text: S) -> [UInt8]? {
        // Read in place (no copy) when the text is stored contiguously, as
        // native strings and their substrings are.
        if let bytes = text.utf8.withContiguousStorageIfAvailable({ decode(UnsafeRawBufferPointer($0)) }) { return bytes }
        return Array(text.utf8).withUnsafeBytes { decode($0) }
    }

    /// `decode` over the text's UTF-8 bytes.
    public static func decode(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        var failed = false
        let out = [UInt8](unsafeUninitializedCapacity: input.count * 3 / 4) { out, written in
            guard let n = decode(input, into: UnsafeMutableRawBufferPointer(out)) else { failed = true; return }
            written = n
        }
        return failed ? nil : out
    }

    /// Decodes `input` into `out` (at least `input.count * 3 / 4` bytes; a
    /// stack buffer serves) and returns the number of bytes written, or nil
    /// where `decode` would (and then `out` holds nothing to use).
    public static func decode(_ input: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int? {
        let count = input.count
        if count % 4 == 1 { return nil }
        precondition(out.count >= count * 3 / 4, "Base64URL.decode: output too small")
        return reverse.withUnsafeBufferPointer { reverse -> Int? in
            // Four characters (24 bits) a step, one validity test a step:
            // an invalid character's 0xFF sets a bit no valid sextet has.
            var i = 0, o = 0
            while i + 4 <= count {
                let a = UInt32(reverse[Int(input[i])]), b = UInt32(reverse[Int(input[i + 1])])
                let c = UInt32(reverse[Int(input[i + 2])]), d = UInt32(reverse[Int(input[i + 3])])
                if (a | b | c | d) & 0xC0 != 0 { return nil }
                let n = a << 18 | b << 12 | c << 6 | d
                out[o] = UInt8(truncatingIfNeeded: n >> 16)
                out[o + 1] = UInt8(truncatingIfNeeded: n >> 8)
                out[o + 2] = UInt8(truncatingIfNeeded: n)
                i += 4; o += 3
            }
            // The last 2 or 3 characters: 1 or 2 bytes, the unused bits zero.
            let rest = count - i
            if rest >= 2 {
                let a = UInt32(reverse[Int(input[i])]), b = UInt32(reverse[Int(input[i + 1])])
                let c = rest == 3 ? UInt32(reverse[Int(input[i + 2])]) : 0
                if (a | b | c) & 0xC0 != 0 { return nil }
                let n = a << 18 | b << 12 | c << 6
                out[o] = UInt8(truncatingIfNeeded: n >> 16)
                o += 1
                if rest == 3 {
                    out[o] = UInt8(truncatingIfNeeded: n >> 8)
                    o += 1
                    if n & 0xFF != 0 { return nil }
                } else if n & 0xFFFF != 0 {
                    return nil
                }
            }
            return o
        }
    }
}

/// Lowercase hexadecimal, as fingerprints and digests are written.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
