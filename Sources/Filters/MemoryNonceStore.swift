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
/// - Keys are 128 bits of SHA-256(client key ‖ nonce), not the nonces.
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
        var buckets: [Int64: Set<Key>] = [:]
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
    static let shardCount = 16

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
        return shards[Int(key.low % UInt64(Self.shardCount))].state.withLock { shard in
            for (index, keys) in shard.buckets where index < oldestLive {
                shard.count -= keys.count
                shard.buckets[index] = nil
            }
            for (_, keys) in shard.buckets where keys.contains(key) { return .replayed }
            guard shard.count < perShard else { return .full }
            shard.buckets[current, default: []].insert(key)
            shard.count += 1
            return .recorded
        }
    }

    /// Nonces remembered now (for metrics and tests).
    public var count: Int { shards.reduce(0) { sum, shard in sum + shard.state.withLock { $0.count } } }
}
