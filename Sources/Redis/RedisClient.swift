import NIOCore
import NIOPosix
import NIOSSL
import Synchronization

/// Where and how to reach Redis.
public struct RedisConfiguration: Sendable {
    public var address: SocketAddress
    /// For `AUTH` (Redis 6 ACL user when `username` is set).
    public var username: String?
    public var password: String?
    /// `SELECT` after connecting, when not 0.
    public var database: Int
    /// TLS to Redis when set (`tls-port`); `serverName` is checked against the certificate.
    public var tls: NIOSSLContext?
    public var serverName: String?
    public var connectTimeout: TimeAmount
    /// How long a command may wait for its reply before it fails and its
    /// connection is closed (a reply that comes later is never matched to
    /// another command).
    public var commandTimeout: TimeAmount
    /// After a failed connect, commands fail at once for this long instead of
    /// each one trying again (so an outage costs no connect storm).
    public var reconnectDelay: TimeAmount

    public init(address: SocketAddress, username: String? = nil, password: String? = nil, database: Int = 0,
                tls: NIOSSLContext? = nil, serverName: String? = nil, connectTimeout: TimeAmount = .milliseconds(500),
                commandTimeout: TimeAmount = .milliseconds(250), reconnectDelay: TimeAmount = .milliseconds(200)) {
        self.address = address
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
        self.serverName = serverName
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.reconnectDelay = reconnectDelay
    }
}

/// A small Redis client on SwiftNIO with only what the gateway needs.
///
/// One pipelined connection per event loop, made on first use on that loop,
/// so a request's command never leaves its thread and commands from many
/// requests share one connection without waiting for each other. A broken
/// connection (closed, protocol error, timeout) is dropped and the next
/// command connects again, with `AUTH` and `SELECT` first.
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    private let connections: Mutex<[ObjectIdentifier: LoopConnection]>

    public init(configuration: RedisConfiguration) {
        self.configuration = configuration
        self.connections = Mutex([:])
    }

    /// Sends one command (`["SET", key, ...]`) on `loop`'s connection.
    public func send(_ arguments: [[UInt8]], on loop: EventLoop) -> EventLoopFuture<RESPValue> {
        guard loop.inEventLoop else { return loop.flatSubmit { self.send(arguments, on: loop) } }
        let connection = connections.withLock { all in
            if let c = all[ObjectIdentifier(loop)] { return c }
            let c = LoopConnection(loop: loop, configuration: configuration)
            all[ObjectIdentifier(loop)] = c
            return c
        }
        return connection.send(arguments)
    }

    /// `SET key value NX PX ttl`: true when the key was set, false when it existed.
    public func setIfAbsent(key: [UInt8], value: [UInt8] = [UInt8(ascii: "1")], ttlMilliseconds: Int64,
                            on loop: EventLoop) -> EventLoopFuture<Bool> {
        send([Array("SET".utf8), key, value, Array("NX".utf8), Array("PX".utf8), Array(String(ttlMilliseconds).utf8)], on: loop)
            .flatMapThrowing { reply in
                switch reply {
                case .simpleString("OK"): return true
                case .bulk(nil): return false
                case .error(let message): throw RedisError("redis: \(message)")
                default: throw RedisError("unexpected reply to SET")
                }
            }
    }

    /// Closes every connection.
    public func shutdown() {
        let all = connections.withLock { all in
            defer { all = [:] }
            return Array(all.values)
        }
        for c in all { c.loop.execute { c.close() } }
    }
}

/// The connection of one event loop; touched only on that loop.
final class LoopConnection: @unchecked Sendable {
    let loop: EventLoop
    let configuration: RedisConfiguration
    private var channel: Channel?
    private var connecting: EventLoopFuture<Channel>?
    private var failedAt: NIODeadline?
    private var closed = false

    init(loop: EventLoop, configuration: RedisConfiguration) {
        self.loop = loop
        self.configuration = configuration
    }

    func send(_ arguments: [[UInt8]]) -> EventLoopFuture<RESPValue> {
        loop.preconditionInEventLoop()
        return channelFuture().flatMap { channel in self.write(arguments, to: channel) }
    }

    private func write(_ arguments: [[UInt8]], to channel: Channel) -> EventLoopFuture<RESPValue> {
        let promise = loop.makePromise(of: RESPValue.self)
        let timeout = loop.scheduleTask(in: configuration.commandTimeout) {
            promise.fail(RedisError.timeout)
            // Its reply may still come; this connection can no longer pair
            // replies with commands, so it goes.
            self.drop(channel)
        }
        promise.futureResult.whenComplete { _ in timeout.cancel() }
        channel.writeAndFlush(RedisCommand(arguments: arguments, promise: promise)).whenFailure { error in
            promise.fail(error)
            // Its promise is queued for a reply that will not come: the connection goes.
            self.drop(channel)
        }
        return promise.futureResult
    }

    private func channelFuture() -> EventLoopFuture<Channel> {
        if let channel, channel.isActive { return loop.makeSucceededFuture(channel) }
        if let connecting { return connecting }
        if closed { return loop.makeFailedFuture(RedisError.connectionClosed) }
        if let failedAt, .now() < failedAt + configuration.reconnectDelay {
            return loop.makeFailedFuture(RedisError("redis unreachable (the last connect failed moments ago)"))
        }
        channel = nil
        let future = connect()
        connecting = future
        future.whenComplete { result in
            self.connecting = nil
            switch result {
            case .success(let c):
                self.channel = c
                self.failedAt = nil
                c.closeFuture.whenComplete { _ in if self.channel === c { self.channel = nil } }
            case .failure:
                self.failedAt = .now()
            }
        }
        return future
    }

    private func connect() -> EventLoopFuture<Channel> {
        let configuration = self.configuration
        return ClientBootstrap(group: loop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                do {
                    let sync = channel.pipeline.syncOperations
                    if let tls = configuration.tls {
                        try sync.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: configuration.serverName))
                    }
                    try sync.addHandler(RedisHandler())
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .connect(to: configuration.address)
            .flatMap { channel in
                self.handshake(channel).map { channel }.flatMapErrorThrowing { error in
                    channel.close(promise: nil)
                    throw error
                }
            }
    }

    /// `AUTH` and `SELECT`, pipelined, before any command of the gateway.
    private func handshake(_ channel: Channel) -> EventLoopFuture<Void> {
        var steps: [EventLoopFuture<RESPValue>] = []
        if let password = configuration.password {
            var auth = [Array("AUTH".utf8)]
            if let user = configuration.username { auth.append(Array(user.utf8)) }
            auth.append(Array(password.utf8))
            steps.append(write(auth, to: channel))
        }
        if configuration.database != 0 {
            steps.append(write([Array("SELECT".utf8), Array(String(configuration.database).utf8)], to: channel))
        }
        guard !steps.isEmpty else { return loop.makeSucceededVoidFuture() }
        return EventLoopFuture.whenAllSucceed(steps, on: loop).flatMapThrowing { replies in
            for reply in replies {
                // The server's message names the problem (WRONGPASS, DB index out of range), never the password.
                if case .error(let message) = reply { throw RedisError("redis refused the connection setup: \(message)") }
            }
        }
    }

    private func drop(_ channel: Channel) {
        if self.channel === channel { self.channel = nil }
        channel.close(promise: nil)
    }

    func close() {
        closed = true
        if let channel { drop(channel) }
    }
}
