/// Validates bytes of 0x80 and above as UTF-8, one byte at a time (Unicode
/// table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF). Used
/// by path canonicalization (percent-decoded bytes) and the JSON validator.
public struct UTF8Check {
    private var remaining = 0
    private var low: UInt8 = 0x80
    private var high: UInt8 = 0xBF

    public init() {}

    public var isComplete: Bool { remaining == 0 }

    public mutating func accept(_ b: UInt8) -> Bool {
        if remaining > 0 {
            guard b >= low && b <= high else { return false }
            remaining -= 1
            low = 0x80
            high = 0xBF
            return true
        }
        switch b {
        case 0xC2...0xDF: remaining = 1
        case 0xE0: remaining = 2; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: remaining = 2
        case 0xED: remaining = 2; high = 0x9F
        case 0xF0: remaining = 3; low = 0x90
        case 0xF1...0xF3: remaining = 3
        case 0xF4: remaining = 3; high = 0x8F
        default: return false
        }
        return true
    }
}
