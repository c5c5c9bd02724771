import ArgumentParser
import Foundation
import Passport

/// `gateway passport inspect|verify`: for operators and audits. Tokens come
/// as arguments (or `-` for stdin, so they stay out of shell history) and are
/// never logged.
struct PassportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passport",
        abstract: "Inspect or verify an X-Passport token.",
        subcommands: [Inspect.self, Verify.self])

    static func token(_ argument: String) -> String {
        guard argument == "-" else { return argument.trimmingCharacters(in: .whitespacesAndNewlines) }
        let data = FileHandle.standardInput.readDataToEndOfFile()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode a passport without verifying it: header, claims, and whether it has expired.")

        @Argument(help: "The token, or - to read it from stdin.") var token: String
        @Option(help: "Evaluate expiry at this Unix time instead of now.") var at: Int64?

        func run() throws {
            let jws: CompactJWS
            do { jws = try CompactJWS(PassportCommand.token(token)) } catch {
                FileHandle.standardError.write(Data("not a passport: \(error)\n".utf8))
                throw ExitCode(1)
            }
            let now = at ?? PassportVerifier.currentTime()
            print("header: alg=\(jws.header.alg) kid=\(jws.header.kid ?? "-") typ=\(jws.header.typ ?? "-")")
            if let object = try? JSONSerialization.jsonObject(with: Data(jws.payload)),
               let pretty = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]) {
                print("claims: " + String(decoding: pretty, as: UTF8.self))
            } else {
                print("claims: (not JSON)")
            }
            if let claims = try? JSONDecoder().decode(PassportClaims.self, from: Data(jws.payload)) {
                let left = claims.expiresAt - now
                print(left > 0 ? "expires in \(left) s (at \(claims.expiresAt))" : "EXPIRED \(-left) s ago (at \(claims.expiresAt))")
            }
            print("signature: not verified (use `gateway passport verify`)")
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify a passport against a JWK Set file or URL; exit 0 only if it is valid.")

        @Argument(help: "The token, or - to read it from stdin.") var token: String
        @Option(help: "JWK Set: a file, or an http(s) URL such as http://127.0.0.1:9901/.well-known/passport-jwks.json.")
        var jwks: String
        @Option(help: "The audience the passport must carry.") var audience: String?
        @Option(help: "Evaluate expiry at this Unix time instead of now (audits, tests).") var at: Int64?

        func run() async throws {
            let set: JWKSet
            do { set = try await JWKSSource(jwks).load() } catch {
                FileHandle.standardError.write(Data("cannot load the JWK Set from \(jwks): \(error)\n".utf8))
                throw ExitCode(2)
            }
            let verifier = PassportVerifier(jwks: set, audience: audience, cacheCapacity: 0)
            do {
                let claims = try await verifier.verify(PassportCommand.token(token), now: at ?? PassportVerifier.currentTime())
                print("valid: sub=\(claims.subject ?? "-") aud=\(claims.audience) lvl=\(claims.level) amr=\(claims.methods.joined(separator: ",")) exp=\(claims.expiresAt)")
            } catch {
                print("invalid: \(error)")
                throw ExitCode(1)
            }
        }
    }
}
