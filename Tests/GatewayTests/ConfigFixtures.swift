import Filters
import Foundation

@testable import Gateway

/// Writes YAML files into a fresh config folder and loads them.
struct ConfigFolder {
    let dir: String
    let state: String

    init(_ files: [String: String]) throws {
        dir = try TestSupport.temporaryDirectory("config")
        state = dir + "/state"
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        for (name, text) in files {
            try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
        }
    }

    func load() throws -> RuntimeConfig {
        try RuntimeConfig.load(directory: dir, stateDirectory: state, registry: try FilterRegistry())
    }

    /// The error text of a config that must fail to load.
    func error() -> String? {
        do {
            _ = try load()
            return nil
        } catch {
            return "\(error)"
        }
    }

    func path(_ name: String) -> String { "\(dir)/\(name)" }

    /// `baseYAML` plus one route `r` on `public` to upstream `a` with the
    /// filter chain `filters` (YAML list items, not indented).
    static func oneRoute(filters: String) throws -> ConfigFolder {
        let chain = filters.split(separator: "\n").map { "      " + $0 }.joined(separator: "\n")
        return try ConfigFolder(["00-base.yaml": baseYAML + """
        routes:
          - name: r
            listener: public
            upstream: a
            filters:

        """ + chain + "\n"])
    }
}

/// A plaintext listener and two upstreams, for tests that only need routes.
let baseYAML = """
listeners:
  - name: public
    address: 127.0.0.1:0
upstreams:
  - name: a
    endpoints: ["127.0.0.1:7001"]
  - name: b
    endpoints: ["127.0.0.1:7002"]

"""
