import Foundation
import NIOCore
import NIOPosix
import Redis
import Testing

@testable import Filters

/// A real `redis-server` (installed by `make test`) on a free loopback port,
/// without persistence; stopped with SIGKILL (see PassportVerifierFetchTests
/// for why not SIGTERM and waitUntilExit).
final class RedisServerProcess: @unchecked Sendable {
    let port: Int
    let dir: String
    let extraArgs: [String]
    private var process: Process?

    init(port: Int? = nil, extraArgs: [String] = []) throws {
        self.port = try port ?? TestSupport.freePort()
        self.dir = try TestSupport.temporaryDirectory("redis")
        self.extraArgs = extraArgs
    }

    static var binary: String {
        get throws {
            for path in ["/usr/bin/redis-server", "/usr/local/bin/redis-server"] where FileManager.default.isExecutableFile(atPath: path) {
                return path
            }
            throw TestError("redis-server is not installed; `make test` installs it (apt-get install redis-server)")
        }
    }

    /// Starts the server and waits until it answers PING.
    func start(portArgs: [String]? = nil) async throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try Self.binary)
        p.arguments = (portArgs ?? ["--port", String(port)]) + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
                                                                "--daemonize", "no", "--loglevel", "warning"] + extraArgs
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try TestSupport.launch(p)
        process = p
        let tls = portArgs?.contains("--tls-port") == true
        for _ in 0..<200 {
            if tls ? await accepts() : await ping() { return }
            try await Task.sleep(nanoseconds: 25_000_000)
        }
        throw TestError("redis-server did not start on port \(port)")
    }

    /// PING over a plain socket (the server may require a password: -NOAUTH still means it is up).
    func ping() async -> Bool {
        guard let r = try? await TestSupport.run("/bin/bash", ["-c", "exec 3<>/dev/tcp/127.0.0.1/\(port) && printf 'PING\\r\\n' >&3 && timeout 1 head -c 1 <&3"])
        else { return false }
        return r.code == 0 && (r.stdout == "+" || r.stdout == "-")
    }

    /// Whether the port accepts connections (a TLS port does not answer a plain PING).
    func accepts() async -> Bool { await TestSupport.accepts(port) }

    func kill() {
        guard let p = process else { return }
        Foundation.kill(p.processIdentifier, SIGKILL)
        process = nil
    }

    /// Stops the server and waits until its port is closed.
    func stop() async {
        kill()
        for _ in 0..<100 where await accepts() { try? await Task.sleep(nanoseconds: 20_000_000) }
    }

    deinit { kill() }
}

@Suite("RESP framing")
struct RESPTests {
    @Test("replies decode whole, incrementally, and malformed ones are errors")
    func decoding() throws {
        var b = ByteBuffer(string: "+OK\r\n-ERR wrong\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$1\r\nx\r\n:7\r\n*-1\r\n")
        #expect(try RESP.decode(&b) == .simpleString("OK"))
        #expect(try RESP.decode(&b) == .error("ERR wrong"))
        #expect(try RESP.decode(&b) == .integer(42))
        #expect(try RESP.decode(&b) == .bulk(Array("abc".utf8)))
        #expect(try RESP.decode(&b) == .bulk(nil))
        #expect(try RESP.decode(&b) == .array([.bulk([UInt8(ascii: "x")]), .integer(7)]))
        #expect(try RESP.decode(&b) == .array(nil))
        #expect(b.readableBytes == 0)
        // A reply split anywhere decodes only once it is whole, consuming nothing before.
        let whole = Array("*2\r\n$5\r\nhello\r\n+OK\r\n".utf8)
        for cut in 1..<whole.count {
            var part = ByteBuffer(bytes: whole[..<cut])
            #expect(try RESP.decode(&part) == nil, "cut at \(cut)")
            #expect(part.readableBytes == cut)
        }
        for bad in ["?x\r\n", ":12a\r\n", "$5\r\nabcdefg\r\n", "$-5\r\n", "+OK\rX", "*99999999\r\n"] {
            var buffer = ByteBuffer(string: bad)
            #expect(throws: (any Error).self, "\(bad.debugDescription)") { try RESP.decode(&buffer) }
        }
        var out = ByteBuffer()
        RESP.encode([Array("SET".utf8), Array("k".utf8), []], into: &out)
        #expect(String(buffer: out) == "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n")
    }
}

@Suite("the RESP client against a real redis-server", .serialized)
struct RedisClientTests {
    static func client(_ port: Int, password: String? = nil, database: Int = 0, timeout: TimeAmount = .milliseconds(250)) throws -> RedisClient {
        RedisClient(configuration: RedisConfiguration(address: try SocketAddress(ipAddress: "127.0.0.1", port: port), password: password,
                                                      database: database, commandTimeout: timeout, reconnectDelay: .milliseconds(50)))
    }

    @Test("SET NX PX: set once, refused while it lives, set again after it expired; 200 commands pipelined on one connection")
    func setIfAbsent() async throws {
        let redis = try RedisServerProcess()
        try await redis.start()
        defer { redis.kill() }
        let client = try Self.client(redis.port)
        defer { client.shutdown() }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        #expect(try await client.setIfAbsent(key: Array("gw:t:a".utf8), ttlMilliseconds: 300, on: loop).get() == true)
        #expect(try await client.setIfAbsent(key: Array("gw:t:a".utf8), ttlMilliseconds: 300, on: loop).get() == false)
        let ttl = try await client.send([Array("PTTL".utf8), Array("gw:t:a".utf8)], on: loop).get()
        guard case .integer(let ms) = ttl else { Issue.record("PTTL answered \(ttl)"); return }
        #expect(ms > 0 && ms <= 300)
        try await Task.sleep(nanoseconds: 400_000_000)
        #expect(try await client.setIfAbsent(key: Array("gw:t:a".utf8), ttlMilliseconds: 300, on: loop).get() == true)
        // Pipelining: 200 commands in flight at once, each answered in order.
        let futures = (0..<200).map { i in client.setIfAbsent(key: Array("gw:t:p\(i % 100)".utf8), ttlMilliseconds: 10_000, on: loop) }
        var results: [Bool] = []
        for f in futures { results.append(try await f.get()) }
        #expect(results.filter { $0 }.count == 100, "each of 100 keys set exactly once")
        #expect(Array(results[0..<100]).allSatisfy { $0 } && Array(results[100...]).allSatisfy { !$0 })
    }

    @Test("AUTH and SELECT on connect; a wrong password fails with Redis' reason, never the password")
    func authAndSelect() async throws {
        let redis = try RedisServerProcess(extraArgs: ["--requirepass", "s3cret-pass"])
        try await redis.start()
        defer { redis.kill() }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let good = try Self.client(redis.port, password: "s3cret-pass", database: 3)
        defer { good.shutdown() }
        #expect(try await good.setIfAbsent(key: Array("gw:t:db".utf8), ttlMilliseconds: 10_000, on: loop).get())
        // The key is in database 3, not 0.
        let other = try Self.client(redis.port, password: "s3cret-pass")
        defer { other.shutdown() }
        #expect(try await other.send([Array("EXISTS".utf8), Array("gw:t:db".utf8)], on: loop).get() == .integer(0))
        let bad = try Self.client(redis.port, password: "wrong-pass")
        defer { bad.shutdown() }
        do {
            _ = try await bad.setIfAbsent(key: Array("k".utf8), ttlMilliseconds: 1000, on: loop).get()
            Issue.record("a wrong password was accepted")
        } catch {
            #expect("\(error)".contains("WRONGPASS") && !"\(error)".contains("wrong-pass"), "\(error)")
        }
        let none = try Self.client(redis.port)
        defer { none.shutdown() }
        await #expect(throws: RedisError.self) { try await none.setIfAbsent(key: Array("k".utf8), ttlMilliseconds: 1000, on: loop).get() }
    }

    @Test("a slow server: the command times out, the connection is replaced, and the next command works")
    func timeout() async throws {
        let redis = try RedisServerProcess(extraArgs: ["--enable-debug-command", "yes"])
        try await redis.start()
        defer { redis.kill() }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let client = try Self.client(redis.port, timeout: .milliseconds(200))
        defer { client.shutdown() }
        let blocker = try Self.client(redis.port, timeout: .seconds(5))
        defer { blocker.shutdown() }
        #expect(try await client.setIfAbsent(key: Array("gw:t:x".utf8), ttlMilliseconds: 10_000, on: loop).get())
        let sleeping = blocker.send([Array("DEBUG".utf8), Array("SLEEP".utf8), Array("0.6".utf8)], on: loop)
        try await Task.sleep(nanoseconds: 50_000_000)
        let started = Date()
        await #expect(throws: RedisError.timeout) { try await client.setIfAbsent(key: Array("gw:t:y".utf8), ttlMilliseconds: 10_000, on: loop).get() }
        #expect(Date().timeIntervalSince(started) < 0.5)
        // The nonce store turns a slow redis into `unavailable("timeout")` (→ 503, or a logged pass with fail_open).
        let store = RedisNonceStore(client: client, prefix: "gw:t:", windowMilliseconds: 12_000)
        let sleeping2 = blocker.send([Array("DEBUG".utf8), Array("SLEEP".utf8), Array("0.6".utf8)], on: loop)
        _ = try? await sleeping.get()
        try await Task.sleep(nanoseconds: 50_000_000)
        guard case .pending(let slow) = store.record(clientKey: [1], nonce: [2], now: 0, on: loop) else { Issue.record("not pending"); return }
        #expect(try await slow.get() == .unavailable("timeout"))
        _ = try? await sleeping2.get()
        // The late reply to the timed-out command is never taken for the next one's.
        #expect(try await client.setIfAbsent(key: Array("gw:t:x".utf8), ttlMilliseconds: 10_000, on: loop).get() == false)
        #expect(try await client.setIfAbsent(key: Array("gw:t:z".utf8), ttlMilliseconds: 10_000, on: loop).get() == true)
    }

    @Test("redis killed: commands fail fast; restarted on the same port: the client reconnects by itself")
    func reconnect() async throws {
        let redis = try RedisServerProcess()
        try await redis.start()
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let client = try Self.client(redis.port)
        defer { client.shutdown() }
        #expect(try await client.setIfAbsent(key: Array("gw:t:r".utf8), ttlMilliseconds: 10_000, on: loop).get())
        await redis.stop()
        let started = Date()
        await #expect(throws: (any Error).self) { try await client.setIfAbsent(key: Array("gw:t:r2".utf8), ttlMilliseconds: 10_000, on: loop).get() }
        #expect(Date().timeIntervalSince(started) < 1)
        try await redis.start()
        defer { redis.kill() }
        var recovered = false
        for _ in 0..<40 {
            if (try? await client.setIfAbsent(key: Array("gw:t:r3".utf8), ttlMilliseconds: 10_000, on: loop).get()) == true { recovered = true; break }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        #expect(recovered)
    }

    @Test("TLS to redis (tls-port) with the CA from the config; the redis nonce store answers recorded, then replayed")
    func tlsAndNonceStore() async throws {
        let certs = try TestSupport.temporaryDirectory("redis-tls")
        try await TestSupport.makeCertificates(in: certs)
        let port = try TestSupport.freePort()
        let redis = try RedisServerProcess(port: port, extraArgs: [
            "--tls-cert-file", certs + "/localhost.pem", "--tls-key-file", certs + "/localhost-key.pem",
            "--tls-ca-cert-file", certs + "/ca.pem", "--tls-auth-clients", "no"])
        try await redis.start(portArgs: ["--port", "0", "--tls-port", String(port)])
        defer { redis.kill() }
        let yaml = #"{"address": "127.0.0.1:\#(port)", "tls": {"ca": "ca.pem", "server_name": "localhost"}, "prefix": "gw:tls:"}"#
        let config = try JSONDecoder().decode(RedisStoreConfiguration.self, from: Data(yaml.utf8))
        let client = RedisClient(configuration: try config.clientConfiguration(context: FilterContext(stateDirectory: certs)))
        defer { client.shutdown() }
        let store = RedisNonceStore(client: client, prefix: "gw:tls:", windowMilliseconds: 12_000)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        func record(_ nonce: [UInt8]) async throws -> NonceStoreAnswer {
            guard case .pending(let f) = store.record(clientKey: [1, 2, 3], nonce: nonce, now: 0, on: loop) else { return .unavailable("sync") }
            return try await f.get()
        }
        #expect(try await record([9, 9]) == .recorded)
        #expect(try await record([9, 9]) == .replayed)
        #expect(try await record([9, 8]) == .recorded)
        // The key is the hash, never the nonce, and lives for the window.
        let key = store.storageKey(clientKey: [1, 2, 3], nonce: [9, 9])
        #expect(String(decoding: key, as: UTF8.self).hasPrefix("gw:tls:") && key.count == "gw:tls:".count + 32)
        // Pinned (Python: sha256(bytes([1, 2, 3, 9, 9])).hexdigest()[:32]): gateways of
        // different versions sharing one Redis must compute the same key.
        #expect(String(decoding: key, as: UTF8.self) == "gw:tls:088eab0dcb79675c6153b2870b77c73a")
        let fromBytes = [UInt8]([1, 2, 3]).withUnsafeBytes { c in [UInt8]([9, 9]).withUnsafeBytes { store.storageKey(clientKey: c, nonce: $0) } }
        #expect(fromBytes == key)
        let ttl = try await client.send([Array("PTTL".utf8), key], on: loop).get()
        guard case .integer(let ms) = ttl else { Issue.record("PTTL: \(ttl)"); return }
        #expect(ms > 11_000 && ms <= 12_000)
        // A CA that did not issue the server's certificate: the handshake fails, so the store is unavailable.
        let wrongCA = try TestSupport.temporaryDirectory("redis-tls-other")
        try await TestSupport.makeCertificates(in: wrongCA)
        let untrusting = RedisClient(configuration: try config.clientConfiguration(context: FilterContext(stateDirectory: wrongCA)))
        defer { untrusting.shutdown() }
        let untrustingStore = RedisNonceStore(client: untrusting, prefix: "gw:tls:", windowMilliseconds: 12_000)
        guard case .pending(let refused) = untrustingStore.record(clientKey: [1], nonce: [1], now: 0, on: loop) else { return }
        #expect(try await refused.get() == .unavailable("unreachable"))
        // A store whose server is gone answers unavailable, not an error.
        await redis.stop()
        #expect(try await record([7]) == .unavailable("unreachable"))
    }
}
