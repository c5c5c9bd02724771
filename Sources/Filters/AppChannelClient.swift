import Passport

/// The app's side of the app channel (PROTOCOL 2), for `gateway app-call`,
/// the tests, and as a reference for app developers: one session key pair,
/// the gateway key it talks to, and for each request the `X-Gw-*` headers,
/// the body to send, and the opening of the sealed response.
///
/// ```swift
/// let client = AppChannelClient(kid: "k1", gatewayKey: gatewayPublicKey)!
/// let request = client.prepare(method: "POST", target: "/api/v1/transfers",
///                              body: Array(json.utf8), encrypt: true)
/// // send request.headers and request.body; then, if the response has X-Gw-Encrypted: 1:
/// let plain = client.openResponse(status: 200, body: responseBody, request: request)
/// ```
public struct AppChannelClient: Sendable {
    public let kid: String
    public let publicKey: [UInt8]
    let secretKey: [UInt8]
    public let keys: AppChannelCrypto.SessionKeys

    /// A new session with a fresh key pair, or the pair of `seed` (tests);
    /// nil when the gateway key is unusable.
    public init?(kid: String, gatewayKey: [UInt8], seed: [UInt8]? = nil) {
        let pair: (publicKey: [UInt8], secretKey: [UInt8])
        if let seed {
            guard let p = X25519.keyPair(seed: seed) else { return nil }
            pair = p
        } else {
            pair = X25519.generate()
        }
        guard let keys = AppChannelCrypto.SessionKeys.app(publicKey: pair.publicKey, secretKey: pair.secretKey, gatewayKey: gatewayKey)
        else { return nil }
        self.kid = kid
        self.publicKey = pair.publicKey
        self.secretKey = pair.secretKey
        self.keys = keys
    }

    /// A request ready to send.
    public struct Prepared: Sendable {
        /// The `X-Gw-*` headers, in PROTOCOL 2.2's order.
        public let headers: [(name: String, value: String)]
        /// The body as sent (`N || C` when encrypted).
        public let body: [UInt8]
        /// `X-Gw-Nonce`, needed to open the response.
        public let nonce: String
    }

    /// Signs (and with `encrypt`, encrypts) one request. `target` is the path
    /// and query exactly as they will be sent. Timestamp and nonces are fresh
    /// unless given (tests reproduce the vectors with them).
    public func prepare(method: String, target: String, body: [UInt8], encrypt: Bool, contentType: String? = nil,
                        timestamp: Int64 = AppChannelKeyRing.now(), nonce: [UInt8] = Sodium.randomBytes(16),
                        bodyNonce: [UInt8] = Sodium.randomBytes(XChaCha20Poly1305.nonceBytes)) -> Prepared {
        let ts = String(timestamp)
        let nonceText = Base64URL.encode(nonce)
        var sent = body
        if encrypt {
            let aad = AppChannelCrypto.requestAAD(method: method, target: target, timestamp: ts, nonce: nonceText)
            sent = AppChannelCrypto.sealRequest(body, keys: keys, nonce: bodyNonce, aad: aad)
        }
        var headers: [(name: String, value: String)] = [
            ("X-Gw-Kid", kid), ("X-Gw-Client-Key", Base64URL.encode(publicKey)), ("X-Gw-Timestamp", ts), ("X-Gw-Nonce", nonceText),
        ]
        if encrypt {
            headers.append(("X-Gw-Encrypted", "1"))
            if let contentType { headers.append(("X-Gw-Content-Type", contentType)) }
        }
        headers.append(("X-Gw-Signature", signature(method: method, target: target, timestamp: ts, nonce: nonceText, sentBody: sent)))
        return Prepared(headers: headers, body: sent, nonce: nonceText)
    }

    /// `X-Gw-Signature` over a body exactly as it will be sent.
    public func signature(method: String, target: String, timestamp: String, nonce: String, sentBody: [UInt8]) -> String {
        let canonical = AppChannelCrypto.canonical(method: method, target: target, timestamp: timestamp, nonce: nonce, kid: kid,
                                                   bodySHA256: Sodium.sha256(sentBody))
        return Base64URL.encode(AppChannelCrypto.signature(canonical: canonical, keys: keys))
    }

    /// The upstream's body of a response that carries `X-Gw-Encrypted: 1`, or
    /// nil when it does not open (wrong key, wrong request, altered).
    public func openResponse(status: Int, body: [UInt8], request: Prepared) -> [UInt8]? {
        AppChannelCrypto.openResponse(body, keys: keys, aad: AppChannelCrypto.responseAAD(status: status, requestNonce: request.nonce))
    }
}
