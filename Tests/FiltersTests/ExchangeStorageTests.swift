import Testing

@testable import Filters

/// Keys of both kinds the exchange stores: class values (kept as the
/// reference) and value types (kept in a box).
private final class Box: Sendable {
    let n: Int
    init(_ n: Int) { self.n = n }
}
private enum K0: ExchangeKey { typealias Value = Box }
private enum K1: ExchangeKey { typealias Value = String }
private enum K2: ExchangeKey { typealias Value = Int }
private enum K3: ExchangeKey { typealias Value = Box }
private enum K4: ExchangeKey { typealias Value = [Int] }
private enum K5: ExchangeKey { typealias Value = String }
private enum K6: ExchangeKey { typealias Value = Box }
private enum K7: ExchangeKey { typealias Value = Principal }

@Suite("exchange storage")
struct ExchangeStorageTests {
    /// Every key's value as the exchange answers it (nil where unset).
    private func snapshot(_ e: Exchange) -> [String] {
        [e[K0.self].map { "\($0.n)" }, e[K1.self], e[K2.self].map { "\($0)" }, e[K3.self].map { "\($0.n)" },
         e[K4.self].map { "\($0)" }, e[K5.self], e[K6.self].map { "\($0.n)" }].map { $0 ?? "-" }
    }

    @Test("seven keys (four kept inside the exchange, the rest beyond): set, overwrite, remove from the middle, add again")
    func storage() {
        let e = makeExchange()
        #expect(snapshot(e) == ["-", "-", "-", "-", "-", "-", "-"])
        e[K0.self] = Box(0); e[K1.self] = "one"; e[K2.self] = 2; e[K3.self] = Box(3)
        e[K4.self] = [4, 4]; e[K5.self] = "five"; e[K6.self] = Box(6)
        #expect(snapshot(e) == ["0", "one", "2", "3", "[4, 4]", "five", "6"])
        e[K1.self] = "uno"; e[K6.self] = Box(60); e[K2.self] = 20
        #expect(snapshot(e) == ["0", "uno", "20", "3", "[4, 4]", "five", "60"])
        // A removal moves the last entry into the gap: every other key still answers.
        e[K1.self] = nil
        #expect(snapshot(e) == ["0", "-", "20", "3", "[4, 4]", "five", "60"])
        e[K0.self] = nil; e[K5.self] = nil
        #expect(snapshot(e) == ["-", "-", "20", "3", "[4, 4]", "-", "60"])
        e[K6.self] = nil; e[K4.self] = nil; e[K3.self] = nil; e[K2.self] = nil
        #expect(snapshot(e) == ["-", "-", "-", "-", "-", "-", "-"])
        e[K2.self] = nil  // removing an absent key changes nothing
        e[K5.self] = "cinq"; e[K0.self] = Box(100)
        #expect(snapshot(e) == ["100", "-", "-", "-", "-", "cinq", "-"])
    }

    @Test("a principal is kept as its one object and read back around the same object; overwritten and removed like the others")
    func principalStoredByReference() {
        func principal(_ subject: String) -> Principal {
            Principal(subject: subject, session: nil, scopes: ["a"], method: "jwt", expiresAt: nil, rawClaims: [], confirmation: nil, credentialID: "id-" + subject)
        }
        let e = makeExchange()
        let first = principal("first")
        e[K1.self] = "one"
        e[K7.self] = first
        #expect(e[K7.self]?.exchangeReference === first.exchangeReference && e[K7.self] == first && e[K1.self] == "one")
        let second = principal("second")
        e[K7.self] = second
        #expect(e[K7.self]?.exchangeReference === second.exchangeReference && e[K7.self]?.subject == "second")
        e[K7.self] = nil
        #expect(e[K7.self] == nil && e[K1.self] == "one")
        // Four other keys first: the value lands past the exchange's own fields.
        e[K0.self] = Box(0); e[K2.self] = 2; e[K3.self] = Box(3); e[K4.self] = [4]
        e[K7.self] = first
        #expect(e[K7.self]?.exchangeReference === first.exchangeReference && e[K4.self] == [4] && e[K0.self]?.n == 0)
    }
}
