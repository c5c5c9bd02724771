import Filters
import Foundation
import Testing

@testable import Gateway

/// `/metrics` says how full each in-process nonce store is, against its cap,
/// before a full store starts refusing signed requests with 503.
@Suite("nonce store gauges", .serialized)
struct NonceStoreGaugeTests {
    @Test("gateway_nonce_store_entries and _capacity, one pair a store (by window): signed requests add entries, a replay does not")
    func gauges() async throws {
        let f = try await AppChannelFixture.start(extraYAML: """
          - name: short
            listener: app
            match: {path_prefix: /short}
            upstream: svc
            filters:
              - request_signature: {key_grace: 1h, max_age: 30s, max_skew: 1s, memory: {max_entries: 5000}}

        """)
        defer { Task { await f.stop() } }
        let client = try f.client()
        func gauge(_ name: String, window: Int) async throws -> Int? {
            let text = try await TestSupport.run("/usr/bin/curl", ["-sS", "http://127.0.0.1:\(f.gateway.adminPort)/metrics"]).stdout
            let line = text.split(separator: "\n").first {
                $0.hasPrefix(name + "{") && $0.contains("window_ms=\"\(window)\"") && $0.contains("store=\"memory\"")
            }
            return line.flatMap { $0.split(separator: " ").last }.flatMap { Int(Double($0) ?? -1) }
        }
        #expect(try await gauge("gateway_nonce_store_entries", window: 31_000) == 0)
        #expect(try await gauge("gateway_nonce_store_capacity", window: 31_000) == 5_000)
        #expect(try await gauge("gateway_nonce_store_capacity", window: 12_000) == 1_000_000, "the other routes' store, by default")
        var first: AppChannelClient.Prepared?
        for i in 0..<3 {
            let p = client.prepare(method: "GET", target: "/short/\(i)", body: [], encrypt: false)
            first = first ?? p
            #expect(try await f.send(p, "GET", "/short/\(i)").status == 200)
        }
        let replay = try await f.send(try #require(first), "GET", "/short/0")
        #expect(replay.status == 401 && replay.code == "replayed_request")
        #expect(try await gauge("gateway_nonce_store_entries", window: 31_000) == 3)
        #expect(try await gauge("gateway_nonce_store_entries", window: 12_000) == 0, "each window its own store")
        #expect(try await f.send(client.prepare(method: "GET", target: "/signed/x", body: [], encrypt: false), "GET", "/signed/x").status == 200)
        #expect(try await gauge("gateway_nonce_store_entries", window: 12_000) == 1)
    }
}
