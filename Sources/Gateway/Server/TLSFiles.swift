import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOSSL

/// A TLS context built from certificate and key files, rebuilt when any of
/// them changes (mesh certificates live for hours). New handshakes use the
/// newest context; connections made with an older one drain naturally. A new
/// file that does not make a context (half-written, wrong key, not PEM) is
/// refused with an error log and the old context keeps serving.
final class ReloadingTLSContext: Sendable {
    /// What the context is for, in logs ("listener partner", "upstream payments").
    let name: String
    let files: [String]
    private let build: @Sendable () throws -> NIOSSLContext
    private let state: NIOLockedValueBox<(context: NIOSSLContext, stamps: [FileStamp], refused: [FileStamp]?)>

    struct FileStamp: Equatable, Sendable {
        let modified: Double
        let size: Int
        let inode: UInt64

        init(_ path: String) {
            var s = stat()
            if stat(path, &s) == 0 {
                modified = Double(s.st_mtim.tv_sec) + Double(s.st_mtim.tv_nsec) / 1e9
                size = Int(s.st_size)
                inode = UInt64(s.st_ino)
            } else {
                modified = -1
                size = -1
                inode = 0
            }
        }
    }

    /// Builds the first context now; throws what `build` throws.
    init(name: String, files: [String], build: @escaping @Sendable () throws -> NIOSSLContext) throws {
        self.name = name
        self.files = files
        self.build = build
        let stamps = files.map(FileStamp.init)
        self.state = NIOLockedValueBox((try build(), stamps, nil))
    }

    /// The context for a new handshake.
    var context: NIOSSLContext { state.withLockedValue { $0.context } }

    /// Rebuilds the context when a file changed since the last build (or the
    /// last refused attempt). Returns true when a new context was installed.
    /// Blocking file I/O: called from the watcher's own queue, never from an event loop.
    @discardableResult
    func reloadIfChanged(logger: Logger) -> Bool {
        let stamps = files.map(FileStamp.init)
        let (current, refused) = state.withLockedValue { ($0.stamps, $0.refused) }
        guard stamps != current, stamps != refused else { return false }
        do {
            let context = try build()
            state.withLockedValue { $0 = (context, stamps, nil) }
            logger.info("TLS material reloaded; new handshakes use it", metadata: ["tls": "\(name)", "files": "\(files.joined(separator: ", "))"])
            return true
        } catch {
            state.withLockedValue { $0.refused = stamps }
            logger.error("TLS material changed but was refused; the previous certificate keeps serving",
                         metadata: ["tls": "\(name)", "error": "\(error)"])
            return false
        }
    }
}

/// Polls the files of every reloading TLS context on its own queue.
final class CertificateWatcher: @unchecked Sendable {
    private let contexts: [ReloadingTLSContext]
    private let timer: DispatchSourceTimer
    private let queue = DispatchQueue(label: "gateway.certificate-watcher")

    init(contexts: [ReloadingTLSContext], interval: Double, logger: Logger) {
        self.contexts = contexts
        timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + interval, repeating: interval)
        timer.setEventHandler { for c in contexts { c.reloadIfChanged(logger: logger) } }
        timer.resume()
    }

    func stop() { timer.cancel() }
}

/// A TLS build failure: the key path of the config it concerns and why.
struct TLSBuildError: Error, CustomStringConvertible {
    let path: String
    let message: String
    var description: String { "\(path): \(message)" }
}

/// Reading PEM files into NIOSSL types, with errors that name the key path.
enum TLSFiles {
    static func certificates(_ path: String, key: String) throws -> [NIOSSLCertificate] {
        guard FileManager.default.fileExists(atPath: path) else { throw TLSBuildError(path: key, message: "file not found: \(path)") }
        let certs: [NIOSSLCertificate]
        do { certs = try NIOSSLCertificate.fromPEMFile(path) } catch {
            throw TLSBuildError(path: key, message: "cannot read PEM certificates from \(path): \(error)")
        }
        guard !certs.isEmpty else { throw TLSBuildError(path: key, message: "no certificate in \(path)") }
        return certs
    }

    static func privateKey(_ path: String, key: String) throws -> NIOSSLPrivateKey {
        guard FileManager.default.fileExists(atPath: path) else { throw TLSBuildError(path: key, message: "file not found: \(path)") }
        do { return try NIOSSLPrivateKey(file: path, format: .pem) } catch {
            throw TLSBuildError(path: key, message: "cannot read a PEM private key from \(path): \(error)")
        }
    }
}

/// Picks a listener's certificate by the server name of the client hello:
/// an exact name, else a `*.domain` pattern matching one label; no match (or
/// no SNI) keeps the listener's default certificate.
struct SNISelector: Sendable {
    let choices: [(names: [String], chain: [NIOSSLCertificate], key: NIOSSLPrivateKey)]

    func override(for serverName: String?) -> NIOSSLContextConfigurationOverride {
        guard let name = serverName?.lowercased(), !name.isEmpty else { return .noChanges }
        let choice = choices.first { $0.names.contains(name) } ?? choices.first { $0.names.contains { Self.wildcard($0, matches: name) } }
        guard let choice else { return .noChanges }
        var o = NIOSSLContextConfigurationOverride()
        o.certificateChain = choice.chain.map { .certificate($0) }
        o.privateKey = .privateKey(choice.key)
        return o
    }

    static func wildcard(_ pattern: String, matches name: String) -> Bool {
        guard pattern.hasPrefix("*."), let dot = name.firstIndex(of: ".") else { return false }
        return name[name.index(after: dot)...] == pattern.dropFirst(2) && dot != name.startIndex
    }

    static func isPattern(_ name: String) -> Bool {
        let host = name.hasPrefix("*.") ? String(name.dropFirst(2)) : name
        return !host.isEmpty && host.utf8.allSatisfy { b in
            (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39) || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
        }
    }
}
