/// Checks that bytes are one JSON text (RFC 8259): UTF-8, one value,
/// strings without raw control characters and with valid escapes (including
/// surrogate pairs in `\u` escapes), numbers in the JSON grammar, and nesting
/// no deeper than `maxDepth`. It builds nothing: one pass, no allocation.
public struct JSONValidator: Sendable {
    public enum Failure: Error, Equatable {
        case invalid(offset: Int)
        case tooDeep
    }

    public var maxDepth: Int

    public init(maxDepth: Int) { self.maxDepth = maxDepth }

    public func validate(_ bytes: UnsafeRawBufferPointer) -> Failure? {
        var p = Parser(b: bytes, maxDepth: maxDepth)
        do {
            p.skipSpace()
            try p.value(depth: 0)
            p.skipSpace()
            guard p.i == bytes.count else { throw Failure.invalid(offset: p.i) }
            return nil
        } catch let f as Failure {
            return f
        } catch {
            return .invalid(offset: p.i)
        }
    }

    private struct Parser {
        let b: UnsafeRawBufferPointer
        let maxDepth: Int
        var i = 0

        init(b: UnsafeRawBufferPointer, maxDepth: Int) {
            self.b = b
            self.maxDepth = maxDepth
        }

        var peek: UInt8? { i < b.count ? b[i] : nil }

        mutating func skipSpace() {
            while let c = peek, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { i += 1 }
        }

        func fail() -> Failure { .invalid(offset: i) }

        mutating func expect(_ c: UInt8) throws {
            guard peek == c else { throw fail() }
            i += 1
        }

        mutating func value(depth: Int) throws {
            guard let c = peek else { throw fail() }
            switch c {
            case UInt8(ascii: "{"):
                guard depth < maxDepth else { throw Failure.tooDeep }
                i += 1
                skipSpace()
                if peek == UInt8(ascii: "}") { i += 1; return }
                while true {
                    skipSpace()
                    try string()
                    skipSpace()
                    try expect(UInt8(ascii: ":"))
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if peek == UInt8(ascii: ",") { i += 1; continue }
                    try expect(UInt8(ascii: "}"))
                    return
                }
            case UInt8(ascii: "["):
                guard depth < maxDepth else { throw Failure.tooDeep }
                i += 1
                skipSpace()
                if peek == UInt8(ascii: "]") { i += 1; return }
                while true {
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if peek == UInt8(ascii: ",") { i += 1; continue }
                    try expect(UInt8(ascii: "]"))
                    return
                }
            case UInt8(ascii: "\""):
                try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            default:
                try number()
            }
        }

        mutating func literal(_ word: StaticString) throws {
            let n = word.utf8CodeUnitCount
            guard i + n <= b.count else { throw fail() }
            for k in 0..<n where b[i + k] != word.utf8Start[k] { throw fail() }
            i += n
        }

        mutating func digits() throws {
            guard let c = peek, c >= 0x30 && c <= 0x39 else { throw fail() }
            while let c = peek, c >= 0x30 && c <= 0x39 { i += 1 }
        }

        mutating func number() throws {
            if peek == UInt8(ascii: "-") { i += 1 }
            if peek == UInt8(ascii: "0") {
                i += 1
            } else {
                try digits()
            }
            if peek == UInt8(ascii: ".") {
                i += 1
                try digits()
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                i += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { i += 1 }
                try digits()
            }
        }

        mutating func hex4() throws -> UInt16 {
            guard i + 4 <= b.count else { throw fail() }
            var v: UInt16 = 0
            for _ in 0..<4 {
                guard let d = ASCII.hexValue(b[i]) else { throw fail() }
                v = v << 4 | UInt16(d)
                i += 1
            }
            return v
        }

        mutating func string() throws {
            try expect(UInt8(ascii: "\""))
            while true {
                guard let c = peek else { throw fail() }
                switch c {
                case UInt8(ascii: "\""):
                    i += 1
                    return
                case UInt8(ascii: "\\"):
                    i += 1
                    guard let e = peek else { throw fail() }
                    i += 1
                    switch e {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                         UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        continue
                    case UInt8(ascii: "u"):
                        let u = try hex4()
                        if u >= 0xD800 && u <= 0xDBFF {
                            // A high surrogate must be followed by an escaped low one.
                            try expect(UInt8(ascii: "\\"))
                            try expect(UInt8(ascii: "u"))
                            let low = try hex4()
                            guard low >= 0xDC00 && low <= 0xDFFF else { throw fail() }
                        } else if u >= 0xDC00 && u <= 0xDFFF {
                            throw fail()
                        }
                    default:
                        throw fail()
                    }
                case 0x00..<0x20:
                    throw fail()
                case 0x80...0xFF:
                    try utf8Scalar()
                default:
                    i += 1
                }
            }
        }

        /// One multi-byte UTF-8 scalar (Unicode table 3-7).
        mutating func utf8Scalar() throws {
            var check = UTF8Check()
            repeat {
                guard let c = peek, check.accept(c) else { throw fail() }
                i += 1
            } while !check.isComplete
        }
    }
}
