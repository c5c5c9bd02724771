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
    /// tchar: the bytes allowed in a header name or method.
    @inline(__always)
    public static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
             UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
             UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// A field-value byte: visible ASCII, space, tab and obs-text; no CR, LF, NUL or other controls.
    @inline(__always)
    public static func isFieldValueByte(_ b: UInt8) -> Bool {
        b == 0x09 || (b >= 0x20 && b != 0x7F)
    }

    /// field-value: no CR, LF, NUL or other controls.
    public static func isValidFieldValue(_ value: String) -> Bool {
        value.utf8.allSatisfy(isFieldValueByte)
    }

    /// field-name: one or more tchar.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy(isTokenByte)
    }
}
