import Foundation
import Passport
import Testing

@testable import Gateway

/// `PassportVerifier(source: .url)` against a real HTTP server (Python's
/// http.server over a folder whose JWK Set the test rewrites).
@Suite("passport verifier with a JWK Set URL", .serialized)
struct PassportVerifierFetchTests {
    @Test("an unknown kid fetches the set again, at most once per interval; a failed fetch keeps the old keys")
    func refetch() async throws {
        let dir = try TestSupport.temporaryDirectory("jwks-url")
        let a = PassportSigner(key: try .generate(kid: "a"))
        let b = PassportSigner(key: try .generate(kid: "b"))
        let c = PassportSigner(key: try .generate(kid: "c"))
        try JWKSet(keys: [a.key.publicJWK]).json().write(to: URL(fileURLWithPath: dir + "/jwks.json"))
        let port = try TestSupport.freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = ["python3", "-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", dir]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try TestSupport.launch(server)
        // SIGKILL: a child of the test process may inherit a blocked SIGTERM.
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        let url = URL(string: "http://127.0.0.1:\(port)/jwks.json")!
        var verifier: PassportVerifier?
        for _ in 0..<50 where verifier == nil {
            verifier = try? await PassportVerifier(source: .url(url), audience: "svc", minimumRefetchInterval: 60)
            if verifier == nil { try await Task.sleep(for: .milliseconds(100)) }
        }
        let v = try #require(verifier, "the JWK Set server did not come up")
        let now = PassportVerifier.currentTime()
        let claims = PassportClaims(issuer: "gw", audience: "svc", issuedAt: now, expiresAt: now + 300, id: "j", methods: [], level: 1)
        #expect(try await v.verify(a.mint(claims)).id == "j")
        #expect(v.knownKeyIDs == ["a"])

        // Key b is published; a token signed with it makes the verifier fetch again.
        try JWKSet(keys: [b.key.publicJWK, a.key.publicJWK]).json().write(to: URL(fileURLWithPath: dir + "/jwks.json"))
        // The first fetch attempt happened at init; within the interval an unknown kid is refused without fetching.
        await #expect(throws: PassportError.unknownKey("b")) { try await v.verify(b.mint(claims), now: now + 1) }
        #expect(v.knownKeyIDs == ["a"])
        // After the interval it fetches and accepts.
        #expect(try await v.verify(b.mint(claims), now: now + 61).id == "j")
        #expect(v.knownKeyIDs == ["a", "b"])
        // Right after, a forged kid does not cause another fetch.
        try JWKSet(keys: [c.key.publicJWK]).json().write(to: URL(fileURLWithPath: dir + "/jwks.json"))
        await #expect(throws: PassportError.unknownKey("c")) { try await v.verify(c.mint(claims), now: now + 62) }
        #expect(v.knownKeyIDs == ["a", "b"])
        // The server gone: the keys it had stay.
        kill(server.processIdentifier, SIGKILL)
        for _ in 0..<100 where server.isRunning { try await Task.sleep(for: .milliseconds(20)) }
        await #expect(throws: PassportError.unknownKey("c")) { try await v.verify(c.mint(claims), now: now + 200) }
        #expect(try await v.verify(b.mint(claims), now: now + 201).id == "j")
    }
}
