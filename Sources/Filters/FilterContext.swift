import Foundation
import Passport
import Synchronization

/// What a filter may need beyond its own YAML when it is built: the state
/// folder (relative key and JWKS paths resolve against it) and the gateway's
/// passport keys. One context per config load, shared by every filter of it.
public final class FilterContext: Sendable {
    public let stateDirectory: String
    /// Outbound HTTP for filters that call services (token introspection).
    public let httpClient: (any OutboundHTTPClient)?
    /// The folder of passport key files, relative to the state folder.
    public static let passportKeyFolder = "passport"
    private let ring: Mutex<Result<PassportKeyRing, PassportKeyRing.Failure>?>

    public init(stateDirectory: String, httpClient: (any OutboundHTTPClient)? = nil) {
        self.stateDirectory = stateDirectory
        self.httpClient = httpClient
        self.ring = Mutex(nil)
    }

    /// `path` if absolute, else under the state folder.
    public func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : (stateDirectory as NSString).appendingPathComponent(path)
    }

    /// The passport key ring of `<state>/passport`, loaded on first use, once
    /// per config load.
    public func passportKeys() throws -> PassportKeyRing {
        let result = ring.withLock { cached -> Result<PassportKeyRing, PassportKeyRing.Failure> in
            if let cached { return cached }
            let loaded: Result<PassportKeyRing, PassportKeyRing.Failure>
            do { loaded = .success(try PassportKeyRing(directory: resolve(Self.passportKeyFolder))) } catch let f as PassportKeyRing.Failure {
                loaded = .failure(f)
            } catch {
                loaded = .failure(PassportKeyRing.Failure(description: "\(error)"))
            }
            cached = loaded
            return loaded
        }
        return try result.get()
    }

    /// The ring if a filter of this config asked for it (the admin listener
    /// publishes its JWK Set).
    public var loadedPassportKeys: PassportKeyRing? {
        ring.withLock { if case .success(let r)? = $0 { return r } else { return nil } }
    }

    public static let userInfoKey = CodingUserInfoKey(rawValue: "gateway.filterContext")!
}
