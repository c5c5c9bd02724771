/// The explicit list of filters the gateway knows, by YAML key.
///
/// New filters are added to `builtIn`; a name registered twice fails at start.
public struct FilterRegistry: Sendable {
    public static let builtIn: [any Filter.Type] = [
        HeadersFilter.self,
        SanitizeFilter.self,
        AuthenticateFilter.self,
        PassportFilter.self,
        RequestSignatureFilter.self,
        DecryptPayloadFilter.self,
        MTLSAuthzFilter.self,
    ]

    private let types: [String: any Filter.Type]

    public struct DuplicateFilterName: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "filter name '\(name)' is registered twice" }
    }

    public init(_ types: [any Filter.Type] = FilterRegistry.builtIn) throws {
        var byName: [String: any Filter.Type] = [:]
        for type in types {
            guard byName.updateValue(type, forKey: type.name) == nil else {
                throw DuplicateFilterName(name: type.name)
            }
        }
        self.types = byName
    }

    public func type(named name: String) -> (any Filter.Type)? { types[name] }

    /// Registered names, sorted, for error messages and docs.
    public var names: [String] { types.keys.sorted() }
}
