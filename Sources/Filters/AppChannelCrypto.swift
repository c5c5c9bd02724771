import Crypto
import NIOCore
import Passport

/// The cryptography of the app channel (PROTOCOL 2), for both ends: the
/// gateway (the `request_signature` and `decrypt_payload` filters) and the app
/// (`gateway app-call`, tests). Pure functions over bytes; no I/O, no clock.
public enum AppChannelCrypto {
    /// The keys of one session, derived from the `crypto_kx` session keys
    /// (PROTOCOL 2.1): `K_mac` and `K_req` from the app → gateway key,
    /// `K_resp` from the gateway → app key.
    ///
    /// A class: the keys are immutable, cached per app session and handed
    /// from the cache to each signed request's two filters; as a struct each
    /// hand-over copied all five of its references.
    public final class SessionKeys: Sendable, Equatable {
        public let mac: [UInt8]
        public let request: [UInt8]
        public let response: [UInt8]
        /// `mac` with its HMAC pads hashed once (the session's keys are
        /// cached, and each signed request is one MAC under them).
        public let macKey: HMACSHA256Key

        /// From the app → gateway key (`c_tx`, `g_rx`) and the gateway → app key (`c_rx`, `g_tx`).
        public init(appToGateway: [UInt8], gatewayToApp: [UInt8]) {
            mac = Sodium.blake2b(Array("GW1 mac".utf8), key: appToGateway)
            request = Sodium.blake2b(Array("GW1 request".utf8), key: appToGateway)
            response = Sodium.blake2b(Array("GW1 response".utf8), key: gatewayToApp)
            macKey = HMACSHA256Key(mac)
        }

        public static func == (a: SessionKeys, b: SessionKeys) -> Bool {
            a.mac == b.mac && a.request == b.request && a.response == b.response
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
        // Its lines 2 to 5 are the request's AAD; written straight into one
        // array of its size (the request path builds one per signed request).
        let hash = Base64URL.encode(bodySHA256)
        var out: [UInt8] = []
        out.reserveCapacity(4 + linesCount(method, target, timestamp, nonce) + 1 + kid.utf8.count + 1 + hash.utf8.count)
        out.append(contentsOf: "GW1\n".utf8)
        appendLines(method, target, timestamp, nonce, to: &out)
        out.append(0x0A)
        out.append(contentsOf: kid.utf8)
        out.append(0x0A)
        out.append(contentsOf: hash.utf8)
        return out
    }

    /// `HMAC-SHA-256(K_mac, canonical)`.
    public static func signature(canonical: [UInt8], keys: SessionKeys) -> [UInt8] {
        keys.macKey.mac(canonical)
    }

    /// Whether `expected` (32 bytes) is the signature of a request with this
    /// body, compared in constant time: `signature(canonical:keys:)` of
    /// `canonical(...)`, computed without building either (the canonical
    /// string goes to the MAC in pieces, the body's hash is encoded on the
    /// stack). The request path's form; the vectors test both.
    public static func signatureMatches(_ expected: UnsafeRawBufferPointer, method: String, target: String, timestamp: String,
                                        nonce: String, kid: String, body: UnsafeRawBufferPointer, keys: SessionKeys) -> Bool {
        guard expected.count == 32 else { return false }
        var bodyHash = SHA256Stream()
        bodyHash.update(bufferPointer: body)
        return withUnsafeTemporaryAllocation(byteCount: 48, alignment: 1) { encoded in
            let hashText = bodyHash.finalize { UnsafeRawBufferPointer(rebasing: encoded[..<Base64URL.encode($0, into: encoded)]) }
            return keys.macKey.mac({ mac in
                func add(_ text: String) { ASCII.withUTF8(text) { mac.update(bufferPointer: $0) } }
                func newline() { withUnsafeBytes(of: UInt8(0x0A)) { mac.update(bufferPointer: $0) } }
                withUnsafeBytes(of: (UInt8(ascii: "G"), UInt8(ascii: "W"), UInt8(ascii: "1"), UInt8(0x0A))) { mac.update(bufferPointer: $0) }
                add(method); newline()
                add(target); newline()
                add(timestamp); newline()
                add(nonce); newline()
                add(kid); newline()
                mac.update(bufferPointer: hashText)
            }, { computed in Sodium.constantTimeEqual(computed, expected) })
        }
    }

    /// `A` of PROTOCOL 2.4.
    public static func requestAAD(method: String, target: String, timestamp: String, nonce: String) -> [UInt8] {
        withRequestAAD(method: method, target: target, timestamp: timestamp, nonce: nonce) { Array($0) }
    }

    /// `body` with `requestAAD(...)` written into a temporary buffer (on the
    /// stack when it is small, as it is for any ordinary target): the
    /// request path's form, without an array per request.
    public static func withRequestAAD<R>(method: String, target: String, timestamp: String, nonce: String,
                                         _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let count = linesCount(method, target, timestamp, nonce)
        return try withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) { out in
            var o = 0
            func put(_ text: String) {
                ASCII.withUTF8(text) { u in
                    UnsafeMutableRawBufferPointer(rebasing: out[o..<o + u.count]).copyMemory(from: u)
                    o += u.count
                }
            }
            func newline() { out[o] = 0x0A; o += 1 }
            put(method); newline(); put(target); newline(); put(timestamp); newline(); put(nonce)
            return try body(UnsafeRawBufferPointer(rebasing: out[..<o]))
        }
    }

    /// `method \n target \n timestamp \n nonce`, shared by the AAD and the canonical string.
    private static func appendLines(_ method: String, _ target: String, _ timestamp: String, _ nonce: String, to out: inout [UInt8]) {
        out.append(contentsOf: method.utf8)
        out.append(0x0A)
        out.append(contentsOf: target.utf8)
        out.append(0x0A)
        out.append(contentsOf: timestamp.utf8)
        out.append(0x0A)
        out.append(contentsOf: nonce.utf8)
    }

    private static func linesCount(_ method: String, _ target: String, _ timestamp: String, _ nonce: String) -> Int {
        3 + method.utf8.count + target.utf8.count + timestamp.utf8.count + nonce.utf8.count
    }

    /// `B` of PROTOCOL 2.5.
    public static func responseAAD(status: Int, requestNonce: String) -> [UInt8] {
        Array("\(status)\n\(requestNonce)".utf8)
    }

    /// `body` with `responseAAD(...)` in a temporary buffer (the request path's form).
    public static func withResponseAAD<R>(status: Int, requestNonce: String, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        guard (100...999).contains(status) else { return try responseAAD(status: status, requestNonce: requestNonce).withUnsafeBytes(body) }
        return try ASCII.withUTF8(requestNonce) { n in
            try withUnsafeTemporaryAllocation(byteCount: 4 + n.count, alignment: 1) { out in
                out[0] = UInt8(0x30 + status / 100)
                out[1] = UInt8(0x30 + status / 10 % 10)
                out[2] = UInt8(0x30 + status % 10)
                out[3] = 0x0A
                UnsafeMutableRawBufferPointer(rebasing: out[4...]).copyMemory(from: n)
                return try body(UnsafeRawBufferPointer(out))
            }
        }
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

    /// `openRequest` on the gateway's buffer: when it opens, `body` becomes
    /// the plaintext (a new buffer of its size) and this returns true (an
    /// empty body stays empty); otherwise false, and `body` is unchanged.
    public static func openRequest(_ body: inout ByteBuffer, keys: SessionKeys, aad: [UInt8]) -> Bool {
        aad.withUnsafeBytes { openRequest(&body, keys: keys, aad: $0) }
    }

    /// `openRequest` with the AAD where it lies (`withRequestAAD`). This
    /// and `sealResponse(_:keys:aad:nonce:)`, the gateway's request path,
    /// run on BoringSSL (`AppChannelAEAD`); the array forms, the app's, on libsodium.
    public static func openRequest(_ body: inout ByteBuffer, keys: SessionKeys, aad: UnsafeRawBufferPointer) -> Bool {
        let nonceBytes = XChaCha20Poly1305.nonceBytes, tagBytes = XChaCha20Poly1305.tagBytes
        if body.readableBytes == 0 { return true }
        guard body.readableBytes >= nonceBytes + tagBytes else { return false }
        // Into a new buffer of the plaintext's size: the body usually shares
        // the storage it was read into, and opening it in place first copied
        // all of it into a buffer rounded up to the next power of two.
        let count = body.readableBytes - nonceBytes - tagBytes
        var plaintext = ByteBufferAllocator().buffer(capacity: count)
        var authentic = false
        _ = body.withUnsafeReadableBytes { raw in
            plaintext.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { out in
                authentic = AppChannelAEAD.open(into: UnsafeMutableRawBufferPointer(rebasing: out[..<count]),
                                                UnsafeRawBufferPointer(rebasing: raw[nonceBytes...]), key: keys.request,
                                                nonce: UnsafeRawBufferPointer(rebasing: raw[..<nonceBytes]), aad: aad)
                return authentic ? count : 0
            }
        }
        guard authentic else { return false }
        body = plaintext
        return true
    }

    /// `N' || AEAD(K_resp, N', B, upstream body)`.
    public static func sealResponse(_ body: [UInt8], keys: SessionKeys, nonce: [UInt8], aad: [UInt8]) -> [UInt8] {
        nonce + XChaCha20Poly1305.seal(body, key: keys.response, nonce: nonce, aad: aad)
    }

    /// `sealResponse` written into one new buffer, with a fresh `N'` from
    /// `Sodium.publicRandomBytes` unless `nonce` is given (tests).
    public static func sealResponse(_ body: ByteBuffer, keys: SessionKeys, aad: [UInt8], nonce: [UInt8]? = nil) -> ByteBuffer {
        aad.withUnsafeBytes { sealResponse(body, keys: keys, aad: $0, nonce: nonce) }
    }

    /// `sealResponse` with the AAD where it lies (`withResponseAAD`).
    public static func sealResponse(_ body: ByteBuffer, keys: SessionKeys, aad: UnsafeRawBufferPointer, nonce: [UInt8]? = nil) -> ByteBuffer {
        let nonceBytes = XChaCha20Poly1305.nonceBytes
        precondition(nonce == nil || nonce!.count == nonceBytes, "N' is 24 bytes")
        let length = nonceBytes + body.readableBytes + XChaCha20Poly1305.tagBytes
        var sealed = ByteBufferAllocator().buffer(capacity: length)
        sealed.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { raw in
            let n = UnsafeMutableRawBufferPointer(rebasing: raw[..<nonceBytes])
            if let nonce { n.copyBytes(from: nonce) } else { Sodium.publicRandomBytes(into: n) }
            body.withUnsafeReadableBytes { plaintext in
                AppChannelAEAD.seal(into: UnsafeMutableRawBufferPointer(rebasing: raw[nonceBytes..<length]), plaintext,
                                    key: keys.response, nonce: UnsafeRawBufferPointer(n), aad: aad)
            }
            return length
        }
        return sealed
    }

    /// The upstream body of an encrypted response (the app's side), or nil.
    public static func openResponse(_ body: [UInt8], keys: SessionKeys, aad: [UInt8]) -> [UInt8]? {
        guard body.count >= XChaCha20Poly1305.nonceBytes + XChaCha20Poly1305.tagBytes else { return nil }
        let nonce = Array(body.prefix(XChaCha20Poly1305.nonceBytes))
        return XChaCha20Poly1305.open(body[XChaCha20Poly1305.nonceBytes...], key: keys.response, nonce: nonce, aad: aad)
    }
}
