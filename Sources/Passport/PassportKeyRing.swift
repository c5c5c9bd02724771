import Foundation

/// The gateway's passport keys: every Ed25519 private JWK file (`*.json`) in
/// one folder of the state directory. The newest file (by modification time,
/// then by name) is the active signing key; the others stay published in the
/// JWK Set for `retention` seconds after the ring was loaded (one passport
/// TTL), so every passport they signed before a restart or reload can still
/// be verified, and are then withdrawn.
public final class PassportKeyRing: Sendable {
    public let signer: PassportSigner
    public let loadedAt: Int64
    private let retired: [JWK]
    /// How long retired keys stay published after `loadedAt`.
    public let retention: Int64

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    public init(directory: String, retention: Int64 = 3600, now: Int64 = PassportVerifier.currentTime()) throws {
        let entries: [JWKFolder.Entry]
        do {
            entries = try JWKFolder.read(directory, hint: "make one: gateway keys generate --type ed25519 --kid K --out \(directory)/K.json")
        } catch let f as JWKFolder.Failure {
            throw Failure(description: f.description)
        }
        var keys: [PassportSigningKey] = []
        for entry in entries {
            let key: PassportSigningKey
            do { key = try PassportSigningKey(jwk: entry.jwk) } catch {
                throw Failure(description: "\(entry.path): not an Ed25519 private key: \(error)")
            }
            if keys.contains(where: { $0.kid == key.kid }) { throw Failure(description: "\(entry.path): kid '\(key.kid)' is used by another key file") }
            keys.append(key)
        }
        let newest = keys.last!
        self.signer = PassportSigner(key: newest)
        self.retired = keys.dropLast().map(\.publicJWK)
        self.loadedAt = now
        self.retention = retention
    }

    /// The JWK Set to publish at `now`: the active key first, then retired
    /// keys still within their retention.
    public func published(now: Int64 = PassportVerifier.currentTime()) -> JWKSet {
        let old = now < loadedAt + retention ? retired : []
        return JWKSet(keys: [signer.key.publicJWK] + old)
    }
}
