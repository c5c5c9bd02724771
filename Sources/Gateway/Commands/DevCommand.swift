import ArgumentParser
import Filters
import Foundation
import Passport

/// `gateway dev`: development aids for the demo. Never point a production
/// config at the dev issuer: anyone with the state folder can mint its tokens.
struct Dev: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Development aids: a dev token issuer and keys for the demo (never for production).",
        subcommands: [DevKeys.self, DevToken.self])

    static let issuer = "gateway-dev"
    static let audience = "demo"
    static func issuerKeyPath(_ state: String) -> String { state + "/dev/jwt-issuer.json" }
    static func issuerJWKSPath(_ state: String) -> String { state + "/dev/jwt-jwks.json" }

    struct DevKeys: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "keys",
            abstract: "Make what the demo needs, once: a dev JWT issuer key (dev/jwt-issuer.json, its JWK Set dev/jwt-jwks.json) a passport signing key (passport/) and an app-channel key (app-channel/).")

        @Option(help: "State folder.") var state: String = ".state"

        func run() throws {
            let keyPath = Dev.issuerKeyPath(state)
            if !FileManager.default.fileExists(atPath: keyPath) {
                let key = try PassportSigningKey.generate(kid: "dev-issuer")
                try KeyFile.write(key.privateJWK, to: keyPath, replace: false)
                try JWKSet(keys: [key.publicJWK]).json().write(to: URL(fileURLWithPath: Dev.issuerJWKSPath(state)))
                print("made the dev token issuer key in \(keyPath)")
            }
            let passportDir = state + "/" + "passport"
            let existing = (try? FileManager.default.contentsOfDirectory(atPath: passportDir))?.filter { $0.hasSuffix(".json") } ?? []
            if existing.isEmpty {
                let formatter = DateFormatter()
                formatter.dateFormat = "yyyyMMdd"
                let kid = "dev-\(formatter.string(from: Date()))"
                try KeyFile.write(try PassportSigningKey.generate(kid: kid).privateJWK, to: "\(passportDir)/\(kid).json", replace: false)
                print("made the passport signing key \(passportDir)/\(kid).json")
            }
            let appDir = state + "/" + FilterContext.appChannelKeyFolder
            let appKeys = (try? FileManager.default.contentsOfDirectory(atPath: appDir))?.filter { $0.hasSuffix(".json") } ?? []
            if appKeys.isEmpty {
                let formatter = DateFormatter()
                formatter.dateFormat = "yyyyMMdd"
                let kid = "app-\(formatter.string(from: Date()))"
                try KeyFile.write(KeyFile.newX25519(kid: kid), to: "\(appDir)/\(kid).json", replace: false)
                print("made the app-channel key \(appDir)/\(kid).json")
            }
        }
    }

    struct DevToken: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "token",
            abstract: "Print a JWT from the dev issuer (iss gateway-dev, aud demo) that the demo's authenticate filter accepts.")

        @Option(help: "State folder.") var state: String = ".state"
        @Option(help: "Subject (user id).") var sub: String
        @Option(help: "Space-separated scopes.") var scope: String?
        @Option(help: "Lifetime, e.g. 10m.") var ttl: String = "10m"

        func run() throws {
            let lifetime: ConfigDuration
            do { lifetime = try ConfigDuration(parsing: ttl) } catch { throw ValidationError("--ttl: \(error)") }
            let jwk: JWK
            do { jwk = try KeyFile.read(Dev.issuerKeyPath(state)) } catch {
                throw ValidationError("\(error); run `gateway dev keys --state \(state)` first")
            }
            let key = try PassportSigningKey(jwk: jwk)
            let now = Int64(Date().timeIntervalSince1970)
            var claims: [String: Any] = [
                "iss": Dev.issuer, "aud": Dev.audience, "sub": sub, "iat": now, "exp": now + lifetime.nanoseconds / 1_000_000_000,
                "sid": Base64URL.encode(Sodium.randomBytes(9)),
            ]
            if let scope { claims["scope"] = scope }
            let header = Base64URL.encode(Array(#"{"alg":"EdDSA","kid":"dev-issuer","typ":"JWT"}"#.utf8))
            let payload = Base64URL.encode(try JSONSerialization.data(withJSONObject: claims, options: .sortedKeys))
            let signature = key.signature(for: Array((header + "." + payload).utf8))
            print(header + "." + payload + "." + Base64URL.encode(signature))
        }
    }
}
