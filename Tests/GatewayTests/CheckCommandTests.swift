import Foundation
import Testing

@testable import Gateway

@Suite("gateway check", .serialized)
struct CheckCommandTests {
    @Test("passes on the repository's filters.d")
    func passesOnRepositoryConfig() async throws {
        let state = try TestSupport.temporaryDirectory("check-state")
        // As `make run` does: the dev certificates, the dev token issuer, the passport and app-channel keys.
        let certs = try await TestSupport.run(try TestSupport.gatewayBinary, ["certs", "dev", "--out", state + "/dev", "--upstream", "ledger"])
        #expect(certs.code == 0, "\(certs.stderr)")
        let keys = try await TestSupport.run(try TestSupport.gatewayBinary, ["dev", "keys", "--state", state])
        #expect(keys.code == 0, "\(keys.stderr)")
        let config = TestSupport.packageRoot.appendingPathComponent("filters.d").path
        let r = try await TestSupport.run(try TestSupport.gatewayBinary, ["check", "--config", config, "--state", state])
        #expect(r.code == 0, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains(" 0 failed"))
        #expect(!r.stdout.contains("FAIL"))
    }

    @Test("fails, printing each failure, on a route test that is wrong")
    func failsOnWrongRouteTest() async throws {
        let folder = try ConfigFolder(["00-base.yaml": baseYAML, "10-routes.yaml": """
        routes:
          - name: accounts
            listener: public
            match: {path_prefix: /api/accounts}
            rewrite: {strip_prefix: /api}
            upstream: a
            tests:
              - request: {path: /api/accounts/1}
                expect: {path: /v1/accounts/1}
              - request: {path: /api/accounts/1}
                expect: {upstream: b}
              - request: {path: /api/other}
                expect: {route: accounts}
              - request: {path: /api/accounts/2}
                expect: {path: /accounts/2}
        """])
        let r = try await TestSupport.run(try TestSupport.gatewayBinary, ["check", "--config", folder.dir, "--state", folder.state])
        #expect(r.code == 1)
        let fails = r.stdout.split(separator: "\n").filter { $0.hasPrefix("FAIL") }
        #expect(fails.count == 3, "\(r.stdout)")
        #expect(r.stdout.contains("routes[0].tests[0]") && r.stdout.contains("expected path '/v1/accounts/1', got '/accounts/1'"))
        #expect(r.stdout.contains("routes[0].tests[1]") && r.stdout.contains("expected upstream 'b'"))
        #expect(r.stdout.contains("routes[0].tests[2]") && r.stdout.contains("got 404"))
        #expect(r.stdout.contains("1 passed, 3 failed"))
    }

    @Test("a bad config: exit 2, the file and key on stderr, nothing served")
    func badConfig() async throws {
        let folder = try ConfigFolder(["00-base.yaml": baseYAML + "routes:\n  - {name: r, listener: public, upstream: zzz}\n"])
        for command in ["check", "serve"] {
            let r = try await TestSupport.run(try TestSupport.gatewayBinary, [command, "--config", folder.dir, "--state", folder.state])
            #expect(r.code == 2, "\(command): \(r.stderr)")
            #expect(r.stderr.contains("00-base.yaml"))
            #expect(r.stderr.contains("routes[0].upstream: unknown upstream 'zzz'"))
        }
    }
}
