import NIOHTTP1

/// Header names, exact or `prefix-*`, compared ASCII case-insensitively
/// without allocating.
public struct HeaderNameSet: Sendable {
    private let exact: [[UInt8]]
    private let prefixes: [[UInt8]]
    public var isEmpty: Bool { exact.isEmpty && prefixes.isEmpty }

    public init(_ patterns: [String]) {
        var exact: [[UInt8]] = []
        var prefixes: [[UInt8]] = []
        for p in patterns {
            let lower = Array(p.lowercased().utf8)
            if lower.last == UInt8(ascii: "*") { prefixes.append(Array(lower.dropLast())) } else { exact.append(lower) }
        }
        self.exact = exact
        self.prefixes = prefixes
    }

    /// Whether `pattern` is a valid entry: a header name, or one followed by `*`.
    public static func isValidPattern(_ pattern: String) -> Bool {
        var body = Substring(pattern)
        if body.hasSuffix("*") { body = body.dropLast() }
        return !body.isEmpty && body.utf8.allSatisfy { HTTPToken.isTokenByte($0) && $0 != UInt8(ascii: "*") }
    }

    public func contains(_ name: String) -> Bool {
        if isEmpty { return false }
        var name = name
        return name.withUTF8 { b in
            for e in exact where e.count == b.count && Self.equalsLower(b, e, count: e.count) { return true }
            for p in prefixes where b.count >= p.count && Self.equalsLower(b, p, count: p.count) { return true }
            return false
        }
    }

    private static func equalsLower(_ b: UnsafeBufferPointer<UInt8>, _ lower: [UInt8], count: Int) -> Bool {
        for i in 0..<count {
            var c = b[i]
            if c >= 0x41 && c <= 0x5A { c |= 0x20 }
            if c != lower[i] { return false }
        }
        return true
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces and tabs (HTTP's OWS).
    public func trimmingSpaces() -> Substring {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}

extension HeaderFields {
    /// Removes the fields named `n1` ... `n4` (ASCII case-insensitive; give
    /// them in lowercase), then appends `a1` ... `a3`: what `remove(name:)`
    /// and `replaceOrAdd` do for several names, in one pass, without the
    /// ASCII check `add` makes of each name. The added names must be
    /// lowercase tokens. (Fixed arities: variadic arrays would be allocated.)
    ///
    /// In place: when the list is not shared (a filter's edit after the
    /// proxy's own), no field is copied; a shared list is copied once, as
    /// any edit would.
    @inlinable
    public mutating func replace(_ n1: StaticString, _ n2: StaticString? = nil, _ n3: StaticString? = nil, _ n4: StaticString? = nil,
                                 with a1: (String, String), _ a2: (String, String)? = nil, _ a3: (String, String)? = nil) {
        // Backwards by index, each name compared where it lies (passing a
        // field to a predicate that is not inlined would copy it): a match
        // is removed in place, the fields after it moved, none copied.
        // Room first: a shared list is copied here once, into room for the
        // additions (removing first would copy it, and adding grow it again).
        fields.reserveCapacity(fields.count + 3)
        // The names' lengths once: a field of another length is passed over
        // after one count of its name (each comparison would count it again).
        let l1 = n1.utf8CodeUnitCount, l2 = n2?.utf8CodeUnitCount ?? -1
        let l3 = n3?.utf8CodeUnitCount ?? -1, l4 = n4?.utf8CodeUnitCount ?? -1
        var i = fields.count - 1
        while i >= 0 {
            let n = fields[i].name.utf8.count
            if n == l1 || n == l2 || n == l3 || n == l4, Self.named(fields[i].name, n1, n2, n3, n4) { fields.remove(at: i) }
            i -= 1
        }
        fields.append(a1)
        if let a2 { fields.append(a2) }
        if let a3 { fields.append(a3) }
    }

    @inlinable @inline(__always)
    static func named(_ name: String, _ n1: StaticString, _ n2: StaticString?, _ n3: StaticString?, _ n4: StaticString?) -> Bool {
        if ASCII.equalsLowercase(name, n1) { return true }
        if let n2, ASCII.equalsLowercase(name, n2) { return true }
        if let n3, ASCII.equalsLowercase(name, n3) { return true }
        if let n4, ASCII.equalsLowercase(name, n4) { return true }
        return false
    }

    /// `replace` on a copy.
    @inlinable
    public func replacing(_ n1: StaticString, _ n2: StaticString? = nil, _ n3: StaticString? = nil, _ n4: StaticString? = nil,
                          with a1: (String, String), _ a2: (String, String)? = nil, _ a3: (String, String)? = nil) -> HeaderFields {
        var copy = self
        copy.replace(n1, n2, n3, n4, with: a1, a2, a3)
        return copy
    }
}
