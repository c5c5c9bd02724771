import Foundation
import Passport
import X509

/// The caller's mTLS identity (PROTOCOL 3): the URI and DNS SANs of a client
/// certificate the listener verified, or that a trusted hop forwarded in
/// `X-Forwarded-Client-Cert`. Filters read it from `exchange[ClientIdentityKey.self]`.
public struct ClientIdentity: Sendable, Equatable {
    public enum Source: String, Sendable { case tls, xfcc }

    public let uris: [String]
    public let dnsNames: [String]
    /// The subject, RFC 4514 style (for logs of the partner, not for authorization).
    public let subject: String
    /// Lowercase hex SHA-256 of the DER certificate (the passport's `cert.sha256`).
    public let sha256: String
    public let source: Source

    /// URI SANs, then DNS SANs (the passport's `cert.san`).
    public var sans: [String] { uris + dnsNames }

    public struct Invalid: Error, CustomStringConvertible {
        public let description: String
    }

    /// Reads a DER certificate.
    public init(der: [UInt8], source: Source) throws {
        let certificate: Certificate
        do { certificate = try Certificate(derEncoded: der) } catch {
            throw Invalid(description: "not an X.509 certificate")
        }
        self.init(certificate: certificate, der: der, source: source)
    }

    /// Reads a PEM certificate (XFCC's `Cert`, URL-decoded).
    public init(pem: String, source: Source) throws {
        let certificate: Certificate
        do { certificate = try Certificate(pemEncoded: pem) } catch {
            throw Invalid(description: "not a PEM X.509 certificate")
        }
        self.init(certificate: certificate, der: try certificate.serializeAsPEM().derBytes, source: source)
    }

    init(certificate: Certificate, der: [UInt8], source: Source) {
        var uris: [String] = []
        var dns: [String] = []
        if let names = try? certificate.extensions.subjectAlternativeNames {
            for name in names {
                switch name {
                case .uniformResourceIdentifier(let uri): uris.append(uri)
                case .dnsName(let host): dns.append(host)
                default: break
                }
            }
        }
        self.uris = uris
        self.dnsNames = dns
        self.subject = certificate.subject.description
        self.sha256 = Hex.encode(Sodium.sha256(der))
        self.source = source
    }

    /// The passport's `cert` claim.
    public var passportCertificate: PassportClaims.Certificate { .init(sans: sans, sha256: sha256) }
}

public enum ClientIdentityKey: ExchangeKey { public typealias Value = ClientIdentity }

/// Envoy's `X-Forwarded-Client-Cert`: comma-separated elements (one per hop
/// that appended one), each `Key=value` pairs separated by `;`, values
/// optionally double-quoted with `\"` escapes (PROTOCOL 3).
public enum XFCC {
    public struct Malformed: Error, CustomStringConvertible {
        public let description: String
    }

    /// Every element, in order, as lowercased keys to values.
    public static func parse(_ value: String) throws -> [[String: String]] {
        var elements: [[String: String]] = []
        var current: [String: String] = [:]
        var key = ""
        var buffer = ""
        var inValue = false
        var quoted = false
        var afterQuote = false
        var chars = value.makeIterator()
        func finishPair() throws {
            let k = (inValue ? key : buffer).trimmingCharacters(in: .whitespaces).lowercased()
            guard inValue else {
                if k.isEmpty { return }
                throw Malformed(description: "a field without '='")
            }
            guard !k.isEmpty, k.utf8.allSatisfy(HTTPToken.isTokenByte) else { throw Malformed(description: "a bad key") }
            guard current[k] == nil || k == "uri" || k == "dns" else { throw Malformed(description: "key \(k) twice in one element") }
            current[k] = current[k].map { $0 + "," + buffer } ?? buffer
            key = ""
            buffer = ""
            inValue = false
            afterQuote = false
        }
        while let c = chars.next() {
            if quoted {
                if c == "\\" {
                    guard let next = chars.next() else { throw Malformed(description: "a dangling escape") }
                    buffer.append(next)
                } else if c == "\"" {
                    quoted = false
                    afterQuote = true
                } else {
                    buffer.append(c)
                }
                continue
            }
            switch c {
            case "\"":
                guard inValue, buffer.isEmpty, !afterQuote else { throw Malformed(description: "a quote inside a value") }
                quoted = true
            case "=" where !inValue:
                key = buffer
                buffer = ""
                inValue = true
            case ";":
                try finishPair()
            case ",":
                try finishPair()
                guard !current.isEmpty else { throw Malformed(description: "an empty element") }
                elements.append(current)
                current = [:]
            default:
                guard !afterQuote || c == " " else { throw Malformed(description: "text after a quoted value") }
                guard c.asciiValue.map({ $0 >= 0x20 && $0 < 0x7F }) ?? false else { throw Malformed(description: "a control or non-ASCII character") }
                buffer.append(c)
            }
        }
        guard !quoted else { throw Malformed(description: "an unterminated quote") }
        try finishPair()
        guard !current.isEmpty else { throw Malformed(description: "an empty element") }
        elements.append(current)
        return elements
    }

    /// The identity in the last element (the one the last trusted hop
    /// appended): its `Cert` URL-decoded and parsed, its `Hash`, when given,
    /// checked against it.
    public static func identity(_ value: String) throws -> ClientIdentity {
        guard let last = try parse(value).last else { throw Malformed(description: "no element") }
        guard let encoded = last["cert"], let pem = encoded.removingPercentEncoding else {
            throw Malformed(description: "the last element has no Cert")
        }
        let identity: ClientIdentity
        do { identity = try ClientIdentity(pem: pem, source: .xfcc) } catch {
            throw Malformed(description: "Cert is not a PEM certificate")
        }
        if let hash = last["hash"], hash.lowercased() != identity.sha256 {
            throw Malformed(description: "Hash does not match Cert")
        }
        return identity
    }
}
