import Foundation
import Logging

/// swift-log handler that writes one JSON object per line through `LogSink`.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var fields = self.metadata
        if let explicit = event.metadata { fields.merge(explicit) { _, new in new } }
        var out = "{\"time\":\"\(JSONText.timestamp())\",\"level\":\"\(event.level)\",\"logger\":\(JSONText.quote(label)),\"message\":\(JSONText.quote(event.message.description))"
        for (k, v) in fields.sorted(by: { $0.key < $1.key }) {
            out += ",\(JSONText.quote(k)):\(JSONText.quote(v.description))"
        }
        out += "}"
        LogSink.shared.write(out)
    }
}

enum JSONText {
    static func quote(_ s: String) -> String {
        // Fast path: printable ASCII without quotes or backslashes (paths, names, ids).
        if s.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") && $0 != UInt8(ascii: "\\") }) {
            return "\"" + s + "\""
        }
        var out = "\""
        out.reserveCapacity(s.utf8.count + 2)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
        return out
    }

    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-27T17:14:13.283Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var t = now.tv_sec
        var tm = tm()
        gmtime_r(&t, &tm)
        let ms = Int(now.tv_nsec / 1_000_000)
        return String(unsafeUninitializedCapacity: 24) { out in
            var i = 0
            func put(_ value: Int, _ digits: Int) {
                var v = value
                for k in stride(from: digits - 1, through: 0, by: -1) {
                    out[i + k] = UInt8(ascii: "0") + UInt8(v % 10)
                    v /= 10
                }
                i += digits
            }
            func sep(_ c: UInt8) { out[i] = c; i += 1 }
            put(Int(tm.tm_year) + 1900, 4); sep(UInt8(ascii: "-")); put(Int(tm.tm_mon) + 1, 2); sep(UInt8(ascii: "-"))
            put(Int(tm.tm_mday), 2); sep(UInt8(ascii: "T")); put(Int(tm.tm_hour), 2); sep(UInt8(ascii: ":"))
            put(Int(tm.tm_min), 2); sep(UInt8(ascii: ":")); put(Int(tm.tm_sec), 2); sep(UInt8(ascii: "."))
            put(ms, 3); sep(UInt8(ascii: "Z"))
            return i
        }
    }
}
