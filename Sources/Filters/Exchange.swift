import Logging
import NIOCore
import NIOHTTP1

/// Everything a filter may read or change about one request while it travels
/// through the gateway. One instance per request, created by the proxy and
/// bound to the request's event loop: filters run on that loop, and a filter
/// that suspends resumes on it.
public final class Exchange {
    /// The request as it will be sent upstream. Filters may change method,
    /// `uri` (path and query) and headers.
    public var request: RequestHead
    /// The request target exactly as the client sent it, before the gateway
    /// canonicalized its path or any rewrite (what PROTOCOL 2.2 signs).
    public let originalTarget: String
    /// The target after path canonicalization and before any rewrite: what
    /// routing saw. Equal to `originalTarget` when the path was canonical.
    public internal(set) var canonicalTarget: String
    /// A limit on the request body lower than the route's, set by a filter
    /// (`sanitize`'s `max_body`); the gateway enforces it while the body streams.
    public var bodyLimit: Int?
    /// The `Host` (or `:authority`) the client sent.
    public let originalHost: String
    /// The gateway's id for this request, also sent upstream and to the client
    /// as `X-Request-Id`.
    public let requestID: String
    /// Name of the listener that accepted the request.
    public let listener: String
    /// Name of the matched route ("" until routing is done).
    public internal(set) var route: String
    /// Name of the upstream chosen for the request ("" when none).
    public var upstream: String
    /// The client's address as seen by the listener.
    public let clientAddress: SocketAddress?
    /// Whether the client connected over TLS.
    public let isTLS: Bool
    /// The event loop the request lives on.
    public let eventLoop: EventLoop
    /// A logger with the request id attached, made on first use so that
    /// requests that log nothing pay nothing. Never log credentials with it.
    public lazy var logger: Logger = {
        var l = baseLogger
        l[metadataKey: "request_id"] = "\(requestID)"
        return l
    }()
    private let baseLogger: Logger

    /// A few entries a request at most: a list searched in order costs less
    /// than hashing into a dictionary. Each value lives in a `Slot` of its
    /// key's `Value` type, so reading one is a type-checked-by-construction
    /// downcast instead of a dynamic cast out of an `Any` (which also copied
    /// every entry it walked past).
    private var e0, e1, e2, e3: Entry?
    private var rest: [Entry] = []
    private var entryCount = 0

    private struct Entry {
        let key: ObjectIdentifier
        let slot: AnyObject
    }

    private final class Slot<Value> {
        var value: Value
        init(_ value: Value) { self.value = value }
    }

    /// Set by a filter that must transform the upstream's response body as a
    /// whole (`decrypt_payload` seals it for the app). The gateway then
    /// buffers the upstream body (never a gateway-produced response, and
    /// never a response that has no body by HTTP's rules), calls this once
    /// with the status, the headers to adjust and the whole body, and sends
    /// the result with a `Content-Length`.
    public var responseBodyTransform: ((_ status: HTTPResponseStatus, _ headers: inout HeaderFields, _ body: ByteBuffer) -> ByteBuffer)?
    /// The largest upstream body the transform accepts; larger ones get 502.
    public var responseBodyLimit = 10 << 20

    public init(
        request: RequestHead,
        requestID: String,
        listener: String,
        route: String = "",
        upstream: String = "",
        clientAddress: SocketAddress?,
        isTLS: Bool,
        eventLoop: EventLoop,
        logger: Logger
    ) {
        self.request = request
        self.originalTarget = request.uri
        self.canonicalTarget = request.uri
        self.originalHost = request.headers.first(name: "host") ?? ""
        self.requestID = requestID
        self.listener = listener
        self.route = route
        self.upstream = upstream
        self.clientAddress = clientAddress
        self.isTLS = isTLS
        self.eventLoop = eventLoop
        self.baseLogger = logger
    }

    /// Typed per-request storage for what one filter hands to a later one
    /// (the authenticated principal, a verified certificate, ...).
    public subscript<Key: ExchangeKey>(key: Key.Type) -> Key.Value? {
        get {
            guard let i = index(of: key) else { return nil }
            if Self.isReference(Key.Value.self) { return unsafeBitCast(entrySlot(i), to: Key.Value.self) }
            if Key.Value.self == Principal.self {
                return unsafeBitCast(Principal(exchangeReference: entrySlot(i)), to: Key.Value.self)
            }
            return slot(i, key).value
        }
        set {
            if let i = index(of: key) {
                if let newValue {
                    if let reference = Self.reference(newValue) {
                        setEntry(i, Entry(key: ObjectIdentifier(key), slot: reference))
                    } else {
                        slot(i, key).value = newValue
                    }
                } else {
                    removeEntry(i)
                }
            } else if let newValue {
                appendEntry(Entry(key: ObjectIdentifier(key), slot: Self.reference(newValue) ?? Slot(newValue)))
            }
        }
    }

    /// The object a value is kept as without a `Slot`: a class instance
    /// itself, or a `Principal`'s one object; nil for any other value.
    /// Decided by comparing types, constant once specialized. (A cast to a
    /// protocol of "values that are one object" was not: for a type of
    /// another module, `String` say, it asked the runtime for the
    /// conformance on every read, once a full-route request.)
    @inline(__always)
    private static func reference<Value>(_ value: Value) -> AnyObject? {
        if isReference(Value.self) { return unsafeBitCast(value, to: AnyObject.self) }
        if Value.self == Principal.self { return unsafeBitCast(value, to: Principal.self).exchangeReference }
        return nil
    }

    /// Whether values of the type are one class reference each, kept in the
    /// entry itself rather than in a `Slot` (one allocation fewer a value).
    /// Both tests are constants once the subscript is specialized.
    private static func isReference<Value>(_: Value.Type) -> Bool {
        Value.self is AnyObject.Type && MemoryLayout<Value>.size == MemoryLayout<AnyObject>.size
    }

    // The entries, the first four in the exchange's own fields: a request's
    // filters store two or three values, and an array for them was an
    // allocation a request. Unordered (a removal moves the last entry into
    // the gap); keys are unique. Each is read in place (a copy of an entry
    // retains its value).

    @inline(__always)
    private func withEntry<R>(_ i: Int, _ body: (borrowing Entry) -> R) -> R {
        switch i {
        case 0: return body(e0.unsafelyUnwrapped)
        case 1: return body(e1.unsafelyUnwrapped)
        case 2: return body(e2.unsafelyUnwrapped)
        case 3: return body(e3.unsafelyUnwrapped)
        default: return body(rest[i - 4])
        }
    }

    @inline(__always)
    private func entryKey(_ i: Int) -> ObjectIdentifier { withEntry(i) { $0.key } }

    @inline(__always)
    private func entrySlot(_ i: Int) -> AnyObject { withEntry(i) { $0.slot } }

    @inline(__always)
    private func setEntry(_ i: Int, _ entry: consuming Entry?) {
        switch i {
        case 0: e0 = entry
        case 1: e1 = entry
        case 2: e2 = entry
        case 3: e3 = entry
        default:
            if let entry {
                if i - 4 == rest.count { rest.append(entry) } else { rest[i - 4] = entry }
            } else {
                rest.removeLast()  // only the last entry is ever removed from here
            }
        }
    }

    private func appendEntry(_ entry: consuming Entry) {
        setEntry(entryCount, entry)
        entryCount += 1
    }

    private func removeEntry(_ i: Int) {
        let last = entryCount - 1
        if i != last {
            let moved = Entry(key: entryKey(last), slot: entrySlot(last))
            setEntry(i, moved)
        }
        setEntry(last, nil)
        entryCount = last
    }

    private func index<Key: ExchangeKey>(of key: Key.Type) -> Int? {
        let id = ObjectIdentifier(key)
        var i = 0
        while i < entryCount {
            if entryKey(i) == id { return i }
            i += 1
        }
        return nil
    }

    /// The entry of `key` holds a `Slot<Key.Value>` (or, for a class type, the
    /// value itself): only the setter above makes entries, and it files each
    /// under its own key type's identifier (a metatype's `ObjectIdentifier`
    /// is unique to the type).
    private func slot<Key: ExchangeKey>(_ i: Int, _ key: Key.Type) -> Slot<Key.Value> {
        unsafeDowncast(entrySlot(i), to: Slot<Key.Value>.self)
    }

    /// Whether the route buffers the request body: every filter's
    /// `onRequestBody` then runs once it is in, after every `onRequest`.
    public internal(set) var buffersRequestBody = false

    /// Used by the gateway once the route is known.
    public func setRoute(_ name: String, buffersBody: Bool = false) {
        route = name
        buffersRequestBody = buffersBody
    }

    /// Used by the gateway once the path is canonical, before routing.
    public func setCanonicalTarget(_ target: String) {
        canonicalTarget = target
        request.uri = target
    }
}

/// A key for `Exchange`'s typed storage.
public protocol ExchangeKey {
    associatedtype Value
}

@available(*, unavailable)
extension Exchange: Sendable {}
