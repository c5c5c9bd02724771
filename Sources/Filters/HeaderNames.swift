import NIOHTTP1

/// Header names, exact or `prefix-*`, compared ASCII case-insensitively
/// without allocating or copying: a name is read where its bytes lie, and
/// the patterns are one byte table (a list of arrays was a reference count
/// up and down for each pattern, each name).
public struct HeaderNameSet: Sendable {
    /// Each pattern as its kind (0 exact, 1 prefix), its length (two bytes,
    /// little-endian) and its lowercase bytes, one after another.
    private let table: [UInt8]
    /// The first bytes (lowercase) of the patterns, a bit each: most names
    /// start with none of them and are answered without the table.
    private let first: SIMD4<UInt64>
    /// A `*` pattern (every name) and an empty one (the empty name): not
    /// valid in a config (`isValidPattern`), kept apart from the table.
    private let matchesEverything: Bool, matchesEmpty: Bool
    public let isEmpty: Bool

    public init(_ patterns: [String]) {
        var table: [UInt8] = []
        var first = SIMD4<UInt64>()
        var everything = false, empty = false
        for p in patterns {
            var lower = Array(p.lowercased().utf8)
            let prefix = lower.last == UInt8(ascii: "*")
            if prefix { lower.removeLast() }
            guard let b = lower.first else {
                if prefix { everything = true } else { empty = true }
                continue
            }
            // Header names are far shorter; a longer pattern matches nothing.
            guard lower.count <= Int(UInt16.max) else { continue }
            table.append(prefix ? 1 : 0)
            table.append(UInt8(truncatingIfNeeded: lower.count))
            table.append(UInt8(truncatingIfNeeded: lower.count >> 8))
            table += lower
            let f = ASCII.foldCase(b)
            first[Int(f >> 6)] |= UInt64(1) << UInt64(f & 63)
        }
        self.table = table
        self.first = first
        matchesEverything = everything
        matchesEmpty = empty
        isEmpty = patterns.isEmpty
    }

    @inline(__always)
    private func mayStart(_ b: UInt8) -> Bool {
        first[Int(b >> 6)] & (UInt64(1) << UInt64(b & 63)) != 0
    }

    /// Whether `pattern` is a valid entry: a header name, or one followed by `*`.
    public static func isValidPattern(_ pattern: String) -> Bool {
        var body = Substring(pattern)
        if body.hasSuffix("*") { body = body.dropLast() }
        return !body.isEmpty && body.utf8.allSatisfy { HTTPToken.isTokenByte($0) && $0 != UInt8(ascii: "*") }
    }

    public func contains(_ name: String) -> Bool {
        if isEmpty { return false }
        return ASCII.withUTF8(name) { contains(utf8: $0) }
    }

    /// `contains` of a name's bytes.
    public func contains(utf8 name: UnsafeRawBufferPointer) -> Bool {
        if matchesEverything { return true }
        guard let b = name.first else { return matchesEmpty }
        guard mayStart(ASCII.foldCase(b)) else { return false }
        return table.withUnsafeBufferPointer { t in
            var i = 0
            while i + 3 <= t.count {
                let n = Int(t[i + 1]) | Int(t[i + 2]) << 8
                let at = i + 3
                i = at + n
                if t[at - 3] == 0 ? name.count != n : name.count < n { continue }
                if Self.equalsLower(name, t.baseAddress! + at, count: n) { return true }
            }
            return false
        }
    }

    /// The first `count` bytes of `name`, letters lowercased, against `lower`.
    @inline(__always)
    private static func equalsLower(_ name: UnsafeRawBufferPointer, _ lower: UnsafePointer<UInt8>, count: Int) -> Bool {
        for i in 0..<count where ASCII.foldCase(name[i]) != lower[i] { return false }
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
    /// any edit would. The additions are taken, not borrowed: a caller's
    /// string moves into the list without a retain and a release of its own.
    @inlinable
    public mutating func replace(_ n1: StaticString, _ n2: StaticString? = nil, _ n3: StaticString? = nil, _ n4: StaticString? = nil,
                                 with a1: consuming Element, _ a2: consuming Element? = nil,
                                 _ a3: consuming Element? = nil) {
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
                          with a1: consuming Element, _ a2: consuming Element? = nil,
                          _ a3: consuming Element? = nil) -> HeaderFields {
        var copy = self
        copy.replace(n1, n2, n3, n4, with: a1, a2, a3)
        return copy
    }
}
