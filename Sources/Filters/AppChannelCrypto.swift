import Passport

/// The cryptography of the app channel (PROTOCOL 2), for both ends: the
/// gateway (the `request_signature` and `decrypt_payload` filters) and the app
/// (`gateway app-call`, tests). Pure functions over bytes; no I/O, no clock.
public enum AppChannelCrypto {
    /// The keys of one session, derived from the `crypto_kx` session keys
    /// (PROTOCOL 2.1): `K_mac` and `K_req` from the app → gateway key,
    /// `K_resp` from the gateway → app key.
    public struct SessionKeys: Sendable, Equatable {
        public let mac: [UInt8]
        public let request: [UInt8]
        public let response: [UInt8]

        /// From the app → gateway key (`c_tx`, `g_rx`) and the gateway → app key (`c_rx`, `g_tx`).
        public init(appToGateway: [UInt8], gatewayToApp: [UInt8]) {
            mac = Sodium.blake2b(Array("GW1 mac".utf8), key: appToGateway)
            request = Sodium.blake2b(Array("GW1 request".utf8), key: appToGateway)
            response = Sodium.blake2b(Array("GW1 response".utf8), key: gatewayToApp)
        }

        /// The gateway's side: from its key pair and the app's public key.
        public static func gateway(publicKey: [UInt8], secretKey: [UInt8], clientKey: [UInt8]) -> SessionKeys? {
            guard let k = X25519.serverSessionKeys(serverPublicKey: publicKey, serverSecretKey: secretKey, clientPublicKey: clientKey)
            else { return nil }
            return SessionKeys(appToGateway: k.rx, gatewayToApp: k.tx)
        }

        /// The app's side.
        public static func app(publicKey: [UInt8], secretKey: [UInt8], gatewayKey: [UInt8]) -> SessionKeys? {
            guard let k = X25519.clientSessionKeys(clientPublicKey: publicKey, clientSecretKey: secretKey, serverPublicKey: gatewayKey)
            else { return nil }
            return SessionKeys(appToGateway: k.tx, gatewayToApp: k.rx)
        }
    }

    /// The canonical string (PROTOCOL 2.2): seven lines, no trailing newline.
    public static func canonical(method: String, target: String, timestamp: String, nonce: String, kid: String,
                                 bodySHA256: [UInt8]) -> [UInt8] {
        Array("GW1\n\(method)\n\(target)\n\(timestamp)\n\(nonce)\n\(kid)\n\(Base64URL.encode(bodySHA256))".utf8)
    }

    /// `HMAC-SHA-256(K_mac, canonical)`.
    public static func signature(canonical: [UInt8], keys: SessionKeys) -> [UInt8] {
        Digest.hmacSHA256(key: keys.mac, message: canonical)
    }

    /// `A` of PROTOCOL 2.4.
    public static func requestAAD(method: String, target: String, timestamp: String, nonce: String) -> [UInt8] {
        Array("\(method)\n\(target)\n\(timestamp)\n\(nonce)".utf8)
    }

    /// `B` of PROTOCOL 2.5.
    public static func responseAAD(status: Int, requestNonce: String) -> [UInt8] {
        Array("\(status)\n\(requestNonce)".utf8)
    }

    /// `N || AEAD(K_req, N, A, plaintext)`; an empty plaintext stays empty.
    public static func sealRequest(_ plaintext: [UInt8], keys: SessionKeys, nonce: [UInt8], aad: [UInt8]) -> [UInt8] {
        plaintext.isEmpty ? [] : nonce + XChaCha20Poly1305.seal(plaintext, key: keys.request, nonce: nonce, aad: aad)
    }

    /// The plaintext of an encrypted request body, or nil (400 `undecryptable_payload`).
    public static func openRequest(_ body: [UInt8], keys: SessionKeys, aad: [UInt8]) -> [UInt8]? {
        if body.isEmpty { return [] }
        guard body.count >= XChaCha20Poly1305.nonceBytes + XChaCha20Poly1305.tagBytes else { return nil }
        let nonce = Array(body.prefix(XChaCha20Poly1305.nonceBytes))
        return XChaCha20Poly1305.open(body[XChaCha20Poly1305.nonceBytes...], key: keys.request, nonce: nonce, aad: aad)
    }

    /// `N' || AEAD(K_resp, N', B, upstream body)`.
    public static func sealResponse(_ body: [UInt8], keys: SessionKeys, nonce: [UInt8], aad: [UInt8]) -> [UInt8] {
        nonce + XChaCha20Poly1305.seal(body, key: keys.response, nonce: nonce, aad: aad)
    }

    /// The upstream body of an encrypted response (the app's side), or nil.
    public static func openResponse(_ body: [UInt8], keys: SessionKeys, aad: [UInt8]) -> [UInt8]? {
        guard body.count >= XChaCha20Poly1305.nonceBytes + XChaCha20Poly1305.tagBytes else { return nil }
        let nonce = Array(body.prefix(XChaCha20Poly1305.nonceBytes))
        return XChaCha20Poly1305.open(body[XChaCha20Poly1305.nonceBytes...], key: keys.response, nonce: nonce, aad: aad)
    }
}
