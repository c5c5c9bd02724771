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
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: directory) else {
            throw Failure(description: "\(directory): no passport key folder (make one key: gateway keys generate --type ed25519 --kid K --out \(directory)/K.json)")
        }
        var keys: [(key: PassportSigningKey, modified: Date, name: String)] = []
        for name in names.sorted() where name.hasSuffix(".json") && !name.hasPrefix(".") {
            let path = (directory as NSString).appendingPathComponent(name)
            guard let data = fm.contents(atPath: path) else { throw Failure(description: "\(path): cannot read") }
            let jwk: JWK
            do { jwk = try JSONDecoder().decode(JWK.self, from: data) } catch {
                throw Failure(description: "\(path): not a JWK file")
            }
            let key: PassportSigningKey
            do { key = try PassportSigningKey(jwk: jwk) } catch {
                throw Failure(description: "\(path): not an Ed25519 private key: \(error)")
            }
            if keys.contains(where: { $0.key.kid == key.kid }) { throw Failure(description: "\(path): kid '\(key.kid)' is used by another key file") }
            let modified = (try? fm.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? .distantPast
            keys.append((key, modified, name))
        }
        keys.sort { ($0.modified, $0.name) < ($1.modified, $1.name) }
        guard let newest = keys.last else {
            throw Failure(description: "\(directory): no passport key (*.json); make one: gateway keys generate --type ed25519 --kid K --out \(directory)/K.json")
        }
        self.signer = PassportSigner(key: newest.key)
        self.retired = keys.dropLast().map { $0.key.publicJWK }
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
