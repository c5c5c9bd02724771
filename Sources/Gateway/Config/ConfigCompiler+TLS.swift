import Filters
import Foundation
import NIOSSL

/// Building the TLS contexts of listeners and upstreams from their files,
/// as reloading contexts (`ReloadingTLSContext`), with errors that name the key path.
extension ConfigCompiler {
    mutating func makeUpstreamTLS(_ t: UpstreamTLSConfig, _ src: Source, upstream: String, alpn: String) -> UpstreamTLS? {
        let before = problems.count
        if t.ca.isEmpty { fail(src, "tls.ca", "the CA the upstream's certificate chains to is required (never an unverified upstream)") }
        if (t.cert == nil) != (t.key == nil) { fail(src, t.cert == nil ? "tls.cert" : "tls.key", "cert and key go together (mTLS)") }
        if t.serverName == nil && t.verifySAN.isEmpty {
            fail(src, "tls", "needs server_name (checked against the certificate's DNS names) or verify_san (its URI SANs)")
        }
        for (i, san) in t.verifySAN.enumerated() where san.isEmpty || !san.contains(":") {
            fail(src, "tls.verify_san[\(i)]", "'\(san)' is not a URI (e.g. spiffe://cluster.local/ns/payments/sa/payments)")
        }
        guard problems.count == before else { return nil }
        let caPaths = t.ca.map(resolvePath)
        let certPath = t.cert.map(resolvePath)
        let keyPath = t.key.map(resolvePath)
        let checksHostname = t.verifySAN.isEmpty
        let build: @Sendable () throws -> NIOSSLContext = {
            var config = TLSConfiguration.makeClientConfiguration()
            config.minimumTLSVersion = .tlsv12
            var roots: [NIOSSLCertificate] = []
            for (i, path) in caPaths.enumerated() { roots += try TLSFiles.certificates(path, key: "tls.ca[\(i)]") }
            config.trustRoots = .certificates(roots)
            // Mesh certificates carry no DNS name: the chain is verified here
            // and the URI SAN right after the handshake (verify_san).
            config.certificateVerification = checksHostname ? .fullVerification : .noHostnameVerification
            config.applicationProtocols = [alpn]
            if let certPath, let keyPath {
                config.certificateChain = try TLSFiles.certificates(certPath, key: "tls.cert").map { .certificate($0) }
                config.privateKey = .privateKey(try TLSFiles.privateKey(keyPath, key: "tls.key"))
            }
            do { return try NIOSSLContext(configuration: config) } catch {
                throw TLSBuildError(path: "tls", message: "the files do not make a TLS context: \(error)")
            }
        }
        do {
            let context = try ReloadingTLSContext(name: "upstream \(upstream)", files: caPaths + [certPath, keyPath].compactMap { $0 }, build: build)
            return UpstreamTLS(context: context, serverName: t.serverName, verifySANs: t.verifySAN)
        } catch let e as TLSBuildError {
            fail(src, e.path, e.message)
        } catch {
            fail(src, "tls", "\(error)")
        }
        return nil
    }

    mutating func makeTLS(_ t: TLSConfig, _ src: Source, listener: String) -> ReloadingTLSContext? {
        let certPath = resolvePath(t.cert)
        let keyPath = resolvePath(t.key)
        let caPaths = t.clientCA.map(resolvePath)
        switch t.clientAuth {
        case "none":
            if !t.clientCA.isEmpty { fail(src, "tls.client_ca", "needs client_auth: optional or require") }
        case "optional", "require":
            if t.clientCA.isEmpty {
                fail(src, "tls.client_ca", "client_auth: \(t.clientAuth) needs at least one CA file")
                return nil
            }
        default:
            fail(src, "tls.client_auth", "'\(t.clientAuth)' is not none, optional or require")
            return nil
        }
        let sniEntries = t.sni.map { (names: $0.serverNames.map { $0.lowercased() }, cert: resolvePath($0.cert), key: resolvePath($0.key)) }
        for (i, entry) in t.sni.enumerated() {
            if entry.serverNames.isEmpty { fail(src, "tls.sni[\(i)].server_names", "at least one server name") }
            for (j, name) in entry.serverNames.enumerated() where !SNISelector.isPattern(name) {
                fail(src, "tls.sni[\(i)].server_names[\(j)]", "'\(name)' is not a host name or *.domain")
            }
        }
        // Every missing file at once, not one per run of `gateway check`.
        var missing = false
        let sniFiles = sniEntries.enumerated().flatMap { i, e in [(e.cert, "tls.sni[\(i)].cert"), (e.key, "tls.sni[\(i)].key")] }
        for (path, key) in [(certPath, "tls.cert"), (keyPath, "tls.key")] + caPaths.enumerated().map({ ($1, "tls.client_ca[\($0)]") }) + sniFiles
        where !FileManager.default.fileExists(atPath: path) {
            fail(src, key, "file not found: \(path)")
            missing = true
        }
        if missing { return nil }
        let clientAuth = t.clientAuth
        let build: @Sendable () throws -> NIOSSLContext = {
            let chain = try TLSFiles.certificates(certPath, key: "tls.cert")
            let key = try TLSFiles.privateKey(keyPath, key: "tls.key")
            var config = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            config.minimumTLSVersion = .tlsv12
            config.maximumTLSVersion = .tlsv13
            config.cipherSuites = Self.tls12CipherSuites
            config.applicationProtocols = ["h2", "http/1.1"]
            if !sniEntries.isEmpty {
                var choices: [(names: [String], chain: [NIOSSLCertificate], key: NIOSSLPrivateKey)] = []
                for (i, e) in sniEntries.enumerated() {
                    choices.append((e.names, try TLSFiles.certificates(e.cert, key: "tls.sni[\(i)].cert"),
                                    try TLSFiles.privateKey(e.key, key: "tls.sni[\(i)].key")))
                }
                let selector = SNISelector(choices: choices)
                config.sslContextCallback = { values, promise in promise.succeed(selector.override(for: values.serverHostname)) }
            }
            if clientAuth != "none" {
                var roots: [NIOSSLCertificate] = []
                for (i, path) in caPaths.enumerated() { roots += try TLSFiles.certificates(path, key: "tls.client_ca[\(i)]") }
                config.trustRoots = .certificates(roots)
                config.certificateVerification = clientAuth == "require" ? .noHostnameVerification : .optionalVerification
            }
            do { return try NIOSSLContext(configuration: config) } catch {
                throw TLSBuildError(path: "tls", message: "certificate and key do not make a TLS context: \(error)")
            }
        }
        do {
            return try ReloadingTLSContext(name: "listener \(listener)", files: [certPath, keyPath] + caPaths + sniFiles.map(\.0), build: build)
        } catch let e as TLSBuildError {
            fail(src, e.path, e.message)
        } catch {
            fail(src, "tls", "\(error)")
        }
        return nil
    }
}
