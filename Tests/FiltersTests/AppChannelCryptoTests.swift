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
