import Passport
import Synchronization

/// The in-process nonce store of the app channel (PROTOCOL 2.3): remembers
/// each (client key, nonce) for the replay window and says whether it was
/// seen before, atomically.
///
/// - No global lock: 16 shards, each with its own lock, chosen by the key's hash.
/// - Expiry by time buckets: each shard files keys in buckets a quarter of the
///   window wide and drops whole buckets once they are older than the window,
///   so expiry costs nothing per entry.
/// - A hard cap: when a shard is full it refuses (`full`, which the filter
///   turns into 503 `replay_store_unavailable`) rather than forget a nonce
///   early and let its replay through.
/// - Keys are 128 bits of a keyed hash of (client key ‖ nonce), not the
///   nonces: SipHash-2-4-128 under a random key of the store's own, so that
///   no client can choose or predict where its keys land (grinding nonces
///   to pile keys into one shard or one run of slots gets nowhere). Each
///   time bucket is an open-addressed table (`KeyTable`) indexed by the
///   key's low bits; the shard comes from its high bits. (The Redis store
///   keys by SHA-256 instead: every replica must compute the same key.)
public final class MemoryNonceStore: Sendable {
    public enum Answer: Equatable, Sendable {
        case recorded
        case replayed
        case full
    }

    struct Key: Hashable {
        let high: UInt64
        let low: UInt64

        /// Where the key probes a bucket's table: its low bits, already
        /// unpredictable from outside (the key is a keyed hash).
        var slotHash: Int { Int(truncatingIfNeeded: low) }
    }

    struct Shard {
        /// Live buckets and their keys; a handful (the window is four
        /// bucket widths), searched in order.
        var buckets: [(index: Int64, keys: KeyTable)] = []
        var count = 0
    }

    /// One shard's lock (an array cannot hold a `Mutex` directly).
    final class ShardLock: Sendable {
        let state = Mutex(Shard())
    }

    public let window: Int64
    public let capacity: Int
    private let bucketWidth: Int64
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
        bucketWidth = max(window / 4, 1)
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

    /// Records the nonce at `now` (Unix milliseconds) unless it was seen within the window.
    public func record(clientKey: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer, now: Int64) -> Answer {
        let key = key(clientKey: clientKey, nonce: nonce)
        let current = now / bucketWidth
        // A bucket is live while any of its keys can be inside the window.
        let oldestLive = (now - window) / bucketWidth
        // The shard from the key's high bits (the tables index by its low
        // ones); both are a keyed hash's, so a client cannot grind nonces
        // into one shard (to fill it: its cap refuses everyone's nonces there).
        let hash = key.slotHash
        return shards[Int(truncatingIfNeeded: key.high >> UInt64(64 - Self.shardBits))].state.withLock { shard in
            var i = 0
            while i < shard.buckets.count {
                if shard.buckets[i].index < oldestLive {
                    shard.count -= shard.buckets[i].keys.count
                    shard.buckets.remove(at: i)
                } else {
                    if shard.buckets[i].keys.contains(key, hash: hash) { return .replayed }
                    i += 1
                }
            }
            guard shard.count < perShard else { return .full }
            if let b = shard.buckets.firstIndex(where: { $0.index == current }) {
                shard.buckets[b].keys.insert(key, hash: hash)
            } else {
                // Sized for as many keys as the newest bucket got: buckets
                // of one width fill alike, and a table grown by doubling
                // rehashed every key it held (at 2 million live keys, each
                // a cache miss) about once for each key it ended with.
                var keys = KeyTable(expected: shard.buckets.last?.keys.count ?? 0)
                keys.insert(key, hash: hash)
                shard.buckets.append((current, keys))
            }
            shard.count += 1
            return .recorded
        }
    }

    /// Nonces remembered now (for metrics and tests).
    public var count: Int { shards.reduce(0) { sum, shard in sum + shard.state.withLock { $0.count } } }
}

/// A set of nonce keys: open addressing with linear probing by `hash(key)`,
/// at most half full, doubled when it would be more. The all-zero key marks
/// an empty slot, so that key itself is kept in a flag.
struct KeyTable {
    private var slots: [MemoryNonceStore.Key]
    private var hasZero = false
    private(set) var count = 0

    /// Room for `expected` keys before the first doubling (at least 16 slots).
    init(expected: Int = 0) {
        var size = 16
        while size < expected * 2 + 2 && size < 1 << 30 { size <<= 1 }
        slots = [MemoryNonceStore.Key](repeating: .init(high: 0, low: 0), count: size)
    }

    /// Whether `key` is in the table; `hash` is `key.slotHash` (bits of a
    /// keyed hash, so that where a key lands cannot be chosen from outside).
    func contains(_ key: MemoryNonceStore.Key, hash: Int) -> Bool {
        if key.high == 0 && key.low == 0 { return hasZero }
        return slots.withUnsafeBufferPointer { slots in
            let mask = slots.count - 1
            var i = hash & mask
            while true {
                let slot = slots[i]
                if slot == key { return true }
                if slot.high == 0 && slot.low == 0 { return false }
                i = (i + 1) & mask
            }
        }
    }

    /// Adds a key not in the table (`contains` said so).
    mutating func insert(_ key: MemoryNonceStore.Key, hash: Int) {
        count += 1
        if key.high == 0 && key.low == 0 {
            hasZero = true
            return
        }
        if count * 2 > slots.count {
            let old = slots
            slots = [MemoryNonceStore.Key](repeating: .init(high: 0, low: 0), count: old.count * 2)
            for k in old where k.high != 0 || k.low != 0 { place(k, hash: k.slotHash) }
        }
        place(key, hash: hash)
    }

    private mutating func place(_ key: MemoryNonceStore.Key, hash: Int) {
        slots.withUnsafeMutableBufferPointer { slots in
            let mask = slots.count - 1
            var i = hash & mask
            while slots[i].high != 0 || slots[i].low != 0 { i = (i + 1) & mask }
            slots[i] = key
        }
    }
}
