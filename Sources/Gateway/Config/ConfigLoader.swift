import Filters
import Foundation
import Passport
import Yams

/// A configuration problem, naming the file, the key path and (when known) the line.
struct ConfigProblem: CustomStringConvertible, Sendable {
    var file: String
    var path: String
    var line: Int?
    var message: String

    var description: String {
        let location = line.map { "\(file):\($0)" } ?? file
        return path.isEmpty ? "\(location): \(message)" : "\(location): \(path): \(message)"
    }
}

/// Thrown when the configuration cannot be served; lists every problem found.
struct ConfigError: Error, CustomStringConvertible {
    var problems: [ConfigProblem]
    var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// Where a listener or route came from, for error messages.
struct Source: Sendable {
    var file: String
    var index: Int
    var section: String
    func path(_ rest: String = "") -> String { "\(section)[\(index)]" + (rest.isEmpty ? "" : ".\(rest)") }
}

/// The merged, decoded, not yet validated content of `filters.d/`.
struct RawConfig {
    var admin = AdminConfig()
    var listeners: [(ListenerConfig, Source)] = []
    var upstreams: [(UpstreamConfig, Source)] = []
    var routes: [(RouteConfig, Source)] = []
    var nodes: [String: Node] = [:]
    /// SHA-256 over the file names and contents, hex.
    var digest = ""

    /// The line of `path` (e.g. `routes[0].match`) in `file`, if it can be found.
    func line(file: String, path: String) -> Int? {
        guard var node = nodes[file] else { return nil }
        var best = node.mark?.line
        for component in ConfigLoader.splitPath(path) {
            let next: Node?
            switch component {
            case .key(let k): next = node[k]
            case .index(let i): next = node[i]
            }
            guard let n = next else { break }
            node = n
            best = n.mark?.line ?? best
        }
        return best
    }

    func problem(_ source: Source, _ rest: String, _ message: String) -> ConfigProblem {
        let path = source.path(rest)
        return ConfigProblem(file: source.file, path: path, line: line(file: source.file, path: path), message: message)
    }
}

enum ConfigLoader {
    /// Reads `directory/*.yaml` (and `*.yml`) in file-name order and merges them.
    static func load(directory: String, registry: FilterRegistry, context: FilterContext) throws -> RawConfig {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ConfigError(problems: [ConfigProblem(file: directory, path: "", message: "config directory does not exist")])
        }
        let names = try fm.contentsOfDirectory(atPath: directory)
            .filter { ($0.hasSuffix(".yaml") || $0.hasSuffix(".yml")) && !$0.hasPrefix(".") }
            .sorted()
        guard !names.isEmpty else {
            throw ConfigError(problems: [ConfigProblem(file: directory, path: "", message: "no *.yaml files in the config directory")])
        }
        var raw = RawConfig()
        var problems: [ConfigProblem] = []
        var digestInput: [UInt8] = []
        var adminFile: String?
        for name in names {
            let path = (directory as NSString).appendingPathComponent(name)
            let display = displayPath(directory: directory, name: name)
            guard let data = fm.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                problems.append(ConfigProblem(file: display, path: "", message: "cannot be read as UTF-8 text"))
                continue
            }
            digestInput += Array(name.utf8) + [0] + Array(data) + [0]
            let node: Node
            do {
                guard let composed = try Yams.compose(yaml: text) else { continue }  // empty file
                node = composed
            } catch {
                problems.append(ConfigProblem(file: display, path: "", message: "invalid YAML: \(error)"))
                continue
            }
            raw.nodes[display] = node
            let file: ConfigFile
            do {
                file = try YAMLDecoder().decode(ConfigFile.self, from: node, userInfo: [FilterEntry.registryKey: registry, FilterContext.userInfoKey: context])
            } catch let error as DecodingError {
                let (codingPath, message) = describe(error)
                let p = format(codingPath)
                problems.append(ConfigProblem(file: display, path: p, line: raw.line(file: display, path: p), message: message))
                continue
            }
            if let admin = file.admin {
                if let first = adminFile {
                    problems.append(ConfigProblem(file: display, path: "admin", line: raw.line(file: display, path: "admin"),
                                                  message: "admin is already set in \(first)"))
                }
                adminFile = display
                raw.admin = admin
            }
            for (i, l) in file.listeners.enumerated() { raw.listeners.append((l, Source(file: display, index: i, section: "listeners"))) }
            for (i, u) in file.upstreams.enumerated() { raw.upstreams.append((u, Source(file: display, index: i, section: "upstreams"))) }
            for (i, r) in file.routes.enumerated() { raw.routes.append((r, Source(file: display, index: i, section: "routes"))) }
        }
        if !problems.isEmpty { throw ConfigError(problems: problems) }
        raw.digest = Hex.encode(Sodium.sha256(digestInput))
        return raw
    }

    static func displayPath(directory: String, name: String) -> String {
        let trimmed = directory.hasSuffix("/") ? String(directory.dropLast()) : directory
        return "\(trimmed)/\(name)"
    }

    enum PathComponent { case key(String), index(Int) }

    static func splitPath(_ path: String) -> [PathComponent] {
        var out: [PathComponent] = []
        for part in path.split(separator: ".") {
            var rest = Substring(part)
            if let bracket = rest.firstIndex(of: "[") {
                let key = rest[..<bracket]
                if !key.isEmpty { out.append(.key(String(key))) }
                rest = rest[bracket...]
                while rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
                    if let i = Int(rest[rest.index(after: rest.startIndex)..<close]) { out.append(.index(i)) }
                    rest = rest[rest.index(after: close)...]
                }
            } else {
                out.append(.key(String(rest)))
            }
        }
        return out
    }

    /// `routes[0].match.path_regex` from a coding path.
    static func format(_ path: [CodingKey]) -> String {
        var s = ""
        for key in path {
            if let i = key.intValue, key.stringValue == String(i) || key.stringValue.hasPrefix("Index") {
                s += "[\(i)]"
            } else {
                s += s.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return s
    }

    static func describe(_ error: DecodingError) -> ([CodingKey], String) {
        switch error {
        case .keyNotFound(let key, let ctx):
            return (ctx.codingPath + [key], "missing required key")
        case .typeMismatch(let type, let ctx):
            return (ctx.codingPath, "expected \(typeName(type))")
        case .valueNotFound(let type, let ctx):
            return (ctx.codingPath, "expected \(typeName(type)), found nothing")
        case .dataCorrupted(let ctx):
            return (ctx.codingPath, ctx.debugDescription)
        @unknown default:
            return ([], "\(error)")
        }
    }

    static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type: return "an integer"
        case is Bool.Type: return "true or false"
        case is [Any].Type: return "a list"
        case is [String: Any].Type: return "a map"
        default:
            let name = "\(type)"
            if name.hasPrefix("Array") || name.contains("Sequence") || name.contains("Unkeyed") { return "a list" }
            if name.hasPrefix("Dictionary") || name.contains("Mapping") || name.contains("Keyed") { return "a map" }
            return "a value of type \(name)"
        }
    }
}
