import ArgumentParser
import Foundation
import Passport

/// `gateway keys generate`: key files in the state folder, as private JWKs.
struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the gateway's key files.",
        subcommands: [Generate.self])

    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a new private key as a JWK file (mode 0600): ed25519 signs passports, x25519 is an app-channel key.")

        enum KeyType: String, ExpressibleByArgument, CaseIterable { case ed25519, x25519 }

        @Option(help: "ed25519 or x25519.") var type: KeyType
        @Option(help: "Key id, published with the public key (e.g. 2026-11).") var kid: String
        @Option(help: "File to write; an existing file is refused unless --force.") var out: String
        @Flag(help: "Replace an existing file.") var force = false

        func validate() throws {
            guard !kid.isEmpty, kid.utf8.count <= 64, kid.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "\"") })
            else { throw ValidationError("--kid must be 1 to 64 printable ASCII characters without spaces or quotes") }
        }

        func run() throws {
            let jwk: JWK
            switch type {
            case .ed25519:
                jwk = try PassportSigningKey.generate(kid: kid).privateJWK
            case .x25519:
                jwk = KeyFile.newX25519(kid: kid)
            }
            try KeyFile.write(jwk, to: out, replace: force)
            print("wrote \(type.rawValue) key '\(kid)' to \(out)")
        }
    }
}

/// Private JWK files: written 0600 without a window where another user could
/// read them, read back with a clear error naming the file.
enum KeyFile {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// A new app-channel key pair as a private JWK.
    static func newX25519(kid: String) -> JWK {
        let pair = X25519.generate()
        return JWK(kty: "OKP", crv: "X25519", kid: kid, x: Base64URL.encode(pair.publicKey), d: Base64URL.encode(pair.secretKey), use: "enc")
    }

    static func write(_ jwk: JWK, to path: String, replace: Bool) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try writeSecret(try encoder.encode(jwk) + Data("\n".utf8), to: path, replace: replace)
    }

    /// Any secret file (a JWK, a PEM private key): mode 0600 from the first byte, in place by rename.
    static func writeSecret(_ data: Data, to path: String, replace: Bool) throws {
        if FileManager.default.fileExists(atPath: path) && !replace {
            throw Failure(description: "\(path) exists; use --force to replace it")
        }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let tmp = path + ".tmp-\(getpid())"
        guard FileManager.default.createFile(atPath: tmp, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw Failure(description: "cannot write \(path)")
        }
        if rename(tmp, path) != 0 {
            unlink(tmp)
            throw Failure(description: "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func read(_ path: String) throws -> JWK {
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure(description: "\(path): cannot read the key file") }
        do { return try JSONDecoder().decode(JWK.self, from: data) } catch {
            throw Failure(description: "\(path): not a JWK: \(error)")
        }
    }
}
