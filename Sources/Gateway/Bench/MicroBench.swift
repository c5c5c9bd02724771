import ArgumentParser
import Filters
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import Passport
import Redis

/// `gateway bench-micro`: operations per second of the pieces of the request
/// path, in this process, single-threaded. Run on a release build
/// (`make bench-micro`). Pieces that do not exist yet print `n/a`.
struct BenchMicro: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-micro", abstract: "Microbenchmarks of the request path (release build).")

    @Option(help: "Seconds per benchmark.") var seconds: Double = 1.0
    @Option(help: "A redis-server (host:port) for the redis nonce store's figures; `make bench-micro` starts one.") var redis: String?
    @Option(help: "Run only the benchmarks whose name contains this text.") var only: String?
    @Option(help: "Run each benchmark exactly this many times instead of --seconds (to count events per operation with perf stat).")
    var iterations: Int?

    func validate() throws {
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be at least 1") }
        if seconds <= 0 { throw ValidationError("--seconds must be positive") }
    }

    func run() async throws {
        let benchmarks = MicroBenchmarks(seconds: seconds, iterations: iterations, only: only)
        var results = try benchmarks.all()
        if let only, !MicroBenchmarks.redisNames.contains(where: { $0.localizedCaseInsensitiveContains(only) }) {
            // left out by --only
        } else if let redis {
            guard let (host, port) = splitHostPort(redis), let address = try? SocketAddress(ipAddress: host, port: port) else {
                throw ValidationError("--redis must be ip:port")
            }
            results += try await benchmarks.redisBenchmarks(address)
        } else {
            results.append(.init(name: "nonce store insert (redis)", opsPerSecond: nil, note: "needs --redis host:port"))
        }
        if let only, results.allSatisfy({ $0.note == "skipped" }) {
            throw ValidationError("--only \"\(only)\" matches no benchmark's name")
        }
        print("benchmark                                   ops/s        ns/op")
        for r in results where r.note != "skipped" {
            if let ops = r.opsPerSecond {
                print(r.name.padding(toLength: 40, withPad: " ", startingAt: 0) + String(format: "%12.0f %12.1f", ops, 1e9 / ops))
            } else {
                print(r.name.padding(toLength: 40, withPad: " ", startingAt: 0) + "         n/a  (\(r.note))")
            }
        }
    }
}

struct MicroBenchmarks {
    let seconds: Double
    var iterations: Int? = nil
    var only: String? = nil

    struct Result {
        var name: String
        var opsPerSecond: Double?
        var note = ""
    }

    /// Runs `body` in batches until `seconds` pass (or exactly `iterations`
    /// times, for counting events per operation with `perf stat`) and returns
    /// its operations per second; nil when `only` leaves it out.
    func measure(_ name: String, _ body: () -> Void) -> Result {
        if let only, !name.localizedCaseInsensitiveContains(only) { return Result(name: name, opsPerSecond: nil, note: "skipped") }
        for _ in 0..<1000 { body() }  // warm-up
        var ops = 0
        let start = DispatchTime.now().uptimeNanoseconds
        var now = start
        if let iterations {
            for _ in 0..<iterations { body() }
            ops = iterations
            now = DispatchTime.now().uptimeNanoseconds
        } else {
            let end = start + UInt64(seconds * 1e9)
            while now < end {
                for _ in 0..<1000 { body() }
                ops += 1000
                now = DispatchTime.now().uptimeNanoseconds
            }
        }
        return Result(name: name, opsPerSecond: Double(ops) / (Double(max(now - start, 1)) / 1e9))
    }

    func all() throws -> [Result] {
        var results: [Result] = []
        let config = try Self.config(routes: 1000, filtersPerRoute: 0)
        let router = config.listeners[0].router
        var headers = HeaderFields()
        headers.add(name: "host", value: "api.example.com")
        headers.add(name: "user-agent", value: "bench")
        var sink = 0
        for (name, target) in [("route match, 1,000 routes, first", "/svc0/items/42"),
                               ("route match, 1,000 routes, last", "/svc999/items/42"),
                               ("route match, 1,000 routes, no route", "/nowhere/42")] {
            results.append(measure(name) {
                if case .matched(let r) = router.match(method: "GET", host: "api.example.com", target: Substring(target), headers: headers) {
                    sink &+= r.maxBody
                }
            })
        }

        // Filter chain overhead: a chain of N `headers` filters that set one header each.
        let loop = EmbeddedEventLoop()
        for n in [0, 1, 5] {
            let chained = try Self.config(routes: 1, filtersPerRoute: n)
            let route = chained.routes[0]
            let head = RequestHead(version: .http1_1, method: .GET, uri: "/svc0/x", headers: headers)
            results.append(measure("exchange + chain of \(n) headers filters") {
                let exchange = Exchange(request: head, requestID: "r", listener: "l", clientAddress: nil, isTLS: true,
                                        eventLoop: loop, logger: Logger(label: "bench"))
                for f in route.filters {
                    if case .next = f.onRequest(exchange) { continue }
                    break
                }
                var response = ResponseHead(status: .ok, headers: [:], isLocal: false)
                for f in route.filters.reversed() { f.onResponse(exchange, &response) }
                sink &+= exchange.request.headers.count
            })
        }

        let local = LoopLocal(pools: [:])
        results.append(measure("request id") { sink &+= local.newRequestID().utf8.count })
        var client = headers
        client.add(name: "accept", value: "*/*")
        client.add(name: "authorization", value: "Bearer x")
        client.add(name: "content-type", value: "application/json")
        results.append(measure("upstream request headers") {
            let (h, _) = HeaderRules.upstreamRequestHeaders(from: client, requestID: "0123456789abcdef0123456789abcdef",
                                                            clientIP: "127.0.0.1", isTLS: true, originalHost: "api.example.com", chunked: false,
                                                            policy: SanitizePolicy(), keepAppChannel: false)
            sink &+= h.count
        })
        // The HTTP/1.1 wire: a browser-like request head parsed, a typical
        // proxied response head written (validated as it is written).
        let requestBytes = ByteBuffer(string: "GET /api/v1/accounts/42 HTTP/1.1\r\nHost: api.example.com\r\n"
            + "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\nAccept: */*\r\n"
            + "Accept-Encoding: gzip, deflate, br\r\nAuthorization: Bearer x\r\nX-Request-Id: 0123456789abcdef\r\n\r\n")
        func parsing(_ name: String, _ head: ByteBuffer) -> Result {
            measure(name) {
                var parser = HTTP1RequestParser(maxHeadBytes: 32 << 10)
                var bytes = head
                if case .head(let parsed)? = try? parser.next(&bytes) { sink &+= parsed.headers.count }
            }
        }
        results.append(parsing("HTTP/1.1 request head parse, 6 fields", requestBytes))
        // The full app route's head (as `make bench` sends it): a bearer
        // JWT and the seven app-channel fields, long values.
        let token = "eyJhbGciOiJFZERTQSIsImtpZCI6ImRldiJ9." + String(repeating: "eyJzdWIiOiJiZW5jaC11c2VyIn0", count: 12)
            + "." + String(repeating: "c2lnbmF0dXJl", count: 7)
        let appBytes = ByteBuffer(string: "POST /full HTTP/1.1\r\nHost: localhost:18445\r\nAuthorization: Bearer \(token)\r\n"
            + "X-Gw-Kid: gw-2026-12\r\nX-Gw-Client-Key: 8pCx2sKcF0tIb1mJ6yQ9rV3uW5zA7dE4gH0jL2nP6sT\r\n"
            + "X-Gw-Timestamp: 1764825600123\r\nX-Gw-Nonce: ZGVmZ2hpamtsbW5vcHFycw\r\nX-Gw-Encrypted: 1\r\n"
            + "X-Gw-Content-Type: application/json\r\nX-Gw-Signature: q4Xy8hJm1Zb3Lk9Vt6Ws2Rn5Pd7Fc0Ga8He4Jf1Ki3M\r\n"
            + "Content-Type: application/octet-stream\r\nContent-Length: 1064\r\n\r\n")
        results.append(parsing("HTTP/1.1 request head parse, app channel", appBytes))
        let responseHead = ResponseHead(status: .ok, headers: [
            "server": "nginx/1.22.1", "date": "Thu, 03 Dec 2026 06:00:00 GMT", "content-type": "application/json",
            "content-length": "200", "x-request-id": "0123456789abcdef0123456789abcdef",
            "strict-transport-security": "max-age=31536000", "x-content-type-options": "nosniff",
        ], isLocal: false)
        var wire = ByteBufferAllocator().buffer(capacity: 1024)
        results.append(measure("HTTP/1.1 response head write, 7 fields") {
            wire.clear()
            var encoder = DownstreamHTTP1Encoder()
            if (try? encoder.head(responseHead, answeringHEAD: false, into: &wire)) != nil { sink &+= wire.readableBytes }
        })
        let canonicalPath = "/api/v1/accounts/42/transactions"
        results.append(measure("path check, already canonical") {
            if PathCanonicalizer.isPlainlyCanonical(Substring(canonicalPath)) { sink &+= 1 }
        })
        let dotted = "/api/v1/./accounts/%34%32/x/../transactions"
        results.append(measure("path canonical, dot segments and escapes") {
            if case .success(let p) = PathCanonicalizer().canonicalize(Substring(dotted)) { sink &+= p.utf8.count }
        })
        results += try passportBenchmarks(loop: loop)
        results += appChannelBenchmarks()
        results += try appChannelFilterBenchmarks(loop: loop)
        let nonces = MemoryNonceStore(windowMilliseconds: 12_000, capacity: 1 << 20)
        let clientKey = [UInt8](repeating: 9, count: 32)
        var counter: UInt64 = 0
        var clock: Int64 = 1_000_000
        results.append(measure("nonce store insert (memory, 16 shards)") {
            counter &+= 1
            clock &+= 1  // a request a millisecond: old keys expire as they would
            withUnsafeBytes(of: counter) { n in
                if nonces.record(clientKey: clientKey, nonce: Array(n), now: clock) == .recorded { sink &+= 1 }
            }
        })
        // As `make bench`'s full route fills it: 35 nonces a millisecond,
        // the default window (62 s), so ≈ 2.2 million keys live once full
        // (filled before the measure; tables far larger than the caches).
        if only == nil || "nonce store insert (memory, 2 M live)".localizedCaseInsensitiveContains(only!) {
            let full = MemoryNonceStore(windowMilliseconds: 62_000, capacity: 4_000_000)
            var n: UInt64 = 0
            func insert() {
                n &+= 1
                withUnsafeBytes(of: n) { b in
                    if full.record(clientKey: clientKey, nonce: Array(b), now: 1_000_000 + Int64(n / 35)) == .recorded { sink &+= 1 }
                }
            }
            for _ in 0..<2_400_000 { insert() }
            results.append(measure("nonce store insert (memory, 2 M live)") { insert() })
        } else {
            results.append(Result(name: "nonce store insert (memory, 2 M live)", opsPerSecond: nil, note: "skipped"))
        }
        if sink == 42 { print("") }  // keeps the work observable
        try? loop.syncShutdownGracefully()
        return results
    }

    /// Minting (the filter with its cache, and the signer alone) and
    /// verification (with and without the verifier's cache).
    func passportBenchmarks(loop: EventLoop) throws -> [Result] {
        let dir = NSTemporaryDirectory() + "gateway-bench-passport-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/passport", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = try PassportSigningKey.generate(kid: "bench")
        try JSONEncoder().encode(key.privateJWK).write(to: URL(fileURLWithPath: dir + "/passport/bench.json"))
        let filter = try PassportFilter(configuration: try JSONDecoder().decode(PassportFilter.Configuration.self, from: Data("{}".utf8)),
                                        context: FilterContext(stateDirectory: dir))
        let principal = Principal(subject: "user-42", session: "s-9", scopes: ["accounts:read"], method: "jwt", expiresAt: nil,
                                  rawClaims: [], confirmation: nil, credentialID: Principal.credentialID("token"))
        let head = RequestHead(version: .http1_1, method: .GET, uri: "/x", headers: ["authorization": "Bearer token", "x-device-id": "dev-7"])
        let logger = Logger(label: "bench")
        var sink = 0
        var results: [Result] = []
        results.append(measure("passport filter, cached") {
            let e = Exchange(request: head, requestID: "r", listener: "l", upstream: "accounts", clientAddress: nil, isTLS: true,
                             eventLoop: loop, logger: logger)
            e[PrincipalKey.self] = principal
            _ = filter.onRequest(e)
            sink &+= e.request.headers.count
        })
        // authenticate, cached: the same bearer JWT again (the common case of a client that repeats its token).
        let issuer = try PassportSigningKey.generate(kid: "idp")
        try JWKSet(keys: [issuer.publicJWK]).json().write(to: URL(fileURLWithPath: dir + "/jwks.json"))
        let authn = try AuthenticateFilter(
            configuration: try JSONDecoder().decode(AuthenticateFilter.Configuration.self, from: Data(
                #"{"jwt": {"jwks": "jwks.json", "issuer": "idp", "audiences": ["api"]}, "scopes": ["accounts:read"]}"#.utf8)),
            context: FilterContext(stateDirectory: dir))
        let t = PassportVerifier.currentTime()
        let jwtHeader = Base64URL.encode(Array(#"{"alg":"EdDSA","kid":"idp","typ":"JWT"}"#.utf8))
        let jwtClaims = Base64URL.encode(Array(#"{"aud":"api","exp":\#(t + 3600),"iat":\#(t),"iss":"idp","scope":"accounts:read","sid":"s-1","sub":"user-42"}"#.utf8))
        let jwt = jwtHeader + "." + jwtClaims + "." + Base64URL.encode(issuer.signature(for: Array((jwtHeader + "." + jwtClaims).utf8)))
        let authHead = RequestHead(version: .http1_1, method: .GET, uri: "/x", headers: ["authorization": "Bearer \(jwt)"])
        results.append(measure("authenticate filter, cached JWT") {
            let e = Exchange(request: authHead, requestID: "r", listener: "l", upstream: "accounts", clientAddress: nil, isTLS: true,
                             eventLoop: loop, logger: logger)
            if case .next = authn.onRequest(e) { sink &+= 1 }
        })
        let signer = PassportSigner(key: key)
        let now = PassportVerifier.currentTime()
        let claims = PassportClaims(issuer: "edge-gateway", audience: "accounts", issuedAt: now, expiresAt: now + 300, id: "j",
                                    subject: "user-42", session: "s-9", scope: "accounts:read", methods: ["jwt"], level: 2,
                                    device: .init(id: "dev-7"))
        results.append(measure("passport mint, uncached (Ed25519 sign)") {
            sink &+= signer.mint(claims).utf8.count
        })
        let token = signer.mint(claims)
        let jwks = JWKSet(keys: [key.publicJWK])
        let uncached = PassportVerifier(jwks: jwks, audience: "accounts", cacheCapacity: 0)
        results.append(measure("passport verify, uncached (Ed25519)") {
            if (try? uncached.verify(token, now: now)) != nil { sink &+= 1 }
        })
        let cached = PassportVerifier(jwks: jwks, audience: "accounts")
        results.append(measure("passport verify, cached") {
            if (try? cached.verify(token, now: now)) != nil { sink &+= 1 }
        })
        if sink == 42 { print("") }
        return results
    }

    /// The redis nonce store on one event loop, as a request sees it:
    /// one command at a time (each waits for its reply: bounded by the round
    /// trip), and 64 in flight on the pipelined connection (many requests on
    /// one loop at once, as under load). Every command is issued on the loop
    /// (the store's contract); this task only awaits each batch.
    func redisBenchmarks(_ address: SocketAddress) async throws -> [Result] {
        let client = RedisClient(configuration: RedisConfiguration(address: address, commandTimeout: .seconds(2)))
        defer { client.shutdown() }
        let store = RedisNonceStore(client: client, prefix: "gw:bench:", windowMilliseconds: 12_000)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        // A distinct nonce per command: a counter that only the loop touches.
        let counter = NIOLoopBoundBox.makeBoxSendingValue(UInt64(0), as: UInt64.self, eventLoop: loop)
        @Sendable func batch(_ size: Int) -> EventLoopFuture<[NonceStoreAnswer]> {
            let answers = (0..<size).map { _ -> EventLoopFuture<NonceStoreAnswer> in
                counter.value &+= 1
                let nonce = withUnsafeBytes(of: counter.value) { Array($0) }
                guard case .pending(let f) = store.record(clientKey: [1, 2, 3], nonce: nonce, now: 0, on: loop) else {
                    return loop.makeSucceededFuture(.unavailable("sync"))
                }
                return f
            }
            return EventLoopFuture.whenAllSucceed(answers, on: loop)
        }
        guard try await loop.flatSubmit({ batch(1) }).get() == [.recorded] else {
            throw ValidationError("redis did not record a nonce")
        }
        func timed(_ size: Int) async throws -> Double {
            var ops = 0
            let start = DispatchTime.now().uptimeNanoseconds
            let end = start + UInt64(seconds * 1e9)
            var now = start
            while now < end {
                _ = try await loop.flatSubmit { batch(size) }.get()
                ops += size
                now = DispatchTime.now().uptimeNanoseconds
            }
            return Double(ops) / (Double(now - start) / 1e9)
        }
        var results: [Result] = []
        for (name, inFlight) in zip(Self.redisNames, [1, 64]) {
            if let only, !name.localizedCaseInsensitiveContains(only) { continue }
            results.append(Result(name: name, opsPerSecond: try await timed(inFlight)))
        }
        return results
    }

    static let redisNames = ["nonce store insert (redis, 1 in flight)", "nonce store insert (redis, 64 in flight)"]

    /// A config with `routes` prefix routes on one listener, each with `filtersPerRoute` headers filters.
    static func config(routes: Int, filtersPerRoute: Int) throws -> RuntimeConfig {
        let dir = NSTemporaryDirectory() + "gateway-bench-micro-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var yaml = """
        listeners:
          - {name: public, address: "127.0.0.1:0"}
        upstreams:
          - {name: svc, endpoints: ["127.0.0.1:9"]}
        routes:

        """
        let filters = (0..<filtersPerRoute).map { "{headers: {request: {set: {x-f\($0): v}}}}" }.joined(separator: ", ")
        for i in 0..<routes {
            yaml += "  - {name: r\(i), listener: public, upstream: svc, match: {path_prefix: /svc\(i), methods: [GET]}, filters: [\(filters)]}\n"
        }
        try yaml.write(toFile: dir + "/routes.yaml", atomically: true, encoding: .utf8)
        return try RuntimeConfig.load(directory: dir, stateDirectory: dir, registry: try FilterRegistry())
    }
}
