import NIOHTTP1

/// The header fields of a request or response as the gateway carries them:
/// name and value pairs in the order received, names compared ASCII
/// case-insensitively. The API is NIO's `HTTPHeaders`' (`first(name:)`,
/// `add`, `replaceOrAdd`, `remove(name:)`, `contains(name:)`, iteration), so
/// a filter reads the same either way. One difference: only letters fold
/// (NIO's comparison also takes `^` for `~`, `@` for `` ` ``, `[` for `{`).
///
/// Why not `HTTPHeaders` itself: its accessors are not inlinable, so each
/// field a loop reads out of it is a copy of both strings (two reference
/// count increments and two decrements, atomic, per field per pass), and a
/// request's head is read by a dozen passes (parser, routing, each filter,
/// the upstream encoder). These are inlinable over one array: a pass borrows
/// the fields instead of copying them.
public struct HeaderFields: Sendable {
    public typealias Element = (name: String, value: String)

    @usableFromInline
    var fields: [(name: String, value: String)]

    @inlinable
    public init() { fields = [] }

    /// The fields of `fields`, in order (the names must be ASCII).
    @inlinable
    public init(_ fields: [(String, String)]) { self.fields = fields.map { (name: $0.0, value: $0.1) } }

    /// Adopts `fields` as they are (the names must be ASCII): what the
    /// parsers use, with no copy of the list.
    @inlinable
    public init(fields: [(name: String, value: String)]) { self.fields = fields }

    /// The fields of NIO's type, for code that talks to NIO's codecs.
    public init(_ headers: HTTPHeaders) {
        fields = headers.map { (name: $0.name, value: $0.value) }
    }

    /// The same fields as NIO's type.
    public var httpHeaders: HTTPHeaders { HTTPHeaders(fields.map { ($0.name, $0.value) }) }

    /// Appends a field. The name must be ASCII (as NIO requires).
    @inlinable
    public mutating func add(name: String, value: String) {
        // Over the name's own bytes (a loop over its `UTF8View` cost about
        // ten instructions a byte).
        precondition(ASCII.allBytes(name) { $0 < 0x80 }, "header name must be ASCII")
        fields.append((name, value))
    }

    /// Appends a field whose name is known to be an ASCII token (the
    /// gateway's own names), without `add`'s check.
    @inlinable
    package mutating func append(_ field: (String, String)) { fields.append(field) }

    /// Removes the field at `index`; the fields after it move up, none is copied.
    @inlinable
    package mutating func remove(at index: Int) { fields.remove(at: index) }

    @inlinable
    public mutating func add(contentsOf other: HeaderFields) {
        fields.append(contentsOf: other.fields)
    }

    @inlinable
    public mutating func add<S: Sequence>(contentsOf other: S) where S.Element == (String, String) {
        for (name, value) in other { add(name: name, value: value) }
    }

    /// Removes every field named `name` and appends `name: value`.
    @inlinable
    public mutating func replaceOrAdd(name: String, value: String) {
        remove(name: name)
        add(name: name, value: value)
    }

    /// Removes every field named `name`.
    @inlinable
    public mutating func remove(name: String) {
        guard contains(name: name) else { return }
        var i = fields.count - 1
        while i >= 0 {
            if Self.named(fields[i].name, name) { fields.remove(at: i) }
            i -= 1
        }
    }

    /// The value of the first field named `name`.
    @inlinable
    public func first(name: String) -> String? {
        for i in fields.indices where Self.named(fields[i].name, name) { return fields[i].value }
        return nil
    }

    @inlinable
    public func contains(name: String) -> Bool {
        for i in fields.indices where Self.named(fields[i].name, name) { return true }
        return false
    }

    /// The values of every field named `name`, in order.
    @inlinable
    public subscript(_ name: String) -> [String] {
        var out: [String] = []
        for i in fields.indices where Self.named(fields[i].name, name) { out.append(fields[i].value) }
        return out
    }

    /// The comma-separated elements of every field named `name`, trimmed of
    /// spaces and tabs, as NIO's: nothing between two commas is no element,
    /// only spaces between them an empty one; `Set-Cookie` is not split.
    public subscript(canonicalForm name: String) -> [Substring] {
        var out: [Substring] = []
        for i in fields.indices where Self.named(fields[i].name, name) {
            if ASCII.equalsLowercase(name, "set-cookie") {
                out.append(fields[i].value[...])
                continue
            }
            for part in fields[i].value.split(separator: ",") { out.append(part.trimmingSpaces()) }
        }
        return out
    }

    /// Whether `field` is `name`, ASCII case-insensitively. The lengths are
    /// compared first, in line: the comparison proper is a call, and a field
    /// read out of the list and passed to a call is copied (its strings
    /// retained), so the fields of another length are never passed.
    @inlinable @inline(__always)
    static func named(_ field: String, _ name: String) -> Bool {
        field.utf8.count == name.utf8.count && ASCII.equalsIgnoringCase(field, name)
    }

    @inlinable
    public var capacity: Int { fields.capacity }

    @inlinable
    public mutating func reserveCapacity(_ n: Int) { fields.reserveCapacity(n) }

    /// Removes the fields `shouldRemove` accepts; the others keep their order.
    @inlinable
    public mutating func removeAll(where shouldRemove: (Element) throws -> Bool) rethrows {
        try fields.removeAll(where: shouldRemove)
    }
}

extension HeaderFields: RandomAccessCollection {
    @inlinable public var startIndex: Int { 0 }
    @inlinable public var endIndex: Int { fields.count }
    @inlinable public var count: Int { fields.count }
    @inlinable public var isEmpty: Bool { fields.isEmpty }
    @inlinable public func index(after i: Int) -> Int { i + 1 }
    @inlinable public func index(before i: Int) -> Int { i - 1 }
    /// Read in place (a `_read`): `headers[i].name` borrows the string
    /// instead of copying the field out.
    @inlinable public subscript(position: Int) -> Element {
        _read { yield fields[position] }
    }
}

extension HeaderFields: ExpressibleByDictionaryLiteral {
    @inlinable
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init()
        fields.reserveCapacity(elements.count)
        for (name, value) in elements { add(name: name, value: value) }
    }
}

extension HeaderFields: CustomStringConvertible {
    public var description: String { fields.map { "\($0.0): \($0.1)" }.joined(separator: "; ") }
}

extension HeaderFields: Equatable {
    /// As NIO's: the same number of fields, and for each name (ASCII
    /// case-insensitive) the same values in any order.
    public static func == (lhs: HeaderFields, rhs: HeaderFields) -> Bool {
        guard lhs.count == rhs.count else { return false }
        let names = Set(lhs.fields.map { $0.0.lowercased() })
        guard names == Set(rhs.fields.map { $0.0.lowercased() }) else { return false }
        return names.allSatisfy { lhs[$0].sorted() == rhs[$0].sorted() }
    }
}

/// A request's head as the gateway carries it: NIO's `HTTPRequestHead` with
/// `HeaderFields` (see there) for its fields.
public struct RequestHead: Sendable, Equatable {
    public var method: HTTPMethod
    /// Path and query as the client sent them (until canonicalized or rewritten).
    public var uri: String
    public var version: HTTPVersion
    public var headers: HeaderFields

    @inlinable
    public init(version: HTTPVersion, method: HTTPMethod, uri: String, headers: HeaderFields = HeaderFields()) {
        self.version = version
        self.method = method
        self.uri = uri
        self.headers = headers
    }

    /// Whether the connection stays open after this request, as NIO's
    /// `isKeepAlive`: `Connection: close` closes, `keep-alive` keeps (both,
    /// or either twice: close), otherwise HTTP/1.1 keeps and 1.0 closes.
    public var isKeepAlive: Bool {
        guard headers.contains(name: "connection") else { return version.major == 1 && version.minor >= 1 }
        var close = false, keep = false, seen = 0
        for word in headers[canonicalForm: "connection"] {
            if ASCII.equalsIgnoringCase(word, "close") { close = true; seen += 1 }
            else if ASCII.equalsIgnoringCase(word, "keep-alive") { keep = true; seen += 1 }
        }
        if seen > 1 || close { return false }
        if keep { return true }
        return version.major == 1 && version.minor >= 1
    }
}
