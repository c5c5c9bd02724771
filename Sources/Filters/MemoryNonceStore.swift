import Crypto
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
/// - Keys are 128 bits of SHA-256(client key ‖ nonce), not the nonces. Each
///   time bucket is an open-addressed table (`KeyTable`); a key is hashed
///   once (SipHash, seeded per process) and that hash probes every live
///   bucket. Not the key's own bits: a client could grind nonces whose
///   SHA-256 shares them and pile its keys into one run of slots.
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
    static let shardBits = 4
    static let shardCount = 1 << shardBits

    /// - Parameters:
    ///   - windowMilliseconds: how long a nonce is remembered (`max_age + max_skew`).
    ///   - capacity: the most nonces remembered at once, over all shards.
    public init(windowMilliseconds: Int64, capacity: Int) {
        window = max(windowMilliseconds, 1)
        self.capacity = max(capacity, Self.shardCount)
        bucketWidth = max(window / 4, 1)
        perShard = self.capacity / Self.shardCount
        shards = (0..<Self.shardCount).map { _ in ShardLock() }
    }

    /// The first 128 bits of SHA-256(client key || nonce), big-endian,
    /// hashed in two parts (no joined copy, no digest array).
    static func key(clientKey: [UInt8], nonce: [UInt8]) -> Key {
        var hash = SHA256()
        clientKey.withUnsafeBytes { hash.update(bufferPointer: $0) }
        nonce.withUnsafeBytes { hash.update(bufferPointer: $0) }
        return hash.finalize().withUnsafeBytes { digest in
            Key(high: UInt64(bigEndian: digest.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                low: UInt64(bigEndian: digest.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        }
    }

    /// Records the nonce at `now` (Unix milliseconds) unless it was seen within the window.
    public func record(clientKey: [UInt8], nonce: [UInt8], now: Int64) -> Answer {
        let key = Self.key(clientKey: clientKey, nonce: nonce)
        let current = now / bucketWidth
        // A bucket is live while any of its keys can be inside the window.
        let oldestLive = (now - window) / bucketWidth
        // The shard from the hash's top bits (the tables index by its low
        // ones), not from the key: a client grinding nonces into one shard
        // would fill it, and its cap refuses everyone's nonces there.
        let hash = key.hashValue
        return shards[Int(UInt(bitPattern: hash) >> (UInt.bitWidth - Self.shardBits))].state.withLock { shard in
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

    /// Whether `key` is in the table; `hash` is `key.hashValue` (SipHash-1-3
    /// with the process's random seed, so that where a key lands cannot be
    /// chosen from outside), computed once by the caller for all the buckets it asks.
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
            for k in old where k.high != 0 || k.low != 0 { place(k, hash: k.hashValue) }
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
