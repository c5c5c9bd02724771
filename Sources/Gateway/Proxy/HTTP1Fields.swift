import Filters
import NIOCore

/// Writing a head's fields without copying them. A field's strings loaded
/// from the list and handed to code the optimizer cannot see into (a
/// buffer's growth, a classification kept out of line) are retained first
/// and released after, atomically, both strings of every field of every
/// head. Here the room for all the lines is made once, before the loop, and
/// the loop reads each field's bytes in place: every step in it (the
/// encoder's decision, the checks, the copies) is inlined, so the strings
/// are borrowed from the list instead of copied (the full app route: 48
/// fewer retains a request, and as many releases).
extension HTTPBytes {
    /// What an encoder does with one field.
    enum FieldAction {
        /// Writes it as it is (checked: a token name, a value without controls).
        case write
        /// Leaves it out.
        case skip
        /// Writes its name with the `replacement` value instead of its own.
        case writeReplacement
        /// Stops: the head must not be sent.
        case refuse
    }

    /// Writes the fields of `headers` that `action` (given each field's
    /// name and value bytes) keeps, as `name: value` CRLF lines. `action`
    /// says `writeReplacement` at most once (a second time refuses). Returns false when
    /// `action` refused or a field is not valid (part of the fields may be
    /// written: the caller resets the buffer), nil when a string has no
    /// contiguous UTF-8 (none of Swift's native strings; the caller then
    /// writes the head the slow way).
    @inline(__always)
    static func writeFields(_ headers: HeaderFields, replacement: String?, into buffer: inout ByteBuffer,
                            _ action: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) -> FieldAction) -> Bool? {
        var room = replacement?.utf8.count ?? 0
        for (name, value) in headers { room &+= name.utf8.count &+ value.utf8.count &+ 4 }
        var result: Bool? = true
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: room) { out in
            let base = out.baseAddress!
            var at = 0
            var replaced = false
            for (name, value) in headers {
                let step = name.utf8.withContiguousStorageIfAvailable { n -> Int in
                    value.utf8.withContiguousStorageIfAvailable { v -> Int in
                        let what = action(n, v)
                        if what == .skip { return 0 }
                        if what == .refuse || n.isEmpty { return -1 }
                        for b in n where !HTTPToken.isTokenByte(b) { return -1 }
                        if what == .writeReplacement {
                            // The room counted one replacement.
                            if replaced { return -1 }
                            replaced = true
                            return replacement?.utf8.withContiguousStorageIfAvailable { r in
                                line(n, r, at: base + at, room: out.count - at)
                            } ?? -2
                        }
                        return line(n, v, at: base + at, room: out.count - at)
                    } ?? -2
                } ?? -2
                if step < 0 {
                    result = step == -2 ? nil : false
                    return at
                }
                at &+= step
            }
            return at
        }
        return result
    }

    /// `name: value` CRLF at `o` (the name already checked), or -1 when the
    /// value holds a control byte (or, which the room counted beforehand
    /// rules out, the line would not fit in `room` bytes).
    @inline(__always)
    static func line(_ n: UnsafeBufferPointer<UInt8>, _ v: UnsafeBufferPointer<UInt8>, at o: UnsafeMutableRawPointer,
                     room: Int) -> Int {
        let total = n.count &+ v.count &+ 4
        guard total <= room, HTTPToken.isValidFieldValue(UnsafeRawBufferPointer(v)) else { return -1 }
        ShortCopy.copy(o, from: n.baseAddress!, count: n.count)
        o.storeBytes(of: UInt16(0x3A20).bigEndian, toByteOffset: n.count, as: UInt16.self)  // ": "
        if !v.isEmpty { ShortCopy.copy(o + n.count + 2, from: v.baseAddress!, count: v.count) }
        o.storeBytes(of: UInt16(0x0D0A).bigEndian, toByteOffset: total &- 2, as: UInt16.self)  // CRLF
        return total
    }

    /// `framingField` over a name's bytes.
    @inline(__always)
    static func framingField(_ n: UnsafeBufferPointer<UInt8>) -> FramingField? {
        switch n.count {
        case 4 where ASCII.equalsLowercase(UnsafeRawBufferPointer(n), "host"): return .host
        case 10 where ASCII.equalsLowercase(UnsafeRawBufferPointer(n), "connection"): return .connection
        case 14 where ASCII.equalsLowercase(UnsafeRawBufferPointer(n), "content-length"): return .contentLength
        case 17 where ASCII.equalsLowercase(UnsafeRawBufferPointer(n), "transfer-encoding"): return .transferEncoding
        default: return nil
        }
    }

    /// Whether `bytes` are exactly `literal`.
    @inline(__always)
    static func equals(_ bytes: UnsafeBufferPointer<UInt8>, _ literal: StaticString) -> Bool {
        guard bytes.count == literal.utf8CodeUnitCount else { return false }
        let l = literal.utf8Start
        for i in 0..<bytes.count where bytes[i] != l[i] { return false }
        return true
    }
}

extension HeaderFields {
    /// The same fields with every string's UTF-8 in one piece, as native
    /// strings always are: what `HTTPBytes.writeFields` needs.
    var contiguous: HeaderFields {
        HeaderFields(fields: map { field in
            var (name, value) = field
            name.makeContiguousUTF8()
            value.makeContiguousUTF8()
            return (name: name, value: value)
        })
    }
}
