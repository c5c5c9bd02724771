/// One shard of the in-memory nonce store: every key with the tick (time
/// step) it was recorded at, in one open-addressed table with linear probing,
/// at most half full. One table instead of one per time bucket: a lookup is
/// one probe sequence, one cache miss at millions of keys, where a table per
/// bucket cost a miss for each live bucket (up to five).
///
/// Expired keys go three ways; only the last (and growing the table) is a
/// pass over the whole table:
/// - a probe that meets one removes it (backward-shift deletion: the keys
///   after it in its run move up, so no marker is left and no later probe
///   runs longer for it);
/// - each insertion also sweeps the next few slots from a cursor (memory in
///   order: cheap), so that a key no probe meets is still removed, at a
///   steady rate within a third of the window to one window after it
///   expired (as the table is two to four times the keys it holds);
/// - when the shard is at its cap, the whole table is swept once, at most
///   once a tick, before it refuses (so a full store frees up as soon as
///   the window passes, and an attacker holding it full costs one sweep a
///   tick, not one a request).
///
/// A slot is 16 bytes: the key's low word (where it probes) and a word of
/// its high bits with the tick: bit 63 set (an empty slot is zero), 31 bits
/// of the key's high word, the tick's low 32 bits. 95 bits of a keyed hash
/// tell keys apart (a false replay among millions of live keys: below
/// 2^-70). Ticks compare as a signed 32-bit difference: a key recorded in
/// the future (the clock stepped back) stays live until its time comes.
struct NonceTable: ~Copyable {
    struct Slot: Equatable {
        var low: UInt64
        var meta: UInt64
        static let empty = Slot(low: 0, meta: 0)
    }

    /// The slots, owned (a noncopyable table: no copy-on-write checks on
    /// the request path).
    private(set) var slots: UnsafeMutableBufferPointer<Slot>
    /// Slots in use: live keys, and expired ones not yet removed.
    private(set) var count = 0
    private var cursor = 0
    private var lastPurge: UInt32?
    /// Slots swept at each insertion.
    static let sweepStep = 8
    static let minimumSize = 16

    init(expected: Int = 0) {
        slots = Self.allocate(Self.size(for: expected))
    }

    deinit { slots.deallocate() }

    private static func allocate(_ size: Int) -> UnsafeMutableBufferPointer<Slot> {
        let slots = UnsafeMutableBufferPointer<Slot>.allocate(capacity: size)
        slots.initialize(repeating: .empty)
        return slots
    }

    /// The smallest power of two at least twice `keys` (at least 16 slots).
    static func size(for keys: Int) -> Int {
        var size = minimumSize
        while size < keys * 2 + 2 && size < 1 << 30 { size <<= 1 }
        return size
    }

    /// The slot word of a key's high bits (without the tick).
    @inline(__always)
    static func identity(high: UInt64) -> UInt64 { 1 << 63 | (high & 0x7FFF_FFFF) << 32 }

    /// Whether a key recorded at `recorded` is still remembered at `now`.
    @inline(__always)
    static func isLive(_ meta: UInt64, now: UInt32, lifetime: Int32) -> Bool {
        Int32(truncatingIfNeeded: now &- UInt32(truncatingIfNeeded: meta)) <= lifetime
    }

    /// Whether `slot` holds the key of this low word and identity (its tick aside).
    @inline(__always)
    static func holds(_ slot: Slot, low: UInt64, identity: UInt64) -> Bool {
        slot.low == low && slot.meta & ~0xFFFF_FFFF == identity
    }

    typealias Answer = MemoryNonceStore.Answer

    /// Whether the key is live here (tests; changes nothing).
    func contains(low: UInt64, high: UInt64, now: UInt32, lifetime: Int32) -> Bool {
        let identity = Self.identity(high: high), mask = slots.count - 1
        var i = Int(truncatingIfNeeded: low) & mask
        while slots[i].meta != 0 {
            if Self.holds(slots[i], low: low, identity: identity) { return Self.isLive(slots[i].meta, now: now, lifetime: lifetime) }
            i = (i &+ 1) & mask
        }
        return false
    }

    /// Records the key at `now` unless it is live here; `lifetime` is how
    /// many ticks a key stays live; `cap` the most slots in use.
    mutating func record(low: UInt64, high: UInt64, now: UInt32, lifetime: Int32, cap: Int) -> Answer {
        let identity = Self.identity(high: high), meta = identity | UInt64(now)
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: low) & mask
        while true {
            let slot = slots[i]
            if slot.meta == 0 { break }
            if !Self.isLive(slot.meta, now: now, lifetime: lifetime) {
                // Removed in place; look at what moved into `i`.
                delete(at: i)
                continue
            }
            if Self.holds(slot, low: low, identity: identity) { return .replayed }
            i = (i &+ 1) & mask
        }
        if count >= cap {
            guard lastPurge != now else { return .full }
            lastPurge = now
            purge(now: now, lifetime: lifetime)
            if count >= cap { return .full }
            return insert(low: low, meta: meta, now: now, lifetime: lifetime)
        }
        if (count + 1) * 2 > slots.count { return insert(low: low, meta: meta, now: now, lifetime: lifetime) }
        slots[i] = Slot(low: low, meta: meta)
        count += 1
        sweep(now: now, lifetime: lifetime)
        return .recorded
    }

    /// Places a key known not to be live here, after the table moved (a
    /// purge) or must grow.
    private mutating func insert(low: UInt64, meta: UInt64, now: UInt32, lifetime: Int32) -> Answer {
        if (count + 1) * 2 > slots.count { rebuild(size: slots.count * 2, now: now, lifetime: lifetime) }
        Self.place(Slot(low: low, meta: meta), in: slots)
        count += 1
        return .recorded
    }

    /// Puts `slot` in the first empty slot from its home on.
    private static func place(_ slot: Slot, in slots: UnsafeMutableBufferPointer<Slot>) {
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: slot.low) & mask
        while slots[i].meta != 0 { i = (i &+ 1) & mask }
        slots[i] = slot
    }

    /// Removes the key at `i` if it has expired (the slot then holds the
    /// next key of its run, if any, to look at again); whether it did.
    private mutating func removeIfExpired(at i: Int, now: UInt32, lifetime: Int32) -> Bool {
        let meta = slots[i].meta
        guard meta != 0 && !Self.isLive(meta, now: now, lifetime: lifetime) else { return false }
        delete(at: i)
        return true
    }

    /// Removes the slot at `hole` by moving up each later key of its run
    /// that may live there (its home is not cyclically between the hole and
    /// where it lies), so that every key stays reachable from its home
    /// without a marker left behind (Knuth's Algorithm R).
    private mutating func delete(at hole: Int) {
        let mask = slots.count - 1
        var hole = hole
        var j = hole
        while true {
            j = (j &+ 1) & mask
            let slot = slots[j]
            if slot.meta == 0 { break }
            let home = Int(truncatingIfNeeded: slot.low) & mask
            // Stays when its home lies in (hole, j], cyclically.
            let stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j)
            if stays { continue }
            slots[hole] = slot
            hole = j
        }
        slots[hole] = .empty
        count -= 1
    }

    /// Sweeps the next `sweepStep` slots from the cursor (a removal is a
    /// step); at the end of each pass, a table less than an eighth full is
    /// rebuilt smaller (memory follows the load down as well as up).
    private mutating func sweep(now: UInt32, lifetime: Int32) {
        var i = cursor
        for _ in 0..<Self.sweepStep {
            if removeIfExpired(at: i, now: now, lifetime: lifetime) { continue }
            i += 1
            if i == slots.count {
                i = 0
                if count * 8 < slots.count && slots.count > Self.minimumSize {
                    rebuild(size: Self.size(for: count * 2), now: now, lifetime: lifetime)
                    return
                }
            }
        }
        cursor = i
    }

    /// Removes every expired key.
    mutating func purge(now: UInt32, lifetime: Int32) {
        var i = 0
        while i < slots.count {
            if !removeIfExpired(at: i, now: now, lifetime: lifetime) { i += 1 }
        }
    }

    /// The live keys, re-placed in a table of `size` slots.
    private mutating func rebuild(size: Int, now: UInt32, lifetime: Int32) {
        let fresh = Self.allocate(size)
        var live = 0
        for slot in slots where slot.meta != 0 && Self.isLive(slot.meta, now: now, lifetime: lifetime) {
            Self.place(slot, in: fresh)
            live += 1
        }
        slots.deallocate()
        slots = fresh
        count = live
        cursor = 0
    }
}
