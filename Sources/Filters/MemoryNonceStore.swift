import Passport
import Synchronization

/// The in-process nonce store of the app channel (PROTOCOL 2.3): remembers
/// each (client key, nonce) for the replay window and says whether it was
/// seen before, atomically.
///
/// - No global lock: 16 shards, each with its own lock, chosen by the key's hash.
/// - One table a shard (`NonceTable`): each key with the tick it was
///   recorded at (a tick is a 64th of the window), so a lookup is one probe
///   sequence, and an expired key is removed where a probe or the table's
///   sweep meets it. A key is remembered for at least the window and at
///   most two ticks longer.
/// - A hard cap: when a shard is full it refuses (`full`, which the filter
///   turns into 503 `replay_store_unavailable`) rather than forget a nonce
///   early and let its replay through.
/// - Keys are 128 bits of a keyed hash of (client key ‖ nonce), not the
///   nonces: SipHash-2-4-128 under a random key of the store's own, so that
///   no client can choose or predict where its keys land (grinding nonces
///   to pile keys into one shard or one run of slots gets nowhere). A
///   shard's table is indexed by the key's low bits; the shard comes from
///   its high bits. (The Redis store keys by SHA-256 instead: every replica
///   must compute the same key.)
public final class MemoryNonceStore: Sendable {
    public enum Answer: Equatable, Sendable {
        case recorded
        case replayed
        case full
    }

    struct Key: Hashable {
        let high: UInt64
        let low: UInt64
    }

    /// One shard's lock (an array cannot hold a `Mutex` directly).
    final class ShardLock: Sendable {
        let state = Mutex(NonceTable())
    }

    public let window: Int64
    public let capacity: Int
    /// Milliseconds a tick: a 64th of the window (at least 1).
    private let tickWidth: Int64
    /// Ticks a key stays live: enough that it is never forgotten before the
    /// window has passed (recorded late in its tick, asked early in one).
    private let lifetime: Int32
    private let perShard: Int
    private let shards: [ShardLock]
    /// The key of the keyed hash that makes nonce keys (random per store).
    let hashKey: (UInt64, UInt64)
    static let shardBits = 4
    static let shardCount = 1 << shardBits

    /// - Parameters:
    ///   - windowMilliseconds: how long a nonce is remembered (`max_age + max_skew`).
    ///   - capacity: the most nonces remembered at once, over all shards.
    public convenience init(windowMilliseconds: Int64, capacity: Int) {
        var key: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &key) { Sodium.fillRandom($0) }
        self.init(windowMilliseconds: windowMilliseconds, capacity: capacity, hashKey: key)
    }

    /// With a given hash key (tests pin it to check the keys against vectors).
    init(windowMilliseconds: Int64, capacity: Int, hashKey: (UInt64, UInt64)) {
        self.hashKey = hashKey
        window = max(windowMilliseconds, 1)
        self.capacity = max(capacity, Self.shardCount)
        tickWidth = max(window / 64, 1)
        // now - recorded < window spans at most ceil(window / tickWidth) ticks.
        lifetime = Int32(clamping: (window + tickWidth - 1) / tickWidth)
        perShard = self.capacity / Self.shardCount
        shards = (0..<Self.shardCount).map { _ in ShardLock() }
    }

    /// SipHash-2-4-128 of (client key ‖ nonce) under the store's key, as two
    /// little-endian words (one short keyed hash: no SHA-256 context, which
    /// swift-crypto allocates, and no second hash for the tables).
    func key(clientKey: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer) -> Key {
        let (high, low) = Sodium.sipHash128(key: hashKey, clientKey, nonce)
        return Key(high: high, low: low)
    }

    func key(clientKey: [UInt8], nonce: [UInt8]) -> Key {
        clientKey.withUnsafeBytes { c in nonce.withUnsafeBytes { n in key(clientKey: c, nonce: n) } }
    }

    /// `record` with the pair in arrays.
    public func record(clientKey: [UInt8], nonce: [UInt8], now: Int64) -> Answer {
        clientKey.withUnsafeBytes { c in nonce.withUnsafeBytes { n in record(clientKey: c, nonce: n, now: now) } }
    }

    /// The tick of `now` (its low 32 bits: ticks compare by difference).
    private func tick(_ now: Int64) -> UInt32 { UInt32(truncatingIfNeeded: now / tickWidth) }

    /// Records the nonce at `now` (Unix milliseconds) unless it was seen within the window.
    public func record(clientKey: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, now: Int64) -> Answer {
        let key = key(clientKey: clientKey, nonce: nonce)
        let tick = tick(now), lifetime = lifetime, cap = perShard
        // The shard from the key's high bits (the tables index by its low
        // ones); both are a keyed hash's, so a client cannot grind nonces
        // into one shard (to fill it: its cap refuses everyone's nonces there).
        return shards[Int(truncatingIfNeeded: key.high >> UInt64(64 - Self.shardBits))].state.withLock { table in
            table.record(low: key.low, high: key.high, now: tick, lifetime: lifetime, cap: cap)
        }
    }

    /// The keys the tables hold: live ones, and expired ones not yet removed
    /// (a probe or an insertion's sweep removes them within a window of
    /// expiring). What a shard's cap is checked against, so the figure to
    /// watch against `capacity` (the `gateway_nonce_store_entries` gauge).
    /// One lock a shard, no pass over the tables: cheap enough for a scrape.
    public var entries: Int {
        shards.reduce(0) { sum, shard in sum + shard.state.withLock { $0.count } }
    }

    /// Nonces remembered at `now` (for tests): expired ones are removed
    /// first, a pass over every table.
    public func count(now: Int64) -> Int {
        let tick = tick(now), lifetime = lifetime
        return shards.reduce(0) { sum, shard in
            sum + shard.state.withLock { table in
                table.purge(now: tick, lifetime: lifetime)
                return table.count
            }
        }
    }
}
