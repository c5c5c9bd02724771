import Filters
import Foundation
import Logging
import NIOHTTP1
import NIOPosix
import Testing

@testable import Gateway

/// Every YAML block of the README marked `<!-- config-example -->` must load
/// and pass its route tests, so the documentation cannot drift from the code.
@Suite("README examples")
struct ReadmeExamplesTests {
    static func examples() throws -> [String] {
        let readme = try String(contentsOf: TestSupport.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        var blocks: [String] = []
        var rest = Substring(readme)
        while let marker = rest.range(of: "<!-- config-example -->") {
            rest = rest[marker.upperBound...]
            guard let open = rest.range(of: "```yaml\n"), let close = rest[open.upperBound...].range(of: "```") else { break }
            blocks.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return blocks
    }

    @Test func configExamplesLoadAndPass() async throws {
        let blocks = try Self.examples()
        #expect(!blocks.isEmpty, "no <!-- config-example --> block found in README.md")
        for block in blocks {
            let folder = try ConfigFolder(["example.yaml": block])
            try FileManager.default.createDirectory(atPath: folder.state + "/dev", withIntermediateDirectories: true)
            try await TestSupport.makeCertificates(in: folder.state + "/dev")
            let config = try folder.load()
            let (passed, failures) = RouteTestRunner(config: config).run()
            #expect(failures.isEmpty, "\(failures)")
            #expect(passed == config.routeTests.count)
        }
    }

    @Test("the headers filter example in the README behaves as it says")
    func headersExample() throws {
        let folder = try ConfigFolder.oneRoute(filters: "- headers: {request: {set: {x-env: demo}, remove: [x-debug]}}")
        let config = try folder.load()
        let filter = try #require(config.routes[0].filters.first)
        let exchange = Exchange(
            request: RequestHead(version: .http1_1, method: .GET, uri: "/", headers: ["x-debug": "1", "host": "h"]),
            requestID: "r", listener: "public", clientAddress: nil, isTLS: true,
            eventLoop: MultiThreadedEventLoopGroup.singleton.next(), logger: Logger(label: "test"))
        guard case .next = filter.onRequest(exchange) else {
            Issue.record("the headers filter must pass the request on")
            return
        }
        #expect(exchange.request.headers["x-debug"].isEmpty)
        #expect(exchange.request.headers["x-env"] == ["demo"])
    }

    /// The first YAML block after `heading`.
    static func block(after heading: String) throws -> String {
        let readme = try String(contentsOf: TestSupport.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(readme.range(of: heading))
        let rest = readme[section.upperBound...]
        let open = try #require(rest.range(of: "```yaml\n"))
        let close = try #require(rest[open.upperBound...].range(of: "```"))
        return String(rest[open.upperBound..<close.lowerBound])
    }

    @Test("the app channel example in the README loads as written, with the keys `gateway dev keys` makes")
    func appChannelExample() async throws {
        let block = try Self.block(after: "## The app channel")
        // "filters:" then list items indented by two: the route's chain.
        let items = block.split(separator: "\n").dropFirst().map { $0.hasPrefix("  ") ? String($0.dropFirst(2)) : String($0) }
        let folder = try ConfigFolder.oneRoute(filters: items.joined(separator: "\n"))
        let keys = try await TestSupport.run(try TestSupport.gatewayBinary, ["dev", "keys", "--state", folder.state])
        #expect(keys.code == 0, "\(keys.stderr)")
        let config = try folder.load()
        #expect(config.routes[0].filterNames == ["authenticate", "request_signature", "decrypt_payload", "passport"])
        #expect(config.listeners[0].gatewayKeys != nil, "the listener serves gateway-keys.json")
    }

    @Test("the partners and mesh example in the README loads as written, with certificates in place of its file names")
    func partnersExample() async throws {
        let folder = try ConfigFolder(["example.yaml": try Self.block(after: "## Partners and the mesh")])
        let made = try await TestSupport.run(try TestSupport.gatewayBinary, ["certs", "dev", "--out", folder.state])
        #expect(made.code == 0)
        for (from, to) in [("localhost", "partner-gw"), ("gateway-client", "gateway")] {
            for suffix in [".pem", "-key.pem"] {
                try FileManager.default.copyItem(atPath: "\(folder.state)/\(from)\(suffix)", toPath: "\(folder.state)/\(to)\(suffix)")
            }
        }
        for ca in ["partners-ca.pem", "mesh-ca.pem"] { try FileManager.default.copyItem(atPath: folder.state + "/ca.pem", toPath: folder.state + "/" + ca) }
        #expect(try await TestSupport.run(try TestSupport.gatewayBinary, ["dev", "keys", "--state", folder.state]).code == 0)
        let config = try folder.load()
        #expect(config.routes[0].filterNames == ["mtls_authz", "passport"])
        #expect(config.listeners[0].requestsClientCertificates)
        #expect(config.upstreams["ledger"]?.tls?.verifySANs == ["spiffe://cluster.local/ns/ledger/sa/ledger"])
    }

    @Test("the sanitize filter example in the README loads as written")
    func sanitizeExample() throws {
        let readme = try String(contentsOf: TestSupport.packageRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(readme.range(of: "#### `sanitize`"))
        let rest = readme[section.upperBound...]
        let open = try #require(rest.range(of: "```yaml\n"))
        let close = try #require(rest[open.upperBound...].range(of: "```"))
        let block = rest[open.upperBound..<close.lowerBound]
        let folder = try ConfigFolder.oneRoute(filters: String(block))
        let config = try folder.load()
        #expect(config.routes[0].filterNames == ["sanitize"])
        #expect(config.routes[0].buffersBody, "json: on makes the route buffer bodies")
    }
}
