import Passport

/// Randomness for request ids, through the `Passport` module's libsodium wrapper.
enum RandomSource {
    static func fill(_ buffer: UnsafeMutableRawBufferPointer) { Sodium.fillRandom(buffer) }
}
