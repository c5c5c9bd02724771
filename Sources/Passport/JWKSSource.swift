import Foundation

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Where a JWK Set comes from: a file, or an HTTP(S) URL such as the
/// gateway's `/.well-known/passport-jwks.json`.
public enum JWKSSource: Sendable, CustomStringConvertible {
    case file(String)
    case url(URL)

    /// `http://` and `https://` are URLs; anything else is a file path.
    public init(_ text: String) {
        if (text.hasPrefix("http://") || text.hasPrefix("https://")), let url = URL(string: text) {
            self = .url(url)
        } else {
            self = .file(text)
        }
    }

    public var description: String {
        switch self {
        case .file(let path): return path
        case .url(let url): return url.absoluteString
        }
    }

    private static func read(_ path: String) throws -> JWKSet {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw PassportError.malformed("cannot read JWK Set file \(path)")
        }
        return try JWKSet(json: data)
    }

    /// Reads or fetches the set (at most 1 MiB, 10 s for a URL).
    public func load() async throws -> JWKSet {
        switch self {
        case .file(let path):
            return try Self.read(path)
        case .url(let url):
            var request = URLRequest(url: url, timeoutInterval: 10)
            request.setValue("application/json", forHTTPHeaderField: "Accept")
            let (data, response) = try await URLSession.shared.data(for: request)
            guard let http = response as? HTTPURLResponse, http.statusCode == 200 else {
                throw PassportError.malformed("JWK Set fetch from \(url.absoluteString) did not answer 200")
            }
            guard data.count <= 1 << 20 else { throw PassportError.malformed("JWK Set larger than 1 MiB") }
            return try JWKSet(json: data)
        }
    }
}

extension JWKSSource {
    /// `load()` for code that cannot await (loading a configuration, off any
    /// event loop): a file is read directly; a URL is fetched by URLSession on
    /// its own queue while the caller waits at most `timeout` seconds.
    public func loadBlocking(timeout: Double = 10) throws -> JWKSet {
        switch self {
        case .file(let path):
            return try Self.read(path)
        case .url(let url):
            final class Box: @unchecked Sendable { var result: Result<JWKSet, Error>? }
            let box = Box()
            let done = DispatchSemaphore(value: 0)
            var request = URLRequest(url: url, timeoutInterval: timeout)
            request.setValue("application/json", forHTTPHeaderField: "Accept")
            let task = URLSession.shared.dataTask(with: request) { data, response, error in
                if let error {
                    box.result = .failure(error)
                } else if let http = response as? HTTPURLResponse, http.statusCode == 200, let data, data.count <= 1 << 20 {
                    box.result = Result { try JWKSet(json: data) }
                } else {
                    box.result = .failure(PassportError.malformed("JWK Set fetch from \(url.absoluteString) did not answer 200"))
                }
                done.signal()
            }
            task.resume()
            guard done.wait(timeout: .now() + timeout + 1) == .success, let result = box.result else {
                task.cancel()
                throw PassportError.malformed("JWK Set fetch from \(url.absoluteString) timed out")
            }
            return try result.get()
        }
    }
}
