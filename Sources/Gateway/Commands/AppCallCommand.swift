import ArgumentParser
import Filters
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Passport

/// `gateway app-call`: acts as the mobile app on the app channel (PROTOCOL 2),
/// for operators debugging a route: fetches the gateway keys, makes a session
/// key pair, signs (and encrypts) one request, sends it, and opens the
/// response. The decrypted body goes to stdout, everything else to stderr.
struct AppCall: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "app-call",
        abstract: "Send one signed (and encrypted) app-channel request, as the app would, and print the decrypted response.")

    @Option(help: "The gateway's public listener, e.g. https://localhost:8443.") var gateway: String
    @Option(help: "Gateway key id to use (default: the first published, the current one).") var kid: String?
    @Option(help: "CA certificate (PEM) to verify the gateway with, instead of the system's roots.") var cacert: String?
    @Option(name: .customLong("header"), help: "An extra request header, 'Name: value' (repeatable), e.g. an Authorization header.")
    var headers: [String] = []
    @Option(help: "Media type of the plaintext body (X-Gw-Content-Type).") var contentType = "application/json"
    @Flag(help: "Sign only; send the body in the clear (routes whose decrypt_payload has required: false).") var plain = false
    @Flag(help: "Print the response headers to stderr.") var showHeaders = false
    @Option(help: "Seconds to wait for each response.") var timeout: Int64 = 10
    @Argument(help: "HTTP method, e.g. GET or POST.") var method: String
    @Argument(help: "Path and query, exactly as they will be sent (and signed).") var path: String
    @Argument(help: "Body: text, @FILE to read a file, or - for stdin.") var body: String?

    func validate() throws {
        guard path.hasPrefix("/") else { throw ValidationError("PATH must start with /") }
        guard !method.isEmpty, method.utf8.allSatisfy(HTTPToken.isTokenByte) else { throw ValidationError("METHOD is not a method") }
        guard URL(string: gateway)?.host != nil else { throw ValidationError("--gateway must be a URL like https://localhost:8443") }
    }

    func run() async throws {
        let base = gateway.hasSuffix("/") ? String(gateway.dropLast()) : gateway
        var tls: NIOSSLContext?
        if let cacert {
            var configuration = TLSConfiguration.makeClientConfiguration()
            do { configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(cacert)) } catch {
                throw ValidationError("--cacert \(cacert): \(error)")
            }
            tls = try NIOSSLContext(configuration: configuration)
        }
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let client = GatewayHTTPClient.shared
        let wait = TimeAmount.seconds(timeout)

        // 1. The gateway's keys.
        let keysResponse = try await client.send(method: .GET, url: URL(string: base + ProxyRequest.gatewayKeysPath)!, headers: [:], body: [],
                                                 timeout: wait, on: loop, tls: tls).get()
        guard keysResponse.status == 200, let set = try? JSONDecoder().decode(JWKSet.self, from: Data(keysResponse.body)) else {
            throw Failure("GET \(ProxyRequest.gatewayKeysPath) answered \(keysResponse.status); is an app-channel route configured?")
        }
        let candidates = set.keys.filter { $0.kty == "OKP" && $0.crv == "X25519" }
        guard let jwk = kid.map({ k in candidates.first { $0.kid == k } }) ?? candidates.first,
              let keyID = jwk.kid, let x = jwk.x, let gatewayKey = Base64URL.decode(x), gatewayKey.count == 32
        else {
            throw Failure("no usable gateway key\(kid.map { " with kid '\($0)'" } ?? "") (published: \(candidates.compactMap(\.kid).joined(separator: ", ")))")
        }
        guard let session = AppChannelClient(kid: keyID, gatewayKey: gatewayKey) else { throw Failure("the gateway key is not usable") }

        // 2. Sign (and encrypt) the request.
        let plaintext = try readBody()
        let prepared = session.prepare(method: method, target: path, body: plaintext, encrypt: !plain, contentType: contentType)
        var requestHeaders = HTTPHeaders()
        for (name, value) in prepared.headers { requestHeaders.add(name: name, value: value) }
        if plain && !plaintext.isEmpty { requestHeaders.add(name: "content-type", value: contentType) }
        for header in headers {
            guard let colon = header.firstIndex(of: ":") else { throw ValidationError("--header '\(header)' is not 'Name: value'") }
            requestHeaders.add(name: String(header[..<colon]), value: header[header.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        let response = try await client.send(method: HTTPMethod(rawValue: method), url: URL(string: base + path)!, headers: requestHeaders,
                                             body: prepared.body, timeout: wait, on: loop, tls: tls, maxResponseBytes: 64 << 20).get()

        // 3. The response: sealed by the gateway (X-Gw-Encrypted: 1), or the gateway's own answer.
        var err = FileHandle.standardError
        print("HTTP \(response.status) (kid \(keyID), \(plain ? "signed" : "signed and encrypted") request)", to: &err)
        if showHeaders { for (name, value) in response.headers { print("\(name): \(value)", to: &err) } }
        if response.headers.first(name: "x-gw-encrypted") == "1" {
            guard let opened = session.openResponse(status: response.status, body: response.body, request: prepared) else {
                throw Failure("the response did not decrypt (wrong key, or altered on the way)")
            }
            print("response: decrypted, \(response.headers.first(name: "x-gw-content-type") ?? "no content type")", to: &err)
            FileHandle.standardOutput.write(Data(opened))
        } else {
            print("response: not encrypted (an answer of the gateway itself, or a route without encrypt_response)", to: &err)
            FileHandle.standardOutput.write(Data(response.body))
        }
        if response.status >= 400 { throw ExitCode(1) }
    }

    private func readBody() throws -> [UInt8] {
        guard let body else { return [] }
        if body == "-" { return Array(FileHandle.standardInput.readDataToEndOfFile()) }
        if body.hasPrefix("@") {
            guard let data = FileManager.default.contents(atPath: String(body.dropFirst())) else {
                throw ValidationError("cannot read \(body.dropFirst())")
            }
            return Array(data)
        }
        return Array(body.utf8)
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }
}

extension FileHandle: @retroactive TextOutputStream {
    public func write(_ string: String) { write(Data(string.utf8)) }
}
