import NIOCore

/// One command on its way: the encoded bytes and the promise of its reply.
struct RedisCommand {
    let arguments: [[UInt8]]
    let promise: EventLoopPromise<RESPValue>
}

public struct RedisError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }

    public static let connectionClosed = RedisError("connection to redis closed")
    public static let timeout = RedisError("redis did not answer in time")
}

/// The pipeline's handler: writes commands as they come (pipelining: several
/// may be in flight) and answers their promises in order as replies arrive.
/// A protocol error or a closed connection fails every command in flight.
final class RedisHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisCommand
    typealias OutboundOut = ByteBuffer

    private var waiting = CircularBuffer<EventLoopPromise<RESPValue>>()
    private var buffer: ByteBuffer?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let command = unwrapOutboundIn(data)
        var out = context.channel.allocator.buffer(capacity: 64)
        RESP.encode(command.arguments, into: &out)
        waiting.append(command.promise)
        context.write(wrapOutboundOut(out), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffer == nil { buffer = incoming } else { buffer!.writeBuffer(&incoming) }
        do {
            while var b = buffer, let value = try RESP.decode(&b) {
                buffer = b.readableBytes > 0 ? b : nil
                guard let promise = waiting.popFirst() else {
                    throw RESP.ProtocolError(description: "a reply nobody asked for")
                }
                promise.succeed(value)
            }
            if buffer != nil { buffer!.discardReadBytes() }
        } catch {
            failAll(error)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError.connectionClosed)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(error)
        context.close(promise: nil)
    }

    private func failAll(_ error: Error) {
        while let promise = waiting.popFirst() { promise.fail(error) }
    }
}
