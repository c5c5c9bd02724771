/// A small JSON writer with a fixed member order and Python's default
/// escaping (`json.dumps(..., separators=(",", ":"))`, `ensure_ascii`), so a
/// passport minted here is byte for byte what PyJWT makes of the same claims.
struct JSONWriter {
    private(set) var bytes: [UInt8] = [UInt8(ascii: "{")]
    private var first = true

    private mutating func key(_ name: String) {
        if !first { bytes.append(UInt8(ascii: ",")) }
        first = false
        Self.appendString(name, to: &bytes)
        bytes.append(UInt8(ascii: ":"))
    }

    mutating func string(_ name: String, _ value: String) {
        key(name)
        Self.appendString(value, to: &bytes)
    }

    mutating func int(_ name: String, _ value: Int64) {
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    mutating func strings(_ name: String, _ values: [String]) {
        key(name)
        bytes.append(UInt8(ascii: "["))
        for (i, v) in values.enumerated() {
            if i > 0 { bytes.append(UInt8(ascii: ",")) }
            Self.appendString(v, to: &bytes)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    mutating func object(_ name: String, _ build: (inout JSONWriter) -> Void) {
        key(name)
        var inner = JSONWriter()
        build(&inner)
        bytes.append(contentsOf: inner.finish())
    }

    func finish() -> [UInt8] { bytes + [UInt8(ascii: "}")] }

    static func appendString(_ s: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out.append(contentsOf: [0x5C, 0x22])
            case "\\": out.append(contentsOf: [0x5C, 0x5C])
            case "\n": out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case "\r": out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case "\t": out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case "\u{08}": out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case "\u{0C}": out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            default:
                if scalar.value >= 0x20 && scalar.value < 0x7F {
                    out.append(UInt8(scalar.value))
                } else {
                    for unit in String(scalar).utf16 { appendEscape(unit, to: &out) }
                }
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static func appendEscape(_ unit: UInt16, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out.append(contentsOf: [0x5C, UInt8(ascii: "u")])
        for shift in stride(from: 12, through: 0, by: -4) { out.append(hex[Int(unit >> UInt16(shift) & 0xF)]) }
    }
}
