import Filters
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import Passport
import Synchronization

/// The app channel's benchmarks: its cryptography, and its two filters as the request path runs them.
extension MicroBenchmarks {
    /// The app channel's cryptography (PROTOCOL 2): what the gateway pays
    /// per session (key agreement) and per request (signature, AEAD).
    func appChannelBenchmarks() -> [Result] {
        var results: [Result] = []
        var sink = 0
        let gateway = X25519.generate()
        let client = X25519.generate()
        results.append(measure("session keys (crypto_kx + 3 BLAKE2b)") {
            if let k = AppChannelCrypto.SessionKeys.gateway(publicKey: gateway.publicKey, secretKey: gateway.secretKey,
                                                            clientKey: client.publicKey) { sink &+= Int(k.mac[0]) }
        })
        guard let keys = AppChannelCrypto.SessionKeys.gateway(publicKey: gateway.publicKey, secretKey: gateway.secretKey,
                                                              clientKey: client.publicKey) else { return results }
        let body = [UInt8](repeating: 7, count: 1024)
        let bodyHash = Sodium.sha256(body)
        results.append(measure("SHA-256, 1 KiB (libsodium)") { sink &+= Int(Sodium.sha256(body)[0]) })
        results.append(measure("SHA-256, 1 KiB (Digest)") { sink &+= Int(Digest.sha256(body)[0]) })
        let canonicalSample = [UInt8](repeating: 65, count: 150)
        results.append(measure("HMAC-SHA-256, 150 B (libsodium)") {
            sink &+= Int(Sodium.hmacSHA256(key: keys.mac, message: canonicalSample)[0])
        })
        results.append(measure("HMAC-SHA-256, 150 B (Digest)") {
            sink &+= Int(Digest.hmacSHA256(key: keys.mac, message: canonicalSample)[0])
        })
        results.append(measure("HMAC-SHA-256, 150 B (session key, pads hashed once)") {
            sink &+= Int(keys.macKey.mac(canonicalSample)[0])
        })
        results.append(measure("request signature verify, 1 KiB body") {
            let canonical = AppChannelCrypto.canonical(method: "POST", target: "/api/v1/transfers", timestamp: "1764250000123",
                                                       nonce: "ZGVmZ2hpamtsbW5vcHFycw", kid: "k1", bodySHA256: Digest.sha256(body))
            let mac = AppChannelCrypto.signature(canonical: canonical, keys: keys)
            if Sodium.constantTimeEqual(mac, bodyHash) { sink &+= 1 }
        })
        let aad = AppChannelCrypto.requestAAD(method: "POST", target: "/api/v1/transfers", timestamp: "1764250000123", nonce: "n")
        let sealed = AppChannelCrypto.sealRequest(body, keys: keys, nonce: Sodium.randomBytes(24), aad: aad)
        // The request path's form (BoringSSL, into a new buffer), and the app's (libsodium, arrays).
        let sealedBuffer = ByteBuffer(bytes: sealed)
        results.append(measure("AEAD open (XChaCha20-Poly1305), 1 KiB") {
            var body = sealedBuffer
            if AppChannelCrypto.openRequest(&body, keys: keys, aad: aad) { sink &+= body.readableBytes }
        })
        results.append(measure("AEAD open, 1 KiB, libsodium (app side)") {
            sink &+= AppChannelCrypto.openRequest(sealed, keys: keys, aad: aad)?.count ?? 0
        })
        let response = ByteBuffer(repeating: 0x61, count: 200)
        results.append(measure("AEAD seal (XChaCha20-Poly1305), 200 B") {
            sink &+= AppChannelCrypto.withResponseAAD(status: 200, requestNonce: "ZGVmZ2hpamtsbW5vcHFycw") { aad in
                AppChannelCrypto.sealResponse(response, keys: keys, aad: aad)
            }.readableBytes
        })
        let responseBytes = Array(response.readableBytesView), responseNonce = Sodium.randomBytes(24)
        results.append(measure("AEAD seal, 200 B, libsodium (app side)") {
            sink &+= AppChannelCrypto.sealResponse(responseBytes, keys: keys, nonce: responseNonce, aad: aad).count
        })
        if sink == 42 { print("") }
        return results
    }

    /// The app channel's two filters as the request path runs them, on the
    /// `make bench` full route's request (a signed POST with a 1 KiB body):
    /// an exchange, `onRequest` of each, `onRequestBody` of each (signature,
    /// key lookup, nonce recorded in the memory store; the body opened), and,
    /// for the pair, the sealing of a 200-byte response. 1,000 requests are
    /// signed beforehand (distinct nonces); the store's clock moves past the
    /// replay window after each 1,000, so every nonce is new to it and its
    /// keys expire as they would under load, while the requests' own
    /// timestamps stay current for the age check.
    func appChannelFilterBenchmarks(loop: EventLoop) throws -> [Result] {
        let dir = NSTemporaryDirectory() + "gateway-bench-app-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/app-channel", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gateway = X25519.generate()
        try Data(#"{"kty":"OKP","crv":"X25519","kid":"k1","d":"\#(Base64URL.encode(gateway.secretKey))","x":"\#(Base64URL.encode(gateway.publicKey))"}"#.utf8)
            .write(to: URL(fileURLWithPath: dir + "/app-channel/k1.json"))
        let t: Int64 = 1_764_825_600_123
        let clock = BenchClock(t)
        let context = FilterContext(stateDirectory: dir, clock: { clock.now.load(ordering: .relaxed) })
        let signatures = try RequestSignatureFilter(configuration: .init(), context: context)
        let decrypt = try DecryptPayloadFilter(configuration: .init())
        let window: Int64 = 12_000  // the default max_age + max_skew
        guard let client = AppChannelClient(kid: "k1", gatewayKey: gateway.publicKey) else { return [] }
        let json = Array(String(repeating: #"{"amount":1000,"to":"acct-42"},"#, count: 33).utf8.prefix(1024))
        // Distinct nonces in each set (one store serves both benchmarks).
        func requests(encrypt: Bool) -> [(RequestHead, ByteBuffer)] {
            (0..<1000).map { i in
                let prepared = client.prepare(method: "POST", target: "/full", body: json, encrypt: encrypt, contentType: "application/json",
                                              timestamp: t, nonce: withUnsafeBytes(of: UInt64(i) << 8 | (encrypt ? 2 : 1)) { Array($0) + Array($0) })
                var headers: HeaderFields = ["Host": "localhost:18445", "Content-Type": encrypt ? "application/octet-stream" : "application/json",
                                            "Content-Length": String(prepared.body.count)]
                for (name, value) in prepared.headers { headers.add(name: name, value: value) }
                return (RequestHead(version: .http1_1, method: .POST, uri: "/full", headers: headers), ByteBuffer(bytes: prepared.body))
            }
        }
        let logger = Logger(label: "bench")
        let response = ByteBuffer(repeating: 0x61, count: 200)
        var sink = 0
        func run(_ name: String, _ filters: [any Filter], _ prepared: [(RequestHead, ByteBuffer)]) -> Result {
            var op = 0, refused = 0
            let result = measure(name) {
                let (head, sent) = prepared[op % prepared.count]
                let epoch = Int64(op / prepared.count)
                op += 1
                let e = Exchange(request: head, requestID: "r", listener: "l", upstream: "svc", clientAddress: nil, isTLS: true,
                                 eventLoop: loop, logger: logger)
                clock.now.store(t, ordering: .relaxed)
                for f in filters { guard case .next = f.onRequest(e) else { refused += 1; return } }
                clock.now.store(t + epoch * 2 * window, ordering: .relaxed)
                var body = sent
                for f in filters { guard case .next = f.onRequestBody(e, &body) else { refused += 1; return } }
                sink &+= body.readableBytes
                if let seal = e.responseBodyTransform {
                    var headers: HeaderFields = ["content-type": "application/json", "content-length": "200"]
                    sink &+= seal(.ok, &headers, response).readableBytes
                }
            }
            // A refused request would be measured as a cheap one.
            return refused == 0 ? result : Result(name: name, opsPerSecond: nil, note: "refused \(refused) requests: the benchmark is broken")
        }
        var results = [run("request_signature filter, 1 KiB body", [signatures], requests(encrypt: false))]
        results.append(run("request_signature + decrypt_payload", [signatures, decrypt], requests(encrypt: true)))
        if sink == 42 { print("") }
        return results
    }

    /// The clock of `appChannelFilterBenchmarks`.
    final class BenchClock: Sendable {
        let now: Atomic<Int64>
        init(_ start: Int64) { now = Atomic(start) }
    }
}
