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

    @Test("never forgotten before the window ends; forgotten at most two ticks (a 32nd of the window) after it", arguments: [Int64(12_000), 1_000, 62_000, 3])
    func expiry(window: Int64) {
        let tick = max(window / 64, 1)
        // Early and late in a tick; at a real time.
        for start in [Int64(5_000), 5_000 + tick - 1, 1_764_825_600_123] {
            let store = MemoryNonceStore(windowMilliseconds: window, capacity: 1000)
            let nonce = Array("n\(start)".utf8)
            #expect(store.record(clientKey: client, nonce: nonce, now: start) == .recorded)
            for t in stride(from: start + 1, to: start + window, by: Int(max(window / 13, 1))) {
                #expect(store.record(clientKey: client, nonce: nonce, now: t) == .replayed, "forgotten early at \(t)")
            }
            #expect(store.record(clientKey: client, nonce: nonce, now: start + window - 1) == .replayed, "forgotten early")
            #expect(store.record(clientKey: client, nonce: nonce, now: start + window + 2 * tick) == .recorded)
            #expect(store.count(now: start + window + 2 * tick) == 1)
        }
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
        #expect(store.count(now: 1_000) == 2_000)
    }

    @Test("a shard's table against a model: replays within the lifetime, expiry by probe, sweep and purge, growth and shrinking, keys sharing their low or high bits, ticks wrapping past 2^32, a clock stepping back")
    func nonceTable() {
        // Ticks apart, as the table compares them (a signed 32-bit difference).
        func age(_ recorded: UInt32, at t: UInt32) -> Int32 { Int32(truncatingIfNeeded: t &- recorded) }
        for seed in 0..<4 {
            // Seeded: a failure replays the same operations.
            var generator = HeaderFieldsTests.Random(state: 0x9E37_79B9_7F4A_7C15 &+ UInt64(seed))
            var table = NonceTable(expected: seed == 0 ? 0 : 1_000)
            // What the table tells apart: the low word and 31 bits of the high one.
            var model: [MemoryNonceStore.Key: UInt32] = [:]
            let lifetime: Int32 = 64
            // Start where the 32-bit tick wraps during the run (seed 1) or not.
            var now: UInt32 = seed == 1 ? UInt32.max - 300 : 1_000
            var latest = now
            var pool: [MemoryNonceStore.Key] = []
            for i in 0..<60 { pool.append(.init(high: 15, low: UInt64(i + 1) << 20)) }   // one high word
            for i in 0..<60 { pool.append(.init(high: UInt64(i + 1), low: 15)) }         // one home slot
            var maxSlots = 0
            for step in 0..<60_000 {
                // Mostly forward, sometimes a burst, sometimes back a little.
                let r = Int.random(in: 0..<1_000, using: &generator)
                if r < 30 { now &+= 1 } else if r == 999 { now &-= 3 } else if r == 998 { now &+= 200 }
                if age(latest, at: now) > 0 { latest = now }
                let key: MemoryNonceStore.Key
                if step % 7 == 0, !pool.isEmpty {
                    key = pool.randomElement(using: &generator)!
                } else {
                    key = .init(high: generator.next(), low: generator.next())
                    if step % 5 == 0 { pool.append(key) }
                }
                let modelKey = MemoryNonceStore.Key(high: key.high & 0x7FFF_FFFF, low: key.low)
                let live = model[modelKey].map { age($0, at: now) <= lifetime } ?? false
                // Expired by the latest time seen, live again at a clock stepped
                // back: forgotten or not, depending on whether it was met since.
                let either = live && age(model[modelKey]!, at: latest) > lifetime
                let answer = table.record(low: key.low, high: key.high, now: now, lifetime: lifetime, cap: 1 << 30)
                #expect(either || answer == (live ? .replayed : .recorded), "step \(step)")
                if answer == .recorded { model[modelKey] = now }
                maxSlots = max(maxSlots, table.slots.count)
                #expect(table.count * 2 <= table.slots.count)
            }
            let live = model.filter { age($0.value, at: now) <= lifetime }, expired = model.filter { age($0.value, at: now) > lifetime }
            table.purge(now: now, lifetime: lifetime)
            #expect(table.count == live.count)
            #expect(table.slots.filter { $0.meta != 0 }.count == live.count)
            // Every live key still found where its probe looks; then none that expired.
            #expect(live.keys.allSatisfy { table.record(low: $0.low, high: $0.high, now: now, lifetime: lifetime, cap: 1 << 30) == .replayed })
            #expect(expired.keys.allSatisfy { !table.contains(low: $0.low, high: $0.high, now: now, lifetime: lifetime) })
            #expect(live.keys.allSatisfy { table.contains(low: $0.low, high: $0.high, now: now, lifetime: lifetime) })
            // Quiet: a few keys a tick; the sweep removes the rest and the table shrinks.
            for _ in 0..<20_000 {
                now &+= 1
                _ = table.record(low: generator.next(), high: generator.next(), now: now, lifetime: lifetime, cap: 1 << 30)
            }
            #expect(table.slots.count < maxSlots)
            #expect(table.count <= 2 * Int(lifetime) + 2)
        }
    }

    @Test("a full shard refuses, and frees up by purging once a tick, not once a request")
    func nonceTableFull() {
        var table = NonceTable()
        for i in 0..<8 { #expect(table.record(low: UInt64(i), high: 1, now: 10, lifetime: 4, cap: 8) == .recorded) }
        #expect(table.record(low: 100, high: 1, now: 10, lifetime: 4, cap: 8) == .full)
        #expect(table.record(low: 3, high: 1, now: 11, lifetime: 4, cap: 8) == .replayed)
        #expect(table.record(low: 101, high: 1, now: 14, lifetime: 4, cap: 8) == .full)   // purged: nothing expired yet
        #expect(table.record(low: 102, high: 1, now: 14, lifetime: 4, cap: 8) == .full)   // no second purge this tick
        #expect(table.record(low: 103, high: 1, now: 15, lifetime: 4, cap: 8) == .recorded)
        table.purge(now: 15, lifetime: 4)
        #expect(table.count == 1)
    }

    @Test("many nonces over several windows: each recorded once, replayed within its window, the count following the live ones")
    func manyOverTime() {
        let store = MemoryNonceStore(windowMilliseconds: 1_000, capacity: 1_000_000)
        var now: Int64 = 50_000, last = now
        for round in 0..<6 {
            last = now
            let nonces = (0..<3_000).map { Array("r\(round)-\($0)".utf8) }
            #expect(nonces.allSatisfy { store.record(clientKey: client, nonce: $0, now: now) == .recorded })
            #expect(nonces.allSatisfy { store.record(clientKey: client, nonce: $0, now: now + 999) == .replayed })
            now += 2_000
        }
        // Only the last round's nonces are still live; a window on, none.
        #expect(store.count(now: last + 999) == 3_000)
        #expect(store.count(now: last + 1_100) == 0)
    }

    @Test("entries: the keys the tables hold (what the cap is checked against); a replay adds none; a purge takes the expired out; a full store holds its cap")
    func entries() {
        let store = MemoryNonceStore(windowMilliseconds: 1_000, capacity: 1_600)
        #expect(store.entries == 0)
        let nonces = (0..<500).map { Array("e-\($0)".utf8) }
        #expect(nonces.allSatisfy { store.record(clientKey: client, nonce: $0, now: 10_000) == .recorded })
        #expect(store.entries == 500)
        #expect(nonces.allSatisfy { store.record(clientKey: client, nonce: $0, now: 10_500) == .replayed })
        #expect(store.entries == 500)
        #expect(store.count(now: 12_000) == 0)
        #expect(store.entries == 0)
        // 5,000 keys over 16 shards of 100 each: every shard fills (about
        // 312 a shard are offered), and none holds more than its share.
        let answers = (0..<5_000).map { store.record(clientKey: client, nonce: Array("f-\($0)".utf8), now: 20_000) }
        #expect(answers.filter { $0 == .recorded }.count == 1_600)
        #expect(store.entries == store.capacity)
    }
}
