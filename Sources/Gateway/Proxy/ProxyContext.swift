import Logging
import NIOCore
import Passport

/// What belongs to one event loop: the pools of every upstream and the
/// request-id randomness. Only touched on its own loop.
final class LoopLocal {
    let pools: [String: any UpstreamPooling]
    private var random = [UInt8](repeating: 0, count: 4096)
    private var randomOffset = 4096

    /// Response buffers the channel has written, kept for the next
    /// responses on this loop to fill again: a buffer whose bytes went out
    /// is held by nothing else, so clearing it keeps its storage (a fresh
    /// `ByteBuffer` is two allocations, its object and its bytes). One
    /// still shared (a write the socket has not taken yet) is never
    /// written into: `clear` gives it fresh storage. A few per loop, not
    /// one per connection, so an idle connection holds none.
    private var spareBuffers: [ByteBuffer] = []
    private static let spareLimit = 8
    private static let spareCapacityLimit = 16 << 10

    /// The pool the last request asked for, by name: most requests on a
    /// loop name the upstream their route names, with the route's own
    /// string, which compares equal at once (no hash of the name).
    private var lastPool: (name: String, pool: any UpstreamPooling)?

    init(pools: [String: any UpstreamPooling]) {
        self.pools = pools
        spareBuffers.reserveCapacity(Self.spareLimit)
    }

    /// The pool of the upstream named `name`.
    func pool(named name: String) -> (any UpstreamPooling)? {
        if let last = lastPool, last.name == name { return last.pool }
        guard let pool = pools[name] else { return nil }
        lastPool = (name, pool)
        return pool
    }

    /// An empty buffer with room for `capacity` bytes: a kept one when there is one.
    func writeBuffer(capacity: Int, allocator: ByteBufferAllocator) -> ByteBuffer {
        guard var buffer = spareBuffers.popLast() else { return allocator.buffer(capacity: capacity) }
        buffer.clear(minimumCapacity: capacity)
        return buffer
    }

    /// Keeps `buffer` (written to the channel already) for `writeBuffer`.
    func recycle(_ buffer: consuming ByteBuffer) {
        guard spareBuffers.count < Self.spareLimit, buffer.capacity <= Self.spareCapacityLimit else { return }
        spareBuffers.append(buffer)
    }

    /// 32 lowercase hex characters from libsodium's CSPRNG, drawn 4 KiB at a
    /// time so that a request costs no system call.
    func newRequestID() -> String {
        if randomOffset + 16 > random.count {
            random.withUnsafeMutableBytes { Sodium.fillRandom($0) }
            randomOffset = 0
        }
        let start = randomOffset
        randomOffset += 16
        return random.withUnsafeBufferPointer { bytes in
            String(unsafeUninitializedCapacity: 32) { out in
                let hex: StaticString = "0123456789abcdef"
                hex.withUTF8Buffer { digits in
                    for i in 0..<16 {
                        let b = bytes[start + i]
                        out[2 * i] = digits[Int(b >> 4)]
                        out[2 * i + 1] = digits[Int(b & 0x0F)]
                    }
                }
                return 32
            }
        }
    }
}

@available(*, unavailable)
extension LoopLocal: Sendable {}

/// The `LoopLocal` of every event loop of the group, built once at start.
final class LoopDirectory: @unchecked Sendable {
    private let byLoop: [ObjectIdentifier: LoopLocal]
    private let loops: [EventLoop]

    init(group: EventLoopGroup, upstreams: [String: UpstreamDefinition]) {
        var metrics: [String: UpstreamMetrics] = [:]
        for name in upstreams.keys { metrics[name] = UpstreamMetrics(upstream: name) }
        var byLoop: [ObjectIdentifier: LoopLocal] = [:]
        var loops: [EventLoop] = []
        for loop in group.makeIterator() {
            var pools: [String: any UpstreamPooling] = [:]
            for (name, def) in upstreams {
                pools[name] = def.http2 ? H2UpstreamPool(definition: def, eventLoop: loop, metrics: metrics[name]!)
                    : UpstreamPool(definition: def, eventLoop: loop, metrics: metrics[name]!)
            }
            byLoop[ObjectIdentifier(loop)] = LoopLocal(pools: pools)
            loops.append(loop)
        }
        self.byLoop = byLoop
        self.loops = loops
    }

    /// The loop's state; every loop of the group has one.
    func local(for loop: EventLoop) -> LoopLocal? { byLoop[ObjectIdentifier(loop)] }

    func shutdown() {
        for loop in loops {
            loop.execute { [self] in
                // On the loop that owns them.
                guard let local = self.local(for: loop) else { return }
                for p in local.pools.values { p.shutdown() }
            }
        }
    }
}

/// What every downstream connection of a listener shares. A class: each
/// connection and each request holds it, and a reference is one retain
/// where a copy of the fields was a score of them.
final class ProxyEnvironment: @unchecked Sendable {
    let listener: ListenerRuntime
    let loops: LoopDirectory
    let accessLog: AccessLog
    let inFlight: InFlightCounter
    let logger: Logger
    /// Metrics for requests that matched no route.
    let unrouted: RouteMetrics

    init(listener: ListenerRuntime, loops: LoopDirectory, accessLog: AccessLog, inFlight: InFlightCounter, logger: Logger,
         unrouted: RouteMetrics) {
        self.listener = listener
        self.loops = loops
        self.accessLog = accessLog
        self.inFlight = inFlight
        self.logger = logger
        self.unrouted = unrouted
    }
}
