import Foundation
import NIOCore
import NIOHTTP1
import Passport
import Synchronization

/// The gateway's outbound HTTP for filters that call a service themselves
/// (token introspection). The gateway provides it through `FilterContext`;
/// it runs on the event loop it is given and never blocks.
public protocol OutboundHTTPClient: Sendable {
    /// POSTs `body` to `url`; the future fails on connection errors, a
    /// timeout, or a response larger than 64 KiB.
    func post(url: URL, headers: HTTPHeaders, body: [UInt8], timeout: TimeAmount, on eventLoop: EventLoop)
        -> EventLoopFuture<(status: Int, body: [UInt8])>
}

/// OAuth 2.0 token introspection (RFC 7662) for opaque bearer tokens, with
/// positive caching bounded by the token's own `exp`, negative caching, at most
/// one request in flight per token (concurrent lookups of one token share
/// it), and a bound on lookups in flight overall.
final class Introspector: Sendable {
    struct Settings: Sendable {
        var url: URL
        var clientID: String
        var clientSecret: String
        var timeout: TimeAmount
        /// Milliseconds: whole seconds against a whole-second clock kept a
        /// 1 s entry anywhere from 0 to 1 s.
        var cacheTTLMillis: Int64
        var negativeCacheTTLMillis: Int64
        var maxInFlight: Int
    }

    enum Outcome: Sendable {
        case active(Principal)
        case inactive
        /// The authorization server could not answer: the gateway cannot tell.
        case unavailable
    }

    struct Cached: Sendable {
        let outcome: Outcome
        /// Milliseconds since the epoch.
        let until: Int64
    }

    static func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    let settings: Settings
    let client: any OutboundHTTPClient
    private let authorization: String
    private let cache: LockedCache<Cached>
    private let inFlight = Mutex<[String: EventLoopFuture<Outcome>]>([:])
    /// Lookups sent to the authorization server, for tests and metrics.
    private let sent = Mutex<Int>(0)

    init(settings: Settings, client: any OutboundHTTPClient, cacheCapacity: Int = 10_000) {
        self.settings = settings
        self.client = client
        let credentials = Array("\(Self.formEncode(settings.clientID)):\(Self.formEncode(settings.clientSecret))".utf8)
        self.authorization = "Basic " + Data(credentials).base64EncodedString()
        self.cache = LockedCache(capacity: cacheCapacity)
    }

    var lookupsSent: Int { sent.withLock { $0 } }

    /// The outcome for `token`, from the cache when it can be.
    func introspect(_ token: String, on eventLoop: EventLoop) -> EventLoopFuture<Outcome> {
        let key = Principal.credentialID(token)
        if let hit = cache.get(key), hit.until > Self.nowMillis() { return eventLoop.makeSucceededFuture(hit.outcome) }
        let (future, isNew): (EventLoopFuture<Outcome>?, Bool) = inFlight.withLock { map in
            if let existing = map[key] { return (existing, false) }
            guard map.count < settings.maxInFlight else { return (nil, false) }
            let f = lookup(token, key: key, on: eventLoop)
            map[key] = f
            return (f, true)
        }
        guard let future else { return eventLoop.makeSucceededFuture(.unavailable) }
        if isNew {
            future.whenComplete { [self] result in
                inFlight.withLock { _ = $0.removeValue(forKey: key) }
                guard case .success(let outcome) = result else { return }
                let now = Self.nowMillis()
                switch outcome {
                case .active(let p):
                    let until = min(now + settings.cacheTTLMillis, p.expiresAt.map { max(0, min($0, Int64.max / 1000)) * 1000 } ?? .max)
                    cache.put(key, Cached(outcome: outcome, until: until))
                case .inactive:
                    cache.put(key, Cached(outcome: outcome, until: now + settings.negativeCacheTTLMillis))
                case .unavailable:
                    break
                }
            }
        }
        return future.hop(to: eventLoop)
    }

    private func lookup(_ token: String, key: String, on eventLoop: EventLoop) -> EventLoopFuture<Outcome> {
        sent.withLock { $0 += 1 }
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "application/x-www-form-urlencoded")
        headers.add(name: "accept", value: "application/json")
        headers.add(name: "authorization", value: authorization)
        let body = Array("token=\(Self.formEncode(token))&token_type_hint=access_token".utf8)
        return client.post(url: settings.url, headers: headers, body: body, timeout: settings.timeout, on: eventLoop)
            .map { response -> Outcome in
                guard response.status == 200 else { return .unavailable }
                return Self.parse(response.body, token: token)
            }
            .recover { _ in .unavailable }
    }

    /// The members of an RFC 7662 response the gateway reads, typed: an
    /// `active` of `1` or `"true"` is not `true`.
    struct Response: Decodable {
        var active: Bool
        var exp: Double?
        var sub: String?
        var username: String?
        var sid: String?
        var scope: String?
    }

    /// An RFC 7662 response: `active` must be the boolean true; `exp` (if any)
    /// must lie ahead.
    static func parse(_ body: [UInt8], token: String) -> Outcome {
        guard let r = try? JSONDecoder().decode(Response.self, from: Data(body)) else {
            // A JSON object whose `active` is not the boolean true (`1`, `"true"`): not active.
            let object = try? JSONSerialization.jsonObject(with: Data(body))
            return object is [String: Any] ? .inactive : .unavailable
        }
        guard r.active else { return .inactive }
        let exp = r.exp.flatMap { $0.isFinite && abs($0) < 1e15 ? Int64($0) : nil }
        if let exp, exp <= PassportVerifier.currentTime() { return .inactive }
        let cnf = ((try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any])?["cnf"] as? [String: Any]
        let cnfBytes = cnf.flatMap { try? JSONSerialization.data(withJSONObject: $0, options: .sortedKeys) }
        return .active(Principal(
            subject: r.sub ?? r.username, session: r.sid, scopes: r.scope?.split(separator: " ").map(String.init) ?? [],
            method: "introspection", expiresAt: exp, rawClaims: body, confirmation: cnfBytes.map { Array($0) },
            credentialID: Principal.credentialID(token)))
    }

    /// `application/x-www-form-urlencoded` (RFC 6749 appendix B for client credentials).
    static func formEncode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "*"):
                out.unicodeScalars.append(UnicodeScalar(b))
            case UInt8(ascii: " "):
                out += "+"
            default:
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }
}
