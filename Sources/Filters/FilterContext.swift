import Foundation
import Passport
import Redis
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
    /// The folder of app-channel (X25519) key files, relative to the state folder.
    public static let appChannelKeyFolder = "app-channel"
    private let appRing: Mutex<(grace: Int64, ring: AppChannelKeyRing)?>
    private let memoryStores: Mutex<[Int64: MemoryNonceStore]>
    private let redisClients: Mutex<[String: RedisClient]>
    /// Unix milliseconds; tests inject a fixed clock (the app-channel vectors' timestamps).
    public let clock: @Sendable () -> Int64

    public init(stateDirectory: String, httpClient: (any OutboundHTTPClient)? = nil,
                clock: @escaping @Sendable () -> Int64 = { AppChannelKeyRing.now() }) {
        self.stateDirectory = stateDirectory
        self.httpClient = httpClient
        self.ring = Mutex(nil)
        self.appRing = Mutex(nil)
        self.memoryStores = Mutex([:])
        self.redisClients = Mutex([:])
        self.clock = clock
    }

    /// The app-channel key ring of `<state>/app-channel`, loaded once per
    /// config load. Every filter that uses it must ask for the same grace.
    public func appChannelKeys(grace: Int64) throws -> AppChannelKeyRing {
        try appRing.withLock { loaded in
            if let loaded {
                guard loaded.grace == grace else {
                    throw FilterConfigurationError("key_grace: every request_signature filter must use the same key_grace (the keys are shared)")
                }
                return loaded.ring
            }
            let ring: AppChannelKeyRing
            do { ring = try AppChannelKeyRing(directory: resolve(Self.appChannelKeyFolder), grace: grace) } catch {
                throw FilterConfigurationError("\(error)")
            }
            loaded = (grace, ring)
            return ring
        }
    }

    /// The in-process nonce store for a replay window, shared by every
    /// `request_signature` of the config with that window: a request seen on
    /// one route or listener is a replay on every other (the same path can be
    /// routed on two listeners).
    public func memoryNonceStore(windowMilliseconds: Int64, capacity: Int) throws -> MemoryNonceStore {
        try memoryStores.withLock { stores in
            if let existing = stores[windowMilliseconds] {
                guard existing.capacity == max(capacity, 16) else {
                    throw FilterConfigurationError("memory.max_entries: every request_signature with the same max_age and max_skew shares one store; give them the same max_entries")
                }
                return existing
            }
            let store = MemoryNonceStore(windowMilliseconds: windowMilliseconds, capacity: capacity)
            stores[windowMilliseconds] = store
            return store
        }
    }

    /// The in-process nonce stores the config's filters use, by window.
    public var memoryNonceStores: [MemoryNonceStore] {
        memoryStores.withLock { stores in stores.keys.sorted().compactMap { stores[$0] } }
    }

    /// One Redis client (one pipelined connection per event loop) per
    /// distinct Redis setting of the config, shared by every filter that
    /// names it, rather than one per route.
    public func redisClient(key: String, make: () throws -> RedisClient) rethrows -> RedisClient {
        try redisClients.withLock { clients in
            if let existing = clients[key] { return existing }
            let client = try make()
            clients[key] = client
            return client
        }
    }

    /// The app-channel keys if a filter of this config uses them (public
    /// listeners then serve `/.well-known/gateway-keys.json`).
    public var loadedAppChannelKeys: AppChannelKeyRing? { appRing.withLock { $0?.ring } }

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
