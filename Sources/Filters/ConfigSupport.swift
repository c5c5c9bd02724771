/// A coding key for any string, used to list the keys a YAML map really has.
public struct AnyCodingKey: CodingKey, Hashable {
    public var stringValue: String
    public var intValue: Int?
    public init(stringValue: String) { self.stringValue = stringValue; self.intValue = nil }
    public init(intValue: Int) { self.stringValue = String(intValue); self.intValue = intValue }
    public init(_ string: String) { self.init(stringValue: string) }
}

/// Fails decoding when the map has a key that `Keys` does not list, so a typo
/// in YAML is an error naming the key, not a silently ignored option.
public func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_ decoder: Decoder, _ keys: Keys.Type) throws {
    guard let container = try? decoder.container(keyedBy: AnyCodingKey.self) else { return }
    let known = Set(Keys.allCases.map(\.stringValue))
    for key in container.allKeys where !known.contains(key.stringValue) {
        let allowed = known.sorted().joined(separator: ", ")
        throw DecodingError.dataCorrupted(
            .init(codingPath: decoder.codingPath + [key], debugDescription: "unknown key '\(key.stringValue)' (allowed: \(allowed))")
        )
    }
}

/// Character classes of RFC 9110.
public enum HTTPToken {
    /// tchar: the bytes allowed in a header name or method. Inlinable, and a
    /// bit test rather than a switch: the gateway's encoders call it for
    /// every byte of every header name they write.
    @inlinable @inline(__always)
    public static func isTokenByte(_ b: UInt8) -> Bool {
        // Bit n set when byte n (0-63, 64-127) is a tchar.
        let low: UInt64 = 0x03FF_6CFA_0000_0000   // ! # $ % & ' * + - . 0-9
        let high: UInt64 = 0x57FF_FFFF_C7FF_FFFE  // A-Z ^ _ ` a-z | ~
        // Without branches (a select, a shift, two tests): the loops over a
        // name's bytes stay straight.
        let word = b & 0x40 == 0 ? low : high
        return b < 0x80 && (word >> UInt64(b & 63)) & 1 != 0
    }

    /// field-value bytes: HTAB, visible ASCII, SP and obs-text; never CR,
    /// LF, NUL or another control.
    @inlinable @inline(__always)
    public static func isFieldValueByte(_ b: UInt8) -> Bool {
        b == 0x09 || (b >= 0x20 && b != 0x7F)
    }

    /// The index of the first byte from `start` on that is a control (below
    /// 0x20, HTAB included, or DEL), or `p.count`. Sixteen bytes a step (a
    /// handful of vector instructions), then eight, then the buffer's last
    /// eight again for what is left; the step that meets a control says
    /// which byte it is, without a byte loop. Header values are most of a
    /// request head's bytes (a bearer token, a passport), and every one is
    /// scanned when it is read and again when it is written.
    @inlinable
    public static func firstControl(_ p: UnsafeRawBufferPointer, from start: Int) -> Int {
        let n = p.count
        guard start < n, let base = p.baseAddress else { return n }
        var i = start
        while i &+ 16 <= n {
            let lanes = unsafeBitCast(controlLanes(base.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self)),
                                      to: SIMD2<UInt64>.self)
            if lanes[0] != 0 { return i &+ lanes[0].trailingZeroBitCount &>> 3 }
            if lanes[1] != 0 { return i &+ 8 &+ lanes[1].trailingZeroBitCount &>> 3 }
            i &+= 16
        }
        if i &+ 8 <= n {
            let lanes = unsafeBitCast(controlLanes(base.loadUnaligned(fromByteOffset: i, as: SIMD8<UInt8>.self)), to: UInt64.self)
            if lanes != 0 { return i &+ lanes.trailingZeroBitCount &>> 3 }
            i &+= 8
        }
        if i == n { return n }
        if n >= 8 {
            // The buffer's last eight bytes, without the lanes before `i`.
            let last = n &- 8
            let lanes = unsafeBitCast(controlLanes(base.loadUnaligned(fromByteOffset: last, as: SIMD8<UInt8>.self)), to: UInt64.self)
                & (~0 &<< UInt64(truncatingIfNeeded: (i &- last) &* 8))
            return lanes == 0 ? n : last &+ lanes.trailingZeroBitCount &>> 3
        }
        while i < n {
            let b = p[i]
            if b < 0x20 || b == 0x7F { return i }
            i &+= 1
        }
        return n
    }

    /// 0x80 in each lane whose byte is below 0x20 or is 0x7F, 0 in the
    /// others (bytes of 0x80 and above are obs-text, allowed). Lane-wise
    /// wrapping arithmetic, which the compiler keeps in vector registers
    /// (Swift's SIMD comparisons, `.<` and `.==`, are lane-by-lane loops).
    @inlinable @inline(__always)
    static func controlLanes<V: SIMD>(_ x: V) -> V where V.Scalar == UInt8 {
        let below = (x &- V(repeating: 0x20)) & ~x
        let d = x ^ V(repeating: 0x7F)
        let del = (d &- V(repeating: 1)) & ~d
        return (below | del) & V(repeating: 0x80)
    }

    /// The index of the first byte from `start` on that a field value may
    /// not hold (a control other than HTAB: CR, LF, NUL, DEL...), or
    /// `p.count`. The parsers read a value to it (it must be the CR that
    /// ends the line), the encoders require it to be the end.
    @inlinable
    public static func firstNonValueByte(_ p: UnsafeRawBufferPointer, from start: Int) -> Int {
        var i = start
        while true {
            i = firstControl(p, from: i)
            if i == p.count || p[i] != 0x09 { return i }
            i &+= 1
        }
    }

    /// field-value: no CR, LF, NUL or other controls (HTAB is allowed).
    @inlinable
    public static func isValidFieldValue(_ p: UnsafeRawBufferPointer) -> Bool {
        firstNonValueByte(p, from: 0) == p.count
    }

    /// field-value, over the string's own bytes: the HTTP/2 encoders check
    /// every field of every head with it.
    public static func isValidFieldValue(_ value: String) -> Bool {
        value.utf8.withContiguousStorageIfAvailable { isValidFieldValue(UnsafeRawBufferPointer($0)) }
            ?? value.utf8.allSatisfy(isFieldValueByte)
    }

    /// field-name: one or more tchar.
    public static func isValidName(_ name: String) -> Bool {
        name.utf8.withContiguousStorageIfAvailable { b in
            guard !b.isEmpty else { return false }
            for x in b where !isTokenByte(x) { return false }
            return true
        } ?? (!name.isEmpty && name.utf8.allSatisfy(isTokenByte))
    }
}
