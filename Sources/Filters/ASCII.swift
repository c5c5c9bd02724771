/// Byte-level helpers shared by the parsers of request data (paths, queries, JSON).
public enum ASCII {
    /// `body` over `text`'s UTF-8 bytes where they lie: a native string's
    /// storage is read in place, with no copy of the string (`var` and
    /// `withUTF8`, which retains it); others (bridged) are made contiguous.
    @inlinable @inline(__always)
    public static func withUTF8<R>(_ text: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let r = try text.utf8.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) { return r }
        var copy = text
        return try copy.withUTF8 { try body(UnsafeRawBufferPointer($0)) }
    }

    /// Whether every UTF-8 byte of `text` passes `test`, read where the
    /// bytes lie: a loop over a string's `UTF8View` costs about ten
    /// instructions a byte (each step re-decides the string's form).
    @inlinable @inline(__always)
    public static func allBytes(_ text: String, _ test: (UInt8) -> Bool) -> Bool {
        withUTF8(text) { p in
            for b in p where !test(b) { return false }
            return true
        }
    }

    /// `allBytes` of a substring.
    @inlinable @inline(__always)
    public static func allBytes(_ text: Substring, _ test: (UInt8) -> Bool) -> Bool {
        text.utf8.withContiguousStorageIfAvailable { p in
            for b in p where !test(b) { return false }
            return true
        } ?? text.utf8.allSatisfy(test)
    }

    /// The value of a hexadecimal digit, either case.
    @inlinable @inline(__always)
    public static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Whether `name` equals the lowercase literal `lower`, ASCII case-insensitively, without allocating.
    /// For header names (tokens) against literals of letters, digits and `-`:
    /// each byte of `name` is lowercased by setting bit 5, which maps no other
    /// token byte onto a letter, a digit or `-`.
    @inlinable @inline(__always)
    public static func equalsLowercase(_ name: String, _ lower: StaticString) -> Bool {
        let n = lower.utf8CodeUnitCount
        guard name.utf8.count == n else { return false }
        return name.utf8.withContiguousStorageIfAvailable { b in
            equalsLowercase(UnsafeRawBufferPointer(b), UnsafeRawPointer(lower.utf8Start), count: n)
        } ?? equalsLowercaseByBytes(name, lower)
    }

    /// `equalsLowercase` of a name's bytes.
    @inlinable @inline(__always)
    public static func equalsLowercase(_ name: UnsafeRawBufferPointer, _ lower: StaticString) -> Bool {
        // The literal's length, not the name's: a constant once inlined, so
        // the loop below unrolls to a few loads for each literal.
        let n = lower.utf8CodeUnitCount
        return name.count == n && equalsLowercase(name, UnsafeRawPointer(lower.utf8Start), count: n)
    }

    /// `count` bytes of `name` against `lower`, eight at a time; a tail of
    /// a name of eight bytes or more is its last eight (some compared twice).
    @inlinable @inline(__always)
    static func equalsLowercase(_ name: UnsafeRawBufferPointer, _ lower: UnsafeRawPointer, count: Int) -> Bool {
        func word(_ at: Int) -> Bool {
            name.loadUnaligned(fromByteOffset: at, as: UInt64.self) | 0x2020_2020_2020_2020
                == lower.loadUnaligned(fromByteOffset: at, as: UInt64.self)
        }
        guard count >= 8 else {
            for i in 0..<count where name[i] | 0x20 != lower.load(fromByteOffset: i, as: UInt8.self) { return false }
            return true
        }
        var i = 0
        while i + 8 <= count {
            if !word(i) { return false }
            i += 8
        }
        return i == count || word(count - 8)
    }

    /// The byte loop, for a string without contiguous UTF-8 (a bridged one).
    @usableFromInline
    static func equalsLowercaseByBytes(_ name: String, _ lower: StaticString) -> Bool {
        let l = lower.utf8Start
        var i = 0
        for b in name.utf8 {
            if b | 0x20 != l[i] { return false }
            i += 1
        }
        return true
    }

    /// Whether `a` and `b` are equal with ASCII letters folded (what header
    /// names need; other bytes compare exactly), without allocating.
    @inlinable
    public static func equalsIgnoringCase<A: StringProtocol, B: StringProtocol>(_ a: A, _ b: B) -> Bool {
        guard a.utf8.count == b.utf8.count else { return false }
        let fast = a.utf8.withContiguousStorageIfAvailable { x in
            b.utf8.withContiguousStorageIfAvailable { y in
                for i in 0..<x.count where x[i] != y[i] && (foldCase(x[i]) != foldCase(y[i])) { return false }
                return true
            }
        }
        if let fast, let fast { return fast }
        return zip(a.utf8, b.utf8).allSatisfy { foldCase($0) == foldCase($1) }
    }

    /// An ASCII capital as its small letter; any other byte as is.
    @inlinable
    public static func foldCase(_ b: UInt8) -> UInt8 { b &- 0x41 < 26 ? b | 0x20 : b }
}
