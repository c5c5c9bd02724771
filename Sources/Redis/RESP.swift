import NIOCore

/// A RESP2 value (the Redis protocol), as far as the gateway reads them.
public enum RESPValue: Equatable, Sendable {
    case simpleString(String)
    case error(String)
    case integer(Int64)
    /// nil is the null bulk string (`$-1`), e.g. `SET ... NX` that did not set.
    case bulk([UInt8]?)
    /// nil is the null array (`*-1`).
    case array([RESPValue]?)
}

/// RESP framing: commands out as arrays of bulk strings, replies in,
/// incrementally (a reply may arrive in several reads).
public enum RESP {
    public struct ProtocolError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Appends `*N\r\n$len\r\narg\r\n...`.
    public static func encode(_ arguments: [[UInt8]], into buffer: inout ByteBuffer) {
        buffer.writeString("*\(arguments.count)\r\n")
        for argument in arguments {
            buffer.writeString("$\(argument.count)\r\n")
            buffer.writeBytes(argument)
            buffer.writeStaticString("\r\n")
        }
    }

    /// Limits on what a reply may claim, so a broken or hostile server cannot
    /// make the gateway allocate without bound.
    static let maxBulk = 16 << 20
    static let maxElements = 1 << 16
    static let maxDepth = 8

    /// One whole reply from the start of `buffer`, consuming it; nil (and
    /// nothing consumed) when the reply is not complete yet.
    public static func decode(_ buffer: inout ByteBuffer) throws -> RESPValue? {
        var copy = buffer
        guard let value = try parse(&copy, depth: 0) else { return nil }
        buffer = copy
        return value
    }

    private static func line(_ buffer: inout ByteBuffer) throws -> [UInt8]? {
        let view = buffer.readableBytesView
        guard let cr = view.firstIndex(of: UInt8(ascii: "\r")) else {
            if view.count > 64 << 10 { throw ProtocolError(description: "reply line too long") }
            return nil
        }
        guard cr + 1 < view.endIndex else { return nil }
        guard view[cr + 1] == UInt8(ascii: "\n") else { throw ProtocolError(description: "CR without LF") }
        let bytes = buffer.readBytes(length: cr - view.startIndex)!
        buffer.moveReaderIndex(forwardBy: 2)
        return bytes
    }

    private static func integer(_ bytes: ArraySlice<UInt8>) throws -> Int64 {
        guard let value = Int64(String(decoding: bytes, as: UTF8.self)) else {
            throw ProtocolError(description: "not an integer")
        }
        return value
    }

    private static func parse(_ buffer: inout ByteBuffer, depth: Int) throws -> RESPValue? {
        guard depth <= maxDepth else { throw ProtocolError(description: "reply nested too deeply") }
        guard let type = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
        buffer.moveReaderIndex(forwardBy: 1)
        guard let line = try line(&buffer) else { return nil }
        switch type {
        case UInt8(ascii: "+"):
            return .simpleString(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: "-"):
            return .error(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: ":"):
            return .integer(try integer(line[...]))
        case UInt8(ascii: "$"):
            let length = try integer(line[...])
            if length == -1 { return .bulk(nil) }
            guard length >= 0, length <= maxBulk else { throw ProtocolError(description: "bad bulk length") }
            guard buffer.readableBytes >= Int(length) + 2 else { return nil }
            let bytes = buffer.readBytes(length: Int(length))!
            guard buffer.readBytes(length: 2) == [13, 10] else { throw ProtocolError(description: "bulk string without CRLF") }
            return .bulk(bytes)
        case UInt8(ascii: "*"):
            let count = try integer(line[...])
            if count == -1 { return .array(nil) }
            guard count >= 0, count <= maxElements else { throw ProtocolError(description: "bad array length") }
            var elements: [RESPValue] = []
            elements.reserveCapacity(Int(count))
            for _ in 0..<count {
                guard let element = try parse(&buffer, depth: depth + 1) else { return nil }
                elements.append(element)
            }
            return .array(elements)
        default:
            throw ProtocolError(description: "unknown reply type \(type)")
        }
    }
}
