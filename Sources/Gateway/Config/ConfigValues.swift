import Filters

extension Decoder {
    /// A keyed container that refuses keys `K` does not list.
    func strictContainer<K: CodingKey & CaseIterable>(_ keys: K.Type) throws -> KeyedDecodingContainer<K> {
        try rejectUnknownKeys(self, keys)
        return try container(keyedBy: keys)
    }
}
