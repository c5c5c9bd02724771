import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Passport
import Testing

@testable import Filters

/// The `request_signature` and `decrypt_payload` filters on their own, fed
/// the vectors' requests with the clock fixed at the vectors' timestamp.
struct AppChannelFilterFixture {
    let v: AppChannelVectors
    let state: String
    let vectorTime: Int64 = 1_764_250_000_123

    init() throws {
        v = try AppChannelVectors.load()
        state = NSTemporaryDirectory() + "app-filter-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: state + "/app-channel", withIntermediateDirectories: true)
        let jwk = JWK(kty: "OKP", crv: "X25519", kid: v.gateway.kid!, x: Base64URL.encode(hex(v.gateway.public_key_hex)),
                      d: Base64URL.encode(hex(v.gateway.secret_key_hex)))
        try JSONEncoder().encode(jwk).write(to: URL(fileURLWithPath: state + "/app-channel/k1.json"))
    }

    func context(now: Int64? = nil) -> FilterContext {
        let t = now ?? vectorTime
        return FilterContext(stateDirectory: state, clock: { t })
    }

    func signature(_ yaml: String = "{}", now: Int64? = nil) throws -> RequestSignatureFilter {
        let c = try JSONDecoder().decode(RequestSignatureFilter.Configuration.self, from: Data(yaml.utf8))
        return try RequestSignatureFilter(configuration: c, context: context(now: now))
    }

    func decrypt(_ json: String = "{}") throws -> DecryptPayloadFilter {
        try DecryptPayloadFilter(configuration: try JSONDecoder().decode(DecryptPayloadFilter.Configuration.self, from: Data(json.utf8)))
    }

    func exchange(_ c: AppChannelVectors.Case, headers override: [String: String?] = [:], method: String? = nil,
                  target: String? = nil) -> Exchange {
        var headers = HeaderFields()
        for (name, value) in c.headers where override[name] == nil { headers.add(name: name, value: value) }
        for (name, value) in override { if let value = value ?? nil { headers.add(name: name, value: value) } }
        let head = RequestHead(version: .http1_1, method: HTTPMethod(rawValue: method ?? c.method), uri: target ?? c.target, headers: headers)
        return Exchange(request: head, requestID: "rid", listener: "app", clientAddress: nil, isTLS: true, eventLoop: EmbeddedEventLoop(),
                        logger: Logger(label: "test"))
    }

    /// Runs onRequest of each filter, then onRequestBody of each, like the proxy.
    func run(_ filters: [any Filter], _ exchange: Exchange, body: [UInt8]) -> (code: String?, body: ByteBuffer) {
        for f in filters {
            if case .respond(let r) = f.onRequest(exchange) { return (r.errorCode ?? "status \(r.status.code)", ByteBuffer()) }
        }
        var buffer = ByteBuffer(bytes: body)
        for f in filters {
            switch f.onRequestBody(exchange, &buffer) {
            case .next: continue
            case .respond(let r): return (r.errorCode ?? "status \(r.status.code)", buffer)
            case .suspend(let future):
                switch try? future.wait() {
                case .respond(let r)?: return (r.errorCode, buffer)
                case .next?: continue
                default: return ("suspend failed", buffer)
                }
            }
        }
        return (nil, buffer)
    }
}

@Suite("request_signature and decrypt_payload filters, against the vectors")
struct AppChannelFilterTests {
    @Test("every vector request passes at its own time; an encrypted body reaches the upstream as plaintext with its type; X-Gw-* stay readable for later filters")
    func vectorsPass() throws {
        let f = try AppChannelFilterFixture()
        for c in f.v.cases {
            let sig = try f.signature()
            let dec = try f.decrypt(#"{"required": false}"#)
            let exchange = f.exchange(c)
            let (code, body) = f.run([sig, dec], exchange, body: hex(c.body_sent_hex))
            #expect(code == nil, "\(c.name): \(code ?? "")")
            #expect(Array(body.readableBytesView) == hex(c.plaintext_hex), "\(c.name)")
            let verified = try #require(exchange[AppChannelRequestKey.self])
            #expect(verified.keys.mac == hex(f.v.derived.K_mac_hex) && verified.nonce == c.headers["X-Gw-Nonce"])
            if c.headers["X-Gw-Encrypted"] == "1" {
                let transform = try #require(exchange.responseBodyTransform, "\(c.name): the response must be sealed")
                if !c.plaintext_hex.isEmpty { #expect(exchange.request.headers["content-type"] == ["application/json"]) }
                // The sealed response opens with K_resp and the request's nonce, bound to the status.
                if let r = c.response {
                    var headers: HeaderFields = ["content-type": "application/json"]
                    let sealed = Array(transform(.ok, &headers, ByteBuffer(bytes: hex(r.upstream_body_hex))).readableBytesView)
                    let keys = try #require(AppChannelCrypto.SessionKeys.app(
                        publicKey: hex(f.v.client.public_key_hex), secretKey: hex(f.v.client.secret_key_hex), gatewayKey: hex(f.v.gateway.public_key_hex)))
                    #expect(AppChannelCrypto.openResponse(sealed, keys: keys, aad: Array(r.aad.utf8)) == hex(r.upstream_body_hex))
                    #expect(AppChannelCrypto.openResponse(sealed, keys: keys, aad: Array("201\n\(c.headers["X-Gw-Nonce"]!)".utf8)) == nil)
                    #expect(headers["x-gw-encrypted"] == ["1"] && headers["content-type"] == ["application/octet-stream"]
                        && headers["x-gw-content-type"] == ["application/json"])
                }
            } else {
                #expect(exchange.responseBodyTransform == nil)
            }
        }
    }

    @Test("PROTOCOL 2.3 in order: malformed, unknown kid, expired, bad signature, then replay; nonce recorded only after the signature verifies")
    func checksInOrder() throws {
        let f = try AppChannelFilterFixture()
        let c = f.v.cases[1]  // post-plain-json
        let body = hex(c.body_sent_hex)
        func code(_ override: [String: String?] = [:], method: String? = nil, target: String? = nil, body b: [UInt8]? = nil,
                  now: Int64? = nil, filter: RequestSignatureFilter? = nil) throws -> String? {
            let sig = try filter ?? f.signature(now: now)
            return f.run([sig], f.exchange(c, headers: override, method: method, target: target), body: b ?? body).code
        }
        // Malformed: each header missing, and badly formed.
        for name in ["X-Gw-Kid", "X-Gw-Client-Key", "X-Gw-Timestamp", "X-Gw-Nonce", "X-Gw-Signature"] {
            let missing: [String: String?] = [name: String?.none]
            #expect(try code(missing) == "malformed_signature", "without \(name)")
        }
        // Each header sent twice (even with the same value): which one was signed is unclear.
        for name in ["X-Gw-Kid", "X-Gw-Client-Key", "X-Gw-Timestamp", "X-Gw-Nonce", "X-Gw-Signature"] {
            let twice = f.exchange(c)
            twice.request.headers.add(name: name.lowercased(), value: c.headers[name]!)
            #expect(f.run([try f.signature()], twice, body: body).code == "malformed_signature", "\(name) twice")
        }
        let key = c.headers["X-Gw-Client-Key"]!
        // The signature's 43 characters hold 258 bits: the last two must be zero ("B" sets one).
        let signature = c.headers["X-Gw-Signature"]!
        for (name, value) in [("X-Gw-Client-Key", String(key.dropLast(2))), ("X-Gw-Timestamp", "+1764250000123"), ("X-Gw-Timestamp", "1764250000123.0"),
                              ("X-Gw-Nonce", Base64URL.encode([UInt8](repeating: 1, count: 15))), ("X-Gw-Nonce", Base64URL.encode([UInt8](repeating: 1, count: 33))),
                              ("X-Gw-Signature", "abc"), ("X-Gw-Kid", "k 1"), ("X-Gw-Nonce", "not base64!")] {
            #expect(try code([name: value]) == "malformed_signature", "\(name): \(value)")
        }
        let badSignatures: [String] = [String(signature.dropLast()), signature + "A", "+" + String(signature.dropFirst()),
                                       String(signature.dropLast()) + "B", String(signature.dropLast()) + "="]
        for value in badSignatures {
            let name = "X-Gw-Signature"
            #expect(try code([name: value]) == "malformed_signature", "\(name): \(value)")
        }
        #expect(try code(["X-Gw-Kid": "k2"]) == "unknown_key")
        // Expired: older than max_age (10 s), or further ahead than max_skew (2 s); the edges pass.
        #expect(try code(now: f.vectorTime + 10_001) == "request_expired")
        #expect(try code(now: f.vectorTime - 2_001) == "request_expired")
        #expect(try code(now: f.vectorTime + 10_000) == nil)
        #expect(try code(now: f.vectorTime - 2_000) == nil)
        // Tampering: every signed part.
        #expect(try code(method: "PUT") == "invalid_signature")
        #expect(try code(target: "/api/v1/transfers?x=1") == "invalid_signature")
        #expect(try code(["X-Gw-Timestamp": "1764250000124"]) == "invalid_signature")
        #expect(try code(["X-Gw-Nonce": Base64URL.encode([UInt8](repeating: 7, count: 16))]) == "invalid_signature")
        var changed = body
        changed[0] ^= 1
        #expect(try code(body: changed) == "invalid_signature")
        let other = try #require(X25519.keyPair(seed: [UInt8](repeating: 9, count: 32)))
        #expect(try code(["X-Gw-Client-Key": Base64URL.encode(other.publicKey)]) == "invalid_signature")
        // Replay: the same request twice on one filter; a refused signature records nothing.
        let sig = try f.signature()
        #expect(try code(["X-Gw-Signature": Base64URL.encode([UInt8](repeating: 0, count: 32))], filter: sig) == "invalid_signature")
        #expect(try code(filter: sig) == nil, "a bad signature must not burn the nonce")
        #expect(try code(filter: sig) == "replayed_request")
    }

    @Test("one config, two routes (say the same path on two listeners): they share the in-memory store, so a request seen by one is a replay at the other")
    func sharedMemoryStore() throws {
        let f = try AppChannelFilterFixture()
        let context = f.context()
        let config = try JSONDecoder().decode(RequestSignatureFilter.Configuration.self, from: Data("{}".utf8))
        let appRoute = try RequestSignatureFilter(configuration: config, context: context)
        let webRoute = try RequestSignatureFilter(configuration: config, context: context)
        let c = f.v.cases[1]
        #expect(f.run([appRoute], f.exchange(c), body: hex(c.body_sent_hex)).code == nil)
        #expect(f.run([webRoute], f.exchange(c), body: hex(c.body_sent_hex)).code == "replayed_request")
        let other = try JSONDecoder().decode(RequestSignatureFilter.Configuration.self, from: Data(#"{"memory": {"max_entries": 5000}}"#.utf8))
        #expect(throws: FilterConfigurationError.self) { try RequestSignatureFilter(configuration: other, context: context) }
    }

    @Test("routes with the same redis settings share one client (one pipelined connection per event loop), whatever their prefixes")
    func sharedRedisClient() throws {
        let f = try AppChannelFilterFixture()
        let context = f.context()
        func make(_ yaml: String) throws -> RedisNonceStore {
            let c = try JSONDecoder().decode(RequestSignatureFilter.Configuration.self, from: Data(yaml.utf8))
            return try #require(try RequestSignatureFilter(configuration: c, context: context).store as? RedisNonceStore)
        }
        let a = try make(#"{"nonce_store": "redis", "redis": {"address": "127.0.0.1:6390", "prefix": "a:"}}"#)
        let b = try make(#"{"nonce_store": "redis", "redis": {"address": "127.0.0.1:6390", "prefix": "b:"}}"#)
        let c = try make(#"{"nonce_store": "redis", "redis": {"address": "127.0.0.1:6390", "database": 2}}"#)
        #expect(a.client === b.client && a.prefix == "a:" && b.prefix == "b:")
        #expect(a.client !== c.client)
    }

    @Test("a full in-memory store fails closed: 503 replay_store_unavailable, the nonce not forgotten early")
    func fullStore() throws {
        let f = try AppChannelFilterFixture()
        let context = f.context()
        let store = try context.memoryNonceStore(windowMilliseconds: 12_000, capacity: 1000)
        for i in 0..<5000 { _ = store.record(clientKey: [1], nonce: withUnsafeBytes(of: i) { Array($0) }, now: f.vectorTime) }
        #expect(store.count(now: f.vectorTime) == 16 * (1000 / 16), "every shard at its share of the cap")
        let config = try JSONDecoder().decode(RequestSignatureFilter.Configuration.self, from: Data(#"{"memory": {"max_entries": 1000}}"#.utf8))
        let filter = try RequestSignatureFilter(configuration: config, context: context)
        let c = f.v.cases[1]
        #expect(f.run([filter], f.exchange(c), body: hex(c.body_sent_hex)).code == "replay_store_unavailable")
        let open = try JSONDecoder().decode(RequestSignatureFilter.Configuration.self,
                                            from: Data(#"{"memory": {"max_entries": 1000}, "fail_open": true}"#.utf8))
        #expect(f.run([try RequestSignatureFilter(configuration: open, context: context)], f.exchange(c), body: hex(c.body_sent_hex)).code == nil,
                "fail_open lets it through")
    }

    @Test("key binding: cnf.gwk must equal the client key; require_key_binding refuses tokens without it")
    func keyBinding() throws {
        let f = try AppChannelFilterFixture()
        let c = f.v.cases[0]
        func run(gwk: String??, require: Bool) throws -> String? {
            let sig = try f.signature(require ? #"{"require_key_binding": true}"# : "{}")
            let exchange = f.exchange(c)
            if let gwk {
                let cnf = gwk.map { #"{"gwk":"\#($0)"}"# } ?? #"{"jkt":"x"}"#
                exchange[PrincipalKey.self] = Principal(subject: "u", session: nil, scopes: [], method: "jwt", expiresAt: nil, rawClaims: [],
                                                        confirmation: Array(cnf.utf8), credentialID: "id")
            }
            return f.run([sig], exchange, body: []).code
        }
        let key = c.headers["X-Gw-Client-Key"]!
        #expect(try run(gwk: .some(key), require: true) == nil)
        #expect(try run(gwk: .some(Base64URL.encode([UInt8](repeating: 3, count: 32))), require: false) == "key_binding_mismatch")
        #expect(try run(gwk: .some(nil), require: true) == "key_binding_mismatch", "a cnf without gwk")
        #expect(try run(gwk: nil, require: true) == "key_binding_mismatch", "no credential at all")
        #expect(try run(gwk: nil, require: false) == nil)
    }

    @Test("decrypt_payload: required refuses the plain channel; a body that does not open, or was sealed for another target, is undecryptable")
    func decryptErrors() throws {
        let f = try AppChannelFilterFixture()
        let plain = f.v.cases[1], encrypted = f.v.cases[2]
        #expect(f.run([try f.signature(), try f.decrypt()], f.exchange(plain), body: hex(plain.body_sent_hex)).code == "encryption_required")
        #expect(f.run([try f.signature(), try f.decrypt()], f.exchange(f.v.cases[0]), body: []).code == "encryption_required", "a GET too")
        #expect(f.run([try f.signature(), try f.decrypt()], f.exchange(encrypted, headers: ["X-Gw-Encrypted": "yes"]), body: []).code
            == "encryption_required")
        // A marker or a media type sent twice: neither channel.
        let twiceMarked = f.exchange(encrypted)
        twiceMarked.request.headers.add(name: "X-Gw-Encrypted", value: "1")
        #expect(f.run([try f.signature(), try f.decrypt()], twiceMarked, body: hex(encrypted.body_sent_hex)).code == "encryption_required")
        let twoTypes = f.exchange(encrypted, headers: ["X-Gw-Content-Type": "application/json"])
        twoTypes.request.headers.add(name: "x-gw-content-type", value: "text/plain")
        #expect(f.run([try f.signature(), try f.decrypt()], twoTypes, body: hex(encrypted.body_sent_hex)).code == "undecryptable_payload")
        // A ciphertext moved to another target, signed anew for it: the signature holds, the AAD does not.
        let client = try #require(AppChannelClient(kid: "k1", gatewayKey: hex(f.v.gateway.public_key_hex), seed: hex(f.v.client.seed_hex)))
        let sent = hex(encrypted.body_sent_hex)
        let h = encrypted.headers
        let moved = client.signature(method: "POST", target: "/api/v1/transfers", timestamp: h["X-Gw-Timestamp"]!, nonce: h["X-Gw-Nonce"]!, sentBody: sent)
        #expect(f.run([try f.signature(), try f.decrypt()], f.exchange(encrypted, headers: ["X-Gw-Signature": moved], target: "/api/v1/transfers"),
                      body: sent).code == "undecryptable_payload")
        // Too short to be N || C, signed as sent.
        let short = Array(sent.prefix(30))
        let shortSig = client.signature(method: "POST", target: encrypted.target, timestamp: h["X-Gw-Timestamp"]!, nonce: h["X-Gw-Nonce"]!, sentBody: short)
        #expect(f.run([try f.signature(), try f.decrypt()], f.exchange(encrypted, headers: ["X-Gw-Signature": shortSig]), body: short).code
            == "undecryptable_payload")
    }

    @Test("X-Gw-Content-Type must be a media type: type/subtype of printable ASCII, a token before the slash")
    func mediaTypes() {
        for good in ["application/json", "text/plain; charset=utf-8", "a/b", "x-y.z+w/anything here ~!"] {
            #expect(DecryptPayloadFilter.isMediaType(good), "\(good)")
        }
        for bad in ["", "json", "/json", "app lication/json", "app(x)/json", "text/pl\u{7F}ain", "text/plain\n", "t\u{e9}xt/plain",
                    "application/" + String(repeating: "x", count: 250)] {
            #expect(!DecryptPayloadFilter.isMediaType(bad), "\(bad)")
        }
        #expect(DecryptPayloadFilter.isMediaType("application/" + String(repeating: "x", count: 244)))
    }

    @Test("the client side reproduces the vectors' headers and bodies from the same seeds, nonces and time")
    func clientSide() throws {
        let f = try AppChannelFilterFixture()
        let client = try #require(AppChannelClient(kid: "k1", gatewayKey: hex(f.v.gateway.public_key_hex), seed: hex(f.v.client.seed_hex)))
        for c in f.v.cases {
            let encrypt = c.headers["X-Gw-Encrypted"] == "1"
            let sent = hex(c.body_sent_hex)
            let p = client.prepare(method: c.method, target: c.target, body: hex(c.plaintext_hex), encrypt: encrypt,
                                   contentType: c.headers["X-Gw-Content-Type"], timestamp: f.vectorTime,
                                   nonce: Base64URL.decode(c.headers["X-Gw-Nonce"]!)!, bodyNonce: sent.isEmpty ? [UInt8](repeating: 0, count: 24) : Array(sent.prefix(24)))
            #expect(p.body == sent, "\(c.name)")
            #expect(Dictionary(uniqueKeysWithValues: p.headers.map { ($0.name, $0.value) }) == c.headers, "\(c.name)")
        }
    }

    @Test("the key ring: the newest key is current, an older one is accepted for the grace after its successor appeared, then refused and unpublished; session keys are cached per key")
    func keyRing() throws {
        let dir = NSTemporaryDirectory() + "ring-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let now = AppChannelKeyRing.now()
        for (kid, age) in [("expired", 5 * 3600), ("old", 3 * 3600), ("new", 1800)] {
            let pair = X25519.generate()
            let path = dir + "/\(kid).json"
            try JSONEncoder().encode(JWK(kty: "OKP", crv: "X25519", kid: kid, x: Base64URL.encode(pair.publicKey), d: Base64URL.encode(pair.secretKey)))
                .write(to: URL(fileURLWithPath: path))
            try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSince1970: Double(now / 1000 - Int64(age)))], ofItemAtPath: path)
        }
        let ring = try AppChannelKeyRing(directory: dir, grace: 3_600_000)
        #expect(ring.keys.map(\.kid) == ["new", "old", "expired"])
        #expect(ring.key(kid: "new", now: now) != nil && ring.key(kid: "old", now: now) != nil)
        #expect(ring.key(kid: "expired", now: now) == nil, "its successor appeared 3 h ago; grace is 1 h")
        #expect(ring.key(kid: "old", now: now + 3_600_000) == nil, "1 h after 'new' appeared plus the grace")
        let published = ring.publishedJSON(now: now)
        #expect(published.hasPrefix(#"{"keys":[{"kty":"OKP","crv":"X25519","kid":"new","x":""#))
        #expect(published.contains(#""kid":"old""#) && !published.contains("expired") && !published.contains("\"d\""))
        let client = X25519.generate()
        let key = try #require(ring.key(kid: "new", now: now))
        let a = key.sessionKeys(clientKey: client.publicKey, cacheKey: Base64URL.encode(client.publicKey))
        #expect(a != nil && key.cachedSessions == 1)
        #expect(key.sessionKeys(clientKey: client.publicKey, cacheKey: Base64URL.encode(client.publicKey)) == a && key.cachedSessions == 1)
        // The inline form finds the same session; a new key derives and caches one more.
        let text = Base64URL.encode(client.publicKey)
        let inline = try #require(InlineBytes32(base64url: text, lengths: 32...32))
        #expect(key.sessionKeys(clientKey: inline, cacheKey: text) == a && key.cachedSessions == 1)
        let other = X25519.generate()
        let otherText = Base64URL.encode(other.publicKey)
        let b = key.sessionKeys(clientKey: try #require(InlineBytes32(base64url: otherText, lengths: 32...32)), cacheKey: otherText)
        #expect(b != nil && b != a && key.cachedSessions == 2)
        #expect(key.sessionKeys(clientKey: other.publicKey, cacheKey: otherText) == b)
        // Files that are not X25519 private keys are refused with the file name.
        try Data(#"{"kty":"OKP","crv":"Ed25519","kid":"x","x":"AA","d":"AA"}"#.utf8).write(to: URL(fileURLWithPath: dir + "/bad.json"))
        #expect(throws: AppChannelKeyRing.Failure.self) { try AppChannelKeyRing(directory: dir, grace: 0) }
        #expect(throws: AppChannelKeyRing.Failure.self) { try AppChannelKeyRing(directory: dir + "/missing", grace: 0) }
    }

    @Test("configuration mistakes fail at load with the key named")
    func configErrors() throws {
        let f = try AppChannelFilterFixture()
        for (yaml, expected) in [(#"{"max_age": "0s"}"#, "max_age"), (#"{"nonce_store": "redis"}"#, "redis"),
                                 (#"{"memory": {"max_entries": 10}}"#, "max_entries"),
                                 (#"{"nonce_store": "redis", "redis": {"address": "nohost"}}"#, "redis.address"),
                                 (#"{"nonce_store": "redis", "redis": {"address": "127.0.0.1:6379", "password_env": "GW_TEST_UNSET_VAR"}}"#, "password_env")] {
            do {
                _ = try f.signature(yaml)
                Issue.record("\(yaml) was accepted")
            } catch {
                #expect("\(error)".contains(expected), "\(yaml): \(error)")
            }
        }
        #expect(throws: DecodingError.self) { try f.signature(#"{"max_agee": "1s"}"#) }
        let empty = NSTemporaryDirectory() + "no-keys-\(UUID().uuidString.prefix(8))"
        let c = try JSONDecoder().decode(RequestSignatureFilter.Configuration.self, from: Data("{}".utf8))
        #expect(throws: FilterConfigurationError.self) { try RequestSignatureFilter(configuration: c, context: FilterContext(stateDirectory: empty)) }
    }
}
