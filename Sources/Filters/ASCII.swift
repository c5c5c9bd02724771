/// Byte-level helpers shared by the parsers of request data (paths, queries, JSON).
public enum ASCII {
    /// The value of a hexadecimal digit, either case.
    @inline(__always)
    public static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Whether `name` equals the lowercase literal `lower`, ASCII case-insensitively, without allocating.
    @inline(__always)
    public static func equalsLowercase(_ name: String, _ lower: StaticString) -> Bool {
        let n = lower.utf8CodeUnitCount
        guard name.utf8.count == n else { return false }
        let l = lower.utf8Start
        var i = 0
        for b in name.utf8 {
            if b | 0x20 != l[i] { return false }
            i += 1
        }
        return true
    }
}
