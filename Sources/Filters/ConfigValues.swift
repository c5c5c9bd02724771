/// Durations and sizes as written in YAML, for the gateway's own config and
/// for filters' configurations alike.

/// A duration written as `250ms`, `10s`, `5m` or `1h` in YAML.
public struct ConfigDuration: Decodable, Hashable, Sendable, CustomStringConvertible {
    public let nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public static func seconds(_ s: Int64) -> ConfigDuration { .init(nanoseconds: s * 1_000_000_000) }
    public static func milliseconds(_ ms: Int64) -> ConfigDuration { .init(nanoseconds: ms * 1_000_000) }

    public init(parsing text: String) throws {
        let units: [(String, Int64)] = [("ms", 1_000_000), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            // "5ms" must not be read as "5m" + "s": try the longest suffix first.
            if suffix == "s", number.hasSuffix("m") { continue }
            guard !number.isEmpty, number.allSatisfy(\.isASCIIDigit), let n = Int64(number), n <= Int64.max / scale else { break }
            self.nanoseconds = n * scale
            return
        }
        throw ConfigValueError("'\(text)' is not a duration (use e.g. 250ms, 10s, 5m, 1h)")
    }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do { try self.init(parsing: text) } catch let e as ConfigValueError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.message))
        }
    }

    public var description: String {
        if nanoseconds % 1_000_000_000 == 0 { return "\(nanoseconds / 1_000_000_000)s" }
        return "\(nanoseconds / 1_000_000)ms"
    }
}

/// A size written as `512`, `64KiB`, `1MiB` or `1GiB` in YAML.
public struct ConfigSize: Decodable, Hashable, Sendable {
    public let bytes: Int

    public init(bytes: Int) { self.bytes = bytes }

    public init(parsing text: String) throws {
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("B", 1), ("", 1)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            guard !number.isEmpty, number.allSatisfy(\.isASCIIDigit), let n = Int(number), n <= Int.max / scale else { continue }
            self.bytes = n * scale
            return
        }
        throw ConfigValueError("'\(text)' is not a size (use e.g. 512, 64KiB, 1MiB, 1GiB)")
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self), n >= 0 { self.init(bytes: n); return }
        let text = try c.decode(String.self)
        do { try self.init(parsing: text) } catch let e as ConfigValueError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.message))
        }
    }
}

public struct ConfigValueError: Error { public let message: String; public init(_ m: String) { message = m } }

extension Character {
    public var isASCIIDigit: Bool { isASCII && isNumber }
}

