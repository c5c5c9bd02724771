import Filters
import Logging
import NIOCore
import NIOHTTP1

/// A request's admission: the head's checks (size, framing, Host, path),
/// the caller's certificate, and routing, before anything is forwarded.
extension ProxyRequest {
    /// The head's checks and routing; false when the request was answered
    /// here (refused, or the gateway's keys).
    /// `path.hasPrefix("/")` over the bytes: `Substring.hasPrefix` compares
    /// grapheme clusters (about a thousand instructions a request). A slash
    /// followed by a non-ASCII byte (which could be a combining mark, making
    /// one cluster with it) takes the cluster comparison, so the answer is
    /// the same for every path.
    static func startsWithSlash(_ path: Substring) -> Bool {
        var bytes = path.utf8.makeIterator()
        guard bytes.next() == UInt8(ascii: "/") else { return false }
        guard let next = bytes.next(), next >= 0x80 else { return true }
        return path.hasPrefix("/")
    }

    func admit() -> Bool {
        let head = exchange.request
        let limits = env.listener.limits
        // One pass over the head: its size, and the framing and Host fields.
        var size = head.method.rawValue.utf8.count + head.uri.utf8.count + 12
        // Indices, not values: a loop whose fields are only read borrows
        // them; keeping a value would copy every field's strings.
        var lengthAt = -1, lengths = 0
        var codingAt = -1, codings = 0
        var hostAt = -1, hosts = 0
        let fields = head.headers
        for i in fields.indices {
            let n = fields[i].name.utf8.count
            size += n + fields[i].value.utf8.count + 4
            // Only names of a framing field's length go to the comparison (a
            // field passed to a call is copied).
            guard n == 4 || n == 14 || n == 17 else { continue }
            // Over the name's bytes: the optimizer keeps `framingField(String)`
            // out of line, and a name passed to it was retained.
            switch fields[i].name.utf8.withContiguousStorageIfAvailable({ HTTPBytes.framingField($0) }) ?? HTTPBytes.framingField(fields[i].name) {
            case .host:
                hostAt = i
                hosts += 1
            case .contentLength:
                lengthAt = i
                lengths += 1
            case .transferEncoding:
                codingAt = i
                codings += 1
            default:
                break
            }
        }
        let length = lengthAt < 0 ? nil : fields[lengthAt].value
        let coding = codingAt < 0 ? nil : fields[codingAt].value
        let host = hostAt < 0 ? nil : fields[hostAt].value
        if head.headers.count > limits.maxHeaders || size > limits.maxHeadSize {
            return answered(respondLocally(.headTooLarge, close: true))
        }
        // Framing: exactly one way to read where the body ends, or nothing is
        // forwarded (PROTOCOL 4; RFC 9112 6.1-6.3). The parser already refused
        // most ambiguity; these are the forms it lets through.
        if let coding {
            // Only `chunked`, spelled exactly so, once, on HTTP/1.1 (HTTP/2
            // streams arrive here with `chunked` added by the codec).
            guard codings == 1, coding == "chunked", lengths == 0, isHTTP2 || head.version == .http1_1 else {
                return answered(respondLocally(.badRequest, close: true))
            }
            framing = .chunked
        } else if let length {
            guard lengths == 1, Self.isPlainLength(length) else { return answered(respondLocally(.badRequest, close: true)) }
            framing = .contentLength
        }
        // Host: one, well-formed; required on HTTP/1.1 (RFC 9112 3.2).
        if hosts > 1 { return answered(respondLocally(.invalidHost, close: true)) }
        if let host {
            guard HostSyntax.isValid(host) else { return answered(respondLocally(.invalidHost, close: true)) }
        } else if !isHTTP2 && head.version.minor >= 1 {
            return answered(respondLocally(.badRequest, close: true))
        }
        // One canonical path for routing and the upstream; the raw target stays in `originalTarget`.
        let (rawPath, query) = Router.split(Substring(head.uri))
        guard Self.startsWithSlash(rawPath) else { return answered(respondLocally(.badRequest, close: true)) }
        if let query, !Self.isCleanQuery(query) { return answered(respondLocally(.badRequest, close: true)) }
        switch env.listener.sanitize.paths.canonicalTarget(path: rawPath, query: query) {
        case .success(let target):
            if let target { exchange.setCanonicalTarget(target) }
        case .failure(.invalid(let reason)):
            exchange.logger.debug("path refused", metadata: ["reason": "\(reason)"])
            return answered(respondLocally(.invalidPath, close: true))
        }

        // The caller's certificate: from a trusted hop's XFCC, else from the handshake.
        var identity = handler.tlsIdentity
        if let trust = env.listener.sanitize.xfccTrust, trust.trusts(exchange.clientAddress) {
            let forwarded = head.headers["x-forwarded-client-cert"]
            if !forwarded.isEmpty {
                do { identity = try XFCC.identity(forwarded.joined(separator: ",")) } catch {
                    exchange.logger.debug("X-Forwarded-Client-Cert refused", metadata: ["reason": "\(error)"])
                    return answered(respondLocally(.rejection("malformed_xfcc")))
                }
            }
        }
        if let identity { exchange[ClientIdentityKey.self] = identity }

        if let keys = env.listener.gatewayKeys, Router.split(Substring(exchange.canonicalTarget)).0 == Self.gatewayKeysPath {
            return answered(serveGatewayKeys(keys))
        }

        switch env.listener.router.match(method: head.method.rawValue, host: Substring(exchange.originalHost),
                                         target: Substring(exchange.canonicalTarget), headers: head.headers) {
        case .noRoute:
            return answered(respondLocally(.noRoute))
        case .methodNotAllowed(let allow):
            return answered(respondLocally(.methodNotAllowed, headers: ["allow": allow.joined(separator: ", ")]))
        case .matched(let route):
            self.route = route
            exchange.setRoute(route.name, buffersBody: route.buffersBody)
            if framing == .contentLength, let length, let n = Int(length), n > route.maxBody {
                return answered(respondLocally(.bodyTooLarge))
            }
            var rng = SystemRandomNumberGenerator()
            exchange.upstream = route.targets.pick(head.headers, using: &rng)
            return true
        }
    }

    /// For `return answered(respondLocally(...))` in `admit`: the response
    /// is on its way; the request goes no further.
    private func answered(_: Void) -> Bool { false }

    /// `Content-Length`: 1 to 18 digits and nothing else (no sign, no
    /// spaces, no list), so that every parser reads the same number.
    static func isPlainLength(_ value: String) -> Bool {
        let u = value.utf8
        return !u.isEmpty && u.count <= 18 && ASCII.allBytes(value) { $0 >= 0x30 && $0 <= 0x39 }
    }

    /// A query of printable ASCII without spaces or `#` (HTTP/2 `:path` is not
    /// checked by an HTTP/1 parser).
    static func isCleanQuery(_ query: Substring) -> Bool {
        ASCII.allBytes(query) { $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "#") }
    }
}
