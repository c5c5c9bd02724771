import Foundation

/// The private key files of one key folder: every `*.json` JWK (not hidden),
/// oldest first by modification time, then by name. The passport and
/// app-channel key rings read their folders with it; each checks the keys'
/// type itself.
public enum JWKFolder {
    public struct Entry: Sendable {
        public let path: String
        public let jwk: JWK
        public let modified: Date
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// - Parameter hint: how to make a key, appended when the folder is missing or empty.
    public static func read(_ directory: String, hint: String) throws -> [Entry] {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory) else {
            throw Failure(description: "\(directory): no key folder (\(hint))")
        }
        var entries: [Entry] = []
        for name in names.sorted() where name.hasSuffix(".json") && !name.hasPrefix(".") {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let data = fm.contents(atPath: path) else { throw Failure(description: "\(path): cannot read") }
            guard let jwk = try? JSONDecoder().decode(JWK.self, from: data) else { throw Failure(description: "\(path): not a JWK file") }
            let modified = (try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? .distantPast
            entries.append(Entry(path: path, jwk: jwk, modified: modified))
        }
        guard !entries.isEmpty else { throw Failure(description: "\(directory): no key (*.json); \(hint)") }
        // Stable: names are already sorted, so equal times keep name order.
        return entries.enumerated().sorted { ($0.element.modified, $0.offset) < ($1.element.modified, $1.offset) }.map(\.element)
    }
}
