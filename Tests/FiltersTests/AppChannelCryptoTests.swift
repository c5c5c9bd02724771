import Foundation
import NIOCore
import Passport
import Testing

@testable import Filters

/// `../shared/vectors/app-channel-v1.json` (PyNaCl), copied into `Tests/FiltersTests/Vectors/`.
struct AppChannelVectors: Decodable {
    struct Party: Decodable {
        var seed_hex: String
        var public_key_hex: String
        var secret_key_hex: String
        var c_rx_hex: String?
        var c_tx_hex: String?
        var kid: String?
    }
    struct Derived: Decodable {
        var K_mac_hex: String
        var K_req_hex: String
        var K_resp_hex: String
    }
    struct Response: Decodable {
        var status: Int
        var upstream_body_hex: String
        var response_nonce_hex: String
        var body_hex: String
        var aad: String
    }
    struct Case: Decodable {
        var name: String
        var method: String
        var target: String
        var plaintext_hex: String
        var headers: [String: String]
        var body_sent_hex: String
        var canonical: String
        var response: Response?
    }
    var gateway: Party
    var client: Party
    var derived: Derived
    var cases: [Case]

    static func load() throws -> AppChannelVectors {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Vectors/app-channel-v1.json")
        return try JSONDecoder().decode(AppChannelVectors.self, from: Data(contentsOf: url))
    }
}

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var rest = Substring(s)
    while !rest.isEmpty {
        out.append(UInt8(rest.prefix(2), radix: 16)!)
        rest = rest.dropFirst(2)
    }
    return out
}

@Suite("app channel cryptography (PROTOCOL 2), byte for byte against the vectors")
struct AppChannelCryptoTests {
    @Test("key pairs from seeds, crypto_kx session keys on both sides, derived keys")
    func keys() throws {
        let v = try AppChannelVectors.load()
        let g = try #require(X25519.keyPair(seed: hex(v.gateway.seed_hex)))
        let c = try #require(X25519.keyPair(seed: hex(v.client.seed_hex)))
        #expect(g.publicKey == hex(v.gateway.public_key_hex) && g.secretKey == hex(v.gateway.secret_key_hex))
        #expect(c.publicKey == hex(v.client.public_key_hex) && c.secretKey == hex(v.client.secret_key_hex))
        let appSide = try #require(X25519.clientSessionKeys(clientPublicKey: c.publicKey, clientSecretKey: c.secretKey, serverPublicKey: g.publicKey))
        #expect(appSide.rx == hex(v.client.c_rx_hex!) && appSide.tx == hex(v.client.c_tx_hex!))
        let gatewayKeys = try #require(AppChannelCrypto.SessionKeys.gateway(publicKey: g.publicKey, secretKey: g.secretKey, clientKey: c.publicKey))
        let appKeys = try #require(AppChannelCrypto.SessionKeys.app(publicKey: c.publicKey, secretKey: c.secretKey, gatewayKey: g.publicKey))
        #expect(gatewayKeys == appKeys)
        #expect(gatewayKeys.mac == hex(v.derived.K_mac_hex))
        #expect(gatewayKeys.request == hex(v.derived.K_req_hex))
        #expect(gatewayKeys.response == hex(v.derived.K_resp_hex))
        #expect(X25519.publicKey(secretKey: g.secretKey) == g.publicKey)
    }

    @Test("every case: canonical string, signature, request body (open and re-seal), sealed response")
    func cases() throws {
        let v = try AppChannelVectors.load()
        let keys = try #require(AppChannelCrypto.SessionKeys.gateway(
            publicKey: hex(v.gateway.public_key_hex), secretKey: hex(v.gateway.secret_key_hex), clientKey: hex(v.client.public_key_hex)))
        #expect(v.cases.count == 4)
        for c in v.cases {
            let h = c.headers
            let bodySent = hex(c.body_sent_hex)
            let canonical = AppChannelCrypto.canonical(
                method: c.method, target: c.target, timestamp: h["X-Gw-Timestamp"]!, nonce: h["X-Gw-Nonce"]!, kid: h["X-Gw-Kid"]!,
                bodySHA256: Sodium.sha256(bodySent))
            #expect(String(decoding: canonical, as: UTF8.self) == c.canonical, "\(c.name)")
            #expect(Base64URL.encode(AppChannelCrypto.signature(canonical: canonical, keys: keys)) == h["X-Gw-Signature"], "\(c.name)")
            #expect(Base64URL.decode(h["X-Gw-Client-Key"]!) == hex(v.client.public_key_hex))
            // The request path's form: no canonical string, the same answer.
            let signature = try #require(Base64URL.decode(h["X-Gw-Signature"]!))
            func matches(_ expected: [UInt8], method: String? = nil, target: String? = nil, body: [UInt8]? = nil) -> Bool {
                expected.withUnsafeBytes { e in
                    (body ?? bodySent).withUnsafeBytes { b in
                        AppChannelCrypto.signatureMatches(e, method: method ?? c.method, target: target ?? c.target, timestamp: h["X-Gw-Timestamp"]!,
                                                          nonce: h["X-Gw-Nonce"]!, kid: h["X-Gw-Kid"]!, body: b, keys: keys)
                    }
                }
            }
            #expect(matches(signature), "\(c.name)")
            for i in [0, 13, 31] {
                var wrong = signature
                wrong[i] ^= 0x40
                #expect(!matches(wrong), "\(c.name): byte \(i) changed")
            }
            #expect(!matches(Array(signature.dropLast())) && !matches(signature + [0]), "32 bytes or nothing")
            #expect(!matches(signature, method: c.method == "GET" ? "HEAD" : "GET") && !matches(signature, target: c.target + "x"))
            #expect(!matches(signature, body: bodySent + [0]))
            let aad = AppChannelCrypto.requestAAD(method: c.method, target: c.target, timestamp: h["X-Gw-Timestamp"]!, nonce: h["X-Gw-Nonce"]!)
            if h["X-Gw-Encrypted"] == "1" {
                #expect(AppChannelCrypto.openRequest(bodySent, keys: keys, aad: aad) == hex(c.plaintext_hex), "\(c.name)")
                // The gateway's form, opened where the body lies.
                var buffer = ByteBuffer(bytes: bodySent)
                #expect(AppChannelCrypto.openRequest(&buffer, keys: keys, aad: aad) && Array(buffer.readableBytesView) == hex(c.plaintext_hex))
                if !bodySent.isEmpty {
                    let resealed = AppChannelCrypto.sealRequest(hex(c.plaintext_hex), keys: keys, nonce: Array(bodySent.prefix(24)), aad: aad)
                    #expect(resealed == bodySent, "\(c.name)")
                    var tampered = bodySent
                    tampered[tampered.count - 1] ^= 1
                    #expect(AppChannelCrypto.openRequest(tampered, keys: keys, aad: aad) == nil)
                    #expect(AppChannelCrypto.openRequest(bodySent, keys: keys, aad: aad + [0x20]) == nil, "the AAD binds method, target, time, nonce")
                    var tamperedBuffer = ByteBuffer(bytes: tampered)
                    #expect(!AppChannelCrypto.openRequest(&tamperedBuffer, keys: keys, aad: aad))
                    var otherAAD = ByteBuffer(bytes: bodySent)
                    #expect(!AppChannelCrypto.openRequest(&otherAAD, keys: keys, aad: aad + [0x20]))
                }
            } else {
                #expect(bodySent == hex(c.plaintext_hex))
            }
            #expect(aad == Array("\(c.method)\n\(c.target)\n\(h["X-Gw-Timestamp"]!)\n\(h["X-Gw-Nonce"]!)".utf8), "PROTOCOL 2.4's A")
            if let r = c.response {
                let b = AppChannelCrypto.responseAAD(status: r.status, requestNonce: h["X-Gw-Nonce"]!)
                #expect(String(decoding: b, as: UTF8.self) == r.aad)
                let sealed = AppChannelCrypto.sealResponse(hex(r.upstream_body_hex), keys: keys, nonce: hex(r.response_nonce_hex), aad: b)
                #expect(sealed == hex(r.body_hex), "\(c.name)")
                let sealedBuffer = AppChannelCrypto.sealResponse(ByteBuffer(bytes: hex(r.upstream_body_hex)), keys: keys, aad: b,
                                                                 nonce: hex(r.response_nonce_hex))
                #expect(Array(sealedBuffer.readableBytesView) == hex(r.body_hex), "\(c.name): the gateway's form")
                // With a fresh N' it still opens, and differs.
                let fresh = Array(AppChannelCrypto.sealResponse(ByteBuffer(bytes: hex(r.upstream_body_hex)), keys: keys, aad: b).readableBytesView)
                #expect(fresh != sealed && AppChannelCrypto.openResponse(fresh, keys: keys, aad: b) == hex(r.upstream_body_hex))
                #expect(AppChannelCrypto.openResponse(sealed, keys: keys, aad: b) == hex(r.upstream_body_hex))
            }
        }
    }

    @Test("the AADs and the signature written without arrays equal the array forms, for odd statuses, long targets and random bodies")
    func requestPathForms() throws {
        var rng = SystemRandomNumberGenerator()
        for status in [100, 200, 204, 302, 404, 503, 999, 0, 42, 1000, 12345] {
            for nonce in ["", "AAAAAAAAAAAAAAAAAAAAAA", "n\u{E9}"] {
                let reference = AppChannelCrypto.responseAAD(status: status, requestNonce: nonce)
                #expect(AppChannelCrypto.withResponseAAD(status: status, requestNonce: nonce) { Array($0) } == reference, "\(status)")
            }
        }
        let keys = AppChannelCrypto.SessionKeys(appToGateway: (0..<32).map { UInt8($0) }, gatewayToApp: [UInt8](repeating: 2, count: 32))
        for length in [0, 1, 100, 5_000, 70_000] {
            // Past the stack's share, the temporary buffer is on the heap: the same bytes.
            let target = "/p?" + String(repeating: "q", count: length)
            let body = (0..<(length % 3_000)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            // PROTOCOL 2.4's `A`, written out (the array form is built on the buffer form).
            let aad = Array("POST\n\(target)\n1764250000123\nbm9uY2U".utf8)
            #expect(AppChannelCrypto.withRequestAAD(method: "POST", target: target, timestamp: "1764250000123", nonce: "bm9uY2U") { Array($0) } == aad)
            let canonical = AppChannelCrypto.canonical(method: "POST", target: target, timestamp: "1764250000123", nonce: "bm9uY2U", kid: "k1",
                                                       bodySHA256: Digest.sha256(body))
            let signature = AppChannelCrypto.signature(canonical: canonical, keys: keys)
            func matches(_ expected: [UInt8], kid: String = "k1", timestamp: String = "1764250000123") -> Bool {
                expected.withUnsafeBytes { e in
                    body.withUnsafeBytes { b in
                        AppChannelCrypto.signatureMatches(e, method: "POST", target: target, timestamp: timestamp, nonce: "bm9uY2U", kid: kid,
                                                          body: b, keys: keys)
                    }
                }
            }
            #expect(matches(signature), "target of \(length)")
            #expect(!matches(signature, kid: "k2") && !matches(signature, timestamp: "1764250000124"))
            var other = signature
            other[31] ^= 1
            #expect(!matches(other))
        }
    }

    @Test("malformed inputs are refused, not crashed on")
    func malformed() throws {
        let v = try AppChannelVectors.load()
        #expect(X25519.keyPair(seed: [1, 2, 3]) == nil)
        #expect(AppChannelCrypto.SessionKeys.gateway(publicKey: hex(v.gateway.public_key_hex), secretKey: hex(v.gateway.secret_key_hex),
                                                     clientKey: [0, 1]) == nil)
        let keys = AppChannelCrypto.SessionKeys(appToGateway: [UInt8](repeating: 1, count: 32), gatewayToApp: [UInt8](repeating: 2, count: 32))
        #expect(AppChannelCrypto.openRequest([UInt8](repeating: 0, count: 30), keys: keys, aad: []) == nil)
        #expect(AppChannelCrypto.openRequest([], keys: keys, aad: []) == [])
        var short = ByteBuffer(bytes: [UInt8](repeating: 0, count: 39))
        #expect(!AppChannelCrypto.openRequest(&short, keys: keys, aad: []))
        var empty = ByteBuffer()
        #expect(AppChannelCrypto.openRequest(&empty, keys: keys, aad: []) && empty.readableBytes == 0)
        #expect(AppChannelCrypto.openResponse([1, 2, 3], keys: keys, aad: []) == nil)
    }
}
