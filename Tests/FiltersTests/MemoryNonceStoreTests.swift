import Foundation
import Testing

@testable import Filters
import Passport

@Suite("in-process nonce store")
struct MemoryNonceStoreTests {
    let client = [UInt8](repeating: 1, count: 32)

    @Test("a nonce is recorded once; within the window it is a replay; the same nonce of another client key is not")
    func replay() {
        let store = MemoryNonceStore(windowMilliseconds: 12_000, capacity: 1000)
        let nonce = Array("nonce-0123456789".utf8)
        #expect(store.record(clientKey: client, nonce: nonce, now: 1_000_000) == .recorded)
        #expect(store.record(clientKey: client, nonce: nonce, now: 1_000_001) == .replayed)
        #expect(store.record(clientKey: client, nonce: nonce, now: 1_011_999) == .replayed)
        #expect(store.record(clientKey: [UInt8](repeating: 2, count: 32), nonce: nonce, now: 1_000_002) == .recorded)
    }

    @Test("the key is SipHash-2-4-128 of client key || nonce under the store's key (vectors from PyNaCl's siphashx24); each store draws its own key")
    func key() {
        // Key 00..0f, as in the SipHash paper's vectors; the outputs from
        // `nacl.hash.siphashx24(message, key=bytes(range(16)))`.
        let pinned = MemoryNonceStore(windowMilliseconds: 12_000, capacity: 1000,
                                      hashKey: (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908))
        let vectors: [([UInt8], [UInt8], String)] = [
            ([], [], "a3817f04ba25a8e66df67214c7550293"),
            (Array(0..<32), Array(32..<48), "f7e5aef549f782cf379055a608269b16"),
            ([UInt8](repeating: 9, count: 32), Array("nonce-0123456789".utf8), "1dd878afd34ea8eea24aaea402306747"),
        ]
        for (clientKey, nonce, hex) in vectors {
            let key = pinned.key(clientKey: clientKey, nonce: nonce)
            var bytes: [UInt8] = []
            withUnsafeBytes(of: key.high.littleEndian) { bytes += $0 }
            withUnsafeBytes(of: key.low.littleEndian) { bytes += $0 }
            #expect(Hex.encode(bytes) == hex)
        }
        // It hashes the concatenation; client keys are always 32 bytes, so the split is fixed.
        #expect(pinned.key(clientKey: [1, 2], nonce: [3]) == pinned.key(clientKey: [1], nonce: [2, 3]))
        // Two stores, two keys: the same nonce lands elsewhere in each.
        let a = MemoryNonceStore(windowMilliseconds: 12_000, capacity: 1000)
        let b = MemoryNonceStore(windowMilliseconds: 12_000, capacity: 1000)
        #expect(a.key(clientKey: client, nonce: [1]) != b.key(clientKey: client, nonce: [1]))
    }

    @Test("never forgotten before the window ends; forgotten (bucket by bucket) after it")
    func expiry() {
        let store = MemoryNonceStore(windowMilliseconds: 12_000, capacity: 1000)
        let nonce = Array("n".utf8)
        #expect(store.record(clientKey: client, nonce: nonce, now: 5_000) == .recorded)
        for t in stride(from: Int64(5_001), to: 17_000, by: 997) {
            #expect(store.record(clientKey: client, nonce: nonce, now: t) == .replayed, "forgotten early at \(t)")
        }
        // Well after the window (plus one bucket), the nonce's bucket is gone.
        #expect(store.record(clientKey: client, nonce: nonce, now: 5_000 + 12_000 + 3_001) == .recorded)
        #expect(store.count == 1)
    }

    @Test("full: refuses rather than forgets; room again once the window passes")
    func full() {
        let store = MemoryNonceStore(windowMilliseconds: 1_000, capacity: 32)
        var answers: [MemoryNonceStore.Answer] = []
        for i in 0..<200 { answers.append(store.record(clientKey: client, nonce: Array("n\(i)".utf8), now: 10_000)) }
        #expect(answers.filter { $0 == .recorded }.count <= 32)
        #expect(answers.contains(.full))
        // The recorded ones are still replays while full.
        let firstRecorded = answers.firstIndex(of: .recorded)!
        #expect(store.record(clientKey: client, nonce: Array("n\(firstRecorded)".utf8), now: 10_001) == .replayed)
        #expect(store.record(clientKey: client, nonce: Array("later".utf8), now: 12_000) == .recorded)
    }

    @Test("concurrent use from many threads: every nonce recorded exactly once")
    func concurrent() async {
        let store = MemoryNonceStore(windowMilliseconds: 60_000, capacity: 100_000)
        let client = self.client
        let recorded = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var n = 0
                    for i in 0..<2_000 where store.record(clientKey: client, nonce: Array("nonce-\(i)".utf8), now: 1_000) == .recorded { n += 1 }
                    return n
                }
            }
            return await group.reduce(0, +)
        }
        #expect(recorded == 2_000)
        #expect(store.count == 2_000)
    }

    @Test("a bucket's table: every key inserted is found, none other, through growth or sized beforehand; keys sharing their high or low bits; the all-zero key")
    func keyTable() {
        // Grown from the smallest size, and sized beforehand for fewer, as
        // many and more keys than it gets (a new bucket sized after the last).
        for expected in [0, 100, 5_082, 20_000] { keyTable(expected: expected) }
    }

    func keyTable(expected: Int) {
        var table = KeyTable(expected: expected)
        var inserted: [MemoryNonceStore.Key] = []
        var generator = SystemRandomNumberGenerator()
        // Keys equal in their high bits, or in their low bits (what a client
        // grinding nonces could produce), then random ones, enough to double
        // the table several times and to wrap probes around its end.
        for i in 0..<40 { inserted.append(.init(high: 15, low: UInt64(i + 1))) }
        for i in 0..<40 { inserted.append(.init(high: UInt64(i + 1) << 40, low: 15)) }
        for _ in 0..<5_000 { inserted.append(.init(high: generator.next(), low: generator.next())) }
        inserted.append(.init(high: 0, low: 0))
        inserted.append(.init(high: 0, low: 7))
        for key in inserted {
            let hash = key.slotHash
            #expect(!table.contains(key, hash: hash))
            table.insert(key, hash: hash)
            #expect(table.contains(key, hash: hash))
        }
        #expect(table.count == inserted.count)
        #expect(inserted.allSatisfy { table.contains($0, hash: $0.slotHash) })
        for other in [MemoryNonceStore.Key(high: 15, low: 41), .init(high: 41 << 40, low: 15), .init(high: 0, low: 8)] {
            #expect(!table.contains(other, hash: other.slotHash))
        }
        #expect((0..<1_000).allSatisfy { _ in
            let key = MemoryNonceStore.Key(high: generator.next(), low: generator.next())
            return !table.contains(key, hash: key.slotHash)
        })
        let zero = MemoryNonceStore.Key(high: 0, low: 0)
        #expect(!KeyTable().contains(zero, hash: zero.slotHash))
    }

    @Test("many nonces over several windows: each recorded once, replayed within its window, the count following the live buckets")
    func manyOverTime() {
        let store = MemoryNonceStore(windowMilliseconds: 1_000, capacity: 1_000_000)
        var now: Int64 = 50_000
        for round in 0..<6 {
            let nonces = (0..<3_000).map { Array("r\(round)-\($0)".utf8) }
            #expect(nonces.allSatisfy { store.record(clientKey: client, nonce: $0, now: now) == .recorded })
            #expect(nonces.allSatisfy { store.record(clientKey: client, nonce: $0, now: now + 999) == .replayed })
            now += 2_000
        }
        // Only the last round's buckets can still be live.
        #expect(store.count == 3_000)
    }
}
