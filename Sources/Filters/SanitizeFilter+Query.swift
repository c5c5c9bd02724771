import Foundation
import NIOCore

/// `sanitize`'s query rules: the parameters' names (deny, allow) and each
/// declared parameter's type, range, pattern and presence.
extension SanitizeFilter {
    func checkQuery(_ exchange: Exchange) -> FilterAction {
        let uri = exchange.request.uri
        // Found by byte: a search by Character segments graphemes.
        guard let mark = uri.utf8.firstIndex(of: UInt8(ascii: "?")) else {
            // No query: only a required parameter can refuse it.
            return requiresParam ? .reject(Self.paramMissing) : .next
        }
        let query: Substring = uri[uri.utf8.index(after: mark)...]
        // (decoded name, decoded value, raw pair) for every parameter.
        var pairs: [(name: String, value: String, raw: Substring)] = []
        // Split on bytes: Character-wise splitting segments graphemes and costs
        // microseconds on long queries.
        for rawBytes in query.utf8.split(separator: UInt8(ascii: "&")) {
            let raw = Substring(rawBytes)
            let eq = rawBytes.firstIndex(of: UInt8(ascii: "="))
            let rawName = eq.map { Substring(rawBytes[..<$0]) } ?? raw
            let rawValue = eq.map { Substring(rawBytes[rawBytes.index(after: $0)...]) } ?? ""
            guard let name = Self.percentDecode(rawName), let value = Self.percentDecode(rawValue) else {
                return .reject(Self.paramInvalid)
            }
            if queryDeny.contains(name) { return .reject(Self.deniedParam) }
            if let queryAllow, !queryAllow.contains(name) { return .reject(Self.paramNotAllowed) }
            pairs.append((name, value, raw))
        }
        var replacements: [String: String] = [:]
        for rule in params {
            let found = pairs.filter { $0.name == rule.name }
            guard let pair = found.first else {
                if rule.required { return .reject(Self.paramMissing) }
                continue
            }
            guard found.count == 1 else { return .reject(Self.paramInvalid) }
            switch check(pair.value, rule) {
            case .ok: break
            case .reject(let error): return .reject(error)
            case .clamped(let value): replacements[rule.name] = value
            }
        }
        if !replacements.isEmpty {
            let rebuilt = pairs.map { p in replacements[p.name].map { "\(p.raw.split(separator: "=", maxSplits: 1)[0])=\($0)" } ?? String(p.raw) }
            let path = uri.firstIndex(of: "?").map { String(uri[..<$0]) } ?? uri
            exchange.request.uri = path + "?" + rebuilt.joined(separator: "&")
        }
        return .next
    }

    enum Verdict { case ok, reject(GatewayError), clamped(String) }

    func check(_ value: String, _ rule: CompiledParam) -> Verdict {
        guard value.utf8.count <= rule.maxLength else { return .reject(Self.paramInvalid) }
        if let allowed = rule.enumValues, !allowed.contains(value) { return .reject(Self.paramInvalid) }
        if let pattern = rule.pattern, (try? pattern.wholeMatch(in: value)) == nil { return .reject(Self.paramInvalid) }
        switch rule.type {
        case .string:
            return .ok
        case .bool:
            return value == "true" || value == "false" ? .ok : .reject(Self.paramInvalid)
        case .uuid:
            return Self.isUUID(value) ? .ok : .reject(Self.paramInvalid)
        case .int, .number:
            let n: Double
            if rule.type == .int {
                guard Self.isPlainInteger(value), let i = Int(value) else { return .reject(Self.paramInvalid) }
                n = Double(i)
            } else {
                guard Self.isPlainNumber(value), let d = Double(value), d.isFinite else { return .reject(Self.paramInvalid) }
                n = d
            }
            if let lo = rule.min, n < lo { return rule.clamp ? .clamped(Self.format(lo, rule.type)) : .reject(Self.paramOutOfRange) }
            if let hi = rule.max, n > hi { return rule.clamp ? .clamped(Self.format(hi, rule.type)) : .reject(Self.paramOutOfRange) }
            return .ok
        }
    }

    static func format(_ n: Double, _ type: ValueType) -> String {
        type == .int ? String(Int(n)) : String(n)
    }

    /// `-?[0-9]{1,18}`: what every language parses the same way.
    static func isPlainInteger(_ s: String) -> Bool {
        var u = Substring(s).utf8
        if u.first == UInt8(ascii: "-") { u = u.dropFirst() }
        return !u.isEmpty && u.count <= 18 && u.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// Decimal notation only: no `inf`, `nan`, hex floats or leading `+`.
    static func isPlainNumber(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 32 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }
            && s.utf8.first != UInt8(ascii: "e") && s.utf8.first != UInt8(ascii: "E")
    }

    static func isUUID(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard u.count == 36 else { return false }
        for (i, c) in u.enumerated() {
            if i == 8 || i == 13 || i == 18 || i == 23 {
                if c != UInt8(ascii: "-") { return false }
            } else if !((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46)) {
                return false
            }
        }
        return true
    }

    /// Percent-decodes a query component (`+` stays `+`); nil when an escape
    /// is invalid or the result is not UTF-8.
    static func percentDecode(_ s: Substring) -> String? {
        guard s.utf8.contains(UInt8(ascii: "%")) else { return String(s) }
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        var it = Array(s.utf8)[...]
        while let c = it.popFirst() {
            guard c == UInt8(ascii: "%") else { out.append(c); continue }
            guard let h = it.popFirst(), let l = it.popFirst(), let hv = ASCII.hexValue(h), let lv = ASCII.hexValue(l) else { return nil }
            out.append(hv << 4 | lv)
        }
        return String(validating: out, as: UTF8.self)
    }
}
