import ArgumentParser
import Crypto
import Foundation
import SwiftASN1
import X509

/// `gateway certs dev`: the certificates of the demo and the tests, made
/// with swift-certificates (P-256): never for production.
struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Development certificates (never for production).",
        subcommands: [Dev.self])

    struct Dev: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A dev CA and, signed by it: a localhost server certificate, the gateway's client certificate (SPIFFE URI SAN), upstream certificates with SPIFFE URI SANs and no DNS name (as a mesh issues them), and a partner client certificate.")

        @Option(help: "Folder to write into (PEM files; keys mode 0600).") var out: String
        @Option(help: "Upstream names; each gets <name>.pem with spiffe://cluster.local/ns/<name>/sa/<name>.")
        var upstream: [String] = ["payments"]
        @Option(help: "The partner's SPIFFE ID.") var partner = "spiffe://partners.example/acme"
        @Flag(help: "Make everything again, with a new CA, even if the files exist.") var force = false

        func run() throws {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let caPath = out + "/ca.pem", caKeyPath = out + "/ca-key.pem"
            let fm = FileManager.default
            let ca: (certificate: Certificate, key: P256.Signing.PrivateKey)
            if !force, fm.fileExists(atPath: caPath), fm.fileExists(atPath: caKeyPath) {
                ca = (try Certificate(pemEncoded: String(contentsOfFile: caPath, encoding: .utf8)),
                      try P256.Signing.PrivateKey(pemRepresentation: String(contentsOfFile: caKeyPath, encoding: .utf8)))
            } else {
                let key = P256.Signing.PrivateKey()
                let name = try DistinguishedName { CommonName("gateway dev CA") }
                let now = Date()
                let certificate = try Certificate(
                    version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
                    notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(825 * 86400),
                    issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
                    extensions: try Certificate.Extensions {
                        Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                        Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    },
                    issuerPrivateKey: .init(key))
                try write(certificate, key, "ca")
                ca = (certificate, key)
                print("made the dev CA \(caPath)")
            }
            let loopback: [GeneralName] = [.dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))]
            var leaves: [(String, String, [GeneralName], ExtendedKeyUsage.Usage)] = [
                ("localhost", "localhost", loopback, .serverAuth),
                ("gateway-client", "gateway", [.uniformResourceIdentifier("spiffe://cluster.local/ns/edge/sa/gateway")], .clientAuth),
                ("partner", "acme partner", [.uniformResourceIdentifier(partner)], .clientAuth),
            ]
            for name in upstream {
                // Mesh certificates: a SPIFFE ID and no DNS name; loopback too, for the demo's local upstreams.
                leaves.append((name, name, [.uniformResourceIdentifier("spiffe://cluster.local/ns/\(name)/sa/\(name)")], .serverAuth))
            }
            for (file, commonName, sans, usage) in leaves {
                if !force, fm.fileExists(atPath: "\(out)/\(file).pem") { continue }
                let key = P256.Signing.PrivateKey()
                let now = Date()
                let certificate = try Certificate(
                    version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
                    notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(397 * 86400),
                    issuer: ca.certificate.subject, subject: try DistinguishedName { CommonName(commonName) },
                    signatureAlgorithm: .ecdsaWithSHA256,
                    extensions: try Certificate.Extensions {
                        Critical(BasicConstraints.notCertificateAuthority)
                        Critical(KeyUsage(digitalSignature: true))
                        try ExtendedKeyUsage([usage])
                        SubjectAlternativeNames(sans)
                    },
                    issuerPrivateKey: .init(ca.key))
                try write(certificate, key, file)
                print("made \(out)/\(file).pem (\(sans.map(Self.describe).joined(separator: ", ")))")
            }
        }

        static func describe(_ name: GeneralName) -> String {
            switch name {
            case .dnsName(let d): return "DNS:\(d)"
            case .uniformResourceIdentifier(let u): return "URI:\(u)"
            case .ipAddress(let ip): return "IP:" + ip.bytes.map(String.init).joined(separator: ".")
            default: return "\(name)"
            }
        }

        func write(_ certificate: Certificate, _ key: P256.Signing.PrivateKey, _ name: String) throws {
            let certPEM = try certificate.serializeAsPEM().pemString + "\n"
            try certPEM.write(toFile: "\(out)/\(name).pem", atomically: true, encoding: .utf8)
            try KeyFile.writeSecret(Data((key.pemRepresentation + "\n").utf8), to: "\(out)/\(name)-key.pem", replace: true)
        }
    }
}
