import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOHTTP2
import Testing

@testable import Gateway

@Suite("proxy handler on an embedded channel")
struct ProxyHandlerTests {
    func environment(loop: EmbeddedEventLoop) throws -> ProxyEnvironment {
        let config = try ConfigFolder(["00-base.yaml": baseYAML + """
        routes:
          - {name: r, listener: public, upstream: a, match: {path_prefix: /api}}
        """]).load()
        return ProxyEnvironment(listener: config.listeners[0], loops: LoopDirectory(group: loop, upstreams: config.upstreams),
                                accessLog: AccessLog(enabled: false), inFlight: InFlightCounter(), logger: Logger(label: "test"),
                                unrouted: RouteMetrics(route: ""))
    }

    @Test("answers 404 itself, and neither the handler nor its context outlives the channel", arguments: [false, true])
    func noLeak(isHTTP2: Bool) throws {
        weak var weakHandler: ProxyHandler?
        let loop = EmbeddedEventLoop()
        let env = try environment(loop: loop)
        do {
            let channel = EmbeddedChannel(loop: loop)
            let handler = ProxyHandler(environment: env, isHTTP2: isHTTP2, isTLS: true)
            weakHandler = handler
            try channel.pipeline.syncOperations.addHandler(handler)
            let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/nowhere", headers: ["host": "localhost"])
            try channel.writeInbound(HTTPServerRequestPart.head(head))
            try channel.writeInbound(HTTPServerRequestPart.end(nil))
            if isHTTP2 {
                // HTTP/2 responses leave the handler as frame payloads of its stream.
                guard case .headers(let response)? = try channel.readOutbound(as: HTTP2Frame.FramePayload.self) else {
                    Issue.record("no response head")
                    return
                }
                #expect(response.headers.first(name: ":status") == "404")
                #expect(response.headers.first(name: "content-type") == "application/json")
            } else {
                // HTTP/1.1 responses leave the handler as bytes.
                var wire = ""
                while let b = try channel.readOutbound(as: ByteBuffer.self) { wire += String(buffer: b) }
                #expect(wire.hasPrefix("HTTP/1.1 404 Not Found\r\n"), "\(wire)")
                #expect(wire.contains("\r\ncontent-length: ") && wire.hasSuffix("\"}"), "\(wire)")
            }
            #expect(env.inFlight.value == 0)
            _ = try channel.finish(acceptAlreadyClosed: true)
        }
        #expect(weakHandler == nil, "the handler leaked (a retain cycle through its stored context)")
    }
}
